"""Pairing over HTTPS and WSS, the bundle field by field, and the paired mTLS API over both."""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from terminal_harness import RunningTerminal
from websockets.exceptions import ConnectionClosed, InvalidMessage, InvalidStatus
from websockets.sync.client import connect

from lancert.pki import (
    TLS_CLIENT,
    CertificateAuthority,
    KeyKind,
    SubjectNames,
    generate_private_key,
    load_certificates,
    load_private_key_pem,
    pem,
    private_key_pem,
    verify_client_chain,
)
from lancert.pos import PosClient, parse_bundle
from lancert.pos.client import PairingFailed
from lancert_cli import lancert


def pair(terminal: RunningTerminal, pos_id: str, directory: Path, *, over: str = "https") -> PosClient:
    url = terminal.https if over == "https" else terminal.wss
    return PosClient.pair(url, pos_id=pos_id, setup_code=terminal.code()["code"], directory=directory,
                          ca=terminal.root_pem)


def test_https_pairing_answers_the_bundle_in_the_seed_order(
    terminal: RunningTerminal, tmp_path: Path
) -> None:
    response = terminal.pair_raw({"posId": "123", "setupCode": terminal.code()["code"]})
    assert response.status_code == 200
    bundle = response.content
    assert bundle.startswith(b"-----BEGIN RSA PRIVATE KEY-----\n")
    key = load_private_key_pem(bundle)
    assert isinstance(key, rsa.RSAPrivateKey)
    assert key.key_size == 2048
    assert key.public_key().public_numbers().e == 65537
    leaf, intermediate, root = load_certificates(bundle)
    assert pem(root) == terminal.root_pem
    assert leaf.public_key().public_numbers() == key.public_key().public_numbers()
    chain = verify_client_chain(leaf, anchors=[root], intermediates=[intermediate])
    assert chain == [leaf, intermediate, root]
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "123"
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["urn:lancert:pos:123"]
    # The same chain through OpenSSL, with the TLS-client purpose.
    (tmp_path / "root.pem").write_bytes(pem(root))
    (tmp_path / "inter.pem").write_bytes(pem(intermediate))
    (tmp_path / "leaf.pem").write_bytes(pem(leaf))
    result = subprocess.run(
        ["openssl", "verify", "-purpose", "sslclient", "-CAfile", str(tmp_path / "root.pem"),
         "-untrusted", str(tmp_path / "inter.pem"), str(tmp_path / "leaf.pem")],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith(": OK")
    assert parse_bundle(bundle, pos_id="123", anchor=root).certificate == leaf


def test_bundle_for_another_pos_id_is_rejected_by_the_pos(terminal: RunningTerminal) -> None:
    response = terminal.pair_raw({"posId": "someone", "setupCode": terminal.code()["code"]})
    root = x509.load_pem_x509_certificate(terminal.root_pem)
    with pytest.raises(PairingFailed, match="does not name posId 123"):
        parse_bundle(response.content, pos_id="123", anchor=root)


def test_wss_pairing_answers_the_same_bundle(terminal: RunningTerminal) -> None:
    ctx = ssl.create_default_context(cadata=terminal.root_pem.decode())
    with connect(terminal.wss, ssl=ctx, proxy=None) as ws:
        ws.send(json.dumps({"posId": "wss-1", "setupCode": terminal.code()["code"]}))
        answer = ws.recv(timeout=30)
    assert isinstance(answer, str) and answer.startswith("-----BEGIN RSA PRIVATE KEY-----")
    root = x509.load_pem_x509_certificate(terminal.root_pem)
    bundle = parse_bundle(answer.encode(), pos_id="wss-1", anchor=root)
    assert bundle.key.key_size == 2048


def test_terminal_issues_no_tls_session_tickets(terminal: RunningTerminal) -> None:
    # A ticket would let a session outlive an unpair, and one arriving while websockets' sync client
    # writes its upgrade request lost that request now and then (src/lancert/terminal/tls.py).
    host, port = terminal.https.removeprefix("https://").rstrip("/").rsplit(":", 1)
    ctx = ssl.create_default_context(cadata=terminal.root_pem.decode())
    with socket.create_connection((host, int(port)), timeout=30) as raw, \
            ctx.wrap_socket(raw, server_hostname=host) as tls:
        tls.sendall(f"GET /root-ca.pem HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := tls.recv(65536):
            answer += chunk
        assert tls.version() == "TLSv1.3" and answer.startswith(b"HTTP/1.1 200")
        assert tls.session is not None and not tls.session.has_ticket


def test_pos_pair_cli_stores_key_certificate_and_chain(terminal: RunningTerminal, tmp_path: Path) -> None:
    code = terminal.code()["code"]
    out = tmp_path / "pos"
    result = lancert("pos", "pair", "--terminal", terminal.https, "--pos-id", "cli-7", "--code", code,
                     "--dir", str(out))
    assert "paired posId cli-7" in result.stdout
    assert "PRIVATE KEY" not in result.stdout
    assert (out / "key.pem").stat().st_mode & 0o777 == 0o600
    key = load_private_key_pem((out / "key.pem").read_bytes())
    certs = load_certificates((out / "cert.pem").read_bytes())
    chain = load_certificates((out / "chain.pem").read_bytes())
    assert certs[0].public_key().public_numbers() == key.public_key().public_numbers()
    assert certs[0].subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "cli-7"
    assert certs[1] == chain[0]  # cert.pem carries the intermediate after the client certificate
    assert pem(chain[1]) == terminal.root_pem == (out / "ca.pem").read_bytes()
    status = lancert("pos", "call", "--dir", str(out), "/api/v1/status")
    assert json.loads(status.stdout)["posId"] == "cli-7"
    sale = lancert("pos", "call", "--dir", str(out), terminal.https + "api/v1/sale",
                   "--data", '{"amount": 990}')
    assert json.loads(sale.stdout) | {"saleId": None} == {
        "posId": "cli-7", "saleId": None, "result": "approved", "amount": 990, "currency": "EUR",
        "reference": None,
    }
    ws = lancert("pos", "call", "--dir", str(out), terminal.wss + "api/v1/ws")
    assert json.loads(ws.stdout)["posId"] == "cli-7"
    refused = lancert("pos", "call", "--dir", str(out), terminal.wss + "api/v1/ws", "--data", '{"type": "x"}',
                      check=False)
    assert refused.returncode == 1
    assert refused.stderr.startswith("lancert: terminal answered 400: type: ")


def test_pos_pair_without_ca_fetches_the_root_first(terminal: RunningTerminal, tmp_path: Path) -> None:
    client = PosClient.pair(terminal.https, pos_id="tofu", setup_code=terminal.code()["code"],
                            directory=tmp_path)
    assert (tmp_path / "ca.pem").read_bytes() == terminal.root_pem
    assert client.status()["posId"] == "tofu"
    root_cli = lancert("terminal", "root-ca", "--state-dir", str(terminal.state_dir)).stdout
    assert root_cli.encode() == terminal.root_pem


def test_paired_calls_over_https_know_the_pos_id(terminal: RunningTerminal, tmp_path: Path) -> None:
    with pair(terminal, "pos-https", tmp_path) as client:
        assert client.status()["posId"] == "pos-https"
        sale = client.sale(1250, "EUR", reference="order-17")
        assert (sale["posId"], sale["amount"], sale["currency"], sale["reference"], sale["result"]) == (
            "pos-https", 1250, "EUR", "order-17", "approved")
        bad = client.request("POST", "/api/v1/sale", data={"amount": -1})
        assert bad.status_code == 400
        assert bad.json()["error"].startswith("amount:")


def test_paired_calls_over_wss_know_the_pos_id(terminal: RunningTerminal, tmp_path: Path) -> None:
    with pair(terminal, "pos-wss", tmp_path, over="wss") as client, client.websocket() as ws:
        ws.send(json.dumps({"type": "status"}))
        assert json.loads(ws.recv(timeout=30))["posId"] == "pos-wss"
        ws.send(json.dumps({"type": "sale", "amount": 400, "currency": "USD"}))
        sale = json.loads(ws.recv(timeout=30))
        assert (sale["status"], sale["posId"], sale["amount"], sale["currency"]) == (
            200, "pos-wss", 400, "USD")
        ws.send(json.dumps({"type": "sale", "amount": "400"}))
        assert json.loads(ws.recv(timeout=30)) == {
            "status": 400, "error": "amount: Input should be a valid integer"}


def test_api_without_client_certificate_is_refused(terminal: RunningTerminal) -> None:
    ctx = ssl.create_default_context(cadata=terminal.root_pem.decode())
    response = httpx.get(terminal.https + "api/v1/status", verify=ctx, trust_env=False)
    assert response.status_code == 401
    assert "client certificate" in response.json()["error"]
    with pytest.raises(InvalidStatus) as refused:
        connect(terminal.wss + "api/v1/ws", ssl=ctx, proxy=None).close()
    assert refused.value.response.status_code == 403


def _foreign_client_context(terminal: RunningTerminal, tmp_path: Path, pos_id: str) -> ssl.SSLContext:
    """A certificate naming a paired posId, but from another CA."""
    foreign = CertificateAuthority.create_root("Foreign Root").create_intermediate("Foreign Intermediate")
    key = generate_private_key(KeyKind.RSA)
    names = SubjectNames.parse(uris=[f"urn:lancert:pos:{pos_id}"])
    cert = foreign.issue(key.public_key(), TLS_CLIENT, names=names, common_name=pos_id,
                         validity=timedelta(days=30))
    (tmp_path / "foreign.pem").write_bytes(pem([cert, foreign.certificate]))
    (tmp_path / "foreign-key.pem").write_bytes(private_key_pem(key))
    ctx = ssl.create_default_context(cadata=terminal.root_pem.decode())
    ctx.load_cert_chain(tmp_path / "foreign.pem", tmp_path / "foreign-key.pem")
    return ctx


def test_client_certificate_from_a_foreign_ca_is_refused(
    terminal: RunningTerminal, tmp_path: Path
) -> None:
    pair(terminal, "victim", tmp_path / "victim").close()
    ctx = _foreign_client_context(terminal, tmp_path, "victim")
    with pytest.raises(httpx.TransportError):
        httpx.get(terminal.https + "api/v1/status", verify=ctx, trust_env=False)
    # TLS 1.3: the client finishes its side of the handshake before the server rejects its certificate,
    # so the refusal arrives as an alert (SSLError) or as the connection closing before or during the upgrade.
    with pytest.raises((ssl.SSLError, ConnectionClosed, InvalidMessage)):
        connect(terminal.wss + "api/v1/ws", ssl=ctx, proxy=None).close()


def test_old_certificate_stops_working_after_re_pairing(terminal: RunningTerminal, tmp_path: Path) -> None:
    old = pair(terminal, "repair", tmp_path / "old")
    assert old.status()["posId"] == "repair"
    with old.websocket() as open_ws:
        new = pair(terminal, "repair", tmp_path / "new")
        assert new.status()["posId"] == "repair"
        refused = old.request("GET", "/api/v1/status")
        assert refused.status_code == 403
        assert refused.json() == {"error": "this client certificate was replaced or revoked; pair again"}
        # A WebSocket opened before the re-pairing is cut at its next message.
        open_ws.send(json.dumps({"type": "status"}))
        assert json.loads(open_ws.recv(timeout=30))["status"] == 403
    with pytest.raises(InvalidStatus):
        old.websocket().close()


def test_unpaired_pos_is_refused_over_https_and_wss(terminal: RunningTerminal, tmp_path: Path) -> None:
    client = pair(terminal, "gone", tmp_path)
    assert client.status()["posId"] == "gone"
    result = lancert("terminal", "unpair", "--state-dir", str(terminal.state_dir), "--pos-id", "gone")
    assert "unpaired posId gone" in result.stdout
    assert client.request("GET", "/api/v1/status").status_code == 403
    with pytest.raises(InvalidStatus) as refused:
        client.websocket().close()
    assert refused.value.response.status_code == 403
    again = lancert("terminal", "unpair", "--state-dir", str(terminal.state_dir), "--pos-id", "gone",
                    check=False)
    assert again.returncode == 1
    assert again.stderr == "lancert: no POS paired with posId 'gone'\n"


def test_pairing_shows_success_and_never_logs_keys(terminal: RunningTerminal) -> None:
    response = terminal.pair_raw({"posId": "shown", "setupCode": terminal.code()["code"]})
    assert response.status_code == 200
    assert "POS Activation Successful (posId shown)" in terminal.log()
    assert terminal.current()["message"] == "POS Activation Successful (posId shown)"
    body_line = response.content.decode().splitlines()[1]
    log = terminal.log()
    assert "PRIVATE KEY" not in log
    assert body_line not in log
    assert "BEGIN CERTIFICATE" not in log
