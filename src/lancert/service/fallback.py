"""Several upstream CAs in order (``--acme-directory`` repeated, or ``[[upstream]]`` tables): one
:class:`~lancert.service.issuer.Issuer` that orders from the first CA that is up and within its limits,
and from the next one when that CA is down, fails validation or rate-limits, as Caddy's and Traefik's
issuer fallback does. The box gets whichever chain came back.

The order desk (:mod:`lancert.service.orders`) calls it like any issuer; it asks the scheduler
(:mod:`lancert.service.scheduler`) for a CA. When no CA has a slot the order is not placed at all:
:class:`OrderQueued` carries the request's place in the queue and the time its slot is expected, which
the desk answers as "pending" (not a failure: nothing was spent, nothing backs off).

Why an earlier CA was skipped travels with the chain (``IssuedChain.skipped``) into ``lancert service
certs``. Each CA's counters are in SQL (:class:`SqlLedger`), shared by every instance; a CA's health
(down until) is each instance's own observation.
"""

from __future__ import annotations

import hashlib
import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime

from cryptography import x509
from sqlalchemy import delete, insert, select

from lancert.pki import SubjectNames
from lancert.service.config import UpstreamLimits
from lancert.service.database import Database
from lancert.service.issuer import IssuanceFailed, IssuedChain, Issuer, OrderQueued
from lancert.service.models import UPSTREAM_CERTIFICATES, UPSTREAM_SPEND, put
from lancert.service.scheduler import WINDOWS, Budget, Priority, Request, Scheduler

log = logging.getLogger("lancert.service.fallback")

# Reasons (IssuanceFailed.reason) that say the CA itself is unusable now, not this name: skip the CA.
CA_DOWN = {
    "upstream_unreachable",
    "upstream_timeout",
    "upstream_error",
    "serverInternal",
    "rateLimited",
    "externalAccountRequired",
    "unauthorized",
    "accountDoesNotExist",
    "badNonce",
}
# Reasons that are this name's trouble at that CA (the next CA may well validate it).
NAME_FAILED = {"validation_failed", "no_dns01", "dns", "caa", "connection", "rejectedIdentifier"}
# Without ARI: a renewal falls at a random point of the first quarter of the last third of the lifetime
# (two thirds to three quarters in), so a cohort issued on one day renews over days, not in one hour,
# and a quarter of the lifetime is left for retries.
SPREAD = (2 / 3, 3 / 4)


class SqlLedger:
    """The scheduler's :class:`~lancert.service.scheduler.Ledger` in the service's database."""

    PRUNE_EVERY = 200

    def __init__(self, database: Database) -> None:
        self.database = database
        self._adds = 0

    def times(self, ca: str, counter: str, key: str, since: float) -> list[float]:
        spend = UPSTREAM_SPEND.c
        with self.database.reading() as connection:
            return list(
                connection.execute(
                    select(spend.at)
                    .where(spend.ca == ca, spend.counter == counter, spend.key == key, spend.at > since)
                    .order_by(spend.at)
                ).scalars()
            )

    def add(self, ca: str, counter: str, key: str, at: float) -> None:
        with self.database.transaction() as connection:
            connection.execute(insert(UPSTREAM_SPEND).values(ca=ca, counter=counter, key=key, at=at))
            self._adds += 1
            if self._adds % self.PRUNE_EVERY == 1:
                oldest = at - max(WINDOWS.values())
                connection.execute(delete(UPSTREAM_SPEND).where(UPSTREAM_SPEND.c.at < oldest))


def names_key(names: SubjectNames) -> str:
    """The exact name set, as the CA's duplicate limit counts it (order and case do not matter)."""
    joined = ",".join(sorted(n.lower() for n in names.dns) + sorted(str(ip) for ip in names.ips))
    return hashlib.sha256(joined.encode()).hexdigest()


