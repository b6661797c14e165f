"""CSRs: made on the device with its own key, refused at the issuer unless signed, strong and parseable."""

from __future__ import annotations

import ipaddress

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from lancert.pki import InvalidCSR, SubjectNames, WeakKey, create_csr, csr_names, load_csr
from lancert.pki.csr import MAX_CSR_BYTES
from lancert.pki.keys import public_key_matches

NAMES = SubjectNames.parse(dns=["*.k7m2q9xd4a1b.iot.example.net"], ips=["192.168.1.25"])


def _der(csr: x509.CertificateSigningRequest) -> bytes:
    return csr.public_bytes(serialization.Encoding.DER)


def test_created_csr_carries_names_and_key_and_loads_back_from_pem_and_der(ec_key) -> None:
    csr = create_csr(ec_key, NAMES)
    for data in (
        csr.public_bytes(serialization.Encoding.PEM),
        _der(csr),
        csr.public_bytes(serialization.Encoding.PEM).decode(),
    ):
        loaded = load_csr(data)
        assert csr_names(loaded) == NAMES
        assert public_key_matches(ec_key, loaded.public_key())
        assert loaded.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == NAMES.dns[0]
        assert isinstance(loaded.signature_hash_algorithm, hashes.SHA256)


def test_csr_without_names_has_no_san_and_empty_names(ec_key) -> None:
    csr = load_csr(_der(create_csr(ec_key, SubjectNames(), common_name="box")))
    assert csr_names(csr) == SubjectNames()
    assert csr.subject.rfc4514_string() == "CN=box"


def test_csr_with_a_tampered_byte_in_the_signature_is_refused(ec_key) -> None:
    der = bytearray(_der(create_csr(ec_key, NAMES)))
    der[-1] ^= 0x01  # last byte of the signature's s value: still valid DER, wrong signature
    with pytest.raises(InvalidCSR, match="signature does not verify"):
        load_csr(bytes(der))


def test_csr_with_a_tampered_byte_in_the_requested_name_is_refused(rsa_key) -> None:
    der = bytearray(_der(create_csr(rsa_key, NAMES)))
    at = der.index(b"k7m2q9xd4a1b")
    der[at] = ord("x")  # the device asked for k7m2…, someone in the middle asks for x7m2…
    with pytest.raises(InvalidCSR, match="signature does not verify"):
        load_csr(bytes(der))


def test_csr_with_a_1024_bit_rsa_key_is_refused_as_weak() -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - a weak key is the input under test
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "weak")]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("weak.example")]), critical=False)
        .sign(weak, hashes.SHA256())
    )
    with pytest.raises(WeakKey, match="1024 bits is too weak"):
        load_csr(csr.public_bytes(serialization.Encoding.PEM))


def test_csr_on_a_curve_browsers_refuse_is_refused() -> None:
    key = ec.generate_private_key(ec.SECP256K1())
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).sign(key, hashes.SHA256())
    with pytest.raises(WeakKey, match="secp256k1"):
        load_csr(_der(csr))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"garbage",
        b"\x30\x03\x02\x01\x01",  # valid DER, not a CSR
        b"-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n",
        b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    ],
    ids=["empty", "garbage", "other-der", "truncated-pem", "wrong-pem-type"],
)
def test_garbage_is_refused_as_invalid_csr(data: bytes) -> None:
    with pytest.raises(InvalidCSR, match="not valid PEM or DER"):
        load_csr(data)


def test_truncated_der_csr_is_refused(ec_key) -> None:
    der = _der(create_csr(ec_key, NAMES))
    with pytest.raises(InvalidCSR):
        load_csr(der[: len(der) // 2])


def test_oversized_input_is_refused_before_parsing() -> None:
    with pytest.raises(InvalidCSR, match=f"larger than {MAX_CSR_BYTES}"):
        load_csr(b"-" * (MAX_CSR_BYTES + 1))


def test_csr_names_reads_ip_and_dns(ec_key) -> None:
    names = csr_names(create_csr(ec_key, NAMES))
    assert names.dns == ("*.k7m2q9xd4a1b.iot.example.net",)
    assert names.ips == (ipaddress.ip_address("192.168.1.25"),)


def _der_tlv(tag: int, body: bytes) -> bytes:
    n = len(body)
    length = (
        bytes([n])
        if n < 128
        else bytes([0x80 | ((n.bit_length() + 7) // 8)]) + n.to_bytes((n.bit_length() + 7) // 8, "big")
    )
    return bytes([tag]) + length + body


def _forged_duplicate_extensions(ec_key) -> bytes:
    # A hostile box can sign anything: rewrite the SAN's OID into KeyUsage's, then re-sign the request
    # info with the same key, so the signature verifies and only the duplicate extension is wrong.
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "box")]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("a.example")]), critical=False)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True
        )
        .sign(ec_key, hashes.SHA256())
    )
    der = _der(csr)
    info = csr.tbs_certrequest_bytes
    forged_info = info.replace(bytes.fromhex("0603551d11"), bytes.fromhex("0603551d0f"), 1)
    after = der.index(info) + len(info)
    algorithm = der[after : after + 2 + der[after + 1]]
    signature = ec_key.sign(forged_info, ec.ECDSA(hashes.SHA256()))
    return _der_tlv(0x30, forged_info + algorithm + _der_tlv(0x03, b"\x00" + signature))


def test_validly_signed_csr_with_duplicate_extensions_is_refused(ec_key) -> None:
    forged = _forged_duplicate_extensions(ec_key)
    assert x509.load_der_x509_csr(forged).is_signature_valid
    with pytest.raises(InvalidCSR) as refused:
        load_csr(forged)
    assert str(refused.value).startswith("CSR extensions are malformed (")
    with pytest.raises(InvalidCSR) as names:
        csr_names(x509.load_der_x509_csr(forged))
    assert str(names.value) == "CSR extensions are malformed"


def test_the_refusals_are_exact(ec_key) -> None:
    with pytest.raises(InvalidCSR) as big:
        load_csr(b"-" * (16 * 1024 + 1))
    assert str(big.value) == "CSR larger than 16384 bytes"
    with pytest.raises(InvalidCSR) as at_limit:  # 16 KiB itself is parsed (and is garbage here)
        load_csr(b"-" * (16 * 1024))
    assert str(at_limit.value) == "CSR is not valid PEM or DER"
    der = bytearray(_der(create_csr(ec_key, NAMES)))
    der[-1] ^= 0x01
    with pytest.raises(InvalidCSR) as tampered:
        load_csr(bytes(der))
    assert str(tampered.value) == "CSR signature does not verify"


def test_a_pem_csr_may_start_with_blank_lines_and_its_names_are_not_critical(ec_key) -> None:
    csr = create_csr(ec_key, NAMES)
    loaded = load_csr(b"\n  \n" + csr.public_bytes(serialization.Encoding.PEM))
    assert csr_names(loaded) == NAMES
    assert loaded.extensions.get_extension_for_class(x509.SubjectAlternativeName).critical is False
