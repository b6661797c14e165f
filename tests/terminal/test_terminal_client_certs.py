"""POS stacks that present only their own certificate (a Java KeyStore entry, .NET's X509Certificate2,
curl ``--cert``) call the API like those that send the chain; a foreign certificate is still refused, with
a TLS alert the client can read and a line in the terminal's log saying why."""

from __future__ import annotations

import json
import ssl
import subprocess
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from terminal_harness import RunningTerminal
from websockets.sync.client import connect

from lancert.ca.directory import CADirectory
from lancert.pki import (
    TLS_CLIENT,
    CertificateAuthority,
    KeyKind,
    SubjectNames,
    generate_private_key,
    load_certificates,
    pem,
    private_key_pem,
    utcnow,
)
from lancert.pos import PosClient


def _pair_leaf_only(terminal: RunningTerminal, pos_id: str, directory: Path) -> tuple[Path, Path]:
    """Pair, then keep what a leaf-only POS stack holds: the client certificate alone, and its key."""
    PosClient.pair(terminal.https, pos_id=pos_id, setup_code=terminal.code()["code"], directory=directory,
                   ca=terminal.root_pem).close()
    leaf = load_certificates((directory / "cert.pem").read_bytes())[0]
    (directory / "pos.crt").write_bytes(pem(leaf))
    return directory / "pos.crt", directory / "key.pem"


def _context(terminal: RunningTerminal, cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cadata=terminal.root_pem.decode())
    ctx.load_cert_chain(cert, key)
    return ctx


def _curl(
    terminal: RunningTerminal, cert: Path, key: Path, ca: Path, path: str, *options: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["curl", "-sS", "--max-time", "30", "--noproxy", "*", "--cacert", str(ca), "--cert", str(cert),
         "--key", str(key), *options, terminal.https + path.lstrip("/")],
        capture_output=True, text=True, check=False,
    )


def _foreign_leaf(tmp_path: Path, pos_id: str, *, terminal_names: bool = False) -> tuple[Path, Path]:
    """A client certificate naming ``pos_id`` from another CA, presented alone; with ``terminal_names``
    that CA's root and intermediate carry the same names as the terminal's own."""
    prefix = "lancert terminal lancert-terminal " if terminal_names else "Foreign "
    root = CertificateAuthority.create_root(f"{prefix}Root CA")
    foreign = root.create_intermediate(f"{prefix}Intermediate CA")
    key = generate_private_key(KeyKind.RSA)
    names = SubjectNames.parse(uris=[f"urn:lancert:pos:{pos_id}"])
    cert = foreign.issue(key.public_key(), TLS_CLIENT, names=names, common_name=pos_id,
                         validity=timedelta(days=30))
    (tmp_path / "foreign.crt").write_bytes(pem(cert))
    (tmp_path / "foreign.key").write_bytes(private_key_pem(key))
    return tmp_path / "foreign.crt", tmp_path / "foreign.key"


def test_python_ssl_with_the_leaf_alone_calls_the_api(terminal: RunningTerminal, tmp_path: Path) -> None:
    cert, key = _pair_leaf_only(terminal, "leaf-py", tmp_path)
    ctx = _context(terminal, cert, key)
    response = httpx.get(terminal.https + "api/v1/status", verify=ctx, trust_env=False, timeout=30)
    assert response.status_code == 200, response.text
    assert response.json()["posId"] == "leaf-py"
    with connect(terminal.wss + "api/v1/ws", ssl=ctx, proxy=None, open_timeout=30) as ws:
        ws.send(json.dumps({"type": "status"}))
        assert json.loads(ws.recv(timeout=30))["posId"] == "leaf-py"


def test_curl_with_the_leaf_alone_calls_the_api(terminal: RunningTerminal, tmp_path: Path) -> None:
    cert, key = _pair_leaf_only(terminal, "leaf-curl", tmp_path)
    result = _curl(terminal, cert, key, tmp_path / "ca.pem", "/api/v1/status")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["posId"] == "leaf-curl"


