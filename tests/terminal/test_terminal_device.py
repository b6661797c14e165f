"""Activation, the terminal's server certificate, its screen page, the key pool, and CLI refusals."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from terminal_harness import RunningTerminal

from lancert.pki import load_certificates, verify_server_chain
from lancert.terminal.keypool import RsaKeyPool
from lancert_cli import lancert

pytestmark = pytest.mark.slow  # starts a server or subprocess (tests/conftest.py)


def test_activate_makes_the_ca_that_run_then_keeps(tmp_path: Path) -> None:
    result = lancert("terminal", "activate", "--state-dir", str(tmp_path))
    assert result.stdout.startswith(f"terminal activated; root CA {tmp_path / 'ca' / 'root.pem'}\n")
    root = (tmp_path / "ca" / "root.pem").read_bytes()
    assert lancert("terminal", "root-ca", "--state-dir", str(tmp_path)).stdout.encode() == root
    assert (tmp_path / "ca" / "intermediate-key.pem").stat().st_mode & 0o777 == 0o600
    lancert("terminal", "activate", "--state-dir", str(tmp_path))
    assert (tmp_path / "ca" / "root.pem").read_bytes() == root
    assert json.loads((tmp_path / "terminal.json").read_text())["activated"] is True


def test_root_ca_of_a_terminal_never_activated_is_a_one_line_error(tmp_path: Path) -> None:
    result = lancert("terminal", "root-ca", "--state-dir", str(tmp_path), check=False)
    assert result.returncode == 1
    assert result.stderr.startswith(f"lancert: {tmp_path}: terminal not activated; run: lancert terminal ")


def test_server_certificate_names_the_address_and_chains_to_the_root(terminal: RunningTerminal) -> None:
    leaf, intermediate = load_certificates((terminal.state_dir / "server.pem").read_bytes())
    root = x509.load_pem_x509_certificate(terminal.root_pem)
    for host in ("127.0.0.1", "lancert-terminal", "localhost"):
        assert verify_server_chain(leaf, anchors=[root], host=host, intermediates=[intermediate])[-1] == root
    assert (terminal.state_dir / "server-key.pem").stat().st_mode & 0o777 == 0o600
    served = httpx.get(terminal.https + "root-ca.pem", verify=False, trust_env=False)  # noqa: S501
    assert served.content == terminal.root_pem


def test_screen_page_needs_its_token_and_shows_code_and_details(terminal: RunningTerminal) -> None:
    assert httpx.get(terminal.info["screen"], trust_env=False).status_code == 403
    assert httpx.post(terminal.info["screen"] + "code", trust_env=False).status_code == 403
    # The page's Generate Code button posts the token as a form field.
    form = {"token": terminal.info["token"]}
    tapped = httpx.post(terminal.info["screen"] + "code", data=form, trust_env=False)
    assert tapped.status_code == 303
    code = terminal.current()["code"]
    page = httpx.get(terminal.info["screen"], params={"token": terminal.info["token"]}, trust_env=False).text
    assert f"<p class=code>{code}</p>" in page
    assert "Generate Code</button>" in page
    assert f"HTTPS: {terminal.https}" in page and f"WSS: {terminal.wss}" in page
    assert terminal.pair_raw({"posId": "page", "setupCode": code}).status_code == 200
    page = httpx.get(terminal.info["screen"], params={"token": terminal.info["token"]}, trust_env=False).text
    assert "POS Activation Successful (posId page)" in page


def test_key_pool_hands_out_each_key_once() -> None:
    pool = RsaKeyPool(2)
    pool.start()
    try:
        keys = [pool.take() for _ in range(4)]
    finally:
        pool.stop()
    assert all(isinstance(k, rsa.RSAPrivateKey) and k.key_size == 2048 for k in keys)
    assert len({k.public_key().public_numbers().n for k in keys}) == 4


def test_pos_pair_with_a_wrong_code_is_a_one_line_error(terminal: RunningTerminal, tmp_path: Path) -> None:
    terminal.code()
    result = lancert("pos", "pair", "--terminal", terminal.https, "--pos-id", "p1", "--code", "ZZZZZZZZ",
                     "--dir", str(tmp_path / "pos"), check=False)
    assert result.returncode == 1
    assert result.stderr == "lancert: terminal answered 401: invalid, expired or already used setup code\n"
    assert not (tmp_path / "pos" / "key.pem").exists()
    bad = lancert("pos", "pair", "--terminal", terminal.https, "--pos-id", "no way", "--code", "X",
                  "--dir", str(tmp_path / "pos"), check=False)
    assert bad.returncode == 2
    assert bad.stderr == "lancert: posId: must be 1 to 64 characters of letters, digits, '-' or '_'\n"


def test_pos_call_before_pairing_says_so(tmp_path: Path) -> None:
    result = lancert("pos", "call", "--dir", str(tmp_path), "/api/v1/status", check=False)
    assert result.returncode == 1
    assert result.stderr == f"lancert: {tmp_path}: not paired (run: lancert pos pair)\n"


def test_run_with_an_invalid_name_fails_before_making_a_ca(tmp_path: Path) -> None:
    result = lancert("terminal", "run", "--state-dir", str(tmp_path / "t"), "--name", "bad name",
                     "--port", "0", check=False)
    assert (result.returncode, result.stderr) == (1, "lancert: invalid DNS name: 'bad name'\n")
    assert not (tmp_path / "t" / "ca").exists()
