"""Every file format a platform asks for, and reading certificates back from any of them.

``crt`` is what a browser writes for "Base64-encoded ASCII, single certificate" (and Windows for
"Base-64 encoded X.509 (.CER)"): PEM with CRLF line ends. iOS wants a ``.mobileconfig`` profile;
Windows and Android accept DER; PKCS#12 carries a key for servers that import one.
"""

from __future__ import annotations

import base64
import uuid
from enum import StrEnum
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from lancert.errors import LancertError
from lancert.pki.errors import InvalidPEM
from lancert.pki.keys import PrivateKey, public_key_matches
from lancert.pki.names import common_name

MAX_CERT_FILE_BYTES = 1024 * 1024


class CertFormat(StrEnum):
    CRT = "crt"
    PEM = "pem"
    DER = "der"
    P12 = "p12"
    MOBILECONFIG = "mobileconfig"


def pem(certs: x509.Certificate | list[x509.Certificate] | tuple[x509.Certificate, ...]) -> bytes:
    items = [certs] if isinstance(certs, x509.Certificate) else list(certs)
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in items)


def crt(cert: x509.Certificate) -> bytes:
    """A browser's Base64 export of one certificate: PEM text with CRLF line ends."""
    return pem(cert).replace(b"\n", b"\r\n")


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def p12(
    cert: x509.Certificate,
    *,
    password: str,
    key: PrivateKey | None = None,
    chain: list[x509.Certificate] | tuple[x509.Certificate, ...] = (),
    friendly_name: str | None = None,
    legacy: bool = False,
) -> bytes:
    """PKCS#12 with AES-256 and a SHA-256 MAC, or with ``legacy`` 3DES and a SHA-1 MAC.

    OpenSSL 3, Windows 10 1709+ and current Android read the AES form. Apple's keychain import (macOS,
    iOS; widely reported, not tested here) and older Windows have rejected it with a misleading "wrong
    password"; they read the legacy form, which is what ``openssl pkcs12 -export -legacy`` writes.
    """
    if not password:
        raise LancertError("a PKCS#12 file needs a non-empty password")
    if key is not None and not public_key_matches(key, cert.public_key()):
        raise LancertError("the private key does not belong to the certificate")
    builder = serialization.PrivateFormat.PKCS12.encryption_builder().kdf_rounds(
        2048 if legacy else 100_000
    )
    if legacy:
        builder = builder.key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC)
        builder = builder.hmac_hash(hashes.SHA1())  # noqa: S303 - the only MAC those readers accept
    else:
        builder = builder.key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
        builder = builder.hmac_hash(hashes.SHA256())
    encryption = builder.build(password.encode())
    name = (friendly_name or common_name(cert.subject) or "lancert").encode()
    return pkcs12.serialize_key_and_certificates(name, key, cert, list(chain) or None, encryption)


def mobileconfig(cert: x509.Certificate, *, display_name: str | None = None) -> bytes:
    """An iOS/iPadOS configuration profile holding one root certificate (payload com.apple.security.root).

    After installing it, iOS still requires the user to switch on full trust under Settings → General →
    About → Certificate Trust Settings; ``trust guide --os ios`` says so.
    """
    label = display_name or common_name(cert.subject) or "lancert device"
    fingerprint = cert.fingerprint(hashes.SHA256()).hex()
    # Identifiers and UUIDs derive from the certificate, so re-exporting yields the same profile and
    # iOS replaces the earlier install instead of stacking duplicates.
    cert_uuid = str(uuid.uuid5(uuid.NAMESPACE_OID, "lancert.cert." + fingerprint)).upper()
    profile_uuid = str(uuid.uuid5(uuid.NAMESPACE_OID, "lancert.profile." + fingerprint)).upper()
    payload = {
        "PayloadContent": [
            {
                "PayloadCertificateFileName": f"{label}.cer",
                "PayloadContent": der(cert),
                "PayloadDescription": "Adds a trusted root certificate",
                "PayloadDisplayName": label,
                "PayloadIdentifier": f"net.lancert.cert.{fingerprint[:16]}",
                "PayloadType": "com.apple.security.root",
                "PayloadUUID": cert_uuid,
                "PayloadVersion": 1,
            }
        ],
        "PayloadDescription": f"Trust the HTTPS certificate of {label}",
        "PayloadDisplayName": f"lancert: {label}",
        "PayloadIdentifier": f"net.lancert.profile.{fingerprint[:16]}",
        "PayloadRemovalDisallowed": False,
        "PayloadType": "Configuration",
        "PayloadUUID": profile_uuid,
        "PayloadVersion": 1,
    }
    # Imported here: plistlib brings pyexpat and xml.parsers (~0.3 MiB) into every process that loads the
    # PKI core (the box agent's too), for this one export.
    import plistlib

    return plistlib.dumps(payload, fmt=plistlib.FMT_XML)


def export_certificate(
    cert: x509.Certificate, fmt: CertFormat | str, *, password: str | None = None,
    key: PrivateKey | None = None, chain: list[x509.Certificate] | tuple[x509.Certificate, ...] = (),
    legacy: bool = False,
) -> bytes:
    """``cert`` in ``fmt``; ``password``, ``key``, ``chain`` (the CAs above it), ``legacy`` are p12 only."""
    fmt = CertFormat(fmt)
    if fmt is CertFormat.CRT:
        return crt(cert)
    if fmt is CertFormat.PEM:
        return pem(cert)
    if fmt is CertFormat.DER:
        return der(cert)
    if fmt is CertFormat.P12:
        return p12(cert, password=password or "", key=key, chain=chain, legacy=legacy)
    return mobileconfig(cert)


