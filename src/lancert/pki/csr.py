"""Certificate signing requests: made on a device (the key never leaves it), checked by the issuer."""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from lancert.pki.errors import InvalidCSR
from lancert.pki.issuing import default_common_name, make_name
from lancert.pki.keys import PrivateKey, check_key_strength
from lancert.pki.names import SubjectNames

MAX_CSR_BYTES = 16 * 1024
# Collisions are practical for these: a CSR signed with one proves nothing about its key, and it used to
# be refused as "signature does not verify", which sent box developers looking for a key mismatch.
WEAK_HASHES = frozenset({"md5", "sha1"})
_MALFORMED = (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType)


def create_csr(
    key: PrivateKey, names: SubjectNames, *, common_name: str | None = None
) -> x509.CertificateSigningRequest:
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        make_name(common_name or default_common_name(names), None)
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names.general_names()), critical=False)
    return builder.sign(key, hashes.SHA256())


def load_csr(data: bytes | str) -> x509.CertificateSigningRequest:
    """Parse a PEM or DER CSR and verify its self-signature and key strength; anything else is refused."""
    raw = data.encode() if isinstance(data, str) else data
    if len(raw) > MAX_CSR_BYTES:
        raise InvalidCSR(f"CSR larger than {MAX_CSR_BYTES} bytes")
    try:
        csr = (x509.load_pem_x509_csr(raw) if raw.lstrip().startswith(b"-----")
               else x509.load_der_x509_csr(raw))
    except ValueError:
        raise InvalidCSR("CSR is not valid PEM or DER") from None
    try:
        algorithm = csr.signature_hash_algorithm
    except Exception:  # an algorithm cryptography does not know: the signature check below refuses it
        algorithm = None
    if algorithm is not None and algorithm.name in WEAK_HASHES:
        raise InvalidCSR(f"CSR is signed with a weak hash ({algorithm.name.upper()}); sign it with SHA-256 "
                         "or stronger")
    try:
        valid = csr.is_signature_valid
    except Exception:  # unsupported algorithm in a hostile CSR
        valid = False
    if not valid:
        raise InvalidCSR("CSR signature does not verify")
    check_key_strength(csr.public_key())
    # Extensions are parsed lazily; a validly signed CSR can still carry duplicates (RFC 5280 4.2) or
    # malformed names, which must be a 400 at the service, not a traceback in csr_names later.
    try:
        csr.extensions  # noqa: B018 - parsed for validation
    except _MALFORMED as exc:
        raise InvalidCSR(f"CSR extensions are malformed ({exc})") from None
    return csr


def csr_names(csr: x509.CertificateSigningRequest) -> SubjectNames:
    """The names a CSR asks for (its subjectAltName extension)."""
    try:
        ext = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return SubjectNames()
    except _MALFORMED:
        raise InvalidCSR("CSR extensions are malformed") from None
    return SubjectNames.from_extension(ext.value)


