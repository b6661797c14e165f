"""The order desk: certificate orders that may be slow or fail (an upstream ACME CA), run in background
threads so that a request waits at most a bounded deadline, with at most one order per name in flight
across every instance, and bounded, backed-off attempts. Generic over issuers: the internal CA goes
through it too for the compatible call (it then simply finishes at once).

Why a deadline: field boxes wait between 5 and 95 s for an answer, depending on their generation, so the
compatible call answers within ``compatible_deadline`` (3.5 s by default, under the 5 s of the
most impatient boxes). An order still running then goes on in the background; its result lands in the
per-database cache (:mod:`lancert.service.compatible_cache`) and the box's next request gets it.

Across instances, the ``certificate_orders`` row of a name is the lock: an instance takes it by writing
its id and a lease (in one transaction: a row lock on PostgreSQL, BEGIN IMMEDIATE on SQLite), renews
the lease from a heartbeat thread while its order runs, and clears it when the order ends. An instance
that dies mid-order stops renewing, so another takes the name over once the lease lapses. Inside one
instance, concurrent requests for a name share one future.

Attempts: a failure backs the name off (``retry_backoff`` doubled per consecutive failure, up to an
hour, and never less than the CA's Retry-After), and at most ``failures_per_hour`` failed orders per
name per hour reach the CA (Let's Encrypt allows 5 failed validations per hostname per hour).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import IntegrityError

from lancert.pki import SubjectNames, create_csr, generate_private_key, utcnow
from lancert.service import compatible_cache
from lancert.service.authority import Grant
from lancert.service.compatible_cache import CachedCredential
from lancert.service.config import OrderPolicy
from lancert.service.database import Database
from lancert.service.errors import IssuancePending, UpstreamFailed
from lancert.service.issuer import IssuanceFailed, IssuedChain, Issuer, OrderQueued
from lancert.service.models import CERTIFICATE_ORDERS, ISSUED_CERTIFICATES

log = logging.getLogger("lancert.service.orders")

T = TypeVar("T")
WINDOW = timedelta(hours=1)
MAX_BACKOFF = timedelta(hours=1)
FINISHED_KEPT = 10_000  # certificates of finished own-key orders kept per instance (see OrderDesk)
POLL_INTERVAL = 0.2  # waiting for another instance's order: how often the cache and the lease are read


@dataclass(frozen=True)
class _Busy:
    """Another instance holds the name's order."""


@dataclass(frozen=True)
class _BackedOff:
    until: datetime
    message: str
    reason: str


# Rows a front writes in the transaction that records a certificate (the ACME server: its order becomes
# valid with the certificate, or neither happens).
AlsoRecord = Callable[[Connection, IssuedChain], None]
# grant, certificate, style (the front), source_ip, the front's own rows
Recorder = Callable[[Grant, IssuedChain, str, str, "AlsoRecord | None"], None]


