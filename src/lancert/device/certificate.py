"""The device flow: the certificate a receipt printer makes for itself, once (or gets from the shop's CA)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from lancert.errors import LancertError, UsageError
from lancert.pki import (
    KeyKind,
    SubjectNames,
    fingerprint_sha256,
    generate_private_key,
    self_signed_certificate,
    utcnow,
)
from lancert.storage.files import Credential, CredentialFiles, StorageError

MIN_YEARS, MAX_YEARS = 1, 10


# Apple platforms refuse TLS server certificates valid for more than 825 days, user-trusted ones
# included (support.apple.com/HT210176; mkcert keeps its leaves under it for the same reason).
APPLE_MAX_TLS_VALIDITY = timedelta(days=825)


def apple_validity_warning(validity: timedelta) -> str | None:
    """Why macOS/iOS would refuse a certificate of this lifetime, or ``None`` when they accept it."""
    if validity <= APPLE_MAX_TLS_VALIDITY:
        return None
    return (f"warning: valid {validity.days} days; macOS and iOS refuse TLS certificates valid over "
            f"{APPLE_MAX_TLS_VALIDITY.days} days (use --years 2 or less for Apple clients)")


class CertificateExists(LancertError):
    """The device already has its certificate; replacing it would break every client that trusts it."""


def validity_for_years(years: int) -> timedelta:
    """``years`` calendar years from now (29 February maps to 28 February)."""
    if not MIN_YEARS <= years <= MAX_YEARS:
        raise UsageError(f"--years must be between {MIN_YEARS} and {MAX_YEARS}, not {years}")
    now = utcnow()
    try:
        end = now.replace(year=now.year + years)
    except ValueError:
        end = now.replace(year=now.year + years, day=28)
    return end - now


def create_device_certificate(
    directory: Path,
    *,
    ip: str,
    dns: list[str] | tuple[str, ...] = (),
    years: int = 1,
    key_kind: KeyKind | str = KeyKind.EC,
    force: bool = False,
    ca: Path | None = None,
) -> Credential:
    """Make and store ``cert.pem``/``key.pem`` for a device at ``ip``; refuse to replace one unless forced.

    With ``ca`` (a ``lancert ca init`` directory) the certificate is issued by that CA instead of being
    self-signed; a certificate the same CA issued is then replaced without ``force``, because clients
    trust the root, not the leaf. Everything is validated before anything is written, so bad input
    changes nothing on disk.
    """
    names = SubjectNames.parse(dns=dns, ips=[ip])
    validity = validity_for_years(years)
    authority = None
    if ca is not None:
        from lancert.ca.directory import CADirectory

        authority = CADirectory(ca).load()
    files = CredentialFiles(directory)
    # A crash during an earlier create may have left a staged pair: finish or drop it first, so the
    # refusal below looks at the certificate the device really serves.
    files.recover()
    if files.exists() and not force:
        refuse_replacing(files, directory, authority.certificate if authority else None)
    key = generate_private_key(key_kind)
    if authority is not None:
        from lancert.ca.issue import issue_device_certificate

        chain = issue_device_certificate(authority, key.public_key(), names, validity=validity)
    else:
        chain = (self_signed_certificate(key, names, common_name=str(names.ips[0]), validity=validity),)
    credential = Credential(chain, key)
    files.write(credential)
    return credential


def refuse_replacing(files: CredentialFiles, directory: Path, issuer: x509.Certificate | None = None) -> None:
    """The generate-once guard: raise :class:`CertificateExists` for the certificate in ``files``.

    Only a certificate that ``issuer`` (the shop CA about to issue its successor) signed may be replaced
    freely: every client of such a device trusts the CA, so the new leaf works where the old one did.
    """
    try:
        current = files.read().certificate
    except StorageError:
        current = None
    if current is not None and issuer is not None and _issued_by(current, issuer):
        return
    what = f"a certificate (SHA-256 {fingerprint_sha256(current)[:23]}…)" if current else "certificate files"
    raise CertificateExists(
        f"{directory} already holds {what}; a new one would break HTTPS for every device that trusts "
        "the old one. Use --force to replace it anyway"
    )


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True
