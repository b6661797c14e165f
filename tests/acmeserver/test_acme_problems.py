"""RFC 8555 refusals, one test each, with the exact problem type (RFC 8555 6.7) the client must get."""

from __future__ import annotations

import json

import josepy as jose
import pytest
from acme import jws as acme_jws
from acme_harness import ZONE, AcmeClient, AcmeService, es256_key, name, problem, rs256_key
from cryptography.hazmat.primitives.asymmetric import rsa

from lancert.pki import SubjectNames, create_csr, generate_private_key

pytestmark = pytest.mark.slow  # starts a server or subprocess (tests/conftest.py)


def test_reused_nonce_is_bad_nonce_with_a_fresh_nonce(client: AcmeClient) -> None:
    nonce = client.nonce()
    assert client.post(client.kid, nonce=nonce).status_code == 200
    replay = client.post(client.kid, nonce=nonce)
    assert replay.status_code == 400
    problem(replay, "badNonce")
    fresh = replay.headers["replay-nonce"]
    assert fresh != nonce and client.post(client.kid, nonce=fresh).status_code == 200


def test_unknown_nonce_is_bad_nonce(client: AcmeClient) -> None:
    made_up = jose.b64encode(b"\0" * 36).decode()
    problem(client.post(client.kid, nonce=made_up), "badNonce")


def test_bad_signature_is_malformed(client: AcmeClient) -> None:
    signed = client.jws(client.kid, None)
    signature = bytearray(jose.b64decode(signed["signature"]))
    signature[5] ^= 0x01
    signed["signature"] = jose.b64encode(bytes(signature)).decode()
    response = client.send("POST", client.kid, content=json.dumps(signed),
                           headers={"Content-Type": "application/jose+json"})
    assert response.status_code == 400
    problem(response, "malformed")


def test_request_signed_by_another_key_than_the_accounts_is_malformed(client: AcmeClient) -> None:
    problem(client.post(client.kid, key=es256_key()), "malformed")


def test_wrong_url_in_the_protected_header_is_malformed(client: AcmeClient) -> None:
    signed = client.jws(client.directory["newOrder"], None)  # signed for another endpoint
    response = client.send("POST", client.kid, content=json.dumps(signed),
                           headers={"Content-Type": "application/jose+json"})
    body = problem(response, "malformed")
    assert "url" in body["detail"]


def test_unknown_account_is_account_does_not_exist(client: AcmeClient) -> None:
    ghost = client.kid.rsplit("/", 1)[0] + "/nosuchaccount"
    problem(client.post(client.directory["newOrder"], {"identifiers": []}, kid=ghost), "accountDoesNotExist")


def test_only_return_existing_for_an_unknown_key_is_account_does_not_exist(acme_service: AcmeService) -> None:
    stranger = AcmeClient(acme_service)
    problem(stranger.post(stranger.directory["newAccount"], {"onlyReturnExisting": True}, use_jwk=True),
            "accountDoesNotExist")


def test_deactivated_account_is_unauthorized(client: AcmeClient) -> None:
    done = client.post(client.kid, {"status": "deactivated"})
    assert done.status_code == 200 and done.json()["status"] == "deactivated"
    refused = client.new_order([name(client)])
    assert refused.status_code == 403
    problem(refused, "unauthorized")


def test_key_rollover_to_a_key_in_use_is_a_409_naming_that_account(
    acme_service: AcmeService, client: AcmeClient
) -> None:
    other = AcmeClient(acme_service)
    assert other.new_account(acme_service.eab(acme_service.database())).status_code == 201
    url = client.directory["keyChange"]
    # The inner JWS: signed by the new key (here, the other account's), no nonce (RFC 8555 7.3.5).
    change = json.dumps({"account": client.kid, "oldKey": client.key.public_key().to_partial_json()})
    inner = acme_jws.JWS.sign(change.encode(), key=other.key, alg=jose.ES256, nonce=None, url=url)
    response = client.post(url, json.dumps(inner.to_partial_json()).encode())
    assert response.status_code == 409
    problem(response, "malformed")
    assert response.headers["location"] == other.kid


