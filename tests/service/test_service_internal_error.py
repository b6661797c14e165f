"""A stopped database or a full disk answers 503 with Retry-After and one log line per request, never a
traceback or a detail, on the service's port and on its ACME port; the service recovers as soon as it is
back, and what it refused left nothing half-written (issue 24 point 5: before, 500 and about 4 tracebacks
per request). The PostgreSQL server of a running ``lancert service run --db URL --acme-port 0`` is stopped
under it, then started again; a SQLite data directory on a tmpfs of a few MB is filled, then freed."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from acme_harness import ERROR, ZONE, AcmeClient, AcmeService
from service_testlib import CODE, PostgresServer, Registry, make_csr

from capabilities import require

pytestmark = pytest.mark.slow  # starts a server or subprocess (tests/conftest.py)

UNAVAILABLE = {"error": {"code": "service_unavailable", "message": "the database is unavailable; try again "
                         "shortly"}}
RETRY_AFTER = "5"  # seconds: the service is back as soon as its database is


def test_a_stopped_database_is_a_503_with_retry_after_and_one_log_line_and_the_service_recovers(
    postgres: PostgresServer, tmp_path
) -> None:
    url = postgres.create_database("lancert_database_down")
    service = AcmeService(tmp_path / "service", db=url).start()
    try:
        assert service.child is not None
        ready = next(ln for ln in service.child.lines if "listening on http://" in ln)
        http = "http://" + ready.split("listening on http://", 1)[1].split()[0].rstrip("/")
        uuid = service.database()
        eab = service.eab(uuid)
        acme = AcmeClient(service)
        assert acme.new_account(eab).status_code == 201
        label = service.label_of(eab)
        body = {"db_uuid": uuid, "enterprise_code": "wrong", "box_id": "box", "csr": make_csr()}

        def post(path: str, json: dict) -> httpx.Response:
            # A new connection each time: stopping PostgreSQL takes longer than the service keeps an idle
            # keep-alive connection, and a request sent on one it just closed is reset, not answered.
            return httpx.post(http + path, json=json, timeout=60)

        assert post("/api/v1/certificates", body).status_code == 403  # the database answers: wrong code
        postgres.stop()
        try:
            lost = post("/api/v1/certificates", body)
            compatible = post("/odoo-enterprise/iot/x509",
                              {"params": {"db_uuid": uuid, "enterprise_code": CODE}})
            acme_lost = acme.new_order([f"web.{label}.{ZONE}"])
        finally:
            postgres.start()
        again = post("/api/v1/certificates", body)
        acme_again = acme.new_order([f"web.{label}.{ZONE}"])
    finally:
        log = service.stop()

    assert (lost.status_code, lost.json()) == (503, UNAVAILABLE)
    # The compatible call's error carries the JSON-RPC envelope and a null result (service.compatible).
    assert (compatible.status_code, compatible.json()) == (
        503, {"jsonrpc": "2.0", "id": None, "result": None, **UNAVAILABLE})
    assert acme_lost.status_code == 503, acme_lost.text
    assert acme_lost.json()["type"] == ERROR + "serverInternal"
    assert acme_lost.headers.get("replay-nonce")
    for response in (lost, compatible, acme_lost):
        assert response.headers["retry-after"] == RETRY_AFTER
        assert not re.search(r"Traceback|psycopg|OperationalError|127\.0\.0\.1|5432|postgres", response.text)
    # Pre-ping replaces the dead pooled connections: the first requests after the restart are served.
    assert again.status_code == 403, again.text
    assert acme_again.status_code == 201, acme_again.text
    # The operator, not the client, gets the reason: one line per failed request, no traceback.
    assert "Traceback" not in log and "internal error" not in log, log[-3000:]
    assert log.count("database unavailable on POST /api/v1/certificates") == 1, log[-3000:]
    assert log.count("database unavailable on POST /odoo-enterprise/iot/x509") == 1
    assert log.count("database unavailable on POST /acme/new-order") == 1


@contextlib.contextmanager
def small_disk(mount_point: Path, megabytes: int) -> Iterator[Path]:
    """A tmpfs of ``megabytes`` mounted at ``mount_point`` (made empty), unmounted afterwards.

    Mounted where the test runs, not in a private mount namespace: SQLite resolves symbolic links in a
    database path, so a ``/proc/PID/root/...`` path into another namespace opens the file outside it,
    and the test reads and writes the service's database itself."""
    require(os.geteuid() == 0, "a full-disk test mounts a small tmpfs: it needs root (CI runs as root)")
    mount_point.mkdir(mode=0o700)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={megabytes}m,mode=0700", "tmpfs", str(mount_point)],
                   check=True)
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "--lazy", str(mount_point)], check=True)