def _alert_seen_by_python(terminal: RunningTerminal, cert: Path, key: Path) -> str:
    """The ``reason`` of the SSLError that httpx's call ended in (its transport error wraps it)."""
    with pytest.raises(httpx.TransportError) as refused:
        httpx.get(terminal.https + "api/v1/status", verify=_context(terminal, cert, key), trust_env=False,
                  timeout=30)
    cause: BaseException | None = refused.value
    while cause is not None and not isinstance(cause, ssl.SSLError):
        cause = cause.__cause__ or cause.__context__
    assert cause is not None, f"no TLS alert, only: {refused.value!r}"
    return str(cause.reason)


def test_a_foreign_leaf_is_refused_with_an_alert_the_client_reads(
    terminal: RunningTerminal, tmp_path: Path
) -> None:
    PosClient.pair(terminal.https, pos_id="victim-2", setup_code=terminal.code()["code"],
                   directory=tmp_path / "victim", ca=terminal.root_pem).close()
    cert, key = _foreign_leaf(tmp_path, "victim-2")
    assert _alert_seen_by_python(terminal, cert, key) == "TLSV1_ALERT_UNKNOWN_CA"
    for tls in ("--tlsv1.3", "--tls-max"):  # TLS 1.3, then 1.2 (where the refusal comes mid-handshake)
        options = [tls] if tls == "--tlsv1.3" else [tls, "1.2"]
        result = _curl(terminal, cert, key, tmp_path / "victim" / "ca.pem", "/api/v1/status", *options)
        assert result.returncode != 0
        assert "alert unknown ca" in result.stderr, (options, result.stderr)


def test_a_leaf_from_a_ca_named_like_the_terminals_is_refused(
    terminal: RunningTerminal, tmp_path: Path
) -> None:
    """Trusting the intermediate to complete the chain goes by signature, not by name."""
    cert, key = _foreign_leaf(tmp_path, "victim-3", terminal_names=True)
    assert _alert_seen_by_python(terminal, cert, key).startswith("TLSV1_ALERT_")
    (tmp_path / "root.pem").write_bytes(terminal.root_pem)
    assert _curl(terminal, cert, key, tmp_path / "root.pem", "/api/v1/status").returncode != 0


def test_a_refused_client_certificate_is_logged_with_the_reason(
    terminal: RunningTerminal, tmp_path: Path
) -> None:
    cert, key = _foreign_leaf(tmp_path, "logged")
    (tmp_path / "root.pem").write_bytes(terminal.root_pem)
    before = terminal.log().count("refused a client certificate from 127.0.0.1:")
    assert _curl(terminal, cert, key, tmp_path / "root.pem", "/api/v1/status").returncode != 0
    lines = [ln for ln in terminal.log().splitlines() if "refused a client certificate from 127.0.0.1:" in ln]
    assert len(lines) == before + 1, terminal.log()
    assert "not issued by this terminal" in lines[-1]
    assert "unable to get local issuer certificate" in lines[-1]


def test_an_expired_certificate_of_the_terminal_is_refused_as_expired(
    terminal: RunningTerminal, tmp_path: Path
) -> None:
    ca = CADirectory(terminal.state_dir / "ca").load()
    key = generate_private_key(KeyKind.RSA)
    cert = ca.issue(key.public_key(), TLS_CLIENT, names=SubjectNames.parse(uris=["urn:lancert:pos:old"]),
                    common_name="old", validity=timedelta(days=1), not_before=utcnow() - timedelta(days=3))
    (tmp_path / "old.crt").write_bytes(pem(cert))
    (tmp_path / "old.key").write_bytes(private_key_pem(key))
    assert _alert_seen_by_python(terminal, tmp_path / "old.crt", tmp_path / "old.key") == (
        "SSLV3_ALERT_CERTIFICATE_EXPIRED"
    )
    lines = [ln for ln in terminal.log().splitlines() if "refused a client certificate from" in ln]
    assert "expired (pair again)" in lines[-1]
