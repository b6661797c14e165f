"""The eligibility registry: customer databases, their enterprise code (hashed), kind, subscription
status and whether the subscription has an IoT box line. ``lancert service db add|set|list`` edit it.

Codes are hashed with scrypt and a per-row salt, and compared in constant time. A lookup of an unknown
database still runs one scrypt against a dummy hash, so that "unknown database" and "wrong code" take
the same time as well as giving the same answer.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, bindparam, insert, select, update

from lancert.errors import LancertError, UsageError
from lancert.service.database import Database, DriverStatement, WouldWait
from lancert.service.models import REGISTERED_DATABASES

# scrypt cost: 16 MiB and ~30-50 ms per check. Enterprise codes are issued by the provider, not chosen by
# people, so this is a second line behind their entropy; the parameters are stored with each hash so
# they can be raised later without invalidating rows.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
SALT_BYTES = 16


class DatabaseKind(StrEnum):
    PRODUCTION = "production"
    STAGING = "staging"
    DUPLICATE = "duplicate"
    DEVELOPMENT = "development"


class SubscriptionStatus(StrEnum):
    DRAFT = "draft"
    IN_PROGRESS = "in_progress"
    PAUSED = "paused"
    CLOSED = "closed"
    CANCELLED = "cancelled"


class RegistryError(LancertError):
    pass


# glibc's malloc raises its mmap threshold to the size of any mmapped block freed (up to 32 MiB): after
# the process's first scrypt, the next ones' 16 MiB come from the calling thread's malloc arena and stay
# there. Measured on the service: 4 clients' first requests (4 worker threads, 4 scrypts at once) took
# its RSS from 98 to 165 MiB for good. A fixed threshold turns the dynamic raise off, so a block that
# large is always mmapped and given back when freed (one mmap per scrypt, beside 30-50 ms of hashing).
_MMAP_THRESHOLD = 1 << 20
_M_MMAP_THRESHOLD = -3  # glibc's mallopt() parameter number (malloc.h)
# At most one scrypt per core at once: each holds 16 MiB while it runs, and the service's worker threads
# (40) would otherwise run as many for a burst of first or wrong codes (16 clients measured a 363 MiB
# peak). More at once than cores would not finish any sooner: scrypt is all CPU.
_SCRYPTS = threading.BoundedSemaphore(os.cpu_count() or 1)


def return_large_blocks() -> None:
    """Have freed scrypt-sized blocks go back to the system (glibc; elsewhere nothing to do). Called
    once by a long-running process that checks codes (the service)."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        mallopt = libc.mallopt if libc is not None else None
    except (OSError, AttributeError):  # not glibc (musl has no mallopt): its allocator differs anyway
        return
    if mallopt is not None:
        mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)


def hash_code(
    code: str, *, salt: bytes | None = None, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P
) -> str:
    salt = salt if salt is not None else secrets.token_bytes(SALT_BYTES)
    with _SCRYPTS:
        digest = hashlib.scrypt(code.encode(), salt=salt, n=n, r=r, p=p, maxmem=128 * n * r * p + 2**20)
    return f"scrypt${n}${r}${p}${salt.hex()}${digest.hex()}"


def verify_code(code: str, stored: str) -> bool:
    try:
        algo, n, r, p, salt, digest = stored.split("$")
        if algo != "scrypt":
            return False
        expected = bytes.fromhex(digest)
        candidate = hash_code(code, salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p))
    except ValueError:
        return False
    return hmac.compare_digest(candidate.rsplit("$", 1)[1], expected.hex())


_DUMMY_HASH: list[str] = []
_DUMMY_HASH_MADE = threading.Lock()


def _dummy_hash() -> str:
    """Checked against when the database is unknown, to spend the same time as a real comparison.

    Made on first use, not at import: every registry command (``db add``, ``db list``) imports this
    module, and one scrypt at import cost each of them as much as the hash it actually needs. Made once
    under a lock: a caller that comes while :func:`start_making_dummy_hash`'s thread makes it waits for
    that one instead of making a second.
    """
    with _DUMMY_HASH_MADE:
        if not _DUMMY_HASH:
            _DUMMY_HASH.append(hash_code(secrets.token_hex(16)))
        return _DUMMY_HASH[0]


