"""Every export format, read back by an independent tool (openssl, plistlib), and loading from any of them."""

from __future__ import annotations

import base64
import plistlib
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from pki_test_helpers import openssl

from lancert.errors import LancertError
from lancert.pki import (
    InvalidPEM,
    SubjectNames,
    export_certificate,
    fingerprint_sha256,
    generate_private_key,
    load_certificates,
    pem,
    read_certificate,
    read_certificates,
    self_signed_certificate,
)


@pytest.fixture(scope="module")
def device() -> tuple[x509.Certificate, object]:
    key = generate_private_key()
    cert = self_signed_certificate(
        key, SubjectNames.parse(ips=["192.168.1.25"]), validity=timedelta(days=365)
    )
    return cert, key


@pytest.mark.slow
def test_crt_is_pem_with_crlf_line_ends_that_openssl_reads(device) -> None:
    cert, _ = device
    data = export_certificate(cert, "crt")
    assert data.startswith(b"-----BEGIN CERTIFICATE-----\r\n")
    assert data.endswith(b"-----END CERTIFICATE-----\r\n")
    assert b"\n" not in data.replace(b"\r\n", b"")
    result = openssl("x509", "-inform", "PEM", "-noout", "-fingerprint", "-sha256", stdin=data)
    assert result.returncode == 0, result.stderr
    assert f"sha256 Fingerprint={fingerprint_sha256(cert)}".encode() in result.stdout
    assert load_certificates(data) == [cert]


@pytest.mark.slow
def test_pem_and_der_are_read_back_by_openssl(device) -> None:
    cert, _ = device
    for fmt, inform in (("pem", "PEM"), ("der", "DER")):
        data = export_certificate(cert, fmt)
        result = openssl("x509", "-inform", inform, "-noout", "-text", stdin=data)
        assert result.returncode == 0, result.stderr
        assert b"IP Address:192.168.1.25" in result.stdout
        assert b"CA:FALSE" in result.stdout
        assert load_certificates(data) == [cert]
    assert export_certificate(cert, "der") == cert.public_bytes(serialization.Encoding.DER)


@pytest.mark.slow
def test_p12_with_key_opens_with_the_password_in_openssl_and_not_without(device, tmp_path: Path) -> None:
    cert, key = device
    data = export_certificate(cert, "p12", password="s3cret pw", key=key)
    path = tmp_path / "d.p12"
    path.write_bytes(data)
    ok = openssl("pkcs12", "-in", str(path), "-passin", "pass:s3cret pw", "-info", "-nodes")
    assert ok.returncode == 0, ok.stderr
    assert b"AES-256-CBC" in ok.stderr and b"MAC: sha256" in ok.stderr
    assert b"BEGIN CERTIFICATE" in ok.stdout and b"BEGIN PRIVATE KEY" in ok.stdout
    wrong = openssl("pkcs12", "-in", str(path), "-passin", "pass:wrong", "-info", "-nodes")
    assert wrong.returncode != 0
    assert b"BEGIN PRIVATE KEY" not in wrong.stdout
    loaded_key, loaded_cert, extra = pkcs12.load_key_and_certificates(data, b"s3cret pw")
    assert loaded_cert == cert and extra == []
    assert loaded_key.private_numbers() == key.private_numbers()


def test_p12_carries_the_chain_and_refuses_a_foreign_key_or_no_password(device) -> None:
    cert, key = device
    other = self_signed_certificate(
        generate_private_key(), SubjectNames.parse(dns=["ca.example"]), validity=timedelta(days=1)
    )
    _, _, extra = pkcs12.load_key_and_certificates(
        export_certificate(cert, "p12", password="pw", key=key, chain=[other]), b"pw"
    )
    assert extra == [other]
    with pytest.raises(LancertError, match="does not belong"):
        export_certificate(cert, "p12", password="pw", key=generate_private_key())
    with pytest.raises(LancertError, match="password"):
        export_certificate(cert, "p12", password="")


