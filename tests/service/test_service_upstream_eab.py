"""External Account Binding with a Pebble that requires it: the right key (from LANCERT_ACME_EAB_HMAC)
issues; a wrong key (from a 0600 file) gives a clear error, at start and to the box; a key file that
others can read is refused before anything starts."""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from service_testlib import Registry
from upstream_testlib import (
    PEBBLE,
    Pebble,
    certs_json,
    compatible_call,
    compatible_result,
    compatible_until_issued,
    upstream_service,
)

from capabilities import required_for_module
from lancert.loopback import free_port
from lancert.pki import load_certificates
from lancert_cli import lancert

pytestmark = pytest.mark.slow  # starts a server or subprocess (tests/conftest.py)

_capability = required_for_module(PEBBLE is not None, "Debian package 'pebble' is not installed")

KID = "kid-lancert"


def hmac_key() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(48)).decode().rstrip("=")


@pytest.fixture(scope="module")
def eab_pebble(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Pebble, str]]:
    key = hmac_key()
    pebble = Pebble(tmp_path_factory.mktemp("eab-pebble"), free_port(), eab_keys={KID: key}).start()
    yield pebble, key
    pebble.stop()


def test_the_right_eab_key_from_the_environment_issues(
    eab_pebble: tuple[Pebble, str], tmp_path: Path
) -> None:
    pebble, key = eab_pebble
    service = upstream_service(
        tmp_path / "data",
        pebble.directory,
        pebble.ca_bundle,
        dns_port=pebble.dns_port,
        extra=["--acme-eab-kid", KID],
        env={**os.environ, "LANCERT_ACME_EAB_HMAC": key},
    )
    try:
        assert any("issuing through https://127.0.0.1:" in line for line in service.output)
        result = compatible_until_issued(service, Registry(service.data_dir).add()).result
        assert (
            "Pebble Intermediate CA"
            in load_certificates(result["x509_pem"].encode())[0].issuer.rfc4514_string()
        )
    finally:
        log = service.stop()
    assert key not in log


def test_a_wrong_eab_key_is_a_clear_error_at_start_and_for_the_box(
    eab_pebble: tuple[Pebble, str], tmp_path: Path
) -> None:
    pebble, _right = eab_pebble
    key_file = tmp_path / "eab-hmac"
    key_file.write_text(hmac_key() + "\n")
    key_file.chmod(0o600)
    service = upstream_service(
        tmp_path / "data",
        pebble.directory,
        pebble.ca_bundle,
        dns_port=0,
        extra=["--acme-eab-kid", KID, "--acme-eab-hmac-file", str(key_file)],
    )
    try:
        uuid = Registry(service.data_dir).add()
        result = compatible_result(compatible_call(service, uuid))
        assert "x509_pem" not in result
        assert "the CA refused" in result["error"] and "xternal account" in result["error"], result
        row = next(r for r in certs_json(service.data_dir) if r["db_uuid"] == uuid)
        assert "xternal account" in row["last_error"]
    finally:
        log = service.stop()
    assert "upstream CA not ready" in log and "xternal account" in log
    assert key_file.read_text().strip() not in log


def _start_with_eab_kid(
    tmp_path: Path, *options: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``service run --issuer acme --acme-eab-kid KID`` toward a directory nobody serves: refused at start."""
    return lancert(
        "service", "run", "--data-dir", str(tmp_path / "data"), "--port", "0", "--dns-port", "0",
        "--issuer", "acme", "--acme-directory", "https://127.0.0.1:1/dir", "--acme-eab-kid", KID, *options,
        check=False, env=env,
    )


def test_an_eab_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    key_file = tmp_path / "eab-hmac"
    key_file.write_text(hmac_key())
    key_file.chmod(0o644)
    result = _start_with_eab_kid(tmp_path, "--acme-eab-hmac-file", str(key_file))
    assert result.returncode == 2
    assert result.stderr.startswith("lancert: ") and "chmod 600" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_an_eab_kid_without_its_key_is_refused(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "LANCERT_ACME_EAB_HMAC"}
    result = _start_with_eab_kid(tmp_path, env=env)
    assert result.returncode == 2 and "LANCERT_ACME_EAB_HMAC" in result.stderr