class OrderDesk:
    def __init__(self, database: Database, issuer: Issuer, policy: OrderPolicy, record: Recorder) -> None:
        self.database = database
        self.issuer = issuer
        self.policy = policy
        self.record = record
        self.instance = secrets.token_hex(8)
        # One daemon thread per order, at most ``workers`` talking to the issuer at once: a pool's
        # threads would be joined at exit, so a stop or restart would wait for a stuck upstream order.
        self._slots = threading.Semaphore(policy.workers)
        self._running: dict[tuple[str, ...], Future[object]] = {}
        self._held: set[str] = set()
        self._lock = threading.Lock()
        # Certificates of orders for a requester's own key, kept after the order ended (until their
        # renewal time): a box whose wait ran out asks again with the same key and gets this one,
        # instead of a new upstream order each retry (5 duplicate certificates per week at Let's Encrypt).
        self._finished: OrderedDict[tuple[str, ...], IssuedChain] = OrderedDict()
        self._stop = threading.Event()
        self._heartbeat = threading.Thread(target=self._renew_leases, name="lancert-order-lease", daemon=True)
        self._heartbeat.start()

    def close(self) -> None:
        """Stop renewing leases; orders still running are abandoned (another instance, or this one
        restarted, takes their names over once the leases lapse)."""
        self._stop.set()

    # -- the two flows ------------------------------------------------------------------------------------

    def compatible(
        self, grant: Grant, *, arrived: float | None = None, source_ip: str = "-"
    ) -> CachedCredential:
        """The database's certificate and key: the cached pair while fresh, else a new order's result
        (or, while that order fails or runs on, the cached pair as long as a box can still serve it).
        ``arrived``: when the request came in (``time.monotonic()``), where the deadline counts from;
        ``source_ip``: who asked, for the issuance's log line."""
        deadline = (arrived or time.monotonic()) + self.policy.compatible_deadline
        db_uuid = grant.database.uuid
        cached = compatible_cache.load(self.database, db_uuid)
        if cached is not None and cached.fresh(utcnow(), self.issuer.description):
            return cached
        key = ("compatible", grant.box_label)

        def fallback(refusal: IssuancePending | UpstreamFailed) -> CachedCredential:
            """While an order fails or runs on, a pair a box can still serve beats a refusal."""
            if cached is not None and cached.usable(utcnow()):
                return cached
            raise refusal

        while True:
            outcome: _Busy | _BackedOff | None = None
            with self._lock:
                future = self._running.get(key)
                if future is None:
                    outcome = self._acquire(grant, "compatible")
                    if outcome is None:
                        latest = compatible_cache.load(self.database, db_uuid)
                        if latest is not None and latest.fresh(utcnow(), self.issuer.description):
                            self._release(grant.box_label)  # another instance finished just before
                            return latest
                        future = self._start(key, grant, lambda: self._compatible_order(grant, source_ip))
            if future is not None:
                try:
                    return self._wait(future, deadline)  # type: ignore[return-value]
                except (IssuancePending, UpstreamFailed) as refusal:
                    return fallback(refusal)
            if isinstance(outcome, _BackedOff):
                return fallback(_backed_off_error(outcome))
            # Another instance is ordering: its result arrives through the cache.
            if time.monotonic() >= deadline:
                return fallback(_pending())
            time.sleep(POLL_INTERVAL)
            latest = compatible_cache.load(self.database, db_uuid)
            if latest is not None and latest.fresh(utcnow(), self.issuer.description):
                return latest

    def order(
        self,
        grant: Grant,
        csr: x509.CertificateSigningRequest,
        *,
        style: str,
        names: SubjectNames | None = None,
        deadline: float,
        source_ip: str = "-",
        also_record: AlsoRecord | None = None,
    ) -> IssuedChain:
        """An order for the requester's own key (a box's CSR, an ACME client's): ``names`` (default the
        grant's) signed for ``csr``, recorded as ``style``, waited for until ``deadline``
        (``time.monotonic()``), then :class:`IssuancePending` while it goes on. Identical requests
        (same front, label, key and names) share one order; a request for a name whose order another
        request or instance holds waits for it to end. ``also_record`` runs in the transaction that
        records the certificate, whether or not anyone still waits for it."""
        names = names or grant.names
        spki = csr.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        key = (style, grant.box_label, hashlib.sha256(spki).hexdigest(), *sorted(names.dns))
        while True:
            outcome: _Busy | _BackedOff | None = None
            with self._lock:
                done = self._finished.get(key)
                if done is not None and utcnow() < done.renew_after:
                    return done
                future = self._running.get(key)
                if future is None:
                    outcome = self._acquire(grant, style)
                    if outcome is None:
                        future = self._start(
                            key,
                            grant,
                            lambda: self._csr_order(grant, csr, names, style, source_ip, also_record),
                        )
            if future is not None:
                return self._wait(future, deadline)  # type: ignore[return-value]
            if isinstance(outcome, _BackedOff):
                raise _backed_off_error(outcome)
            if time.monotonic() >= deadline:
                raise _pending()
            time.sleep(POLL_INTERVAL)

    # -- running an order -------------------------------------------------------------------------------

    def _start(self, key: tuple[str, ...], grant: Grant, order: Callable[[], T]) -> Future[object]:
        self._held.add(grant.box_label)

        future: Future[object] = Future()

        def run() -> None:
            try:
                with self._slots:
                    result = self._run(grant, order)
                if isinstance(result, IssuedChain):
                    with self._lock:
                        self._finished[key] = result
                        while len(self._finished) > FINISHED_KEPT:
                            self._finished.popitem(last=False)
                future.set_result(result)
            except BaseException as exc:
                future.set_exception(exc)
            finally:
                with self._lock:
                    self._running.pop(key, None)
                    self._held.discard(grant.box_label)

        self._running[key] = future
        threading.Thread(target=run, name=f"lancert-order-{grant.box_label}", daemon=True).start()
        return future

    def _run(self, grant: Grant, order: Callable[[], T]) -> T:
        try:
            result = order()
        except OrderQueued:  # nothing was ordered: no failure to count, no back-off
            self._release(grant.box_label)
            raise
        except IssuanceFailed as failure:
            log.error("order for %s failed: %s (%s)", grant.hostname_pattern, failure.message, failure.reason)
            self._failed(grant.box_label, failure)
            raise
        except Exception as exc:
            log.exception("order for %s failed", grant.hostname_pattern)
            failure = IssuanceFailed(
                f"internal error while ordering ({type(exc).__name__})", reason="internal_error"
            )
            self._failed(grant.box_label, failure)
            raise failure from None
        return result

    def _compatible_order(self, grant: Grant, source_ip: str) -> CachedCredential:
        key = generate_private_key()
        issued = self.issuer.issue_server_certificate(create_csr(key, grant.names), grant.names)
        self.record(grant, issued, "compatible", source_ip, None)
        cached = compatible_cache.store(
            self.database, grant.database.uuid, grant.box_label, self.issuer.description, issued, key
        )
        self._succeeded(grant.box_label, issued)
        return cached

    def _csr_order(
        self,
        grant: Grant,
        csr: x509.CertificateSigningRequest,
        names: SubjectNames,
        style: str,
        source_ip: str,
        also_record: AlsoRecord | None,
    ) -> IssuedChain:
        issued = self.issuer.issue_server_certificate(csr, names)
        self.record(grant, issued, style, source_ip, also_record)
        self._succeeded(grant.box_label, issued)
        return issued

    def _wait(self, future: Future[object], deadline: float) -> object:
        try:
            return future.result(timeout=max(0.0, deadline - time.monotonic()))
        except FutureTimeout:
            raise _pending() from None
        except OrderQueued as queued:  # the upstream CAs' limits are spent for now: its turn comes
            raise IssuancePending(queued.message, retry_after=queued.retry_after or 1) from None
        except IssuanceFailed as failure:
            retry = failure.retry_after or 1  # _failed set it to the back-off actually applied
            raise UpstreamFailed(
                f"{failure.message}; the service tries again in {retry} s",
                reason=failure.reason,
                retry_after=retry,
            ) from None

    # -- the shared order state (one row per name) ------------------------------------------------------

    def _acquire(self, grant: Grant, style: str) -> _Busy | _BackedOff | None:
        """Take the name's order for this instance (None), or say why not."""
        for attempt in range(3):
            try:
                return self._try_acquire(grant, style)
            except IntegrityError:  # another instance inserted the row first: read it now
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _try_acquire(self, grant: Grant, style: str) -> _Busy | _BackedOff | None:
        now = utcnow()
        orders = CERTIFICATE_ORDERS
        with self.database.transaction() as connection:
            found = connection.execute(
                select(orders).where(orders.c.box_label == grant.box_label).with_for_update()
            ).first()
            row: Mapping[str, Any] = found._mapping if found is not None else {}  # none: the first order
            lease_until = row.get("lease_until")
            if row.get("owner") is not None and lease_until is not None and lease_until > now:
                return _Busy()
            window_start, failures = row.get("window_start"), row.get("failures") or 0
            last_error, retry_not_before = row.get("last_error"), row.get("retry_not_before")
            changes: dict[str, Any] = {}
            if window_start is None or now - window_start >= WINDOW:
                window_start, failures = now, 0
                changes.update(window_start=now, failures=0)
            outcome: _BackedOff | None = None
            if failures >= self.policy.failures_per_hour:
                outcome = _BackedOff(
                    window_start + WINDOW,
                    f"{failures} failed orders in the last hour "
                    f"(at most {self.policy.failures_per_hour}); "
                    f"last: {last_error or 'unknown'}",
                    "too_many_failures",
                )
            elif retry_not_before is not None and retry_not_before > now:
                outcome = _BackedOff(retry_not_before, last_error or "backing off", "backing_off")
            else:
                changes.update(
                    owner=self.instance, lease_until=now + timedelta(seconds=self.policy.lease),
                    started_at=now,
                    orders=(row.get("orders") or 0) + 1,
                    db_uuid=grant.database.uuid, style=style, issuer=self.issuer.description,
                )
            if found is None:  # a name's first order: its row, whatever the outcome
                first = {"box_label": grant.box_label, "db_uuid": grant.database.uuid, "style": style,
                         "orders": 0, "failures": 0, "consecutive_failures": 0}
                connection.execute(insert(orders).values(**{**first, **changes}))
            elif changes:
                mine = orders.c.box_label == grant.box_label
                connection.execute(update(orders).where(mine).values(**changes))
        return outcome

    def _release(self, label: str) -> None:
        orders = CERTIFICATE_ORDERS
        with self.database.transaction() as connection:
            connection.execute(
                update(orders)
                .where(orders.c.box_label == label, orders.c.owner == self.instance)
                .values(owner=None, lease_until=None, orders=orders.c.orders - 1)
            )

    def _succeeded(self, label: str, issued: IssuedChain) -> None:
        with self.database.transaction() as connection:
            connection.execute(
                update(CERTIFICATE_ORDERS)
                .where(CERTIFICATE_ORDERS.c.box_label == label)
                .values(
                    owner=None,
                    lease_until=None,
                    consecutive_failures=0,
                    retry_not_before=None,
                    serial=issued.serial_hex,
                    not_after=issued.not_after,
                    renew_after=issued.renew_after,
                    issuer=issued.issued_by or self.issuer.description,
                    skipped="\n".join(issued.skipped) or None,
                )
            )

    def _backoff(self, consecutive: int, failure: IssuanceFailed) -> timedelta:
        delay = min(timedelta(seconds=self.policy.retry_backoff * 2 ** (consecutive - 1)), MAX_BACKOFF)
        if failure.retry_after is not None:
            delay = max(delay, timedelta(seconds=failure.retry_after))
        return delay

    def _failed(self, label: str, failure: IssuanceFailed) -> None:
        now = utcnow()
        orders = CERTIFICATE_ORDERS
        with self.database.transaction() as connection:
            row = connection.execute(
                select(orders).where(orders.c.box_label == label).with_for_update()
            ).first()
            if row is None:
                return
            consecutive = (row.consecutive_failures or 0) + 1
            failures = (row.failures or 0) + 1
            until = now + self._backoff(consecutive, failure)
            if failures >= self.policy.failures_per_hour and row.window_start is not None:
                until = max(until, row.window_start + WINDOW)
            failure.retry_after = max(1, int((until - now).total_seconds()))
            changes: dict[str, Any] = {
                "consecutive_failures": consecutive, "failures": failures, "retry_not_before": until,
                "last_error": f"{failure.reason}: {failure.message}"[:2000], "last_error_at": now,
            }
            if row.owner == self.instance:
                changes.update(owner=None, lease_until=None)
            connection.execute(update(orders).where(orders.c.box_label == label).values(**changes))

    def _renew_leases(self) -> None:
        interval = max(0.2, self.policy.lease / 3)
        while not self._stop.wait(interval):
            with self._lock:
                held = list(self._held)
            if not held:
                continue
            try:
                orders = CERTIFICATE_ORDERS
                with self.database.transaction() as connection:
                    connection.execute(
                        update(orders)
                        .where(orders.c.owner == self.instance, orders.c.box_label.in_(held))
                        .values(lease_until=utcnow() + timedelta(seconds=self.policy.lease))
                    )
            except Exception:  # a database hiccup must not kill the heartbeat; the next beat retries
                log.exception("could not renew order leases")


