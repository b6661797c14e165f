"""What ACME clients in the field send, beyond what certbot's library sends: a CSR whose only name is its
commonName (acme-tiny's documented ``-subj /CN=name``), RFC 9773 ``replaces`` on renewal (mod_md), no
External Account Binding at all (acme-tiny, acmetool, simp_le), and a directory read for its
``termsOfService``. CSR shapes are built with cryptography, as those clients' openssl calls make them."""

from __future__ import annotations

import json
from pathlib import Path

import josepy as jose
import pytest
from acme_harness import ZONE, AcmeClient, AcmeService, assert_lint_clean, name, problem
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from lancert_cli import lancert

pytestmark = pytest.mark.slow  # starts a server or subprocess (tests/conftest.py)


def csr(key: ec.EllipticCurvePrivateKey, cn: str | None, san: list[str]) -> x509.CertificateSigningRequest:
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else [])
    )
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in san]), False)
    return builder.sign(key, hashes.SHA256())


def issue(client: AcmeClient, names: list[str], request: x509.CertificateSigningRequest) -> str:
    """Finalize an order for ``names`` with ``request`` and download the chain."""
    order = client.new_order(names)
    assert order.status_code == 201, order.text
    done = client.finalize(order.json(), request)
    assert done.status_code == 200, done.text
    for _ in range(100):
        body = client.post(order.headers["location"]).json()
        if body["status"] == "valid":
            return client.post(body["certificate"]).text
    raise AssertionError(f"order never valid: {body}")


def test_a_csr_naming_its_identifier_in_the_common_name_only_is_issued_with_a_san(
    acme_service: AcmeService, client: AcmeClient
) -> None:
    """RFC 8555 7.4: a dns identifier may be in the CSR's commonName, its subjectAltName, or both; the
    certificate still names it in its subjectAltName (CA/Browser Forum profile)."""
    only = name(client)
    chain = issue(client, [only], csr(ec.generate_private_key(ec.SECP256R1()), only, []))
    leaf = assert_lint_clean(chain, acme_service.root_pem, [only])
    assert leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName) == [only]
    # Both, and the CN in another case than the order: the same name.
    both = name(client, "till")
    request = csr(ec.generate_private_key(ec.SECP256R1()), both.upper(), [both])
    assert_lint_clean(issue(client, [both], request), acme_service.root_pem, [both])


def test_a_common_name_that_is_not_an_ordered_identifier_is_bad_csr(client: AcmeClient) -> None:
    ordered = name(client)
    order = client.new_order([ordered]).json()
    key = ec.generate_private_key(ec.SECP256R1())
    for request in (csr(key, name(client, "other"), [ordered]), csr(key, name(client, "other"), [])):
        problem(client.finalize(order, request), "badCSR")
    # Two identifiers, one in the CN and one in the SAN: the union is the order's set.
    pair = [name(client, "a"), name(client, "b")]
    assert issue(client, pair, csr(key, pair[0], [pair[1]]))


