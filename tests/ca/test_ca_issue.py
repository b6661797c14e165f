"""``lancert ca issue`` and ``device create --ca``: device certificates from the shop's own root.

The fields are checked against RFC 5280 and the CA/Browser Forum profile of a TLS server certificate:
subjectAltName with every name, serverAuth, digitalSignature (critical KU, no certificate signing),
CA:FALSE, AKI = the issuing intermediate's SKI, a random serial of more than 64 bits, the validity asked.
"""

from __future__ import annotations

import ipaddress
import json
import stat
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from lancert.pki import (
    SubjectNames,
    create_csr,
    generate_private_key,
    load_private_key_pem,
    make_name,
    public_key_matches,
    read_certificates,
    verify_server_chain,
)
from lancert_cli import lancert

pytestmark = pytest.mark.slow  # starts a server or subprocess (tests/conftest.py)

IP = "192.168.1.25"


@pytest.fixture(scope="module")
def ca_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("shop") / "ca"
    lancert("ca", "init", "--dir", str(directory), "--name", "Shop")
    return directory


def _issue(ca_dir: Path, out: Path, *args: str, check: bool = True):  # type: ignore[no-untyped-def]
    return lancert("ca", "issue", "--dir", str(ca_dir), *args, "-o", str(out), check=check)


def _chain(directory: Path) -> list[x509.Certificate]:
    return read_certificates(directory / "cert.pem")


def test_issue_for_an_ip_writes_leaf_and_intermediate_and_a_0600_key(ca_dir: Path, tmp_path: Path) -> None:
    result = _issue(ca_dir, tmp_path / "p", "--ip", IP, "--dns", "printer.lan")
    assert "root.pem --store nss" in result.stdout
    leaf, intermediate = _chain(tmp_path / "p")
    (inter_on_disk,) = read_certificates(ca_dir / "intermediate.pem")
    (root,) = read_certificates(ca_dir / "root.pem")
    assert intermediate == inter_on_disk
    assert stat.S_IMODE((tmp_path / "p" / "key.pem").stat().st_mode) == 0o600
    key = load_private_key_pem((tmp_path / "p" / "key.pem").read_bytes())
    assert public_key_matches(key, leaf.public_key())
    verify_server_chain(leaf, anchors=[root], host=IP, intermediates=[intermediate])
    verify_server_chain(leaf, anchors=[root], host="printer.lan", intermediates=[intermediate])


def test_issued_certificate_fields_follow_the_tls_server_profile(ca_dir: Path, tmp_path: Path) -> None:
    _issue(ca_dir, tmp_path / "p", "--ip", IP, "--dns", "printer.lan")
    leaf, intermediate = _chain(tmp_path / "p")
    ext = leaf.extensions
    san = ext.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["printer.lan"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address(IP)]
    assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == IP
    eku = ext.get_extension_for_class(x509.ExtendedKeyUsage)
    assert list(eku.value) == [ExtendedKeyUsageOID.SERVER_AUTH]
    ku = ext.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature
    assert not ku.value.key_cert_sign and not ku.value.crl_sign
    bc = ext.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca is False
    ski = ext.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert ski.digest == x509.SubjectKeyIdentifier.from_public_key(leaf.public_key()).digest
    aki = ext.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    inter_ski = intermediate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == inter_ski.digest
    assert leaf.issuer == intermediate.subject
    lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    assert timedelta(days=365) <= lifetime <= timedelta(days=366)


def test_serials_are_random_and_over_64_bits(ca_dir: Path, tmp_path: Path) -> None:
    serials = []
    for n in range(2):
        _issue(ca_dir, tmp_path / str(n), "--ip", IP)
        serials.append(_chain(tmp_path / str(n))[0].serial_number)
    assert serials[0] != serials[1]
    assert all(s.bit_length() > 64 for s in serials)


def test_years_sets_the_validity_and_warns_above_apple_825_days(ca_dir: Path, tmp_path: Path) -> None:
    result = _issue(ca_dir, tmp_path / "p", "--ip", IP, "--years", "3")
    leaf = _chain(tmp_path / "p")[0]
    lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    assert timedelta(days=3 * 365) <= lifetime <= timedelta(days=3 * 365 + 2)
    assert "825" in result.stderr


def test_csr_keeps_the_key_on_the_device_and_takes_its_names(ca_dir: Path, tmp_path: Path) -> None:
    key = generate_private_key()
    csr = create_csr(key, SubjectNames.parse(dns=["epson-tm.lan"], ips=[IP]))
    (tmp_path / "req.csr").write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    _issue(ca_dir, tmp_path / "out", "--csr", str(tmp_path / "req.csr"))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["cert.pem"]
    leaf = _chain(tmp_path / "out")[0]
    assert public_key_matches(key, leaf.public_key())
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["epson-tm.lan"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address(IP)]