def _pending() -> IssuancePending:
    return IssuancePending("the certificate is being ordered; ask again in a few seconds", retry_after=5)


def _backed_off_error(outcome: _BackedOff) -> UpstreamFailed:
    retry = max(1, int((outcome.until - utcnow()).total_seconds()) + 1)
    return UpstreamFailed(
        f"{outcome.message}; the service tries again in {retry} s", reason=outcome.reason, retry_after=retry
    )


@dataclass(frozen=True)
class CertificateStatus:
    """One line of ``lancert service certs``."""

    db_uuid: str
    box_label: str
    style: str
    issuer: str
    not_after: datetime | None
    renew_after: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    ordering: bool
    orders: int
    skipped: tuple[str, ...] = ()  # why earlier upstream CAs did not issue the current certificate

    def as_json(self) -> dict[str, object]:
        def iso(moment: datetime | None) -> str | None:
            return moment.isoformat() if moment is not None else None

        return {
            "db_uuid": self.db_uuid,
            "box_label": self.box_label,
            "style": self.style,
            "issuer": self.issuer,
            "not_after": iso(self.not_after),
            "renew_after": iso(self.renew_after),
            "last_error": self.last_error,
            "last_error_at": iso(self.last_error_at),
            "ordering": self.ordering,
            "orders": self.orders,
            "skipped": list(self.skipped),
        }