def start_making_dummy_hash() -> None:
    """Make the unknown-database comparison hash in a thread, now: ``service run`` calls it before it
    imports the server (FastAPI, SQLAlchemy), and scrypt releases the GIL, so the hash (~60 ms of
    CPU) is made on another core instead of on the start's one serial path, which ``lancert up`` waits
    for. :meth:`Registry.prepare_for_requests`, before the service serves, still waits until it exists."""
    return_large_blocks()  # this scrypt's 16 MiB, as every later one's, given back when freed
    threading.Thread(target=_dummy_hash, name="lancert-dummy-hash", daemon=True).start()


@dataclass(frozen=True)
class DatabaseRecord:
    """A registry row as the rest of the service sees it (never with the code hash)."""

    uuid: str
    kind: DatabaseKind
    subscription: SubscriptionStatus
    iot_box_line: bool
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: Any) -> DatabaseRecord:
        """From a row of ``registered_databases`` (any object with its columns as attributes)."""
        return cls(
            row.uuid,
            DatabaseKind(row.kind),
            SubscriptionStatus(row.subscription),
            row.iot_box_line,
            row.created_at,
            row.updated_at,
        )

    def as_json(self) -> dict[str, object]:
        return {
            "uuid": self.uuid,
            "kind": self.kind.value,
            "subscription": self.subscription.value,
            "iot_box_line": self.iot_box_line,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }


@dataclass(frozen=True)
class RegistryRow:
    """A row as read for authentication: the record and its code hash (never leaves the registry's
    callers, never serialized)."""

    record: DatabaseRecord
    code_hash: str


# Built once: the per-request lookup, through the driver (DriverStatement: no ORM, no execution context;
# every native certificate and every ACME order and finalize reads it).
_BY_UUID = DriverStatement(
    select(REGISTERED_DATABASES).where(REGISTERED_DATABASES.c.uuid == bindparam("uuid")))