def load_pkcs12(data: bytes, password: str) -> tuple[list[x509.Certificate], PrivateKey]:
    """The chain (leaf first) and key of a PKCS#12 file, as a printer's "import certificate" reads it.

    The leaf is the certificate that belongs to the key; the other certificates follow it. A file without
    a key, with a wrong password, or whose key matches no certificate is refused with one sentence.
    """
    if len(data) > MAX_CERT_FILE_BYTES:
        raise InvalidPEM(f"PKCS#12 file larger than {MAX_CERT_FILE_BYTES} bytes")
    try:
        key, cert, extra = pkcs12.load_key_and_certificates(data, password.encode() if password else None)
    except ValueError:
        raise InvalidPEM("not a PKCS#12 file, or the password is wrong") from None
    if key is None or cert is None:
        raise InvalidPEM("the PKCS#12 file holds no private key and certificate")
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise InvalidPEM(f"unsupported private key type {type(key).__name__}")
    if not public_key_matches(key, cert.public_key()):
        raise InvalidPEM("the PKCS#12 file's key does not belong to its certificate")
    return [cert, *extra], key


def looks_like_pkcs12(data: bytes) -> bool:
    """A DER PFX (RFC 7292): SEQUENCE { version INTEGER 3, authSafe ContentInfo ... }.

    Enough to tell a .p12 from garbage for the error message and to read it with its password; the
    parsing itself is cryptography's.
    """
    if len(data) < 8 or data[0] != 0x30:
        return False
    length_octets = data[1] - 0x80 if data[1] & 0x80 else 0
    start = 2 + length_octets
    return data[start:start + 3] == b"\x02\x01\x03"


def load_pkcs12_certificates(data: bytes, password: str | None) -> list[x509.Certificate]:
    """The certificates of a PKCS#12 bundle (its own certificate first, then the others); the key, if
    any, is not looked at beyond what decrypting the bundle needs."""
    try:
        bundle = pkcs12.load_pkcs12(data, password.encode() if password else None)
    except ValueError:
        if password:
            raise InvalidPEM("PKCS#12 (.p12) bundle: wrong password, or a damaged file") from None
        raise InvalidPEM("PKCS#12 (.p12) bundle protected by a password: give it with --password "
                         "(or LANCERT_P12_PASSWORD)") from None
    own = [bundle.cert.certificate] if bundle.cert else []
    certs = own + [c.certificate for c in bundle.additional_certs]
    if not certs:
        raise InvalidPEM("PKCS#12 (.p12) bundle holds no certificate")
    return certs


def load_certificates(data: bytes) -> list[x509.Certificate]:
    """Certificates from PEM (one or more, LF or CRLF), DER, or a base64 body without armour."""
    stripped = data.strip()
    if not stripped:
        raise InvalidPEM("file is empty")
    if looks_like_pkcs12(data):
        raise InvalidPEM("a PKCS#12 (.p12) bundle, not a certificate: 'lancert cert show' reads it "
                         "(with --password if it has one)")
    try:
        if b"-----BEGIN" in stripped:
            if b"-----BEGIN CERTIFICATE-----" not in stripped:
                raise InvalidPEM("PEM file holds no certificate")
            certs = x509.load_pem_x509_certificates(stripped)
        else:
            try:  # DER as it is: a signature's last byte may be one that strip() takes for white space
                certs = [x509.load_der_x509_certificate(data)]
            except ValueError:
                certs = [x509.load_der_x509_certificate(base64.b64decode(stripped, validate=False))]
    except ValueError:
        raise InvalidPEM("not a valid certificate (garbage or truncated PEM/DER)") from None
    for cert in certs:
        check_extensions(cert)
    return certs


def check_extensions(cert: x509.Certificate) -> None:
    """Parse every extension now, or raise :class:`InvalidPEM` saying they are malformed.

    cryptography parses extensions lazily; a duplicate or malformed one (RFC 5280 4.2 forbids both)
    would otherwise surface as a traceback wherever the certificate is first looked at. It raises
    ValueError, DuplicateExtension, UnsupportedGeneralNameType, and KeyError for a TLS Feature whose
    DER is of another type (seen from a hostile server in tests/fuzz).
    """
    try:
        cert.extensions  # noqa: B018 - parsed for validation
    except (ValueError, KeyError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType) as exc:
        raise InvalidPEM(f"certificate has malformed extensions ({str(exc)[:160] or type(exc).__name__})"
                         ) from None


def read_certificates(path: Path | str, *, pkcs12_password: str | None = None,
                      accept_pkcs12: bool = False) -> list[x509.Certificate]:
    """Read certificates from a file, with one-line errors for missing, unreadable or bad files.

    With ``accept_pkcs12``, a PKCS#12 bundle is read too (with ``pkcs12_password``)."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_CERT_FILE_BYTES:
            raise InvalidPEM(f"{path}: larger than {MAX_CERT_FILE_BYTES} bytes, not a certificate file")
        data = path.read_bytes()
    except FileNotFoundError:
        raise LancertError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise LancertError(f"{path}: is a directory, not a certificate file") from None
    except PermissionError:
        raise LancertError(f"{path}: permission denied") from None
    except OSError as exc:
        raise LancertError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        if accept_pkcs12 and looks_like_pkcs12(data):
            return load_pkcs12_certificates(data, pkcs12_password)
        return load_certificates(data)
    except InvalidPEM as exc:
        raise InvalidPEM(f"{path}: {exc}") from None


def read_certificate(path: Path | str) -> x509.Certificate:
    """The first certificate of a file (the leaf of a chain file)."""
    return read_certificates(path)[0]
