"""Account lifecycle and certificate management: contact update, key rollover, deactivation,
revocation (by the account, by the certificate's key) and renewal information (RFC 9773)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import josepy as jose
import pytest
from acme import jws as acme_jws
from acme_harness import ZONE, AcmeClient, AcmeService, es256_key, problem
from cryptography import x509
from cryptography.hazmat.primitives import serialization

pytestmark = pytest.mark.slow  # starts a server or subprocess (tests/conftest.py)


def new_client(acme_service: AcmeService) -> tuple[AcmeClient, str]:
    eab = acme_service.eab(acme_service.database())
    client = AcmeClient(acme_service)
    assert client.new_account(eab).status_code == 201
    return client, acme_service.label_of(eab)


def test_contact_update_replaces_the_contacts(acme_service: AcmeService) -> None:
    client, _ = new_client(acme_service)
    updated = client.post(client.kid, {"contact": ["mailto:it@example.org", "mailto:ops@example.org"]})
    assert updated.status_code == 200
    assert client.post(client.kid).json()["contact"] == ["mailto:it@example.org", "mailto:ops@example.org"]
    problem(client.post(client.kid, {"contact": ["tel:+15551234"]}), "unsupportedContact")
    problem(client.post(client.kid, {"contact": ["mailto:not an address"]}), "invalidContact")


def test_key_rollover_moves_the_account_to_the_new_key(acme_service: AcmeService) -> None:
    client, label = new_client(acme_service)
    old_key, new_key = client.key, es256_key()
    url = client.directory["keyChange"]
    change = json.dumps({"account": client.kid, "oldKey": old_key.public_key().to_partial_json()})
    inner = acme_jws.JWS.sign(change.encode(), key=new_key, alg=jose.ES256, nonce=None, url=url)
    assert client.post(url, json.dumps(inner.to_partial_json()).encode()).status_code == 200
    rows = acme_service.used_nonce_rows()
    problem(client.post(client.kid), "malformed")  # the old key no longer signs for the account
    # ... and, as any request not signed by the account's key, writes nothing (no nonce row), even
    # though that key signed for the account a moment ago
    assert acme_service.used_nonce_rows() == rows
    client.key = new_key
    assert client.post(client.kid).status_code == 200
    assert client.new_order([f"web.{label}.{ZONE}"]).status_code == 201


def test_deactivation_is_final(acme_service: AcmeService) -> None:
    client, _ = new_client(acme_service)
    assert client.post(client.kid, {"status": "deactivated"}).json()["status"] == "deactivated"
    rows = acme_service.used_nonce_rows()
    problem(client.post(client.kid, {"status": "valid"}), "unauthorized")
    assert acme_service.used_nonce_rows() == rows  # refused before anything is written


def der_b64(chain: str) -> str:
    leaf = x509.load_pem_x509_certificate(chain.encode())
    return jose.b64encode(leaf.public_bytes(serialization.Encoding.DER)).decode()


def test_revocation_by_the_account_then_again_is_already_revoked(acme_service: AcmeService) -> None:
    client, label = new_client(acme_service)
    _, chain, _ = client.obtain([f"web.{label}.{ZONE}"])
    problem(client.post(client.directory["revokeCert"], {"certificate": der_b64(chain), "reason": 7}),
            "badRevocationReason")
    done = client.post(client.directory["revokeCert"], {"certificate": der_b64(chain), "reason": 4})
    assert done.status_code == 200
    problem(client.post(client.directory["revokeCert"], {"certificate": der_b64(chain)}), "alreadyRevoked")


def test_revocation_signed_by_the_certificates_key(acme_service: AcmeService) -> None:
    client, label = new_client(acme_service)
    key, chain, _ = client.obtain([f"web.{label}.{ZONE}"])
    cert_key = jose.JWKEC(key=key)
    done = client.post(client.directory["revokeCert"], {"certificate": der_b64(chain)}, key=cert_key,
                       use_jwk=True)
    assert done.status_code == 200, done.text


def test_another_databases_account_may_not_revoke(acme_service: AcmeService) -> None:
    client, label = new_client(acme_service)
    _, chain, _ = client.obtain([f"web.{label}.{ZONE}"])
    stranger, _ = new_client(acme_service)
    response = stranger.post(stranger.directory["revokeCert"], {"certificate": der_b64(chain)})
    problem(response, "unauthorized")


def ari_id(chain: str) -> str:
    leaf = x509.load_pem_x509_certificate(chain.encode())
    aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    serial = leaf.serial_number.to_bytes((leaf.serial_number.bit_length() + 8) // 8, "big")
    return f"{jose.b64encode(aki).decode()}.{jose.b64encode(serial).decode()}"


def test_renewal_info_suggests_the_last_third_then_now_once_revoked(acme_service: AcmeService) -> None:
    client, label = new_client(acme_service)
    _, chain, _ = client.obtain([f"web.{label}.{ZONE}"])
    leaf = x509.load_pem_x509_certificate(chain.encode())
    info = client.get(f"{client.directory['renewalInfo']}/{ari_id(chain)}")
    assert info.status_code == 200 and int(info.headers["retry-after"]) > 0
    window = info.json()["suggestedWindow"]
    start = datetime.fromisoformat(window["start"].replace("Z", "+00:00"))
    lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    assert abs(start - (leaf.not_valid_before_utc + lifetime * 2 / 3)) < timedelta(seconds=2)
    assert start < datetime.fromisoformat(window["end"].replace("Z", "+00:00")) < leaf.not_valid_after_utc
    client.post(client.directory["revokeCert"], {"certificate": der_b64(chain)})
    revoked = client.get(f"{client.directory['renewalInfo']}/{ari_id(chain)}").json()["suggestedWindow"]
    assert datetime.fromisoformat(revoked["end"].replace("Z", "+00:00")) <= datetime.now(UTC) + timedelta(
        seconds=5)


def test_renewal_info_of_an_unknown_certificate_is_404(acme_service: AcmeService) -> None:
    client = AcmeClient(acme_service)
    response = client.get(f"{client.directory['renewalInfo']}/AAAA.AQ")
    assert response.status_code == 404
    problem(response, "malformed")
