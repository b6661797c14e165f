"""A certificate's facts as users compare them: names, issuer, validity, fingerprint, key type."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from lancert.pki.issuing import utcnow
from lancert.pki.keys import describe_key
from lancert.pki.names import certificate_names
from lancert.pki.verify import is_self_issued


def fingerprint_sha256(cert: x509.Certificate) -> str:
    """Colon-separated upper-case hex, the form browsers show in their certificate viewers."""
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()


@dataclass(frozen=True)
class CertificateSummary:
    subject: str
    issuer: str
    names: list[str]
    not_before: str
    not_after: str
    days_left: int
    status: str
    self_signed: bool
    is_ca: bool
    serial: str
    sha256_fingerprint: str
    key_type: str

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def validity_status(cert: x509.Certificate, at: datetime | None = None) -> str:
    """``valid``, ``expired`` or ``not yet valid`` at ``at`` (now by default)."""
    now = at or utcnow()
    if now < cert.not_valid_before_utc:
        return "not yet valid"
    if now > cert.not_valid_after_utc:
        return "expired"
    return "valid"


def days_left(cert: x509.Certificate, at: datetime | None = None) -> int:
    """Whole days until expiry, rounded away from zero: 365 for a fresh one-year certificate.

    Flooring would show a certificate made a second ago for one year as 364 days, and one with three
    hours left as 0, which reads as expired; it is valid for part of one more day, so it shows 1. An
    expired certificate shows minus the started days since expiry (-1 within the first day).
    """
    seconds = (cert.not_valid_after_utc - (at or utcnow())).total_seconds()
    whole = math.ceil(seconds / 86400) if seconds > 0 else math.floor(seconds / 86400)
    return int(whole)


def summarize(cert: x509.Certificate, at: datetime | None = None) -> CertificateSummary:
    now = at or utcnow()
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        is_ca = bc.ca
    except x509.ExtensionNotFound:
        is_ca = False
    return CertificateSummary(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        names=certificate_names(cert).as_strings(),
        not_before=cert.not_valid_before_utc.isoformat(),
        not_after=cert.not_valid_after_utc.isoformat(),
        days_left=days_left(cert, now),
        status=validity_status(cert, now),
        self_signed=is_self_issued(cert),
        is_ca=is_ca,
        serial=format(cert.serial_number, "x"),
        sha256_fingerprint=fingerprint_sha256(cert),
        key_type=describe_key(cert.public_key()),
    )