def test_mobileconfig_is_a_plist_installing_the_certificate_as_a_root(device) -> None:
    cert, _ = device
    data = export_certificate(cert, "mobileconfig")
    profile = plistlib.loads(data)
    assert profile["PayloadType"] == "Configuration"
    assert profile["PayloadVersion"] == 1
    (payload,) = profile["PayloadContent"]
    assert payload["PayloadType"] == "com.apple.security.root"
    assert payload["PayloadContent"] == cert.public_bytes(serialization.Encoding.DER)
    assert payload["PayloadUUID"] != profile["PayloadUUID"]
    # Stable identifiers: re-exporting replaces the earlier install on the phone instead of stacking.
    assert plistlib.loads(export_certificate(cert, "mobileconfig")) == profile


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"   \n", "empty"),
        (b"this is not a certificate", "garbage or truncated"),
        (b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "holds no certificate"),
        (b"\x00\x01\x02\xff" * 10, "garbage or truncated"),
    ],
)
def test_garbage_is_invalid_pem(data: bytes, message: str) -> None:
    with pytest.raises(InvalidPEM, match=message):
        load_certificates(data)


def test_truncated_pem_and_der_are_invalid(device) -> None:
    cert, _ = device
    text = pem(cert)
    with pytest.raises(InvalidPEM):
        load_certificates(text[: len(text) // 2])
    cut_body = text.replace(text.splitlines()[3] + b"\n", b"")  # a whole base64 line missing
    with pytest.raises(InvalidPEM):
        load_certificates(cut_body)
    der = cert.public_bytes(serialization.Encoding.DER)
    with pytest.raises(InvalidPEM):
        load_certificates(der[:-10])


def test_bare_base64_body_and_bundles_load(device) -> None:
    cert, _ = device
    body = base64.b64encode(cert.public_bytes(serialization.Encoding.DER))
    assert load_certificates(body) == [cert]
    other = self_signed_certificate(
        generate_private_key(), SubjectNames.parse(dns=["b.example"]), validity=timedelta(days=1)
    )
    assert load_certificates(pem([cert, other])) == [cert, other]


def test_der_whose_last_byte_is_white_space_loads() -> None:
    # DER is binary: the signature's last byte is random, and one in about 43 is a byte bytes.strip()
    # removes (space, \t, \n, \v, \f, \r). Such a certificate once read as "not a valid certificate".
    key = generate_private_key()
    names = SubjectNames.parse(ips=["192.168.1.25"])
    for _ in range(5000):
        cert = self_signed_certificate(key, names, validity=timedelta(days=1))
        der = cert.public_bytes(serialization.Encoding.DER)
        if der[-1:].isspace():
            break
    else:
        pytest.fail("no certificate with a white-space last byte in 5000 signatures")
    assert load_certificates(der) == [cert]


def test_read_certificate_errors_are_one_line_and_name_the_file(tmp_path: Path, device) -> None:
    cert, _ = device
    with pytest.raises(LancertError, match="no such file"):
        read_certificate(tmp_path / "missing.pem")
    with pytest.raises(LancertError, match="is a directory"):
        read_certificate(tmp_path)
    bad = tmp_path / "bad.pem"
    bad.write_bytes(b"garbage")
    with pytest.raises(InvalidPEM, match=r"bad\.pem: not a valid certificate"):
        read_certificates(bad)
    good = tmp_path / "good.crt"
    good.write_bytes(export_certificate(cert, "crt"))
    assert read_certificate(good) == cert


@pytest.mark.parametrize("oid_hex", ["0603551d0f", "0603551d13"], ids=["duplicate-ku", "duplicate-bc"])
def test_certificate_with_duplicate_extensions_is_invalid_not_a_crash(device, oid_hex: str) -> None:
    # RFC 5280 4.2: at most one instance of each extension. Turn the SAN's OID into KU's (or BC's).
    cert, _ = device
    der = cert.public_bytes(serialization.Encoding.DER)
    forged = der.replace(bytes.fromhex("0603551d11"), bytes.fromhex(oid_hex), 1)
    assert forged != der
    with pytest.raises(InvalidPEM, match="malformed extensions"):
        load_certificates(forged)


# -- exact values of each format (what the platforms read), pinned for the mutation run -------------------


@pytest.mark.slow
def test_p12_aes_form_in_detail(device, tmp_path: Path) -> None:
    cert, key = device
    path = tmp_path / "aes.p12"
    path.write_bytes(export_certificate(cert, "p12", password="pw", key=key))
    info = openssl("pkcs12", "-in", str(path), "-passin", "pass:pw", "-info", "-nodes")
    assert b"MAC: sha256, Iteration 2048" in info.stderr
    assert info.stderr.count(b"PBES2, PBKDF2, AES-256-CBC, Iteration 100000, PRF hmacWithSHA256") == 2
    assert info.stdout.count(b"friendlyName: 192.168.1.25") == 2  # the certificate's CN


@pytest.mark.slow
def test_p12_legacy_form_in_detail(device, tmp_path: Path) -> None:
    cert, key = device
    path = tmp_path / "legacy.p12"
    path.write_bytes(export_certificate(cert, "p12", password="pw", key=key, legacy=True))
    info = openssl("pkcs12", "-in", str(path), "-passin", "pass:pw", "-info", "-nodes", "-legacy")
    assert info.returncode == 0, info.stderr
    assert b"MAC: sha1, Iteration 2048" in info.stderr
    assert info.stderr.count(b"pbeWithSHA1And3-KeyTripleDES-CBC, Iteration 2048") == 2


def test_p12_friendly_name_and_certificate_only(device) -> None:
    from lancert.pki.formats import p12

    cert, key = device
    named = pkcs12.load_pkcs12(p12(cert, password="pw", key=key, friendly_name="printer"), b"pw")
    assert named.cert is not None and named.cert.friendly_name == b"printer"
    assert named.key is not None
    bare = pkcs12.load_pkcs12(p12(cert, password="pw"), b"pw")
    # Without a key, readers list the certificate among the bag's certificates.
    (only,) = bare.additional_certs
    assert bare.key is None and only.certificate == cert and only.friendly_name == b"192.168.1.25"


def test_mobileconfig_in_detail(device) -> None:
    import hashlib
    import uuid

    cert, _ = device
    fp = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
    profile = plistlib.loads(export_certificate(cert, "mobileconfig"))
    assert profile == {
        "PayloadContent": [{
            "PayloadCertificateFileName": "192.168.1.25.cer",
            "PayloadContent": cert.public_bytes(serialization.Encoding.DER),
            "PayloadDescription": "Adds a trusted root certificate",
            "PayloadDisplayName": "192.168.1.25",
            "PayloadIdentifier": f"net.lancert.cert.{fp[:16]}",
            "PayloadType": "com.apple.security.root",
            "PayloadUUID": str(uuid.uuid5(uuid.NAMESPACE_OID, f"lancert.cert.{fp}")).upper(),
            "PayloadVersion": 1,
        }],
        "PayloadDescription": "Trust the HTTPS certificate of 192.168.1.25",
        "PayloadDisplayName": "lancert: 192.168.1.25",
        "PayloadIdentifier": f"net.lancert.profile.{fp[:16]}",
        "PayloadRemovalDisallowed": False,
        "PayloadType": "Configuration",
        "PayloadUUID": str(uuid.uuid5(uuid.NAMESPACE_OID, f"lancert.profile.{fp}")).upper(),
        "PayloadVersion": 1,
    }


def test_mobileconfig_labels(device) -> None:
    from lancert.pki.formats import mobileconfig

    cert, _ = device
    named = plistlib.loads(mobileconfig(cert, display_name="Kitchen printer"))
    assert named["PayloadDisplayName"] == "lancert: Kitchen printer"
    assert named["PayloadContent"][0]["PayloadCertificateFileName"] == "Kitchen printer.cer"
    unnamed = plistlib.loads(mobileconfig(_without_common_name(cert)))
    assert unnamed["PayloadDisplayName"] == "lancert: lancert device"


def _without_common_name(like: x509.Certificate) -> x509.Certificate:
    key = generate_private_key()
    return (
        x509.CertificateBuilder().subject_name(x509.Name([])).issuer_name(x509.Name([]))
        .public_key(key.public_key()).serial_number(1)
        .not_valid_before(like.not_valid_before_utc).not_valid_after(like.not_valid_after_utc)
        .sign(key, hashes.SHA256())
    )


def test_p12_of_a_certificate_without_common_name_is_named_lancert(device) -> None:
    from lancert.pki.formats import p12

    nameless = _without_common_name(device[0])
    loaded = pkcs12.load_pkcs12(p12(nameless, password="pw"), b"pw")
    assert [c.friendly_name for c in loaded.additional_certs] == [b"lancert"]


def test_the_load_errors_are_exact() -> None:
    with pytest.raises(InvalidPEM) as empty:
        load_certificates(b" \r\n")
    assert str(empty.value) == "file is empty"
    with pytest.raises(InvalidPEM) as no_cert:
        load_certificates(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    assert str(no_cert.value) == "PEM file holds no certificate"
    with pytest.raises(InvalidPEM) as garbage:
        load_certificates(b"garbage")
    assert str(garbage.value) == "not a valid certificate (garbage or truncated PEM/DER)"


def test_a_certificate_file_over_1_mib_is_refused_unread(device, tmp_path: Path) -> None:
    cert, _ = device
    big = tmp_path / "big.pem"
    big.write_bytes(pem(cert) + b" " * (1024 * 1024 + 1 - len(pem(cert))))
    with pytest.raises(InvalidPEM) as refused:
        read_certificates(big)
    assert str(refused.value) == f"{big}: larger than 1048576 bytes, not a certificate file"
    exactly = tmp_path / "exactly.pem"
    exactly.write_bytes(pem(cert) + b" " * (1024 * 1024 - len(pem(cert))))
    assert read_certificates(exactly) == [cert]


def test_read_errors_are_exact(tmp_path: Path) -> None:
    with pytest.raises(LancertError) as missing:
        read_certificate(tmp_path / "missing.pem")
    assert str(missing.value) == f"{tmp_path / 'missing.pem'}: no such file"
    with pytest.raises(LancertError) as directory:
        read_certificate(tmp_path)
    assert str(directory.value) == f"{tmp_path}: is a directory, not a certificate file"
    bad = tmp_path / "bad.pem"
    bad.write_bytes(b"garbage")
    with pytest.raises(InvalidPEM) as invalid:
        read_certificate(bad)
    assert str(invalid.value) == f"{bad}: not a valid certificate (garbage or truncated PEM/DER)"


def test_a_bundle_is_the_certificates_pem_one_after_another(device) -> None:
    cert, _ = device
    other = self_signed_certificate(
        generate_private_key(), SubjectNames.parse(dns=["b.example"]), validity=timedelta(days=1)
    )
    assert pem([cert, other]) == pem(cert) + pem(other)
    assert pem((cert,)) == pem(cert) == cert.public_bytes(serialization.Encoding.PEM)


@pytest.mark.slow
def test_p12_is_the_aes_form_unless_legacy_is_asked(device, tmp_path: Path) -> None:
    from lancert.pki.formats import p12

    cert, key = device
    path = tmp_path / "default.p12"
    path.write_bytes(p12(cert, password="pw", key=key))
    info = openssl("pkcs12", "-in", str(path), "-passin", "pass:pw", "-info", "-nodes")  # no -legacy
    assert info.returncode == 0, info.stderr
    assert b"AES-256-CBC" in info.stderr
    with pytest.raises(LancertError) as no_password:
        p12(cert, password="")
    assert str(no_password.value) == "a PKCS#12 file needs a non-empty password"
    with pytest.raises(LancertError) as foreign:
        p12(cert, password="pw", key=generate_private_key())
    assert str(foreign.value) == "the private key does not belong to the certificate"


def test_a_bare_base64_body_may_keep_its_line_breaks(device) -> None:
    cert, _ = device
    lines = pem(cert).decode().splitlines()[1:-1]  # the body of the PEM, 64 characters a line
    assert len(lines) > 1
    assert load_certificates("\n".join(lines).encode()) == [cert]


def test_an_unreadable_path_says_why(tmp_path: Path) -> None:
    too_long = tmp_path / ("x" * 300)
    with pytest.raises(LancertError) as refused:
        read_certificates(too_long)
    assert str(refused.value) == f"{too_long}: cannot read (File name too long)"
