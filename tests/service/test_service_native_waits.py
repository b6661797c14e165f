"""The native call never makes the service's event loop wait: a box whose code the service already
verified is served without a thread hop only when nothing would wait (SQLite's write lock, this
process's writer, an scrypt); otherwise the whole request is served again in a thread, and every
other request of every port is answered meanwhile. Nothing a request that did not finish tried to do
is kept."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from service_testlib import CODE, Registry, ServiceProcess, make_csr

from lancert.service.database import Database, WouldWait, driver_execute


def _native(service: ServiceProcess, uuid: str, code: str = CODE, box: str = "box-1") -> httpx.Response:
    return httpx.post(f"{service.url}/api/v1/certificates", timeout=60,
                      json={"db_uuid": uuid, "enterprise_code": code, "box_id": box, "csr": make_csr()})


def _recorded(data_dir: Path, uuid: str) -> int:
    with sqlite3.connect(data_dir / "service.db") as db:
        return int(db.execute("SELECT count(*) FROM issued_certificates WHERE db_uuid = ?",
                              (uuid,)).fetchone()[0])


@pytest.mark.slow
def test_a_known_box_waits_for_another_process_s_writer_while_every_port_answers(
    service: ServiceProcess, registry: Registry
) -> None:
    uuid = registry.add()
    assert _native(service, uuid).status_code == 200  # the code is now verified by the service
    holder = sqlite3.connect(service.data_dir / "service.db", isolation_level=None, timeout=1)
    holder.execute("BEGIN IMMEDIATE")  # another process holds SQLite's write lock
    released = False
    try:
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(_native, service, uuid)
            time.sleep(0.5)  # let it reach the service and find the lock taken
            for _ in range(3):  # the loop is free: other requests are answered while the box waits
                assert httpx.get(f"{service.url}/healthz", timeout=10).status_code == 200
                assert httpx.get(f"{service.url}/api/v1/root", timeout=10).status_code == 200
            assert not pending.done()  # its record cannot be written while the lock is held
            holder.execute("ROLLBACK")
            released = True
            answer = pending.result(timeout=60)
        assert answer.status_code == 200, answer.text
        assert answer.json()["certificate_chain_pem"].startswith("-----BEGIN CERTIFICATE-----")
        assert _recorded(service.data_dir, uuid) == 2
    finally:
        if not released:
            holder.execute("ROLLBACK")
        holder.close()


@pytest.mark.slow
def test_a_code_changed_since_it_was_verified_is_checked_again(
    service: ServiceProcess, registry: Registry
) -> None:
    uuid = registry.add()
    assert _native(service, uuid).status_code == 200
    registry.set(uuid, "--code", "a new code for this database")
    refused = _native(service, uuid)
    assert refused.status_code == 403
    assert refused.json()["error"]["reason"] == "unknown_database_or_code"
    assert _native(service, uuid, code="a new code for this database").status_code == 200
    assert _recorded(service.data_dir, uuid) == 2


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    db = Database(f"sqlite:///{tmp_path / 'service.db'}")
    db.migrate()
    yield db
    db.dispose()


def _insert_txt(connection: Any, value: str) -> None:
    driver_execute(connection, "INSERT INTO dns_txt_records (name, value, created_at) VALUES "
                   "('x.iot.example', ?, '2026-01-01 00:00:00')", (value,))


def _scalar(connection: Any, sql: str) -> Any:
    return driver_execute(connection, sql)[1][0][0]


def _txt_values(path: Path) -> list[str]:
    with sqlite3.connect(path) as db:
        return [row[0] for row in db.execute("SELECT value FROM dns_txt_records ORDER BY id")]


def test_a_transaction_asked_for_now_does_not_wait_for_another_process_s_writer(
    database: Database, tmp_path: Path
) -> None:
    holder = sqlite3.connect(tmp_path / "service.db", isolation_level=None, timeout=1)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(WouldWait), database.now_transaction(write=True) as connection:
            _insert_txt(connection, "never")
        with database.now_transaction(write=False) as connection:  # WAL: reading is never held up
            assert _scalar(connection, "SELECT count(*) FROM dns_txt_records") == 0
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    with database.now_transaction(write=True) as connection:
        _insert_txt(connection, "written")
    assert _txt_values(tmp_path / "service.db") == ["written"]


def test_a_transaction_asked_for_now_does_not_wait_for_this_process_s_writer(
    database: Database, tmp_path: Path
) -> None:
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with database.writing_connection() as connection:
            _insert_txt(connection, "other thread")
            held.set()
            release.wait(30)

    other = threading.Thread(target=hold)
    other.start()
    try:
        assert held.wait(30)
        with pytest.raises(WouldWait), database.now_transaction(write=True) as connection:
            _insert_txt(connection, "never")
    finally:
        release.set()
        other.join(30)
    assert _txt_values(tmp_path / "service.db") == ["other thread"]


def test_a_failed_transaction_asked_for_now_keeps_nothing(database: Database, tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), database.now_transaction(write=True) as connection:
        _insert_txt(connection, "rolled back")
        raise RuntimeError("the request failed after its INSERT")
    with database.now_transaction(write=True) as connection:
        _insert_txt(connection, "kept")
    assert _txt_values(tmp_path / "service.db") == ["kept"]


def test_commits_asked_for_now_leave_their_checkpoints_to_another_thread(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A checkpoint syncs the WAL and the database file: never in the caller that must not wait."""
    ran_in: list[threading.Thread] = []
    checkpoint = database._checkpoint
    monkeypatch.setattr(database, "_checkpoint", lambda: (ran_in.append(threading.current_thread()),
                                                           checkpoint()))
    database.NOW_CHECKPOINT_COMMITS = 5  # type: ignore[misc]
    for i in range(10):
        with database.now_transaction(write=True) as connection:
            _insert_txt(connection, f"value {i}")
            assert _scalar(connection, "PRAGMA wal_autocheckpoint") == 0
            assert _scalar(connection, "PRAGMA busy_timeout") == 0
    database.dispose()  # waits for the checkpoints started
    assert len(ran_in) == 2
    assert all(thread is not threading.current_thread() for thread in ran_in)