def test_new_order_outside_the_label_is_rejected_identifier(
    acme_service: AcmeService, client: AcmeClient
) -> None:
    other_label = acme_service.label_of(acme_service.eab(acme_service.database()))
    for outside in (f"web.{other_label}.{ZONE}", "shop.example.com", "a." + name(client), f"*.{ZONE}"):
        response = client.new_order([outside])
        assert response.status_code == 400, outside
        body = problem(response, "rejectedIdentifier")
        assert [p["identifier"]["value"] for p in body["subproblems"]] == [outside]


def test_new_order_for_an_ip_address_is_rejected_identifier(client: AcmeClient) -> None:
    response = client.post(client.directory["newOrder"],
                           {"identifiers": [{"type": "ip", "value": "192.168.1.25"}]})
    problem(response, "rejectedIdentifier")


def test_finalize_with_a_csr_naming_other_names_is_bad_csr(client: AcmeClient) -> None:
    order = client.new_order([name(client)]).json()
    for names in ([name(client), name(client, "extra")], [name(client, "other")]):
        csr = create_csr(generate_private_key(), SubjectNames.parse(dns=names))
        problem(client.finalize(order, csr), "badCSR")
    assert client.post(order["finalize"].rsplit("/", 1)[0]).json()["status"] == "ready"


def test_finalize_with_a_weak_key_is_bad_csr(client: AcmeClient) -> None:
    order = client.new_order([name(client)]).json()
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - the refused key
    csr = create_csr(weak, SubjectNames.parse(dns=[name(client)]))
    body = problem(client.finalize(order, csr), "badCSR")
    assert "1024" in body["detail"]


def test_new_order_for_an_ineligible_database_is_unauthorized_with_the_reason(
    acme_service: AcmeService,
) -> None:
    uuid = acme_service.database()
    client = AcmeClient(acme_service)
    eab = acme_service.eab(uuid)  # no pair for an ineligible database: the line goes after the account
    assert client.new_account(eab).status_code == 201
    acme_service.set_database(uuid, "--no-iot-line")
    response = client.new_order([f"web.{acme_service.label_of(eab)}.{ZONE}"])
    assert response.status_code == 403
    assert "no_iot_box_line" in problem(response, "unauthorized")["detail"]


def test_finalize_after_the_subscription_closed_is_unauthorized(acme_service: AcmeService) -> None:
    uuid = acme_service.database()
    client = AcmeClient(acme_service)
    eab = acme_service.eab(uuid)
    assert client.new_account(eab).status_code == 201
    names = [f"web.{acme_service.label_of(eab)}.{ZONE}"]
    order = client.new_order(names).json()
    acme_service.set_database(uuid, "--subscription", "closed")
    response = client.finalize(order, create_csr(generate_private_key(), SubjectNames.parse(dns=names)))
    assert "subscription_not_in_progress" in problem(response, "unauthorized")["detail"]


def test_revoked_eab_key_cannot_open_an_account(acme_service: AcmeService) -> None:
    from lancert_cli import lancert

    uuid = acme_service.database()
    eab = acme_service.eab(uuid)
    lancert("service", "acme-eab", "--uuid", uuid, "--revoke", eab["kid"],
            "--data-dir", str(acme_service.data_dir))
    response = AcmeClient(acme_service).new_account(eab)
    assert response.status_code == 403
    problem(response, "unauthorized")


def test_new_account_without_eab_is_external_account_required(acme_service: AcmeService) -> None:
    problem(AcmeClient(acme_service).new_account(None), "externalAccountRequired")


def test_eab_binding_another_key_is_malformed(acme_service: AcmeService) -> None:
    client = AcmeClient(acme_service)
    eab = acme_service.eab(acme_service.database())
    binding = client.eab_binding(eab, key=es256_key())
    response = client.post(client.directory["newAccount"], {"externalAccountBinding": binding}, use_jwk=True)
    problem(response, "malformed")