def certificate_statuses(database: Database) -> list[CertificateStatus]:
    """Every database/label that has a certificate or an order: the orders' state where there is one,
    else (the internal CA's native certificates, which need no order) the newest issued certificate."""
    now = utcnow()
    statuses: dict[str, CertificateStatus] = {}
    with database.reading() as connection:
        for cert in connection.execute(select(ISSUED_CERTIFICATES).order_by(ISSUED_CERTIFICATES.c.id)):
            nb, na = cert.not_before, cert.not_after
            statuses[cert.box_label] = CertificateStatus(
                cert.db_uuid,
                cert.box_label,
                cert.style,
                cert.issuer,
                na,
                nb + (na - nb) * 2 / 3,
                None,
                None,
                False,
                0,
            )
        for row in connection.execute(select(CERTIFICATE_ORDERS)):
            known = statuses.get(row.box_label)
            statuses[row.box_label] = CertificateStatus(
                row.db_uuid,
                row.box_label,
                row.style,
                row.issuer or (known.issuer if known else "?"),
                row.not_after or (known.not_after if known else None),
                row.renew_after or (known.renew_after if known else None),
                row.last_error,
                row.last_error_at,
                row.owner is not None and row.lease_until is not None and row.lease_until > now,
                row.orders or 0,
                tuple(row.skipped.splitlines()) if row.skipped else (),
            )
    return sorted(statuses.values(), key=lambda s: (s.db_uuid, s.box_label))