def test_csr_with_only_a_common_name_gets_it_as_subject_alt_name(ca_dir: Path, tmp_path: Path) -> None:
    key = generate_private_key()
    csr = x509.CertificateSigningRequestBuilder().subject_name(make_name(IP)).sign(key, hashes.SHA256())
    (tmp_path / "req.csr").write_bytes(csr.public_bytes(serialization.Encoding.DER))
    _issue(ca_dir, tmp_path / "out", "--csr", str(tmp_path / "req.csr"))
    san = _chain(tmp_path / "out")[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address(IP)]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ((), "--csr FILE or --ip IP"),
        (("--ip", IP, "--csr", "x.csr"), "--csr FILE or --ip IP"),
        (("--ip", IP, "--years", "0"), "--years"),
        (("--ip", IP, "--years", "11"), "--years"),
        (("--ip", "192.168.1.300"), "192.168.1.300"),
        (("--csr", "garbage.csr"), "CSR"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(
    ca_dir: Path, tmp_path: Path, args: tuple[str, ...], fragment: str
) -> None:
    (tmp_path / "garbage.csr").write_text("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n")
    (tmp_path / "x.csr").write_text("")
    args = tuple(str(tmp_path / a) if a.endswith(".csr") else a for a in args)
    result = _issue(ca_dir, tmp_path / "out", *args, check=False)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lancert: ") and fragment in lines[0], result.stderr
    assert not (tmp_path / "out").exists()


def test_issue_without_a_ca_names_the_missing_file(tmp_path: Path) -> None:
    result = _issue(tmp_path / "nothing", tmp_path / "out", "--ip", IP, check=False)
    assert result.returncode == 1 and "missing" in result.stderr
    assert not (tmp_path / "out").exists()


def test_device_create_with_ca_issues_from_the_intermediate(ca_dir: Path, tmp_path: Path) -> None:
    lancert("device", "create", "--ip", IP, "--dir", str(tmp_path / "d"), "--ca", str(ca_dir))
    leaf, intermediate = _chain(tmp_path / "d")
    (root,) = read_certificates(ca_dir / "root.pem")
    verify_server_chain(leaf, anchors=[root], host=IP, intermediates=[intermediate])
    assert list(leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH
    ]


def test_device_create_with_ca_renews_its_own_certificate_without_force(ca_dir: Path, tmp_path: Path) -> None:
    lancert("device", "create", "--ip", IP, "--dir", str(tmp_path / "d"), "--ca", str(ca_dir))
    first = _chain(tmp_path / "d")[0]
    lancert("device", "create", "--ip", IP, "--dir", str(tmp_path / "d"), "--ca", str(ca_dir))
    second = _chain(tmp_path / "d")[0]
    assert first.serial_number != second.serial_number
    assert first.public_key() != second.public_key()


def test_device_create_with_ca_refuses_to_replace_a_self_signed_one(ca_dir: Path, tmp_path: Path) -> None:
    lancert("device", "create", "--ip", IP, "--dir", str(tmp_path / "d"))
    before = (tmp_path / "d" / "cert.pem").read_bytes()
    result = lancert("device", "create", "--ip", IP, "--dir", str(tmp_path / "d"), "--ca", str(ca_dir),
                     check=False)
    assert result.returncode == 1 and "--force" in result.stderr
    assert (tmp_path / "d" / "cert.pem").read_bytes() == before
    lancert("device", "create", "--ip", IP, "--dir", str(tmp_path / "d"), "--ca", str(ca_dir), "--force")
    assert len(_chain(tmp_path / "d")) == 2


def test_trust_guide_of_a_self_signed_device_says_when_to_use_a_shop_root(
    ca_dir: Path, tmp_path: Path
) -> None:
    lancert("device", "create", "--ip", IP, "--dir", str(tmp_path / "self"))
    guide = json.loads(lancert("trust", "guide", str(tmp_path / "self" / "cert.pem"), "--os", "linux",
                               "-o", str(tmp_path / "g1"), "--json").stdout)
    assert any("lancert ca init" in step and "ca issue" in step for step in guide["steps"])
    _issue(ca_dir, tmp_path / "issued", "--ip", IP)
    issued = json.loads(lancert("trust", "guide", str(ca_dir / "root.pem"), "--os", "linux",
                                "-o", str(tmp_path / "g2"), "--json").stdout)
    assert not any("lancert ca init" in step for step in issued["steps"])