def test_hmac_signed_request_is_bad_signature_algorithm(client: AcmeClient) -> None:
    secret = jose.JWKOct(key=b"k" * 32)
    body = problem(client.post(client.kid, key=secret, alg=jose.HS256), "badSignatureAlgorithm")
    assert "ES256" in body["algorithms"] and "RS256" in body["algorithms"]


def test_weak_account_key_is_bad_public_key(acme_service: AcmeService) -> None:
    client = AcmeClient(acme_service, key=rs256_key(1024), alg=jose.RS256)
    problem(client.new_account(acme_service.eab(acme_service.database())), "badPublicKey")


def test_jwk_where_a_kid_is_required_is_malformed(client: AcmeClient) -> None:
    problem(client.post(client.directory["newOrder"], {"identifiers": []}, use_jwk=True), "malformed")


def test_finalizing_twice_is_order_not_ready(client: AcmeClient) -> None:
    names = [name(client)]
    order = client.new_order(names).json()
    csr = create_csr(generate_private_key(), SubjectNames.parse(dns=names))
    assert client.finalize(order, csr).status_code == 200
    response = client.finalize(order, csr)
    assert response.status_code == 403
    problem(response, "orderNotReady")


def test_wrong_content_type_is_malformed_415(client: AcmeClient) -> None:
    response = client.send("POST", client.kid, content=json.dumps(client.jws(client.kid, None)),
                           headers={"Content-Type": "application/json"})
    assert response.status_code == 415
    problem(response, "malformed")


def test_body_over_64_kib_is_refused_413(client: AcmeClient) -> None:
    response = client.send("POST", client.kid, content=b"x" * (64 * 1024 + 1),
                           headers={"Content-Type": "application/jose+json"})
    assert response.status_code == 413
    assert response.json()["type"].endswith(":malformed")
    # Like every other problem, with a nonce the client can sign its next request with (RFC 8555 6.5).
    nonce = response.headers["replay-nonce"]
    assert client.post(client.kid, nonce=nonce).status_code == 200


def test_eab_whose_inner_url_is_not_the_outer_url_opens_no_account(acme_service: AcmeService) -> None:
    """RFC 8555 7.3.4: the binding's protected "url" MUST be the same as the outer JWS's, the newAccount
    URL; a binding MACed for another URL (another endpoint of this server, or another server) is
    malformed, and the key can open its account afterwards with a right binding."""
    from acme import messages

    eab = acme_service.eab(acme_service.database())
    client = AcmeClient(acme_service)
    new_account = client.directory["newAccount"]
    for inner_url in (client.directory["keyChange"], new_account.replace("https://", "https://evil."),
                      new_account + "/"):
        binding = messages.ExternalAccountBinding.from_data(
            account_public_key=client.key.public_key(), kid=eab["kid"], hmac_key=eab["hmac_key"],
            directory={"newAccount": inner_url})  # type: ignore[arg-type]
        response = client.post(new_account, {"termsOfServiceAgreed": True, "externalAccountBinding": binding},
                               use_jwk=True)
        assert response.status_code == 400, (inner_url, response.text)
        assert "url" in problem(response, "malformed")["detail"]
        assert "location" not in response.headers
    assert client.new_account(eab).status_code == 201  # nothing was opened by the refused ones


def test_a_method_the_resource_does_not_take_is_405_naming_the_methods_it_does(client: AcmeClient) -> None:
    """RFC 9110 15.5.6: a 405 carries Allow, the methods the target resource supports; RFC 8555 7.2: a
    nonce is GET or HEAD, the directory GET (and HEAD with it), a signed resource POST only."""
    directory, directory_url = client.directory, client.service.directory_url
    assert client.kid is not None
    for url, method, allow in ((directory["newNonce"], "POST", {"GET", "HEAD"}),
                               (directory_url, "DELETE", {"GET", "HEAD"}),
                               (directory["newOrder"], "GET", {"POST"}),
                               (client.kid, "PUT", {"POST"})):
        response = client.send(method, url)
        assert response.status_code == 405, (url, method)
        assert {m.strip() for m in response.headers["allow"].split(",")} == allow, (url, method)
        problem(response, "malformed")
