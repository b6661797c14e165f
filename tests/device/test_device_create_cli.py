"""``lancert device create``: the certificate a printer makes for itself, once."""

from __future__ import annotations

import ipaddress
import stat
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from device_cli_helpers import assert_one_line_failure, lancert, openssl, snapshot

from lancert.device.certificate import apple_validity_warning, validity_for_years
from lancert.pki import load_private_key_pem, read_certificates, verify_server_chain
from lancert.pki.keys import public_key_matches

pytestmark = pytest.mark.slow  # starts a server or subprocess (tests/conftest.py)


def _cert(directory: Path) -> x509.Certificate:
    (cert,) = read_certificates(directory / "cert.pem")
    return cert


def test_create_makes_a_self_signed_certificate_for_the_ip_and_dns_names(tmp_path: Path) -> None:
    out = tmp_path / "printer"
    result = lancert(
        "device",
        "create",
        "--ip",
        "192.168.1.25",
        "--dns",
        "printer.local",
        "--dns",
        "EPSON1.lan",
        "--dir",
        out,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # one year: no Apple validity warning
    cert = _cert(out)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "192.168.1.25"
    assert cert.issuer == cert.subject
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("192.168.1.25")]
    assert san.get_values_for_type(x509.DNSName) == ["printer.local", "epson1.lan"]
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert timedelta(days=365) <= lifetime <= timedelta(days=366)
    assert cert.serial_number.bit_length() > 64
    key = load_private_key_pem((out / "key.pem").read_bytes())
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
    assert public_key_matches(key, cert.public_key())
    assert stat.S_IMODE((out / "key.pem").stat().st_mode) == 0o600
    assert verify_server_chain(cert, anchors=[cert], host="192.168.1.25") == [cert]
    text = openssl("x509", "-in", out / "cert.pem", "-noout", "-ext", "subjectAltName")
    assert "IP Address:192.168.1.25" in text.stdout and "DNS:printer.local" in text.stdout
    assert str(out / "cert.pem") in result.stdout


def test_ten_years_with_rsa_key_and_the_apple_warning(tmp_path: Path) -> None:
    result = lancert(
        "device", "create", "--ip", "2001:db8::25", "--years", "10", "--key", "rsa", "--dir", tmp_path
    )
    assert result.returncode == 0, result.stderr
    cert = _cert(tmp_path)
    assert 3652 <= (cert.not_valid_after_utc - cert.not_valid_before_utc).days <= 3653
    assert cert.not_valid_after_utc.year == cert.not_valid_before_utc.year + 10
    assert isinstance(cert.public_key(), rsa.RSAPublicKey) and cert.public_key().key_size == 2048
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.digital_signature and ku.key_encipherment
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "2001:db8::25"
    assert "macOS and iOS refuse" in result.stderr


def test_existing_certificate_is_kept_byte_for_byte_and_the_refusal_says_why(tmp_path: Path) -> None:
    assert lancert("device", "create", "--ip", "192.168.1.25", "--dir", tmp_path).returncode == 0
    before = snapshot(tmp_path)
    result = lancert("device", "create", "--ip", "192.168.1.99", "--dir", tmp_path)
    assert_one_line_failure(result, "already holds a certificate", "--force", "break HTTPS")
    assert result.returncode == 1
    assert snapshot(tmp_path) == before


def test_force_replaces_the_certificate_and_key(tmp_path: Path) -> None:
    assert lancert("device", "create", "--ip", "192.168.1.25", "--dir", tmp_path).returncode == 0
    before = snapshot(tmp_path)
    result = lancert("device", "create", "--ip", "192.168.1.99", "--dir", tmp_path, "--force")
    assert result.returncode == 0, result.stderr
    after = snapshot(tmp_path)
    assert after.keys() == before.keys() == {"cert.pem", "key.pem"}
    assert after["cert.pem"] != before["cert.pem"] and after["key.pem"] != before["key.pem"]
    cert = _cert(tmp_path)
    assert cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.IPAddress
    ) == [ipaddress.ip_address("192.168.1.99")]


