"""Hostile but well-signed requests get a 4xx problem document, never a 500 or a traceback; and the
``acme-eab`` command refuses what it cannot do with one ``lancert:`` line."""

from __future__ import annotations

import json
import ssl
from pathlib import Path

import pytest
from acme_harness import ERROR, ZONE, AcmeClient, AcmeService
from cryptography import x509

from lancert.pki import generate_private_key, private_key_pem
from lancert_cli import lancert

PAYLOADS: list[object] = [
    [], "text", 7, None, {"identifiers": "x"}, {"identifiers": [{"type": "dns", "value": 5}]},
    {"identifiers": [{"type": "dns", "value": "a" * 400}]}, {"csr": 12}, {"csr": "!!!"}, {"csr": "AAAA"},
    {"status": "valid"}, {"contact": "mailto:a@b.c"}, {"contact": [1]},
    {"certificate": "AAAA", "reason": "1"},
    {"certificate": 5}, {"account": 1, "oldKey": "x"}, {"externalAccountBinding": {"protected": 1}},
    {"identifiers": [{"type": "dns", "value": "*.*." + ZONE}]}, {"notAfter": "2030-01-01T00:00:00Z"},
]


@pytest.fixture(scope="module")
def client(acme_service: AcmeService) -> AcmeClient:
    eab = acme_service.eab(acme_service.database())
    client = AcmeClient(acme_service)
    assert client.new_account(eab).status_code == 201
    return client


def test_hostile_payloads_on_every_signed_endpoint_are_never_a_server_error(client: AcmeClient) -> None:
    """A 4xx problem document, or (an account update with unknown fields, which RFC 8555 says to
    ignore) a 2xx: never a 500."""
    base = client.kid.rsplit("/acct/", 1)[0]
    urls = [client.directory[k] for k in ("newOrder", "revokeCert", "keyChange")] + [
        client.kid, f"{client.kid}/orders", f"{base}/order/nope", f"{base}/order/nope/finalize",
        f"{base}/authz/nope/0", f"{base}/chall/nope/x", f"{base}/cert/nope"]
    for url in urls:
        for payload in PAYLOADS:
            body = json.dumps(payload).encode() if payload is not None else b"null"
            response = client.post(url, body)
            assert response.status_code < 500, (url, payload, response.text)
            if response.status_code >= 400 or url != client.kid:
                assert response.json().get("type", "").startswith(ERROR), (url, payload, response.text)
    stranger = AcmeClient(client.service)  # a key with no account: newAccount reads the payload
    for payload in PAYLOADS:
        body = json.dumps(payload).encode() if payload is not None else b"null"
        response = stranger.post(stranger.directory["newAccount"], body, use_jwk=True)
        assert 400 <= response.status_code < 500, (payload, response.text)


def test_garbage_bodies_are_malformed(client: AcmeClient) -> None:
    for body in (b"", b"{", b"[]", b'{"protected": "", "payload": "", "signature": ""}',
                 json.dumps({"protected": "e30", "payload": "", "signature": "", "header": {}}).encode()):
        response = client.send("POST", client.kid, content=body,
                               headers={"Content-Type": "application/jose+json"})
        assert response.status_code == 400, (body, response.text)
        assert response.json()["type"] == ERROR + "malformed"


def test_acme_eab_for_an_unregistered_database_fails_with_one_line(acme_service: AcmeService) -> None:
    result = lancert("service", "acme-eab", "--uuid", "no-such-db", "--data-dir", str(acme_service.data_dir),
                     check=False)
    assert result.returncode != 0 and result.stdout == ""
    assert result.stderr.strip().startswith("lancert: ") and "not registered" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_service_refuses_an_acme_tls_key_that_is_not_the_certificates(
    acme_service: AcmeService, tmp_path: Path
) -> None:
    other_key = tmp_path / "other-key.pem"
    other_key.write_bytes(private_key_pem(generate_private_key()))
    cert = acme_service.data_dir / "acme-tls" / "cert.pem"
    result = lancert("service", "run", "--data-dir", str(acme_service.data_dir), "--port", "0",
                     "--dns-port", "0", "--acme-port", "0", "--acme-tls-cert", str(cert),
                     "--acme-tls-key", str(other_key), check=False)
    assert result.returncode != 0
    assert result.stderr.strip().startswith("lancert: ") and "is not the key of" in result.stderr


def test_service_serves_acme_with_a_given_certificate(acme_service: AcmeService, tmp_path: Path) -> None:
    """--acme-tls-cert/--acme-tls-key: the endpoint presents exactly that certificate."""
    given = tmp_path / "given"
    given.mkdir()
    for name in ("cert.pem", "key.pem"):  # a credential this test holds (the running service's own)
        (given / name).write_bytes((acme_service.data_dir / "acme-tls" / name).read_bytes())
    second = AcmeService(tmp_path / "second")
    second.extra = ["--acme-tls-cert", str(given / "cert.pem"), "--acme-tls-key", str(given / "key.pem")]
    second.start()
    try:
        served = ssl.get_server_certificate(("127.0.0.1", second.port))
        expected = x509.load_pem_x509_certificates((given / "cert.pem").read_bytes())[0]
        assert x509.load_pem_x509_certificate(served.encode()) == expected
    finally:
        second.stop()
