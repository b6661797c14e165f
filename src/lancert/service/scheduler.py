"""The upstream scheduler: spends each CA's published limits without ever exceeding them, and decides
who goes first when they run short.

Let's Encrypt publishes its limits (:class:`~lancert.service.config.UpstreamLimits` has them as
defaults): at 300 new orders per account per 3 hours a million databases take over a year to onboard,
so the provider has to queue, and must never spend the budget on an order the CA would refuse. Every
limit is counted here as a sliding window (at most N in any window of its length), stricter than the
token buckets Let's Encrypt actually runs: a sliding window that never overflows never empties a bucket
of the same size either.

Counters, per CA (a CA's "account" is the one lancert account there):

- ``orders``: every new order, unless it is a renewal (the exact name set issued before) and the CA
  exempts renewals;
- ``domain``: certificates per registered domain (the zone's, or ``<label>.<zone>`` once the zone is on
  the Public Suffix List), with the same exemption;
- ``names``: certificates per exact name set (the duplicate limit);
- ``authfail``: failed validations per name set.

A renewal inside the CA's ARI window is exempt from all of them where the CA says so (Let's Encrypt).
Spending is counted when the order starts, not when it succeeds: several orders in flight at once must
not each see the same last free slot, and a failed order may have cost the CA a slot too.

Priorities (:class:`Priority`): a box with no valid certificate comes first; a renewal inside its window
next; an early renewal last. A lower priority may not use the last ``reserve`` share of a shared
counter (orders, domain), so a new box is never queued behind renewals that could have waited.

Everything takes ``now`` as seconds (a Unix time in the service, virtual time in the fleet simulator,
``bench/upstream_fleet_sim.py``, which runs this very module against a simulated CA); the counts live in
a :class:`Ledger`: SQL in the service (shared by every instance, :mod:`lancert.service.budget`), memory
in the simulator.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Protocol

from lancert.service.config import UpstreamLimits

HOUR = 3600.0
DAY = 86400.0
WINDOWS = {"orders": 3 * HOUR, "domain": 7 * DAY, "names": 7 * DAY, "authfail": HOUR}
# Share of a shared counter that only a higher priority may use (none for a box without a certificate).
RESERVE = {0: 0.0, 1: 0.1, 2: 0.5}
# How long a CA found down is skipped: doubled per consecutive failure, capped.
DOWN_FIRST = 60.0
DOWN_MAX = HOUR
# A waiting request no box asked about for this long is forgotten (the box gave up or went away).
WAITING_TTL = 15 * 60.0


class Priority(IntEnum):
    NO_CERTIFICATE = 0  # a box with nothing valid to serve
    DUE = 1  # a renewal inside its window (ARI's, or the last third of the lifetime)
    EARLY = 2  # a renewal before its window


class Ledger(Protocol):
    """Where the counters live: timestamps of what was spent, per CA, counter and key."""

    def times(self, ca: str, counter: str, key: str, since: float) -> Sequence[float]:
        """The timestamps after ``since`` (the window's start, which is no longer in it), oldest first
        (read only)."""
        ...

    def add(self, ca: str, counter: str, key: str, at: float) -> None: ...


class MemoryLedger:
    """A :class:`Ledger` in this process (the simulator, tests): a deque per counter, pruned as read and
    swept of stale keys every so often, so a million names cost only those spent in the last week."""

    SWEEP_EVERY = 200_000

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str, str], deque[float]] = {}
        self._adds = 0

    def times(self, ca: str, counter: str, key: str, since: float) -> Sequence[float]:
        entries = self._entries.get((ca, counter, key))
        if not entries:
            return ()
        while entries and entries[0] <= since:
            entries.popleft()
        return entries  # the deque itself: no copy of up to a window's worth per question

    def count(self, ca: str, counter: str, key: str, since: float) -> int:
        entries = self._entries.get((ca, counter, key))
        if not entries:
            return 0
        while entries and entries[0] <= since:
            entries.popleft()
        return len(entries)

    def add(self, ca: str, counter: str, key: str, at: float) -> None:
        self._entries.setdefault((ca, counter, key), deque()).append(at)
        self._adds += 1
        if self._adds % self.SWEEP_EVERY == 0:
            longest = max(WINDOWS.values())
            self._entries = {k: v for k, v in self._entries.items() if v and v[-1] > at - longest}


@dataclass(frozen=True)
class Request:
    """One certificate wanted: ``names_key`` identifies the exact name set, ``domain`` its registered
    domain; ``previous_ca``: the CA that issued this name set last (at that CA it is a renewal); ``ari``:
    that CA's renewal window (ARI) asked for it now."""

    names_key: str
    domain: str
    priority: Priority
    previous_ca: str | None = None
    ari: bool = False


@dataclass(frozen=True)
class Verdict:
    """A CA's answer to a request: ``ok``, or the time (``at``, seconds) a slot frees, and why not."""

    ok: bool
    at: float
    reason: str = ""
    counter: str = ""  # what blocks it: a counter's name, or "down"


_OK = Verdict(True, 0.0)


class Budget:
    """One CA's limits and health."""

    def __init__(
        self, name: str, limits: UpstreamLimits, ledger: Ledger, down_first: float = DOWN_FIRST
    ) -> None:
        self.name = name
        self.down_first = down_first
        self.limits = limits
        self.ledger = ledger
        # Health: a CA found down (or answering rateLimited) is passed over while another can serve.
        # With none up, the first within its limits is tried all the same: a rateLimited answer may
        # concern one name or domain only, and the order desk honours its Retry-After for that name.
        self.down_until = 0.0
        self.down_reason = ""
        self._down_streak = 0
        self._count = getattr(ledger, "count", None)

    # -- limits -------------------------------------------------------------------------------------------

    def exempt(self, request: Request) -> bool:
        """A renewal inside this CA's own ARI window, where the CA exempts those from every limit."""
        return request.ari and request.previous_ca == self.name and self.limits.ari_renewals_exempt

    def _counters(self, request: Request) -> list[tuple[str, str, int]]:
        """(counter, key, limit) that this request spends."""
        limits = self.limits
        renewal = request.previous_ca == self.name
        if renewal and request.ari and limits.ari_renewals_exempt:
            return []
        counters = [
            ("names", request.names_key, limits.duplicates_per_week),
            ("authfail", request.names_key, limits.auth_failures_per_hour),
        ]
        if not (renewal and limits.renewals_exempt):
            counters.append(("orders", "", limits.new_orders_per_3h))
            counters.append(("domain", request.domain, limits.certs_per_domain_per_week))
        return counters

    def _allowed(self, counter: str, limit: int, priority: Priority) -> int:
        if counter in ("orders", "domain"):
            return limit - math.ceil(limit * RESERVE[priority]) if priority else limit
        return limit

    def check(self, request: Request, now: float, *, healthy_only: bool = True) -> Verdict:
        """Within the limits now? Else when the first slot this request may use frees.
        ``healthy_only=False``: a CA found down still counts (the last resort when none is up)."""
        if healthy_only and now < self.down_until:
            return Verdict(False, self.down_until, self.down_reason, "down")
        if self.exempt(request):  # the fleet's most common case: no counter to read
            return _OK
        counters = self._counters(request)
        worst = Verdict(True, now)
        for counter, key, limit in counters:
            window = WINDOWS[counter]
            allowed = self._allowed(counter, limit, request.priority)
            since = now - window
            if self._count is not None:
                count = self._count(self.name, counter, key, since)
            else:
                count = len(self.ledger.times(self.name, counter, key, since))
            if count < allowed:
                continue
            if allowed <= 0:
                return Verdict(False, math.inf, f"{counter} limit is 0", counter)
            times = self.ledger.times(self.name, counter, key, since)
            frees = times[len(times) - allowed] + window
            if not worst.ok and worst.at >= frees:
                continue
            worst = Verdict(False, frees, _limit_text(counter, limit), counter)
        return worst

    def competes(self, request: Request) -> bool:
        """Whether this request spends the CA's shared new-order budget (else only its own counters)."""
        if self.exempt(request):
            return False
        return any(counter == "orders" for counter, _key, _limit in self._counters(request))

    def spend(self, request: Request, now: float) -> None:
        if self.exempt(request):
            return
        for counter, key, _limit in self._counters(request):
            if counter != "authfail":
                self.ledger.add(self.name, counter, key, now)

    # -- outcomes -----------------------------------------------------------------------------------------

    def succeeded(self) -> None:
        self._down_streak = 0
        self.down_until, self.down_reason = 0.0, ""


    def validation_failed(self, request: Request, now: float) -> None:
        """The CA could not validate this name: its authorization-failure counter, not the CA's health."""
        if not (request.previous_ca == self.name and request.ari and self.limits.ari_renewals_exempt):
            self.ledger.add(self.name, "authfail", request.names_key, now)

    def down(self, now: float, reason: str, retry_after: float | None = None) -> None:
        """Unreachable, timing out, answering 5xx or rateLimited: skipped until its Retry-After, else
        for a back-off doubled per consecutive failure (1 min to 1 h)."""
        self._down_streak += 1
        delay = min(self.down_first * 2 ** (self._down_streak - 1), DOWN_MAX)
        if retry_after is not None:
            delay = max(delay, float(retry_after))
        self.down_until = max(self.down_until, now + delay)
        self.down_reason = reason

    def free_slots(self, priority: Priority, now: float, domain: str | None = None) -> Iterator[float]:
        """When this CA's new-order slots free for ``priority``, earliest first, assuming every slot is
        taken as soon as it frees (what the scheduler does with a queue). With ``domain`` (a registered
        domain that the requests ahead share, a zone not on the PSL) each slot also needs one of that
        domain's certificates. Endless, unless a limit is 0."""
        orders = self._slots("orders", "", self.limits.new_orders_per_3h, priority, now)
        if domain is None:
            yield from orders
            return
        certificates = self._slots("domain", domain, self.limits.certs_per_domain_per_week, priority, now)
        for at_orders, at_domain in zip(orders, certificates, strict=False):
            yield max(at_orders, at_domain)

    def _slots(self, counter: str, key: str, limit: int, priority: Priority, now: float) -> Iterator[float]:
        window = WINDOWS[counter]
        allowed = self._allowed(counter, limit, priority)
        if allowed <= 0:
            return
        start = max(now, self.down_until)
        spent = list(self.ledger.times(self.name, counter, key, now - window))
        free_now = max(0, allowed - len(spent))
        for _ in range(free_now):
            yield start
        # Each slot frees one window after it was spent, then again one window later, and so on: the
        # ``allowed`` most recent spends (those free now being taken at ``start``) repeat every window.
        cycle = sorted(spent[len(spent) - min(len(spent), allowed) :] + [start] * free_now)
        k = 1
        while True:
            for at in cycle:
                yield max(start, at + window * k)
            k += 1


def _limit_text(counter: str, limit: int) -> str:
    return {
        "orders": f"new-orders limit reached ({limit} per 3 h)",
        "domain": f"certificates-per-domain limit reached ({limit} per 7 days)",
        "names": f"duplicate-certificate limit reached ({limit} per name set per 7 days)",
        "authfail": f"authorization-failure limit reached ({limit} per name per hour)",
    }[counter]


@dataclass
class Choice:
    """The scheduler's answer: the CA to order from (``budget``), or none and when to ask again
    (``estimate``, seconds) with each CA's reason (``skipped``: CA name → why not)."""

    budget: Budget | None
    estimate: float
    skipped: dict[str, str] = field(default_factory=dict)
    position: int = 0
    shared_block: bool = False  # every CA refused on a budget all such requests share (orders, down)
    domain_block: bool = False  # every CA refused on the registered domain's certificates


Kind = tuple[int, str | None, bool]  # (priority, previous CA, ARI): requests the CAs count alike


@dataclass
class _Waiting:
    seq: int
    key: str
    request: Request
    seen: float = 0.0
    kind: Kind = (0, None, False)

    def __post_init__(self) -> None:
        self.kind = (int(self.request.priority), self.request.previous_ca, self.request.ari)

    def before(self, other: _Waiting) -> bool:
        return (self.request.priority, self.seq) < (other.request.priority, other.seq)


class Scheduler:
    """The CAs in order of preference, and the requests waiting for a slot: first in, first out within
    a priority, one queue per kind (priority, previous CA, ARI) so that a kind the CAs refuse on a shared
    budget waits as a whole while another kind (a renewal the CA exempts) still goes."""

    def __init__(self, budgets: list[Budget]) -> None:
        self.budgets = budgets
        self._waiting: dict[str, _Waiting] = {}
        self._asked: dict[str, _Waiting] = {}  # those a requester must ask about again (may go stale)
        self._queues: dict[Kind, deque[_Waiting]] = {}
        self._seq = itertools.count()
        self._swept = -math.inf

    def choose(self, request: Request, now: float, exclude: frozenset[str] = frozenset()) -> Choice:
        """The first CA, in order, that is up and within its limits for this request."""
        skipped: dict[str, str] = {}
        soonest = math.inf
        shared = domain = True
        for budget in self.budgets:
            if budget.name in exclude:
                continue
            verdict = budget.check(request, now)
            if verdict.ok:
                return Choice(budget, now, skipped)
            skipped[budget.name] = verdict.reason
            soonest = min(soonest, verdict.at)
            shared = shared and verdict.counter in ("orders", "down")
            domain = domain and verdict.counter in ("orders", "down", "domain")
        # One CA alone has nothing to fall back to: found down, it is tried all the same while within
        # its limits (the order desk's per-name back-off paces that). Several: the next is tried once
        # the back-off of one found down has passed.
        if len(self.budgets) == 1 and not exclude:
            if self.budgets[0].check(request, now, healthy_only=False).ok:
                return Choice(self.budgets[0], now, skipped)
        return Choice(None, soonest, skipped, shared_block=shared, domain_block=domain and not shared)

    # -- the queue ----------------------------------------------------------------------------------------

    def _add(self, key: str, request: Request, seen: float) -> _Waiting:
        old = self._waiting.get(key)
        if old is not None:
            old.key = ""  # dropped from its queue lazily
        entry = _Waiting(next(self._seq), key, request, seen)
        self._waiting[key] = entry
        if math.isfinite(seen):
            self._asked[key] = entry
        else:
            self._asked.pop(key, None)
        self._queues.setdefault(entry.kind, deque()).append(entry)
        return entry

    def ask(self, key: str, request: Request, now: float) -> Choice:
        """A request asked about (again): a CA for it now if one has a slot that nobody ahead of it in
        the queue needs (the request is then out of the queue), else its place in the queue and a
        truthful estimate of when it gets its turn."""
        choice = self.choose(request, now)
        if choice.budget is not None and not choice.budget.competes(request):
            if key in self._waiting:  # takes nobody's slot (a renewal the CA exempts): no queue at all
                self.admitted(key)
            return choice
        entry = self._waiting.get(key)
        if entry is None or entry.request != request:
            entry = self._add(key, request, now)
        entry.seen = now
        self._forget_stale(now)
        # Those ahead that want the same shared slots: a renewal the CA exempts takes none of theirs.
        first = choice.budget or self.budgets[0]
        before = []
        if first.competes(request):
            before = [
                w for w in self._waiting.values()
                if w is not entry and w.before(entry) and first.competes(w.request)
            ]
        ahead = len(before)
        # Those ahead of the same registered domain (a zone not on the PSL) share its certificates too.
        domain = request.domain if any(w.request.domain == request.domain for w in before) else None
        if choice.budget is not None and ahead:
            # Free slots go to those ahead first: take one only if there are more than they need.
            spare = self._slots_before(request.priority, now, now, ahead + 1, domain)
            if spare <= ahead:
                choice = Choice(None, self.estimate(request.priority, now, ahead, domain), {})
        if choice.budget is not None:
            self.admitted(key)  # its turn: out of the queue (the caller orders it now)
            return choice
        choice.position = ahead
        choice.estimate = max(choice.estimate, self.estimate(request.priority, now, ahead, domain))
        return choice

    def admitted(self, key: str) -> None:
        """The request got its order (or is no longer wanted): out of the queue."""
        entry = self._waiting.pop(key, None)
        self._asked.pop(key, None)
        if entry is not None:
            entry.key = ""

    def waiting(self) -> int:
        return len(self._waiting)

    def estimate(self, priority: Priority, now: float, ahead: int, domain: str | None = None) -> float:
        """When the request behind ``ahead`` others gets a new-order slot at one of the CAs (``domain``:
        a registered domain all of them share, see :meth:`Budget.free_slots`)."""
        merged = heapq.merge(*(b.free_slots(priority, now, domain) for b in self.budgets))
        for at in itertools.islice(merged, ahead, ahead + 1):
            return at
        return math.inf

    def _slots_before(
        self, priority: Priority, now: float, until: float, most: int, domain: str | None = None
    ) -> int:
        merged = heapq.merge(*(b.free_slots(priority, now, domain) for b in self.budgets))
        return sum(1 for at in itertools.islice(merged, most) if at <= until)

    def _forget_stale(self, now: float) -> None:
        if now - self._swept < 60.0:
            return
        self._swept = now
        for key in [k for k, w in self._asked.items() if now - w.seen > WAITING_TTL]:
            self.admitted(key)

    # -- the fleet view (the simulator; a background renewer) ------------------------------------------------

    def enqueue(self, key: str, request: Request, now: float) -> None:
        """A request that waits without a box asking (a renewal the service runs itself)."""
        self._add(key, request, math.inf)  # never stale: nobody has to ask again

    def _head(self, queue: deque[_Waiting]) -> _Waiting | None:
        while queue and not queue[0].key:
            queue.popleft()
        return queue[0] if queue else None

    def drain(self, now: float) -> Iterator[tuple[str, Request, Budget]]:
        """Hand out slots in priority order while a CA has one: each yielded request is out of the queue
        and its budget spent (the caller orders it). A request that cannot go waits; once one is refused
        on a budget that all requests of its kind share (the new orders, a CA down), the rest of that kind
        waits unasked, while others (a renewal the CA exempts) still go."""
        deferred: dict[Kind, list[_Waiting]] = {}
        blocked: set[Kind] = set()
        # Of a kind, those of a registered domain found full (every box of a zone not on the PSL).
        full: set[tuple[Kind, str]] = set()
        while True:
            best: _Waiting | None = None
            for kind, queue in self._queues.items():
                if kind in blocked:
                    continue
                head = self._head(queue)
                if head is not None and (best is None or head.before(best)):
                    best = head
            if best is None:
                break
            kind = best.kind
            queue = self._queues[kind]
            queue.popleft()
            if (kind, best.request.domain) in full:
                deferred.setdefault(kind, []).append(best)
                continue
            choice = self.choose(best.request, now)
            if choice.budget is None:
                deferred.setdefault(kind, []).append(best)
                if choice.shared_block:
                    blocked.add(kind)
                elif choice.domain_block:
                    full.add((kind, best.request.domain))
                continue
            del self._waiting[best.key]
            self._asked.pop(best.key, None)
            key, best.key = best.key, ""
            choice.budget.spend(best.request, now)
            yield key, best.request, choice.budget
        for kind, entries in deferred.items():
            self._queues[kind].extendleft(reversed(entries))

    def next_slot(self, now: float) -> float:
        """When the first waiting request could go (inf with an empty queue)."""
        soonest = math.inf
        for queue in self._queues.values():
            head = self._head(queue)
            if head is not None:
                soonest = min(soonest, self.choose(head.request, now).estimate)
        return soonest
