"""Path validation and chain assembly, delegated to cryptography's RFC 5280 / CABF verifier."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from datetime import datetime

from cryptography import x509
from cryptography.x509 import verification

from lancert.pki.errors import ChainError
from lancert.pki.issuing import utcnow


def _subject(host: str) -> verification.DNSName | verification.IPAddress:
    try:
        return verification.IPAddress(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return verification.DNSName(host.lower().rstrip("."))


def _store(anchors: Sequence[x509.Certificate]) -> verification.Store:
    if not anchors:
        raise ChainError("no trust anchors given")
    return verification.Store(list(anchors))


def verify_server_chain(
    leaf: x509.Certificate,
    *,
    anchors: Sequence[x509.Certificate],
    host: str,
    intermediates: Iterable[x509.Certificate] = (),
    at: datetime | None = None,
) -> list[x509.Certificate]:
    """The verified path leaf→anchor for a TLS server named ``host``, or :class:`ChainError` with why."""
    builder = verification.PolicyBuilder().store(_store(anchors)).time(at or utcnow())
    try:
        verifier = builder.build_server_verifier(_subject(host))
    except ValueError:  # cryptography checks the name's syntax only here
        raise ChainError(f"{host!r} is neither an IP address nor a DNS name") from None
    try:
        return verifier.verify(leaf, list(intermediates))
    except verification.VerificationError as exc:
        raise ChainError(str(exc)) from None


def verify_client_chain(
    leaf: x509.Certificate,
    *,
    anchors: Sequence[x509.Certificate],
    intermediates: Iterable[x509.Certificate] = (),
    at: datetime | None = None,
) -> list[x509.Certificate]:
    """The verified path leaf→anchor for a TLS client certificate (clientAuth), or :class:`ChainError`."""
    verifier = (
        verification.PolicyBuilder()
        .store(_store(anchors))
        .time(at or utcnow())
        .build_client_verifier()
    )
    try:
        return verifier.verify(leaf, list(intermediates)).chain
    except verification.VerificationError as exc:
        raise ChainError(str(exc)) from None


def is_self_issued(cert: x509.Certificate) -> bool:
    """Subject equals issuer and the certificate's own key verifies its signature."""
    if cert.subject != cert.issuer:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except (ValueError, TypeError, Exception):  # InvalidSignature and unsupported algorithms alike
        return False
    return True


def assemble_chain(leaf: x509.Certificate, pool: Iterable[x509.Certificate]) -> list[x509.Certificate]:
    """Order ``pool`` into the path above ``leaf`` (leaf first), by issuer name and signature.

    Stops at a self-issued certificate or when no issuer is found; certificates not on the path are left
    out, so a bundle in any order becomes what a TLS server must send.
    """
    remaining = [c for c in pool if c != leaf]
    chain = [leaf]
    while not is_self_issued(chain[-1]):
        current = chain[-1]
        for candidate in remaining:
            if candidate.subject != current.issuer:
                continue
            try:
                current.verify_directly_issued_by(candidate)
            except Exception:  # noqa: S112 - a same-named certificate with another key: keep looking
                continue
            chain.append(candidate)
            remaining.remove(candidate)
            break
        else:
            break
    return chain
