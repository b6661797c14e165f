"""The self-signed device flow: the certificate a receipt printer makes for itself, once."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from lancert.errors import LancertError, UsageError
from lancert.pki import KeyKind, SubjectNames, fingerprint_sha256, generate_private_key, self_signed_certificate
from lancert.pki.issuing import utcnow
from lancert.storage import Credential, CredentialFiles, StorageError

MIN_YEARS, MAX_YEARS = 1, 10


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
