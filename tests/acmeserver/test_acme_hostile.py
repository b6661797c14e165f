"""Hostile but well-signed requests get a 4xx problem document, never a 500 or a traceback; and the
``acme-eab`` command refuses what it cannot do with one ``lancert:`` line."""

from __future__ import annotations

import json
import ssl
from pathlib import Path

import josepy as jose
import pytest
from acme_harness import ERROR, ZONE, AcmeClient, AcmeService, problem
from cryptography import x509

from lancert.pki import generate_private_key, private_key_pem
from lancert_cli import lancert

pytestmark = pytest.mark.slow  # starts a server or subprocess (tests/conftest.py)

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
    # A data directory of its own: the running service holds its own one (one service per SQLite dir).
    result = lancert("service", "run", "--data-dir", str(tmp_path / "second"), "--port", "0",
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


# -- the JWS layer before the signature (issue 24 point 1) ------------------------------------------------

def _raw_jws(protected: bytes | dict[str, object], payload: bytes = b"",
             signature: bytes = b"\0" * 64) -> bytes:
    """A flattened JWS whose protected header is exactly ``protected`` (JSON-encoded if a dict)."""
    raw = json.dumps(protected).encode() if isinstance(protected, dict) else protected
    return json.dumps({"protected": jose.b64encode(raw).decode(), "payload": jose.b64encode(payload).decode(),
                       "signature": jose.b64encode(signature).decode()}).encode()


def _send_raw(client: AcmeClient, url: str, body: bytes, content_type: str = "application/jose+json"):
    return client.send("POST", url, content=body, headers={"Content-Type": content_type})


def test_alg_none_unknown_or_not_a_string_is_bad_signature_algorithm(client: AcmeClient) -> None:
    """RFC 8555 6.2: badSignatureAlgorithm, naming the algorithms taken; "none" included (RFC 7518 3.6)."""
    for alg in ("none", "XX512", 5, ["ES256"], None, {"a": 1}):
        header = {"alg": alg, "kid": client.kid, "nonce": client.nonce(), "url": client.kid}
        body = problem(_send_raw(client, client.kid, _raw_jws(header)), "badSignatureAlgorithm")
        assert {"ES256", "RS256"} <= set(body["algorithms"]), alg


def test_non_string_header_fields_non_utf8_and_deep_json_are_malformed(client: AcmeClient) -> None:
    nonce = client.nonce()
    good = {"alg": "ES256", "kid": client.kid, "nonce": nonce, "url": client.kid}
    headers: list[bytes | dict[str, object]] = [
        {**good, "nonce": 5}, {**good, "url": 5}, {**good, "url": None}, {**good, "kid": 7},
        {**good, "kid": ["x"]}, {**{k: v for k, v in good.items() if k != "kid"}, "jwk": "x"},
        {**{k: v for k, v in good.items() if k != "kid"},
         "jwk": {"kty": "EC", "crv": "P-256", "x": 5, "y": 5}},
        b"\xff\xfe\x00garbage", b'{"alg": "ES256", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        b"[" * 5000, b"7", b'"ES256"',
    ]
    for header in headers:
        response = _send_raw(client, client.kid, _raw_jws(header))
        shown = header if isinstance(header, dict) else header[:40]
        assert response.status_code == 400, (shown, response.text)
        problem(response, "malformed")
    for body in (b"[" * 60000, b'{"protected": ' + b"[" * 60000, "\u00e9".encode("latin-1")):
        problem(_send_raw(client, client.kid, body), "malformed")
    deep_payload = client.post(client.directory["newOrder"], b"[" * 5000 + b"]" * 5000)
    problem(deep_payload, "malformed")


def test_an_authorization_index_that_is_no_ascii_number_is_404(acme_service: AcmeService) -> None:
    """"²".isdigit() is true and int("²") raises: the finding was a 500 on /authz/<order>/²."""
    eab = acme_service.eab(acme_service.database())
    client = AcmeClient(acme_service)
    assert client.new_account(eab).status_code == 201
    order = client.new_order([f"a.{acme_service.label_of(eab)}.{ZONE}"])
    assert order.status_code == 201, order.text
    base = client.kid.rsplit("/acct/", 1)[0]
    order_id = order.headers["location"].rsplit("/", 1)[1]
    assert client.post(f"{base}/authz/{order_id}/0").status_code == 200
    for index in ("²", "١", "0x1", "99999999999999999999", "-1"):
        for kind in ("authz", "chall"):
            response = client.post(f"{base}/{kind}/{order_id}/{index}")
            assert response.status_code in (400, 404), (kind, index, response.text)
            assert response.json()["type"].startswith(ERROR)


def test_forged_requests_write_no_nonce_row(client: AcmeClient) -> None:
    """A request whose signature does not verify (or whose kid is no account) costs no database write:
    60 of them with fresh nonces leave acme_used_nonces as it was."""
    stranger = AcmeClient(client.service)
    before = client.service.used_nonce_rows()
    for i in range(20):
        forged = stranger.jws(client.kid, None, kid=client.kid)  # signed by another key
        assert _send_raw(client, client.kid, json.dumps(forged).encode()).status_code == 400
        bad_kid = stranger.post(client.kid, None, kid=client.kid + f"x{i}")
        problem(bad_kid, "accountDoesNotExist")
        fresh_jwk = stranger.jws(stranger.directory["newAccount"], {}, use_jwk=True)
        fresh_jwk["signature"] = jose.b64encode(b"\1" * 64).decode()
        assert _send_raw(client, stranger.directory["newAccount"], json.dumps(fresh_jwk).encode()
                         ).status_code == 400
    assert client.service.used_nonce_rows() == before


def test_a_nonce_presented_in_a_refused_request_is_never_accepted_again(client: AcmeClient) -> None:
    """Whatever refused the request (signature, url, Content-Type, kid, handler), its nonce is spent."""
    stranger = AcmeClient(client.service)
    refusals = {
        "forged signature": lambda n: _send_raw(client, client.kid, json.dumps(
            stranger.jws(client.kid, None, kid=client.kid, nonce=n)).encode()),
        "wrong url": lambda n: _send_raw(client, client.kid, json.dumps(
            client.jws(client.directory["newOrder"], None, nonce=n)).encode()),
        "wrong content type": lambda n: _send_raw(client, client.kid, json.dumps(
            client.jws(client.kid, None, nonce=n)).encode(), "application/json"),
        "unknown kid": lambda n: _send_raw(client, client.kid, json.dumps(
            client.jws(client.kid, None, nonce=n, kid=client.kid + "zz")).encode()),
        "refused payload": lambda n: client.post(client.directory["newOrder"], {"identifiers": 5}, nonce=n),
    }
    for why, send in refusals.items():
        nonce = client.nonce()
        refused = send(nonce)
        assert 400 <= refused.status_code < 500, (why, refused.text)
        again = client.post(client.kid, None, nonce=nonce)
        problem(again, "badNonce")
        assert client.post(client.kid, None).status_code == 200, why  # a fresh nonce works
