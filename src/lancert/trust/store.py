"""The one small interface every trust store offers, as mkcert's truststore_*.go files do.

A store knows how to ``check`` whether a certificate is trusted, ``install`` it (always ending with a
``check``, so a silent failure is impossible), ``uninstall`` it (also verified) and ``list`` what lancert
put there. Entries are found again by a label derived from the certificate alone, so ``remove`` and
``list`` work from any machine that has the same file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from lancert.errors import LancertError
from lancert.pki import common_name

LABEL_PREFIX = "lancert"


class TrustStoreError(LancertError):
    """A store that could not be read or changed; the message names the fix."""


@dataclass(frozen=True)
class TrustEntry:
    """One certificate in a store: where it is, under which label, and with which trust."""

    store: str
    label: str
    trust: str
    certificate: x509.Certificate | None = None

    def as_dict(self) -> dict[str, str]:
        from lancert.pki import fingerprint_sha256

        return {
            "store": self.store, "label": self.label, "trust": self.trust,
            "sha256_fingerprint": fingerprint_sha256(self.certificate) if self.certificate else "",
            "subject": self.certificate.subject.rfc4514_string() if self.certificate else "",
            "not_after": self.certificate.not_valid_after_utc.isoformat() if self.certificate else "",
        }

    def matches(self, what: str) -> bool:
        """Whether ``what`` names this entry: its label, or its SHA-256 fingerprint (with or without
        colons, any case; a prefix of at least 8 hex digits, as the short form in labels)."""
        if what == self.label:
            return True
        if self.certificate is None:
            return False
        wanted = what.replace(":", "").lower()
        full = self.certificate.fingerprint(hashes.SHA256()).hex()
        return len(wanted) >= 8 and all(c in "0123456789abcdef" for c in wanted) and full.startswith(wanted)


class TrustStore(Protocol):
    """A place a client looks for trusted certificates (an NSS database, the OS anchors)."""

    @property
    def description(self) -> str:
        """Where this store is, for messages ("NSS database /home/u/.pki/nssdb")."""
        ...

    def check(self, cert: x509.Certificate) -> bool:
        """Whether ``cert`` is present with the trust that makes a TLS client accept it."""
        ...

    def install(self, cert: x509.Certificate) -> None:
        """Add ``cert`` with the right trust, then :meth:`check`; raise if the check fails."""
        ...

    def uninstall(self, cert: x509.Certificate) -> bool:
        """Remove ``cert`` (False when it was not there), then check it is gone."""
        ...

    def list(self) -> list[TrustEntry]:
        """The entries lancert installed in this store."""
        ...


def short_fingerprint(cert: x509.Certificate) -> str:
    """The first 8 hex digits of the SHA-256 fingerprint: enough to tell two device certificates apart."""
    return cert.fingerprint(hashes.SHA256()).hex()[:8]


def nickname(cert: x509.Certificate) -> str:
    """The NSS nickname lancert gives ``cert``: ``lancert <CN> <fp8>``, deterministic from the certificate.

    lancert's own CAs are called "lancert ... Root CA": their CN already carries the prefix, which is
    not repeated ("lancert lancert iot.lancert.test Root CA" read as a typo in every certificate viewer).
    """
    cn = common_name(cert.subject) or cert.subject.rfc4514_string() or "certificate"
    if cn.lower().startswith(LABEL_PREFIX + " "):
        cn = cn[len(LABEL_PREFIX) + 1:]
    return f"{LABEL_PREFIX} {cn[:48]} {short_fingerprint(cert)}"


def anchor_file_name(cert: x509.Certificate) -> str:
    """The file name in an OS anchors directory: ``lancert-<cn>-<fp8>.crt`` (Debian only reads ``*.crt``)."""
    cn = common_name(cert.subject) or "certificate"
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", cn)[:48].strip("._") or "certificate"
    return f"{LABEL_PREFIX}-{safe}-{short_fingerprint(cert)}.crt"


def is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False
