"""The self-signed device flow: the certificate a receipt printer makes for itself, once."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from lancert.errors import LancertError, UsageError
from lancert.pki import (
    KeyKind,
    SubjectNames,
    fingerprint_sha256,
    generate_private_key,
    self_signed_certificate,
    utcnow,
)
from lancert.storage import Credential, CredentialFiles, StorageError

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
) -> Credential:
    """Make and store ``cert.pem``/``key.pem`` for a device at ``ip``; refuse to replace one unless forced.

    Everything is validated before anything is written, so bad input changes nothing on disk.
    """
    names = SubjectNames.parse(dns=dns, ips=[ip])
    validity = validity_for_years(years)
    files = CredentialFiles(directory)
    # A crash during an earlier create may have left a staged pair: finish or drop it first, so the
    # refusal below looks at the certificate the device really serves.
    files.recover()
    if files.exists() and not force:
        try:
            fp = fingerprint_sha256(files.read().certificate)
            what = f"a certificate (SHA-256 {fp[:23]}…)"
        except StorageError:
            what = "certificate files"
        raise CertificateExists(
            f"{directory} already holds {what}; a new one would break HTTPS for every device that trusts "
            "the old one. Use --force to replace it anyway"
        )
    key = generate_private_key(key_kind)
    cert = self_signed_certificate(key, names, common_name=str(names.ips[0]), validity=validity)
    credential = Credential((cert,), key)
    files.write(credential)
    return credential
