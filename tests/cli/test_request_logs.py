"""``service run`` and ``terminal run`` log one line per request that matters on stderr, never a secret;
``--log-level WARNING`` keeps them quiet."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest

from lancert.up.stack import Child
from lancert_cli import lancert
from service_process import ServiceProcess

pytestmark = pytest.mark.slow  # starts a server or subprocess (tests/conftest.py)

CODE = "M-12345-XYZ-secret"


def _service(tmp_path: Path, *extra: str) -> tuple[Child, str]:
    process = ServiceProcess(tmp_path / "service", ["--dns-port", "0", *extra],
                             log_path=tmp_path / "service.stderr").start(timeout=60)
    assert process.child is not None
    return process.child, process.url


def test_service_logs_issued_and_refused_requests_with_reason_and_no_code(tmp_path: Path) -> None:
    lancert("service", "db", "add", "--uuid", "shop-db", "--code", CODE,
            "--data-dir", str(tmp_path / "service"))
    child, url = _service(tmp_path)
    try:
        with httpx.Client(base_url=url, timeout=30) as http:
            ok = http.post("/odoo-enterprise/iot/x509", json={"params": {"db_uuid": "shop-db",
                                                                        "enterprise_code": CODE}})
            assert "x509_pem" in ok.json()["result"]
            wrong = http.post("/odoo-enterprise/iot/x509", json={"params": {"db_uuid": "shop-db",
                                                                           "enterprise_code": "nope"}})
            assert wrong.json()["error"]["reason"] == "unknown_database_or_code"
            native = http.post("/api/v1/certificates", json={"db_uuid": "other", "enterprise_code": "x",
                                                            "box_id": "b1", "csr": "x"})
            assert native.status_code == 403
    finally:
        child.stop()
    lines = [ln for ln in child.log_text().splitlines() if "lancert.service:" in ln]
    assert len(lines) == 3, lines
    assert re.search(r"INFO lancert\.service: issued \*\.([a-z2-7]{12})\.iot\.lancert\.test for database "
                     r"shop-db, label \1 \(compatible call from 127\.0\.0\.1\): serial [0-9a-f]+, "
                     r"not_after \S+$", lines[0]), lines[0]
    assert lines[1].endswith("INFO lancert.service: refused /odoo-enterprise/iot/x509 from 127.0.0.1 for "
                             "database shop-db: not_eligible unknown_database_or_code "
                             "(unknown database or wrong enterprise code)"), lines[1]
    assert re.search(r"INFO lancert\.service: refused /api/v1/certificates from 127\.0\.0\.1: "
                     r"not_eligible unknown_database_or_code \(.+\)$", lines[2]), lines[2]
    assert CODE not in child.log_text()


def test_service_log_level_warning_hides_request_lines(tmp_path: Path) -> None:
    child, url = _service(tmp_path, "--log-level", "warning")
    try:
        refused = httpx.post(f"{url}/api/v1/certificates", json={"db_uuid": "x", "enterprise_code": "y",
                                                                  "box_id": "b", "csr": "z"}, timeout=30)
        assert refused.status_code == 403
    finally:
        child.stop()
    assert "refused" not in child.log_text()


def test_terminal_logs_pairing_and_refusals_with_pos_id(tmp_path: Path) -> None:
    state = tmp_path / "terminal"
    child = Child.start("terminal", ["terminal", "run", "--state-dir", str(state), "--port", "0",
                                     "--key-pool", "0"], tmp_path / "terminal.stderr")
    try:
        url = child.wait_for("Details: HTTPS ", 60).split("Details: HTTPS ", 1)[1].split()[0]
        root = tmp_path / "root.pem"
        root.write_text(lancert("terminal", "root-ca", "--state-dir", str(state)).stdout)
        bad = lancert("pos", "pair", "--terminal", url, "--pos-id", "till-1", "--code", "ABCDEFGH",
                      "--dir", str(tmp_path / "pos"), "--ca", str(root), check=False)
        assert bad.returncode != 0
        code = json.loads(lancert("terminal", "code", "--json", "--state-dir", str(state)).stdout)["code"]
        lancert("pos", "pair", "--terminal", url, "--pos-id", "till-1", "--code", code,
                "--dir", str(tmp_path / "pos"), "--ca", str(root))
        lancert("terminal", "unpair", "--state-dir", str(state), "--pos-id", "till-1")
        stale = lancert("pos", "call", "--dir", str(tmp_path / "pos"), "/api/v1/status", check=False)
        assert stale.returncode != 0
    finally:
        child.stop()
    lines = [ln for ln in child.log_text().splitlines() if "lancert.terminal:" in ln]
    assert len(lines) == 3, lines
    assert lines[0].endswith("INFO lancert.terminal: refused / from 127.0.0.1: 401 invalid, expired or "
                             "already used setup code"), lines[0]
    assert re.search(r"INFO lancert\.terminal: paired posId till-1 \(certificate serial [0-9a-f]+\)$",
                     lines[1]), lines[1]
    assert re.search(r"INFO lancert\.terminal: refused /api/v1/status from 127\.0\.0\.1 posId till-1: 403 ",
                     lines[2]), lines[2]
    assert code not in child.log_text() and "PRIVATE KEY" not in child.log_text()