def fill(path: Path) -> int:
    """Write ``path`` until the file system has no byte left (ENOSPC); return how many were written."""
    written = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        for size in (1 << 20, 4096, 1):  # down to the last byte of the last page
            while True:
                try:
                    written += os.write(fd, b"\0" * size)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC, exc
                    break
    finally:
        os.close(fd)
    return written


def test_a_full_disk_is_a_503_with_retry_after_and_one_log_line_and_the_service_recovers(tmp_path) -> None:
    with small_disk(tmp_path / "service", megabytes=8) as data_dir:
        service = AcmeService(data_dir).start()  # SQLite in the data directory, on the small disk
        try:
            assert service.child is not None
            ready = next(ln for ln in service.child.lines if "listening on http://" in ln)
            http = "http://" + ready.split("listening on http://", 1)[1].split()[0].rstrip("/")
            uuid = Registry(data_dir).add()
            eab = service.eab(service.database())
            acme = AcmeClient(service)

            def issue(box: str) -> httpx.Response:
                body = {"db_uuid": uuid, "enterprise_code": CODE, "box_id": box, "csr": make_csr()}
                return httpx.post(http + "/api/v1/certificates", json=body, timeout=60)

            assert issue("box-before").status_code == 200
            ballast = data_dir / "ballast"
            assert fill(ballast) > 0
            try:
                lost = issue("box-full")
                compatible = httpx.post(http + "/odoo-enterprise/iot/x509", timeout=60,
                                        json={"params": {"db_uuid": uuid, "enterprise_code": CODE}})
                acme_lost = acme.new_account(eab)
                # Reading needs no space: the directory and the health check are still answered.
                directory = acme.get(service.directory_url)
                health = httpx.get(http + "/healthz", timeout=60)
            finally:
                ballast.unlink()
            # Immediately, with no restart: the next requests are served.
            again = issue("box-again")
            acme_again = acme.new_account(eab)
            order = acme.new_order([f"web.{service.label_of(eab)}.{ZONE}"])
        finally:
            log = service.stop()
        with contextlib.closing(sqlite3.connect(data_dir / "service.db")) as db:
            integrity = db.execute("PRAGMA integrity_check").fetchall()
            issued = db.execute("SELECT count(*) FROM issued_certificates WHERE db_uuid = ?",
                                (uuid,)).fetchone()[0]
            accounts = db.execute("SELECT count(*) FROM acme_accounts").fetchone()[0]

    assert (lost.status_code, lost.json()) == (503, UNAVAILABLE), lost.text
    assert (compatible.status_code, compatible.json()) == (
        503, {"jsonrpc": "2.0", "id": None, "result": None, **UNAVAILABLE})
    assert acme_lost.status_code == 503, acme_lost.text
    assert acme_lost.json()["type"] == ERROR + "serverInternal"
    assert acme_lost.headers.get("replay-nonce")
    for response in (lost, compatible, acme_lost):
        assert response.headers["retry-after"] == RETRY_AFTER
        assert not re.search(r"Traceback|sqlite|OperationalError|disk|full|service\.db|/tmp", response.text,
                             re.IGNORECASE), response.text
    assert directory.status_code == 200 and health.status_code == 200
    assert again.status_code == 200, again.text
    # 201 Created: the account refused on the full disk was not half made (it would be 200, "exists").
    assert acme_again.status_code == 201, acme_again.text
    assert order.status_code == 201, order.text
    # Consistent: what was refused left no row, what was answered is all there.
    assert integrity == [("ok",)]
    assert (issued, accounts) == (2, 1)
    assert "Traceback" not in log and "internal error" not in log and "Logging error" not in log, log[-3000:]
    # SQLite's own SQLITE_FULL ("database or disk is full"), named to the operator once per request.
    for path in ("/api/v1/certificates", "/odoo-enterprise/iot/x509", "/acme/new-account"):
        line = f"database unavailable on POST {path}, answered 503: database or disk is full"
        assert log.count(line) == 1, log[-3000:]