def cert_id(chain_pem: str) -> str:
    """RFC 9773 section 4.1: base64url(AKI keyIdentifier) "." base64url(serial's DER content octets)."""
    leaf = x509.load_pem_x509_certificate(chain_pem.encode())
    aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    serial = leaf.serial_number.to_bytes((leaf.serial_number.bit_length() + 8) // 8, "big")
    assert aki is not None
    return f"{jose.b64encode(aki).decode()}.{jose.b64encode(serial).decode()}"


def order_replacing(client: AcmeClient, names: list[str], replaces: str) -> object:
    identifiers = [{"type": "dns", "value": n} for n in names]
    return client.post(client.directory["newOrder"], {"identifiers": identifiers, "replaces": replaces})


def test_replaces_is_checked_and_echoed(acme_service: AcmeService, client: AcmeClient) -> None:
    names = [name(client)]
    _key, chain, _order = client.obtain(names)
    old = cert_id(chain)
    renewal = order_replacing(client, names, old)
    assert renewal.status_code == 201, renewal.text  # type: ignore[attr-defined]
    assert renewal.json()["replaces"] == old  # type: ignore[attr-defined]
    # Read back: the order keeps it.
    assert client.post(renewal.headers["location"]).json()["replaces"] == old  # type: ignore[attr-defined]
    # A second order replacing the same certificate while the first is not invalid: 409 alreadyReplaced.
    again = order_replacing(client, names, old)
    assert again.status_code == 409  # type: ignore[attr-defined]
    problem(again, "alreadyReplaced")  # type: ignore[arg-type]
    # A certificate that shares no name with the order, one this CA never issued, and a malformed certID.
    problem(order_replacing(client, [name(client, "kiosk")], cert_id(client.obtain([name(client, "x")])[1])),
            "malformed")  # type: ignore[arg-type]
    unknown = old.split(".")[0] + "." + jose.b64encode(b"\x01\x02\x03").decode()
    for refused in (unknown, "not-a-cert-id", 7):
        problem(order_replacing(client, names, refused), "malformed")  # type: ignore[arg-type]
    # Another account (of another database) may not name this account's certificate.
    other = AcmeClient(acme_service)
    eab = acme_service.eab(acme_service.database())
    assert other.new_account(eab).status_code == 201
    foreign = order_replacing(other, [f"web.{acme_service.label_of(eab)}.{ZONE}"], old)
    assert foreign.status_code == 403  # type: ignore[attr-defined]
    problem(foreign, "unauthorized")  # type: ignore[arg-type]


def test_a_client_without_eab_is_told_how_and_its_bound_key_then_registers(
    acme_service: AcmeService, tmp_path: Path
) -> None:
    """acme-tiny, acmetool and simp_le send no binding: externalAccountRequired names the two ways, and
    ``service acme-eab --bind-key`` binds such a client's own account key (PEM, as openssl genrsa writes
    it) in one step; its unchanged registration then finds the account by the key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_file = tmp_path / "account.key"
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_file.chmod(0o600)
    client = AcmeClient(acme_service, key=jose.JWKRSA(key=key), alg=jose.RS256)
    detail = problem(client.new_account(None), "externalAccountRequired")["detail"]
    assert "acme-eab --uuid" in detail and "--bind-key" in detail
    uuid = acme_service.database()
    bound = json.loads(lancert("service", "acme-eab", "--uuid", uuid, "--bind-key", str(key_file), "--json",
                               "--data-dir", str(acme_service.data_dir)).stdout)
    assert bound["created"] is True and bound["db_uuid"] == uuid
    assert "hmac_key" not in bound  # the binding's HMAC key is never shown: nobody opens another with it
    registered = client.new_account(None)
    assert registered.status_code == 200, registered.text
    again = json.loads(lancert("service", "acme-eab", "--uuid", uuid, "--bind-key", str(key_file), "--json",
                               "--data-dir", str(acme_service.data_dir)).stdout)
    assert (again["created"], again["account"]) == (False, bound["account"])
    label = acme_service.label_of(acme_service.eab(uuid))
    assert client.obtain([f"web.{label}.{ZONE}"])[1].count("BEGIN CERTIFICATE") == 2
    # Revoking the binding's key id stops the account, as for any pair.
    lancert("service", "acme-eab", "--uuid", uuid, "--revoke", bound["kid"], "--data-dir",
            str(acme_service.data_dir))
    problem(client.new_order([f"web.{label}.{ZONE}"]), "unauthorized")


@pytest.mark.parametrize(
    ("options", "why"),
    [
        ({"kind": "staging"}, "not a production database"),
        ({"iot_box_line": False}, "no IoT box line"),
        ({"subscription": "closed"}, "subscription is not in progress"),
    ],
)
def test_acme_eab_for_an_ineligible_database_says_why_and_prints_no_pair(
    acme_service: AcmeService, options: dict[str, object], why: str
) -> None:
    uuid = acme_service.database(**options)
    result = lancert("service", "acme-eab", "--uuid", uuid, "--data-dir", str(acme_service.data_dir),
                     check=False)
    assert result.returncode != 0 and result.stdout == ""
    assert result.stderr.startswith("lancert: ") and why in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_the_directory_carries_terms_of_service_and_website_when_configured(tmp_path: Path) -> None:
    config = tmp_path / "service.toml"
    config.write_text(f'zone = "{ZONE}"\nacme_terms_of_service = "https://{ZONE}/terms"\n'
                      f'acme_website = "https://{ZONE}/"\n')
    service = AcmeService(tmp_path / "service", extra=["--config", str(config)]).start()
    try:
        meta = AcmeClient(service).directory["meta"]
    finally:
        service.stop()
    assert meta == {"termsOfService": f"https://{ZONE}/terms", "website": f"https://{ZONE}/",
                    "externalAccountRequired": True}
