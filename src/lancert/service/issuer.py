"""Issuers: who signs the box certificates. The service talks to the :class:`Issuer` interface only;
:class:`InternalCAIssuer` is the default (a CA of the service's own, name-constrained to the zone), a
public ACME CA (:class:`lancert.service.upstream.AcmeIssuer`) sits behind the same interface.

The internal CA is made once for all instances: the first instance to start takes a lock (an advisory
lock on PostgreSQL; SQLite transactions are exclusive), makes the CA with :class:`lancert.ca.CADirectory`
in its data directory and stores the root and the intermediate (certificate and key) in the
``service_state`` table; every other instance loads it from there, even with another data directory.
The root's key stays in the creating instance's data directory only: issuing never needs it.
"""

from __future__ import annotations

import functools
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol

from cryptography import x509
from sqlalchemy import insert

from lancert.ca.directory import CADirectory
from lancert.errors import LancertError
from lancert.pki import (
    TLS_SERVER,
    CertificateAuthority,
    SubjectNames,
    load_certificates,
    load_private_key_pem,
    pem,
    private_key_pem,
    served_chain,
    zone_name_constraints,
)
from lancert.service.database import LOCK_SERVICE_STATE, Database
from lancert.service.models import SERVICE_STATE, read_state

STATE_ZONE = "zone"
STATE_LABEL_SECRET = "label_secret"  # noqa: S105 - a row name, not a secret
STATE_ROOT = "ca_root_pem"
STATE_INTERMEDIATE = "ca_intermediate_pem"
STATE_INTERMEDIATE_KEY = "ca_intermediate_key_pem"


@dataclass(frozen=True)
class IssuedChain:
    """A leaf and the certificates a server sends after it (never the root); ``renew_at`` when the
    issuer knows better than two thirds of the lifetime (an ACME CA's renewal information, RFC 9773)."""

    chain: tuple[x509.Certificate, ...]
    renew_at: datetime | None = None
    # With several upstream CAs (lancert.service.fallback): the one that issued, and why earlier ones
    # did not ("<directory>: <reason>").
    issued_by: str | None = None
    skipped: tuple[str, ...] = ()

    # The leaf's values and PEM text, each read from the certificate once: the record, the log line and
    # the answer of every certificate use them (cryptography parses and encodes again on every access).
    @property
    def leaf(self) -> x509.Certificate:
        return self.chain[0]

    @functools.cached_property
    def serial_hex(self) -> str:
        return format(self.leaf.serial_number, "x")

    @functools.cached_property
    def not_before(self) -> datetime:
        return self.leaf.not_valid_before_utc

    @functools.cached_property
    def not_after(self) -> datetime:
        return self.leaf.not_valid_after_utc

    @functools.cached_property
    def _pem_texts(self) -> tuple[str, ...]:
        return (pem([self.leaf]).decode(), *(_ca_pem(certificate) for certificate in self.chain[1:]))

    @property
    def leaf_pem(self) -> str:
        return self._pem_texts[0]

    @property
    def renew_after(self) -> datetime:
        """The issuer's word if it gave one, else two thirds into the lifetime, as ACME clients
        (certbot, Caddy) renew: room for retries."""
        if self.renew_at is not None:
            return self.renew_at
        return self.not_before + (self.not_after - self.not_before) * 2 / 3

    def chain_pem(self) -> str:
        return "".join(self._pem_texts)


@functools.lru_cache(maxsize=16)
def _ca_pem(certificate: x509.Certificate) -> str:
    """The PEM text of a CA certificate above a leaf: the same few for every chain an issuer hands out."""
    return pem([certificate]).decode()