@pytest.mark.parametrize(
    ("args", "fragment", "code"),
    [
        (("--ip", "192.168.1.256"), "invalid IP address: '192.168.1.256'", 1),
        (("--ip", "printer.local"), "invalid IP address", 1),
        (("--ip", "192.168.1.25", "--years", "0"), "--years must be between 1 and 10, not 0", 2),
        (("--ip", "192.168.1.25", "--years", "11"), "--years must be between 1 and 10, not 11", 2),
        (("--ip", "192.168.1.25", "--dns", "bad name"), "invalid DNS name", 1),
        (("--ip", "192.168.1.25", "--dns", "10.0.0.1"), "not a DNS name", 1),
    ],
    ids=["ip-out-of-range", "ip-is-a-name", "zero-years", "eleven-years", "bad-dns", "ip-as-dns"],
)
def test_bad_input_is_one_line_nonzero_and_writes_nothing(
    tmp_path: Path, args, fragment: str, code: int
) -> None:
    out = tmp_path / "printer"
    result = lancert("device", "create", *args, "--dir", out)
    assert_one_line_failure(result, fragment)
    assert result.returncode == code
    assert not out.exists()


def test_bad_input_leaves_an_existing_certificate_alone_even_with_force(tmp_path: Path) -> None:
    assert lancert("device", "create", "--ip", "192.168.1.25", "--dir", tmp_path).returncode == 0
    before = snapshot(tmp_path)
    result = lancert(
        "device", "create", "--ip", "192.168.1.25", "--years", "11", "--force", "--dir", tmp_path
    )
    assert_one_line_failure(result, "--years")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("left", ["cert.pem", "key.pem"])
def test_a_directory_holding_only_one_of_the_pair_is_refused_too(tmp_path: Path, left: str) -> None:
    """Half a pair is still the device's identity (the other half may be on its way back from a backup):
    create must not quietly make a new key and certificate over it."""
    assert lancert("device", "create", "--ip", "192.168.1.25", "--dir", tmp_path).returncode == 0
    (tmp_path / ({"cert.pem", "key.pem"} - {left}).pop()).unlink()
    before = snapshot(tmp_path)
    result = lancert("device", "create", "--ip", "192.168.1.25", "--dir", tmp_path)
    assert_one_line_failure(result, f"{tmp_path} already holds certificate files", "--force")
    assert result.returncode == 1
    assert snapshot(tmp_path) == before == {left: before[left]}


def test_an_unreadable_certificate_is_refused_without_force(tmp_path: Path) -> None:
    (tmp_path / "cert.pem").write_bytes(b"garbage")
    (tmp_path / "key.pem").write_bytes(b"garbage")
    result = lancert("device", "create", "--ip", "192.168.1.25", "--dir", tmp_path)
    assert_one_line_failure(result, "already holds certificate files")
    assert snapshot(tmp_path) == {"cert.pem": b"garbage", "key.pem": b"garbage"}


def test_dir_that_is_a_file_is_a_one_line_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_bytes(b"not a directory")
    result = lancert("device", "create", "--ip", "192.168.1.25", "--dir", blocker)
    assert_one_line_failure(result, "cannot create directory")
    assert blocker.read_bytes() == b"not a directory"


def test_create_finishes_an_interrupted_swap_before_refusing(tmp_path: Path) -> None:
    # A crash after the new key was renamed but before its certificate was: the pair on disk mismatches
    # until recovery; the refusal must then describe the recovered (new) certificate.
    assert lancert("device", "create", "--ip", "192.168.1.25", "--dir", tmp_path / "a").returncode == 0
    assert lancert("device", "create", "--ip", "192.168.1.26", "--dir", tmp_path / "b").returncode == 0
    (tmp_path / "a" / "key.pem").write_bytes((tmp_path / "b" / "key.pem").read_bytes())
    (tmp_path / "a" / "cert.pem.new").write_bytes((tmp_path / "b" / "cert.pem").read_bytes())
    result = lancert("device", "create", "--ip", "192.168.1.25", "--dir", tmp_path / "a")
    assert_one_line_failure(result, "already holds a certificate (SHA-256")
    assert snapshot(tmp_path / "a") == snapshot(tmp_path / "b")


@pytest.mark.parametrize(("years", "warned"), [(2, False), (3, True)])
def test_apple_825_day_limit_warning_starts_above_two_years(years: int, warned: bool) -> None:
    assert (apple_validity_warning(validity_for_years(years)) is not None) is warned