def registered_domain(names: SubjectNames, zone: str, on_public_suffix_list: bool) -> str:
    """The registered domain the CA counts certificates against: the zone's own (every box shares it)
    unless the zone is on the Public Suffix List, where ``<label>.<zone>`` is a domain of its own."""
    name = names.dns[0].lower().removeprefix("*.") if names.dns else zone
    if on_public_suffix_list and name.endswith("." + zone):
        return name[: -len(zone) - 1].rsplit(".", 1)[-1] + "." + zone
    return zone


def renewal_moment(not_before: float, not_after: float, rng: random.Random | None = None) -> float:
    """When a certificate without ARI advice renews (Unix seconds): a uniformly random moment of
    :data:`SPREAD` of its lifetime, so a cohort issued the same hour does not come back the same hour.
    (With ARI, the acme library already picks a uniformly random moment of the suggested window, as
    RFC 9773 section 4.2 asks.) The fleet simulator calls this very function."""
    lifetime = not_after - not_before
    return not_before + lifetime * (rng or random).uniform(*SPREAD)


class UpstreamChoice:
    """An :class:`~lancert.service.issuer.Issuer` over several upstream ACME issuers, tried in order."""

    name = "acme"
    needs_csr_names = True
    places_orders = True

    def __init__(
        self,
        database: Database,
        issuers: Sequence[Issuer],
        limits: Sequence[UpstreamLimits],
        *,
        zone: str,
        on_public_suffix_list: bool = False,
        clock: Callable[[], float] = time.time,
        down_backoff: float = 60.0,
        observe: Callable[[str, str, float], None] | None = None,
    ) -> None:
        self.database = database
        self.issuers = {i.description: i for i in issuers}
        self.order = [i.description for i in issuers]
        ledger = SqlLedger(database)
        budgets = [
            Budget(i.description, lim, ledger, down_backoff) for i, lim in zip(issuers, limits, strict=True)
        ]
        self.scheduler = Scheduler(budgets)
        self.zone = zone
        self.on_public_suffix_list = on_public_suffix_list
        self.clock = clock
        # Called with (CA, outcome, seconds) after every upstream order: the metrics' hook.
        self.observe = observe
        joined = ", ".join(self.order)
        if len(issuers) == 1:
            self.description = self.order[0]
        elif len(joined) <= 255:
            self.description = joined
        else:  # the column is 255 long; a hash keeps different lists apart
            self.description = joined[:230] + " #" + hashlib.sha256(joined.encode()).hexdigest()[:16]

    @property
    def caa_identities(self) -> tuple[str, ...] | None:
        """Every configured CA's CAA identities (the apex names them all, so any may issue); None while
        one CA's directory has not been read: the zone's CAA then stays as an earlier start stored it."""
        identities: list[str] = []
        for issuer in self.issuers.values():
            known = getattr(issuer, "caa_identities", ())
            if known is None:
                return None
            identities += [i for i in known if i not in identities]
        return tuple(identities)

    def check_account(self) -> None:
        """Register at every CA now; a CA that cannot be reached or refuses is named (the others serve)."""
        failures = []
        for description, issuer in self.issuers.items():
            check = getattr(issuer, "check_account", None)
            if check is None:
                continue
            try:
                check()
            except IssuanceFailed as failure:
                alone = len(self.issuers) == 1
                failures.append(failure.message if alone else f"{description}: {failure.message}")
            except Exception as exc:  # whatever one CA answers, the others still serve
                failures.append(f"{description}: {type(exc).__name__}: {exc}")
        if failures:
            raise IssuanceFailed("; ".join(failures), reason="upstream_unreachable")

    def root_certificates(self) -> list[x509.Certificate]:
        return []

    # -- issuing ------------------------------------------------------------------------------------------

    def request_for(self, names: SubjectNames, now: float) -> tuple[str, Request]:
        key = names_key(names)
        with self.database.reading() as connection:
            last = connection.execute(
                select(UPSTREAM_CERTIFICATES).where(UPSTREAM_CERTIFICATES.c.names_key == key)
            ).first()
        domain = registered_domain(names, self.zone, self.on_public_suffix_list)
        if last is None or last.not_after <= now:
            priority = Priority.NO_CERTIFICATE
        elif now >= last.window_start:
            priority = Priority.DUE
        else:
            priority = Priority.EARLY
        previous = last.ca if last is not None else None
        ari = bool(last is not None and last.ari and now >= last.window_start)
        return key, Request(key, domain, priority, previous_ca=previous, ari=ari)

    def issue_server_certificate(
        self, csr: x509.CertificateSigningRequest, names: SubjectNames
    ) -> IssuedChain:
        now = self.clock()
        key, request = self.request_for(names, now)
        choice = self.scheduler.ask(key, request, now)
        if choice.budget is None:
            wait = choice.estimate - now
            retry = int(min(max(1, math.ceil(wait)), 7 * 86400)) if math.isfinite(wait) else 3600
            why = "; ".join(f"{ca}: {reason}" for ca, reason in choice.skipped.items()) or "others ahead"
            raise OrderQueued(
                f"waiting for an upstream CA ({why}); {choice.position} ahead in the queue, "
                f"expected in {retry} s",
                retry_after=retry,
                position=choice.position,
            )
        skipped = dict(choice.skipped)
        failures: list[IssuanceFailed] = []
        budget: Budget | None = choice.budget
        while budget is not None:
            budget.spend(request, now)
            started = time.monotonic()
            try:
                issued = self.issuers[budget.name].issue_server_certificate(csr, names)
            except IssuanceFailed as failure:
                self._observe(budget.name, failure.reason, started)
                if failure.reason == "csr_names":
                    self.scheduler.admitted(key)
                    raise
                failures.append(failure)
                skipped[budget.name] = f"{failure.reason}: {failure.message}"
                now = self.clock()
                if failure.reason in NAME_FAILED:
                    budget.validation_failed(request, now)
                else:
                    budget.down(now, failure.reason, failure.retry_after)
                log.warning("upstream %s did not issue (%s); trying the next CA", budget.name, failure.reason)
                nxt = self.scheduler.choose(request, now, exclude=frozenset(skipped))
                for ca, reason in nxt.skipped.items():
                    skipped.setdefault(ca, reason)
                budget = nxt.budget
                continue
            self._observe(budget.name, "issued", started)
            budget.succeeded()
            self.scheduler.admitted(key)
            return self._issued(issued, key, budget.name, skipped)
        self.scheduler.admitted(key)
        first = failures[0] if failures else IssuanceFailed("no CA could issue", reason="upstream_error")
        if len(self.issuers) == 1:
            raise first
        retry_afters = [f.retry_after for f in failures if f.retry_after is not None]
        raise IssuanceFailed(
            "no upstream CA issued: " + "; ".join(f"{ca}: {why}" for ca, why in skipped.items()),
            reason=first.reason,
            retry_after=min(retry_afters) if retry_afters else None,
        )

    def _observe(self, ca: str, outcome: str, started: float) -> None:
        if self.observe is not None:
            self.observe(ca, outcome, time.monotonic() - started)

    def _issued(self, issued: IssuedChain, key: str, ca: str, skipped: dict[str, str]) -> IssuedChain:
        """The chain as the desk records it: who issued it, why earlier CAs did not, and its renewal
        moment, spread: the CA's ARI answer, else :func:`renewal_moment`."""
        ari = issued.renew_at is not None
        nb, na = issued.not_before.timestamp(), issued.not_after.timestamp()
        renew_at = issued.renew_at or datetime.fromtimestamp(renewal_moment(nb, na), UTC)
        row = {"ca": ca, "not_after": issued.not_after.timestamp(), "ari": ari,
               "window_start": renew_at.timestamp(), "window_end": na if ari else nb + (na - nb) * SPREAD[1]}
        with self.database.transaction() as connection:
            put(connection, UPSTREAM_CERTIFICATES, {"names_key": key}, row)
        return replace(
            issued,
            renew_at=renew_at,
            issued_by=ca,
            skipped=tuple(f"{c}: {why}" for c, why in skipped.items()),
        )
