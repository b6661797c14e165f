"""``lancert service db add|set|list`` and what they store (never the code in clear)."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from service_testlib import lancert

from lancert.service.registry import verify_code

pytestmark = pytest.mark.slow  # starts a server or subprocess (tests/conftest.py)


def db(tmp_path: Path, *args: str, check: bool = True):
    return lancert("service", "db", *args, "--data-dir", str(tmp_path), check=check)


def test_add_then_list_json_shows_the_registry(tmp_path: Path) -> None:
    db(tmp_path, "add", "--uuid", "u-1", "--code", "c1")
    db(
        tmp_path,
        "add",
        "--uuid",
        "u-2",
        "--code",
        "c2",
        "--kind",
        "staging",
        "--subscription",
        "closed",
        "--no-iot-line",
    )
    listed = json.loads(db(tmp_path, "list", "--json").stdout)
    assert [(d["uuid"], d["kind"], d["subscription"], d["iot_box_line"]) for d in listed] == [
        ("u-1", "production", "in_progress", True),
        ("u-2", "staging", "closed", False),
    ]
    assert all("code" not in key for d in listed for key in d)


def test_set_changes_only_the_given_options(tmp_path: Path) -> None:
    db(tmp_path, "add", "--uuid", "u-1", "--code", "c1", "--no-iot-line")
    changed = json.loads(db(tmp_path, "set", "--uuid", "u-1", "--iot-line", "--json").stdout)
    assert changed["iot_box_line"] is True and changed["kind"] == "production"
    changed = json.loads(db(tmp_path, "set", "--uuid", "u-1", "--kind", "duplicate", "--json").stdout)
    assert changed["iot_box_line"] is True and changed["kind"] == "duplicate"


def test_code_is_stored_as_a_salted_hash_only(tmp_path: Path) -> None:
    code = "enterprise-code-6f1c2a"
    db(tmp_path, "add", "--uuid", "u-1", "--code", code)
    db(tmp_path, "add", "--uuid", "u-2", "--code", code)
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("service.db*"))
    assert code.encode() not in raw
    with sqlite3.connect(tmp_path / "service.db") as conn:
        hashes = [row[0] for row in conn.execute("SELECT code_hash FROM registered_databases ORDER BY uuid")]
    assert all(h.startswith("scrypt$") for h in hashes)
    assert hashes[0] != hashes[1]  # per-row salt
    assert verify_code(code, hashes[0]) and not verify_code(code + "x", hashes[0])


def test_set_code_replaces_the_hash(tmp_path: Path) -> None:
    db(tmp_path, "add", "--uuid", "u-1", "--code", "old")
    db(tmp_path, "set", "--uuid", "u-1", "--code", "new")
    with sqlite3.connect(tmp_path / "service.db") as conn:
        stored = conn.execute("SELECT code_hash FROM registered_databases").fetchone()[0]
    assert verify_code("new", stored) and not verify_code("old", stored)


def test_database_file_is_private(tmp_path: Path) -> None:
    db(tmp_path, "add", "--uuid", "u-1", "--code", "c")
    assert (tmp_path / "service.db").stat().st_mode & 0o077 == 0


def test_add_twice_and_set_unknown_fail_with_one_line(tmp_path: Path) -> None:
    db(tmp_path, "add", "--uuid", "u-1", "--code", "c")
    again = db(tmp_path, "add", "--uuid", "u-1", "--code", "c", check=False)
    assert (
        again.returncode == 1
        and again.stderr.startswith("lancert: ")
        and "already registered" in again.stderr
    )
    unknown = db(tmp_path, "set", "--uuid", "nope", "--iot-line", check=False)
    assert unknown.returncode == 1 and "not registered" in unknown.stderr
    assert len(unknown.stderr.strip().splitlines()) == 1


def test_invalid_kind_is_a_usage_error(tmp_path: Path) -> None:
    bad = db(tmp_path, "add", "--uuid", "u-1", "--code", "c", "--kind", "prod", check=False)
    assert bad.returncode == 2


def test_root_before_first_start_says_what_to_do(tmp_path: Path) -> None:
    result = lancert("service", "root", "--data-dir", str(tmp_path), check=False)
    assert result.returncode == 1 and "lancert service run" in result.stderr


def test_root_prints_the_root_the_api_serves(service, tmp_path: Path) -> None:
    printed = lancert("service", "root", "--data-dir", str(service.data_dir)).stdout
    with service.client() as client:
        assert client.get("/api/v1/root").text == printed


def test_run_on_a_port_in_use_fails_with_one_line(service, tmp_path: Path) -> None:
    port = service.url.rsplit(":", 1)[1]
    result = lancert(
        "service", "run", "--data-dir", str(tmp_path), "--port", port, "--dns-port", "0", check=False
    )
    assert result.returncode == 1
    assert f"lancert: cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


def test_run_with_another_zone_than_its_ca_is_refused(service, tmp_path: Path) -> None:
    # A copy of the running service's data directory (its CA is in the database): the directory itself is
    # locked by the running service, and a second service on it is refused before its zone is read.
    copy = tmp_path / "data"
    shutil.copytree(service.data_dir, copy, ignore=shutil.ignore_patterns("service.db*", "*.lock"))
    source, target = sqlite3.connect(service.data_dir / "service.db"), sqlite3.connect(copy / "service.db")
    source.backup(target)
    source.close()
    target.close()
    result = lancert(
        "service",
        "run",
        "--data-dir",
        str(copy),
        "--zone",
        "other.example.net",
        "--port",
        "0",
        "--dns-port",
        "0",
        check=False,
    )
    assert result.returncode == 1
    assert "is for zone 'iot.lancert.test'" in result.stderr