class Registry:
    # Correct codes already checked by scrypt, kept as HMAC(process-random key, code) per (uuid, stored
    # hash): a box asking again costs microseconds, not one scrypt. Only successes are kept, so a wrong
    # code always pays the full scrypt, like an unknown database; a changed code changes the stored hash.
    VERIFIED_CACHE_SIZE = 10_000

    def __init__(self, database: Database) -> None:
        self.database = database
        self._cache_key = secrets.token_bytes(32)
        self._verified: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        # Per database, the tag of the code last verified for it (see verified_before).
        self._last_verified: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def _tag(self, code: str) -> bytes:
        return hmac.new(self._cache_key, code.encode(), hashlib.sha256).digest()

    def _verify(self, uuid: str, code: str, stored: str, *, now: bool = False) -> bool:
        key, tag = (uuid, stored), self._tag(code)
        with self._lock:
            cached = self._verified.get(key)
            if cached is not None and hmac.compare_digest(cached, tag):
                if self._last_verified.get(uuid) != tag:  # again after a failed check forgot it
                    self._last_verified[uuid] = tag
                return True
        if now:
            raise WouldWait("this code needs an scrypt")
        if not verify_code(code, stored):
            with self._lock:
                self._last_verified.pop(uuid, None)
            return False
        with self._lock:
            self._verified[key] = tag
            self._verified.move_to_end(key)
            while len(self._verified) > self.VERIFIED_CACHE_SIZE:
                self._verified.popitem(last=False)
            if len(self._last_verified) >= self.VERIFIED_CACHE_SIZE:
                self._last_verified.clear()
            self._last_verified[uuid] = tag
        return True

    def verified_before(self, uuid: str, code: str) -> bool:
        """Whether ``code`` is the code this process last verified for ``uuid``: a hint, never a check
        (no SQL, no scrypt; the row may have changed since). The native API runs such a request in its
        one thread, where a scrypt would hold up every request behind it; a wrong code, an unknown
        database and a code not yet verified go to the pool (a failed check forgets the hint)."""
        with self._lock:
            tag = self._last_verified.get(uuid)
        return tag is not None and hmac.compare_digest(tag, self._tag(code))

    def authenticate(self, uuid: str, code: str) -> DatabaseRecord | None:
        """The database if ``code`` is its enterprise code, else None (unknown and wrong look alike).

        The row is read on every call, never cached: an IoT box line added a moment ago counts at once.
        """
        return self.check_code(self.find(uuid), uuid, code)

    def find(self, uuid: str, *, connection: Connection | None = None) -> RegistryRow | None:
        """The registry row of ``uuid`` (with its code hash), for :meth:`check_code`; read inside
        ``connection``'s transaction if given (the authority reads it in one snapshot with the
        failed-credential counters)."""
        if connection is None:
            with self.database.reading_connection() as own:
                row = _BY_UUID(own, {"uuid": uuid}).first()
        else:
            row = _BY_UUID(connection, {"uuid": uuid}).first()
        return RegistryRow(DatabaseRecord.of(row), row.code_hash) if row is not None else None  # type: ignore[arg-type]

    def prepare_for_requests(self) -> None:
        """Make the unknown-database comparison hash now, so that no request (not even the first) pays
        for making it: an unknown database must cost exactly what a wrong code costs."""
        _dummy_hash()

    def check_code(
        self, found: RegistryRow | None, uuid: str, code: str, *, now: bool = False
    ) -> DatabaseRecord | None:
        """The record if ``code`` matches. Run it outside any transaction: a code not yet verified by
        this process costs one scrypt (tens of ms), as does every wrong code and unknown database.
        ``now``: :class:`WouldWait` instead of any scrypt (the event loop's attempt; the answer then
        comes from a thread, which pays it)."""
        if found is None:
            if now:
                raise WouldWait("an unknown database costs an scrypt")
            verify_code(code, _dummy_hash())
            return None
        return found.record if self._verify(uuid, code, found.code_hash, now=now) else None

    def add(
        self,
        uuid: str,
        code: str,
        *,
        kind: DatabaseKind = DatabaseKind.PRODUCTION,
        subscription: SubscriptionStatus = SubscriptionStatus.IN_PROGRESS,
        iot_box_line: bool = True,
    ) -> DatabaseRecord:
        uuid = _check_uuid(uuid)
        _check_code(code)
        code_hash = hash_code(code)
        with self.database.transaction() as connection:
            if _row(connection, uuid) is not None:
                raise RegistryError(f"database {uuid} is already registered; use 'lancert service db set'")
            connection.execute(insert(REGISTERED_DATABASES).values(
                uuid=uuid, code_hash=code_hash, kind=kind.value, subscription=subscription.value,
                iot_box_line=iot_box_line,
            ))
            return DatabaseRecord.of(_row(connection, uuid))

    def set(
        self,
        uuid: str,
        *,
        code: str | None = None,
        kind: DatabaseKind | None = None,
        subscription: SubscriptionStatus | None = None,
        iot_box_line: bool | None = None,
    ) -> DatabaseRecord:
        uuid = _check_uuid(uuid)
        code_hash = hash_code(_check_code(code)) if code is not None else None
        changes: dict[str, object] = {}
        if code_hash is not None:
            changes["code_hash"] = code_hash
        if kind is not None:
            changes["kind"] = kind.value
        if subscription is not None:
            changes["subscription"] = subscription.value
        if iot_box_line is not None:
            changes["iot_box_line"] = iot_box_line
        with self.database.transaction() as connection:
            if _row(connection, uuid) is None:
                raise RegistryError(f"database {uuid} is not registered; use 'lancert service db add'")
            if changes:  # updated_at moves only when something was set
                rows = REGISTERED_DATABASES
                connection.execute(update(rows).where(rows.c.uuid == uuid).values(**changes))
            return DatabaseRecord.of(_row(connection, uuid))

    def list(self) -> list[DatabaseRecord]:
        rows = REGISTERED_DATABASES
        with self.database.reading() as connection:
            return [DatabaseRecord.of(row) for row in connection.execute(select(rows).order_by(rows.c.uuid))]


def _row(connection: Connection, uuid: str) -> Any:
    """The ``registered_databases`` row of ``uuid``, or None."""
    rows = REGISTERED_DATABASES
    return connection.execute(select(rows).where(rows.c.uuid == uuid)).first()


def _check_uuid(uuid: str) -> str:
    uuid = uuid.strip()
    if "…" in uuid or "..." in uuid:
        # Documentation shortens UUIDs (3f1e…-db); registered as is, no box would ever send it.
        raise UsageError(f"--uuid {uuid}: looks like a shortened placeholder ('…'); give the database's "
                         "full UUID")
    if not uuid or len(uuid) > 128 or not uuid.isascii() or not uuid.isprintable() or " " in uuid:
        raise UsageError("--uuid must be 1 to 128 printable ASCII characters without spaces")
    return uuid


def _check_code(code: str) -> str:
    if not code or len(code) > 256:
        raise UsageError("--code must be 1 to 256 characters")
    return code
