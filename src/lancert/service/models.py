"""SQL tables of the service (SQLAlchemy Core); their history lives in ``migrations/``.

Everything several instances must agree on is here, not on one instance's disk: the eligibility
registry, the CA in use, the secret that derives box labels, failed-credential counters, ACME TXT records.

Core tables, not ORM classes: every statement on them is a plain select, insert, update or delete,
the hot paths already ran on Core (and on the driver's cursor, :class:`lancert.service.database.
DriverStatement`), and the ORM's import with its mapped classes was ~6.7 MiB of every serving process
(an ACME-only ``service run`` at its ready line: 67.3 -> 60.6 MiB; issue 21, the memory a small box
can spare).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    DateTime,
    Dialect,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    delete,
    insert,
    select,
    update,
)
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


METADATA = MetaData()

# Columns as the tables below declare them (the ACME server's tables too): a primary key, a value every
# row has, one it may lack, the moment a row was made or last changed.


def primary(name: str, type_: Any) -> Column[Any]:
    return Column(name, type_, primary_key=True)


def required(name: str, type_: Any, **options: Any) -> Column[Any]:
    return Column(name, type_, nullable=False, **options)


def optional(name: str, type_: Any) -> Column[Any]:
    return Column(name, type_, nullable=True)


def created(name: str = "created_at") -> Column[Any]:
    return Column(name, UTCDateTime(), nullable=False, default=_now)


def updated() -> Column[Any]:
    return Column("updated_at", UTCDateTime(), nullable=False, default=_now, onupdate=_now)


# One customer database of the eligibility registry (what Odoo's subscription records say).
REGISTERED_DATABASES = Table(
    "registered_databases", METADATA,
    primary("id", Integer),
    required("uuid", String(128), unique=True),
    # "scrypt$n$r$p$salt_hex$hash_hex": the enterprise code is never stored in clear.
    required("code_hash", String(300)),
    required("kind", String(32)),
    required("subscription", String(32)),
    required("iot_box_line", Boolean),
    created(),
    updated(),
)

# Every certificate the service handed out; the UNIQUE serial is what makes instances agree.
ISSUED_CERTIFICATES = Table(
    "issued_certificates", METADATA,
    primary("id", Integer),
    required("serial", String(64)),  # lower-case hex
    required("db_uuid", String(128)),
    optional("box_id", String(64)),  # None for the compatible (per-database) call
    required("box_label", String(63)),
    required("style", String(16)),  # "native" | "compatible"
    required("issuer", String(32)),
    required("not_before", UTCDateTime()),
    required("not_after", UTCDateTime()),
    required("certificate_pem", Text),
    created("issued_at"),
    UniqueConstraint("serial", name="uq_issued_certificates_serial"),
    Index("ix_issued_certificates_box_label", "box_label"),
)

# Named values made once for the whole service (zone, label secret, CA certificates and key).
SERVICE_STATE = Table(
    "service_state", METADATA,
    primary("name", String(64)),
    required("value", Text),
)



def put(connection: Connection, table: Table, key: Mapping[str, Any], values: Mapping[str, Any]) -> None:
    """Update the row of ``key`` (its primary key's columns) with ``values``, or insert it when there is
    none. Not a delete and an insert: on PostgreSQL two instances updating one row then wait for each
    other, where a second delete would miss the first's new row and its insert fail; two first inserts
    still meet the primary key, one of them as an ``IntegrityError``."""
    where = [table.c[name] == value for name, value in key.items()]
    if connection.execute(update(table).where(*where).values(**values)).rowcount == 0:
        connection.execute(insert(table).values(**key, **values))


def read_state(connection: Connection, name: str) -> str | None:
    """A ``service_state`` value, or None when no row has that name."""
    return connection.execute(select(SERVICE_STATE.c.value).where(SERVICE_STATE.c.name == name)).scalar()


def write_state(connection: Connection, name: str, value: str | None) -> None:
    """Set a ``service_state`` value in the caller's transaction, or with None remove its row."""
    if value is None:
        connection.execute(delete(SERVICE_STATE).where(SERVICE_STATE.c.name == name))
    else:
        put(connection, SERVICE_STATE, {"name": name}, {"value": value})


# Failed-credential counter of one source IP or one db_uuid in one fixed time window. Kept in SQL, not
# in process memory, so that several instances behind one balancer slow down a guesser together.
CREDENTIAL_FAILURES = Table(
    "credential_failures", METADATA,
    primary("scope", String(8)),  # "ip" | "db"
    primary("subject", String(128)),
    primary("window_start", Integer),  # Unix seconds
    required("count", Integer, default=0),
)

# A TXT record the DNS server publishes (``_acme-challenge.<label>.<zone>`` for the ACME issuer).
DNS_TXT_RECORDS = Table(
    "dns_txt_records", METADATA,
    primary("id", Integer),
    required("name", String(253)),  # lower-case, no trailing dot
    required("value", String(255)),
    created(),
    Index("ix_dns_txt_records_name", "name"),
)

# One row per box label (a native box, or a database for the compatible call): the state of its
# certificate orders, shared by every instance.
#
# ``owner``/``lease_until`` is the cross-instance lock that keeps at most one order per name in flight:
# the owner renews the lease while its order runs, so a crashed or restarted instance's order is taken
# over once the lease lapses. ``failures``/``window_start``/``retry_not_before`` bound the attempts
# (and honour an upstream Retry-After); ``last_error*`` is what ``lancert service certs`` shows.
CERTIFICATE_ORDERS = Table(
    "certificate_orders", METADATA,
    primary("box_label", String(63)),
    required("db_uuid", String(128)),
    required("style", String(16)),  # "native" | "compatible"
    optional("issuer", String(255)),  # "internal" or the ACME directory URL
    optional("owner", String(64)),
    optional("lease_until", UTCDateTime()),
    optional("started_at", UTCDateTime()),
    required("orders", Integer, default=0),  # upstream orders started, ever
    optional("window_start", UTCDateTime()),
    required("failures", Integer, default=0),  # failed attempts in the current window
    required("consecutive_failures", Integer, default=0),
    optional("retry_not_before", UTCDateTime()),
    optional("last_error", Text),
    optional("last_error_at", UTCDateTime()),
    optional("serial", String(64)),
    optional("not_after", UTCDateTime()),
    optional("renew_after", UTCDateTime()),
    # Why earlier upstream CAs did not issue the last certificate ("<directory>: <reason>", one a line).
    optional("skipped", Text),
    updated(),
)

# One unit of an upstream CA's limit spent (:mod:`lancert.service.scheduler`): shared by every
# instance, so that together they stay within the CA's limits. ``at`` is a Unix time; rows older than
# the longest window (7 days) are deleted as new ones come.
UPSTREAM_SPEND = Table(
    "upstream_spend", METADATA,
    primary("id", Integer),
    required("ca", String(255)),
    required("counter", String(16)),
    required("key", String(253)),
    required("at", Float),
    Index("ix_upstream_spend_counter", "ca", "counter", "key", "at"),
)

# The last upstream certificate of one exact name set: which CA issued it and its renewal window
# (ARI's ``suggestedWindow``, or the last third of its lifetime), so the scheduler knows a renewal
# (exempt at that CA) from a first certificate, and one due from an early one.
UPSTREAM_CERTIFICATES = Table(
    "upstream_certificates", METADATA,
    primary("names_key", String(64)),
    required("ca", String(255)),
    required("not_after", Float),
    required("window_start", Float),
    required("window_end", Float),
    required("ari", Boolean),
)

# The certificate and the key the service made for one database (the compatible call): handed to
# every box of that database until its renewal time, as the field service does.
#
# The key is stored in clear, like the CA's intermediate key in ``service_state``: whoever reads the
# database (the 0600 SQLite file, or the PostgreSQL role) can already issue for the whole zone, so
# encrypting this one key with a secret kept beside it would add nothing (README: threat model).
COMPATIBLE_CREDENTIALS = Table(
    "compatible_credentials", METADATA,
    primary("db_uuid", String(128)),
    required("box_label", String(63)),
    required("issuer", String(255)),
    required("chain_pem", Text),
    required("private_key_pem", Text),
    required("not_before", UTCDateTime()),
    required("not_after", UTCDateTime()),
    required("renew_after", UTCDateTime()),
    updated(),
)