class IssuanceFailed(LancertError):
    """The issuer could not issue now. ``reason`` is short and machine-readable (an ACME problem type
    such as ``rateLimited``, or ``upstream_unreachable``); ``retry_after`` (seconds) is the issuer's own
    word on when to try again, if it gave one."""

    def __init__(self, message: str, *, reason: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.retry_after = retry_after


class OrderQueued(IssuanceFailed):
    """Nothing was ordered: no upstream CA has a slot for this request within its limits now
    (:mod:`lancert.service.scheduler`). The request waits its turn, ``position`` others ahead, expected
    in ``retry_after`` seconds; the order desk answers "pending", counts no failure and backs off nothing."""

    def __init__(self, message: str, *, retry_after: int, position: int) -> None:
        super().__init__(message, reason="queued", retry_after=retry_after)
        self.position = position


class Issuer(Protocol):
    """Signs a server certificate for names the authority already allowed.

    ``name`` goes into the issued-certificate records ("internal", "acme"); ``description`` is what the
    operator sees (``lancert service certs``): "internal" or the ACME directory URL. An issuer with
    ``needs_csr_names`` can only sign a CSR that already asks for exactly the granted names (an ACME CA
    checks the CSR against the order); the internal CA issues the granted names whatever the CSR says.
    An issuer that ``places_orders`` (slow, may fail) has native requests go through the order desk
    too (:mod:`lancert.service.orders`); the compatible call always does.
    Issuing may take seconds and may raise :class:`IssuanceFailed`.
    """

    name: str
    description: str
    needs_csr_names: bool
    places_orders: bool  # slow or failing issuance: native requests too go through the order desk

    def root_certificates(self) -> list[x509.Certificate]: ...

    def issue_server_certificate(
        self, csr: x509.CertificateSigningRequest, names: SubjectNames
    ) -> IssuedChain:
        """``csr`` was verified by :func:`lancert.pki.load_csr`; ``names`` is what is issued, whatever
        the CSR asked for."""
        ...


class InternalCAIssuer:
    name = "internal"
    description = "internal"
    needs_csr_names = False
    places_orders = False

    def __init__(self, ca: CertificateAuthority, lifetime: timedelta) -> None:
        self.ca = ca
        self.lifetime = lifetime
        # What every chain carries after its leaf, assembled once (served_chain compares names).
        self._above_leaf = served_chain(ca.certificate, ca.chain)[1:]

    def root_certificates(self) -> list[x509.Certificate]:
        return [self.ca.root]

    def issue_server_certificate(
        self, csr: x509.CertificateSigningRequest, names: SubjectNames
    ) -> IssuedChain:
        leaf = self.ca.issue_for_csr(csr, TLS_SERVER, names=names, validity=self.lifetime)
        return IssuedChain((leaf, *self._above_leaf))


class ZoneMismatch(LancertError):
    pass


@dataclass(frozen=True)
class ServiceIdentity:
    """What every instance must share: the zone, the label secret, and the internal CA."""

    zone: str
    label_secret: bytes
    ca: CertificateAuthority


def load_service_identity(database: Database) -> ServiceIdentity | None:
    """The shared state, or None before the first ``service run``."""
    with database.reading() as connection:
        values = {
            n: read_state(connection, n)
            for n in (STATE_ZONE, STATE_LABEL_SECRET, STATE_ROOT, STATE_INTERMEDIATE, STATE_INTERMEDIATE_KEY)
        }
    if any(v is None for v in values.values()):
        return None
    root = load_certificates(values[STATE_ROOT].encode())[0]  # type: ignore[union-attr]
    intermediate = load_certificates(values[STATE_INTERMEDIATE].encode())[0]  # type: ignore[union-attr]
    key = load_private_key_pem(values[STATE_INTERMEDIATE_KEY].encode())  # type: ignore[union-attr]
    return ServiceIdentity(
        values[STATE_ZONE],
        bytes.fromhex(values[STATE_LABEL_SECRET]),  # type: ignore[arg-type]
        CertificateAuthority(intermediate, key, (root,)),
    )


def ensure_service_identity(database: Database, zone: str, ca_dir: Path) -> ServiceIdentity:
    """Load the shared state, making it first if this is the very first start of the service."""
    existing = load_service_identity(database)
    if existing is None:
        with database.transaction() as connection:
            database.advisory_lock(connection, LOCK_SERVICE_STATE)
            if read_state(connection, STATE_ZONE) is None:  # still nobody else: this instance makes it
                ca = CADirectory(ca_dir).load_or_create(
                    f"lancert {zone}", name_constraints=zone_name_constraints(zone)
                )
                values = {
                    STATE_ZONE: zone,
                    STATE_LABEL_SECRET: secrets.token_bytes(32).hex(),
                    STATE_ROOT: pem([ca.root]).decode(),
                    STATE_INTERMEDIATE: pem([ca.certificate]).decode(),
                    STATE_INTERMEDIATE_KEY: private_key_pem(ca.key).decode(),
                }
                rows = [{"name": n, "value": v} for n, v in values.items()]
                connection.execute(insert(SERVICE_STATE), rows)
        existing = load_service_identity(database)
        assert existing is not None
    if existing.zone != zone:
        raise ZoneMismatch(
            f"this service's CA is for zone {existing.zone!r}, not {zone!r}; "
            f"run with --zone {existing.zone} (a new zone needs a new database)"
        )
    return existing
