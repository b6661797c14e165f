"""The ACME server's happy paths (RFC 8555), driven by a small JWS client over real HTTPS."""

from __future__ import annotations

import base64
import re

import josepy as jose
import pytest
from acme_harness import ACME_HOST, ZONE, AcmeClient, AcmeService, assert_lint_clean, rs256_key
from cryptography import x509

pytestmark = pytest.mark.slow  # starts a server or subprocess (tests/conftest.py)


@pytest.fixture
def account(acme_service: AcmeService) -> tuple[AcmeClient, dict]:
    eab = acme_service.eab(acme_service.database())
    client = AcmeClient(acme_service)
    assert client.new_account(eab, contact=["mailto:shop@example.org"]).status_code == 201
    return client, eab


def test_directory_names_every_endpoint_under_the_acme_host_and_requires_eab(
    acme_service: AcmeService,
) -> None:
    client = AcmeClient(acme_service)
    base = f"https://{ACME_HOST}:{acme_service.port}/acme/"
    for field in ("newNonce", "newAccount", "newOrder", "revokeCert", "keyChange", "renewalInfo"):
        assert client.directory[field].startswith(base), field
    assert client.directory["meta"]["externalAccountRequired"] is True


def test_new_nonce_answers_head_200_and_get_204_without_caching(acme_service: AcmeService) -> None:
    client = AcmeClient(acme_service)
    head = client.send("HEAD", client.directory["newNonce"])
    get = client.send("GET", client.directory["newNonce"])
    assert (head.status_code, get.status_code) == (200, 204)
    assert head.headers["cache-control"] == "no-store"
    assert head.headers["replay-nonce"] != get.headers["replay-nonce"]
    assert re.fullmatch(r"[A-Za-z0-9_-]+", head.headers["replay-nonce"])  # base64url (RFC 8555 6.5.1)
    assert f'<{client.directory["newNonce"].rsplit("/", 1)[0]}/directory>;rel="index"' in head.headers["link"]


def test_eab_pair_is_a_kid_and_a_base64url_256_bit_hmac_key_with_the_database_names(
    acme_service: AcmeService,
) -> None:
    eab = acme_service.eab(acme_service.database(), cli=True)
    assert eab["kid"] and re.fullmatch(r"[A-Za-z0-9_-]{43}", eab["hmac_key"])
    assert len(base64.urlsafe_b64decode(eab["hmac_key"] + "=")) == 32
    label = acme_service.label_of(eab)
    assert re.fullmatch(r"[a-z2-7]{12}", label)
    assert eab["names"][0] == f"*.{label}.{ZONE}"


def test_new_account_with_eab_is_created_with_its_contact(account: tuple[AcmeClient, dict]) -> None:
    client, _ = account
    body = client.post(client.kid).json()
    assert body["status"] == "valid" and body["contact"] == ["mailto:shop@example.org"]
    assert body["orders"] == client.kid + "/orders"


def test_new_account_with_a_known_key_returns_the_same_account_200(account: tuple[AcmeClient, dict]) -> None:
    client, eab = account
    first = client.kid
    again = client.new_account(eab)
    assert again.status_code == 200 and again.headers["location"] == first
    existing = client.post(client.directory["newAccount"], {"onlyReturnExisting": True}, use_jwk=True)
    assert existing.status_code == 200 and existing.headers["location"] == first


def test_es256_account_obtains_a_lint_clean_wildcard_and_address_certificate(
    acme_service: AcmeService, account: tuple[AcmeClient, dict]
) -> None:
    client, eab = account
    label = acme_service.label_of(eab)
    names = [f"*.{label}.{ZONE}", f"192-168-1-25.{label}.{ZONE}"]
    key, chain, order = client.obtain(names)
    assert order["status"] == "valid"
    assert sorted(i["value"] for i in order["identifiers"]) == sorted(names)
    leaf = assert_lint_clean(chain, acme_service.root_pem, names)
    lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    assert lifetime.days == 90  # the service's default --cert-lifetime
    assert leaf.public_key().public_numbers() == key.public_key().public_numbers()


def test_rs256_account_obtains_a_certificate(acme_service: AcmeService) -> None:
    eab = acme_service.eab(acme_service.database())
    client = AcmeClient(acme_service, key=rs256_key(), alg=jose.RS256)
    assert client.new_account(eab).status_code == 201
    names = [f"pos.{acme_service.label_of(eab)}.{ZONE}"]
    _, chain, _ = client.obtain(names)
    assert_lint_clean(chain, acme_service.root_pem, names)


def test_authorizations_are_valid_at_creation_with_a_valid_dns01_challenge(
    acme_service: AcmeService, account: tuple[AcmeClient, dict]
) -> None:
    client, eab = account
    label = acme_service.label_of(eab)
    order = client.new_order([f"*.{label}.{ZONE}"])
    assert order.status_code == 201 and order.json()["status"] == "ready"
    authz = client.post(order.json()["authorizations"][0]).json()
    assert authz["status"] == "valid" and authz["wildcard"] is True
    assert authz["identifier"] == {"type": "dns", "value": f"{label}.{ZONE}"}
    (challenge,) = authz["challenges"]
    assert challenge["type"] == "dns-01" and challenge["status"] == "valid"
    answered = client.post(challenge["url"], {})
    assert answered.status_code == 200 and answered.json()["status"] == "valid"
    assert 'rel="up"' in ",".join(answered.headers.get_list("link"))


def test_orders_list_holds_the_accounts_orders(
    acme_service: AcmeService, account: tuple[AcmeClient, dict]
) -> None:
    client, eab = account
    order = client.new_order([f"a.{acme_service.label_of(eab)}.{ZONE}"])
    listed = client.post(client.post(client.kid).json()["orders"]).json()["orders"]
    assert order.headers["location"] in listed


def test_issued_certificate_is_recorded_with_the_service_certificates(
    acme_service: AcmeService, account: tuple[AcmeClient, dict]
) -> None:
    from lancert.service.database import Database

    client, eab = account
    _, chain, _ = client.obtain([f"rec.{acme_service.label_of(eab)}.{ZONE}"])
    serial = format(x509.load_pem_x509_certificate(chain.encode()).serial_number, "x")
    database = Database(f"sqlite:///{acme_service.data_dir / 'service.db'}")
    try:
        with database.engine.connect() as connection:
            row = connection.exec_driver_sql(
                "SELECT style, box_label FROM issued_certificates WHERE serial = ?", (serial,)).first()
    finally:
        database.dispose()
    assert row is not None and tuple(row) == ("acme", acme_service.label_of(eab))
