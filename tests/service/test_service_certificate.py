"""The issued certificate, field by field, and its chain verified by openssl and by cryptography."""

from __future__ import annotations

import ipaddress
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from service_testlib import CODE, ZONE, Registry, ServiceProcess, make_csr

from lancert.pki import generate_private_key, load_certificates, verify_server_chain
from lancert.pki.keys import public_key_matches

pytestmark = pytest.mark.slow  # starts a server or subprocess (tests/conftest.py)


@pytest.fixture(scope="module")
def issued(service: ServiceProcess, registry: Registry) -> dict[str, object]:
    key = generate_private_key()
    with service.client() as client:
        response = client.post(
            "/api/v1/certificates",
            json={
                "db_uuid": registry.add(),
                "enterprise_code": CODE,
                "box_id": "box-7",
                "csr": make_csr(key=key),
            },
        )
        root_pem = client.get("/api/v1/root")
    assert response.status_code == 200, response.text
    body = response.json()
    chain = load_certificates(body["certificate_chain_pem"].encode())
    root = load_certificates(root_pem.content)[0]
    return {
        "body": body,
        "key": key,
        "leaf": chain[0],
        "intermediate": chain[1],
        "root": root,
        "root_pem": root_pem,
    }


def test_leaf_is_for_the_box_key(issued: dict) -> None:
    assert public_key_matches(issued["key"], issued["leaf"].public_key())


def test_leaf_san_is_exactly_the_box_wildcard(issued: dict) -> None:
    san = issued["leaf"].extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.value.get_values_for_type(x509.DNSName) == [issued["body"]["hostname_pattern"]]
    assert san.value.get_values_for_type(x509.IPAddress) == []
    assert issued["body"]["hostname_pattern"].endswith(f".{ZONE}")


def test_leaf_key_usage_and_eku_are_tls_server(issued: dict) -> None:
    leaf = issued["leaf"]
    ku = leaf.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature
    assert not ku.value.key_cert_sign and not ku.value.crl_sign
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    bc = leaf.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca is False


def test_leaf_validity_is_the_default_90_days_and_renewal_at_two_thirds(issued: dict) -> None:
    leaf, body = issued["leaf"], issued["body"]
    lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    assert lifetime == timedelta(days=90)
    assert abs(leaf.not_valid_before_utc - datetime.now(UTC)) < timedelta(minutes=5)
    assert datetime.fromisoformat(body["not_after"]) == leaf.not_valid_after_utc
    assert datetime.fromisoformat(body["not_before"]) == leaf.not_valid_before_utc
    renew = datetime.fromisoformat(body["renew_after"])
    assert abs(renew - (leaf.not_valid_before_utc + lifetime * 2 / 3)) < timedelta(seconds=2)


def test_chain_goes_leaf_intermediate_root(issued: dict) -> None:
    leaf, inter, root = issued["leaf"], issued["intermediate"], issued["root"]
    assert leaf.issuer == inter.subject and inter.issuer == root.subject and root.issuer == root.subject
    leaf.verify_directly_issued_by(inter)
    inter.verify_directly_issued_by(root)
    host = issued["body"]["hostname_pattern"].replace("*", "192-168-1-25")
    path = verify_server_chain(leaf, anchors=[root], host=host, intermediates=[inter])
    assert path == [leaf, inter, root]


def test_root_is_name_constrained_to_the_zone(issued: dict) -> None:
    for ca in (issued["root"], issued["intermediate"]):
        nc = ca.extensions.get_extension_for_class(x509.NameConstraints)
        assert nc.critical
        assert nc.value.permitted_subtrees == [x509.DNSName(ZONE)]
        assert set(nc.value.excluded_subtrees) == {
            x509.IPAddress(ipaddress.ip_network("0.0.0.0/0")),
            x509.IPAddress(ipaddress.ip_network("::/0")),
        }
        assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_root_endpoint_serves_pem(issued: dict) -> None:
    assert issued["root_pem"].headers["content-type"].startswith("application/x-pem-file")


def test_openssl_verifies_the_chain_for_a_device_hostname(issued: dict, tmp_path: Path) -> None:
    (tmp_path / "root.pem").write_bytes(issued["root_pem"].content)
    chain_pem = issued["body"]["certificate_chain_pem"]
    leaf_pem, inter_pem = chain_pem.split("-----END CERTIFICATE-----\n")[:2]
    (tmp_path / "leaf.pem").write_text(leaf_pem + "-----END CERTIFICATE-----\n")
    (tmp_path / "inter.pem").write_text(inter_pem + "-----END CERTIFICATE-----\n")
    host = issued["body"]["hostname_pattern"].replace("*", "10-0-0-7")
    ok = subprocess.run(
        [
            "openssl",
            "verify",
            "-CAfile",
            tmp_path / "root.pem",
            "-untrusted",
            tmp_path / "inter.pem",
            "-purpose",
            "sslserver",
            "-verify_hostname",
            host,
            tmp_path / "leaf.pem",
        ],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.strip().endswith("OK")
    wrong = subprocess.run(
        [
            "openssl",
            "verify",
            "-CAfile",
            tmp_path / "root.pem",
            "-untrusted",
            tmp_path / "inter.pem",
            "-verify_hostname",
            "10-0-0-7.other.iot.lancert.test",
            tmp_path / "leaf.pem",
        ],
        capture_output=True,
        text=True,
    )
    assert wrong.returncode != 0


def test_short_lifetime_for_renewal_tests(tmp_path: Path, registry: Registry) -> None:
    from service_testlib import Registry as Reg
    from service_testlib import ServiceProcess as Proc

    process = Proc(tmp_path / "short", ["--dns-port", "0", "--cert-lifetime", "120s"]).start()
    try:
        uuid = Reg(process.data_dir).add()
        with process.client() as client:
            body = client.post(
                "/api/v1/certificates",
                json={"db_uuid": uuid, "enterprise_code": CODE, "box_id": "b", "csr": make_csr()},
            ).json()
        leaf = load_certificates(body["certificate_chain_pem"].encode())[0]
        assert leaf.not_valid_after_utc - leaf.not_valid_before_utc == timedelta(seconds=120)
        renew = datetime.fromisoformat(body["renew_after"])
        assert renew == leaf.not_valid_before_utc + timedelta(seconds=80)
    finally:
        process.stop()
