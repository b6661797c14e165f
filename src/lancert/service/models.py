"""SQL tables of the service (SQLAlchemy 2 declarative); their history lives in ``migrations/``.

Everything several instances must agree on is here, not on one instance's disk: the eligibility
registry, the CA in use, the secret that derives box labels, failed-credential counters, ACME TXT records.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Boolean, DateTime, Dialect, Float, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


def _now() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """The one column type for moments: stored as UTC, given back aware in UTC, on every database.

    Why: SQLite has no time zones. SQLAlchemy's ``DateTime(timezone=True)`` writes an aware value's
    wall-clock fields there without its offset and reads back a naive value, where PostgreSQL's
    ``timestamptz`` gives an aware one; code that compared a read value with ``utcnow()`` had to patch
    each read, and an aware value in another zone would have been stored hours off. Here a value is
    converted to UTC when written (a naive one is refused: its zone is unknown) and marked UTC when
    read, so the same code runs on both. The database column is unchanged (``DateTime(timezone=True)``:
    the migrations and the stored rows stay as they are).
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("a naive datetime cannot be stored: give it a time zone (UTC)")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class RegisteredDatabase(Base):
    """One customer database of the eligibility registry (what Odoo's subscription records say)."""

    __tablename__ = "registered_databases"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uuid: Mapped[str] = mapped_column(String(128), unique=True)
    # "scrypt$n$r$p$salt_hex$hash_hex": the enterprise code is never stored in clear.
    code_hash: Mapped[str] = mapped_column(String(300))
    kind: Mapped[str] = mapped_column(String(32))
    subscription: Mapped[str] = mapped_column(String(32))
    iot_box_line: Mapped[bool]
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=_now)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=_now, onupdate=_now)


class IssuedCertificate(Base):
    """Every certificate the service handed out; the UNIQUE serial is what makes instances agree."""

    __tablename__ = "issued_certificates"
    __table_args__ = (
        UniqueConstraint("serial", name="uq_issued_certificates_serial"),
        Index("ix_issued_certificates_box_label", "box_label"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    serial: Mapped[str] = mapped_column(String(64))  # lower-case hex
    db_uuid: Mapped[str] = mapped_column(String(128))
    box_id: Mapped[str | None] = mapped_column(String(64))  # None for the compatible (per-database) call
    box_label: Mapped[str] = mapped_column(String(63))
    style: Mapped[str] = mapped_column(String(16))  # "native" | "compatible"
    issuer: Mapped[str] = mapped_column(String(32))
    not_before: Mapped[datetime] = mapped_column(UTCDateTime())
    not_after: Mapped[datetime] = mapped_column(UTCDateTime())
    certificate_pem: Mapped[str] = mapped_column(Text)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=_now)


class ServiceState(Base):
    """Named values made once for the whole service (zone, label secret, CA certificates and key)."""

    __tablename__ = "service_state"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class CredentialFailure(Base):
    """Failed-credential counter of one source IP or one db_uuid in one fixed time window.

    Kept in SQL, not in process memory, so that several instances behind one balancer slow down a
    guesser together.
    """

    __tablename__ = "credential_failures"

    scope: Mapped[str] = mapped_column(String(8), primary_key=True)  # "ip" | "db"
    subject: Mapped[str] = mapped_column(String(128), primary_key=True)
    window_start: Mapped[int] = mapped_column(Integer, primary_key=True)  # Unix seconds
    count: Mapped[int] = mapped_column(Integer, default=0)


class DnsTxtRecord(Base):
    """A TXT record the DNS server publishes (``_acme-challenge.<label>.<zone>`` for the ACME issuer)."""

    __tablename__ = "dns_txt_records"
    __table_args__ = (Index("ix_dns_txt_records_name", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(253))  # lower-case, no trailing dot
    value: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=_now)


class CertificateOrder(Base):
    """One row per box label (a native box, or a database for the compatible call): the state of its
    certificate orders, shared by every instance.

    ``owner``/``lease_until`` is the cross-instance lock that keeps at most one order per name in flight:
    the owner renews the lease while its order runs, so a crashed or restarted instance's order is taken
    over once the lease lapses. ``failures``/``window_start``/``retry_not_before`` bound the attempts
    (and honour an upstream Retry-After); ``last_error*`` is what ``lancert service certs`` shows.
    """

    __tablename__ = "certificate_orders"

    box_label: Mapped[str] = mapped_column(String(63), primary_key=True)
    db_uuid: Mapped[str] = mapped_column(String(128))
    style: Mapped[str] = mapped_column(String(16))  # "native" | "compatible"
    issuer: Mapped[str | None] = mapped_column(String(255))  # "internal" or the ACME directory URL
    owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    orders: Mapped[int] = mapped_column(Integer, default=0)  # upstream orders started, ever
    window_start: Mapped[datetime | None] = mapped_column(UTCDateTime())
    failures: Mapped[int] = mapped_column(Integer, default=0)  # failed attempts in the current window
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    retry_not_before: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)
    last_error_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    serial: Mapped[str | None] = mapped_column(String(64))
    not_after: Mapped[datetime | None] = mapped_column(UTCDateTime())
    renew_after: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Why earlier upstream CAs did not issue the last certificate ("<directory>: <reason>", one a line).
    skipped: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=_now, onupdate=_now)


class UpstreamSpend(Base):
    """One unit of an upstream CA's limit spent (:mod:`lancert.service.scheduler`): shared by every
    instance, so that together they stay within the CA's limits. ``at`` is a Unix time; rows older than
    the longest window (7 days) are deleted as new ones come."""

    __tablename__ = "upstream_spend"
    __table_args__ = (Index("ix_upstream_spend_counter", "ca", "counter", "key", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ca: Mapped[str] = mapped_column(String(255))
    counter: Mapped[str] = mapped_column(String(16))
    key: Mapped[str] = mapped_column(String(253))
    at: Mapped[float] = mapped_column(Float)


class UpstreamCertificate(Base):
    """The last upstream certificate of one exact name set: which CA issued it and its renewal window
    (ARI's ``suggestedWindow``, or the last third of its lifetime), so the scheduler knows a renewal
    (exempt at that CA) from a first certificate, and one due from an early one."""

    __tablename__ = "upstream_certificates"

    names_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    ca: Mapped[str] = mapped_column(String(255))
    not_after: Mapped[float] = mapped_column(Float)
    window_start: Mapped[float] = mapped_column(Float)
    window_end: Mapped[float] = mapped_column(Float)
    ari: Mapped[bool] = mapped_column(Boolean)


class CompatibleCredential(Base):
    """The certificate and the key the service made for one database (the compatible call): handed to
    every box of that database until its renewal time, as the field service does.

    The key is stored in clear, like the CA's intermediate key in ``service_state``: whoever reads the
    database (the 0600 SQLite file, or the PostgreSQL role) can already issue for the whole zone, so
    encrypting this one key with a secret kept beside it would add nothing (README: threat model).
    """

    __tablename__ = "compatible_credentials"

    db_uuid: Mapped[str] = mapped_column(String(128), primary_key=True)
    box_label: Mapped[str] = mapped_column(String(63))
    issuer: Mapped[str] = mapped_column(String(255))
    chain_pem: Mapped[str] = mapped_column(Text)
    private_key_pem: Mapped[str] = mapped_column(Text)
    not_before: Mapped[datetime] = mapped_column(UTCDateTime())
    not_after: Mapped[datetime] = mapped_column(UTCDateTime())
    renew_after: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=_now, onupdate=_now)
