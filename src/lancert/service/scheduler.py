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
a :class:`Ledger`: SQL in the service (shared by every instance, :class:`lancert.service.fallback.SqlLedger`),
memory in the simulator.

What each step costs (a million databases go through it in the fleet simulator; the service asks it for
every box that wants a certificate): a check reads at most four counters; a renewal the CA exempts reads
none and never queues. The queue is one FIFO per kind (deques, a request taken out in the middle is
dropped lazily) with a Fenwick tree per kind over the tickets, so a request's place (how many ahead of
it want the same slots) is counted in O(log n), not by walking the queue. An estimate is computed, not
enumerated: a CA's slots free periodically (each slot, taken as soon as it frees, frees again one window
later), so the n-th moment a slot frees is ``first[n % allowed] + (n // allowed) * window`` and how many
free by a time is one bisection; the n-th of several CAs together is a binary search over those counts.
"""
from __future__ import annotations

import itertools
import math
from bisect import bisect_right, insort
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import NamedTuple, Protocol

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
    """A :class:`Ledger` in this process (the simulator, tests): per CA and counter, a dict of key to a
    sorted list of times, pruned as read and swept of stale keys every so often, so a million names cost
    only those spent in the last week. A list (about 120 bytes holding one time) rather than a deque
    (about 650 bytes even empty): at a million databases the deques were most of the simulator's memory."""

    SWEEP_EVERY = 200_000

    def __init__(self) -> None:
        self._tables: dict[tuple[str, str], dict[str, list[float]]] = {}
        self._adds = 0

    def _entries(self, ca: str, counter: str, key: str, since: float) -> list[float] | None:
        table = self._tables.get((ca, counter))
        if table is None:
            return None
        entries = table.get(key)
        if entries and entries[0] <= since:
            del entries[: bisect_right(entries, since)]
        return entries

    def times(self, ca: str, counter: str, key: str, since: float) -> Sequence[float]:
        return self._entries(ca, counter, key, since) or ()  # the list itself: no copy per question

    def count(self, ca: str, counter: str, key: str, since: float) -> int:
        return len(self._entries(ca, counter, key, since) or ())

    def add(self, ca: str, counter: str, key: str, at: float) -> None:
        table = self._tables.get((ca, counter))
        if table is None:
            table = self._tables[(ca, counter)] = {}
        entries = table.get(key)
        if entries is None:
            table[key] = [at]
        elif not entries or entries[-1] <= at:
            entries.append(at)
        else:
            insort(entries, at)  # oldest first, even after a clock stepped back
        self._adds += 1
        if self._adds % self.SWEEP_EVERY == 0:
            longest = max(WINDOWS.values())
            for where, table in list(self._tables.items()):
                since = at - WINDOWS.get(where[1], longest)
                self._tables[where] = {k: v for k, v in table.items() if v and v[-1] > since}


class Request(NamedTuple):
    """One certificate wanted: ``names_key`` identifies the exact name set, ``domain`` its registered
    domain; ``previous_ca``: the CA that issued this name set last (at that CA it is a renewal); ``ari``:
    that CA's renewal window (ARI) asked for it now. (A named tuple: the fleet simulator makes millions.)"""

    names_key: str
    domain: str
    priority: Priority
    previous_ca: str | None = None
    ari: bool = False


class Verdict(NamedTuple):
    """A CA's answer to a request: ``ok``, or the time (``at``, seconds) a slot frees, and why not. (A
    named tuple rather than a frozen dataclass: as immutable, and several times cheaper to make, which
    counts where every queued request is checked against every CA at every turn.)"""

    ok: bool
    at: float
    reason: str = ""
    counter: str = ""  # what blocks it: a counter's name, or "down"


_OK = Verdict(True, 0.0)

# A counter as a budget checks it: (name, whose, window, allowed per priority, the refusal's text).
_Counter = tuple[str, int, float, tuple[int, ...], str]

# Whose count a counter keeps: the exact name set's, the account's (one key, ""), the registered domain's.
_NAMES, _ACCOUNT, _DOMAIN = 0, 1, 2


class _Cycle:
    """When a CA's slots of one counter free, assuming each is taken as soon as it frees (what the
    scheduler does with a queue): slot ``j`` first at ``first[j]`` (sorted, within one window of each
    other), then every ``window`` after that."""

    __slots__ = ("first", "size", "window")

    def __init__(self, first: list[float], window: float) -> None:
        self.first = first
        self.size = len(first)
        self.window = window

    def nth(self, n: int) -> float:
        """The n-th (from 0) moment a slot frees."""
        q, r = divmod(n, self.size)
        return self.first[r] + q * self.window

    def count(self, until: float) -> int:
        """How many moments are at or before ``until`` (consistent with :meth:`nth` to the last bit)."""
        first, window, size = self.first, self.window, self.size
        if until < first[0]:
            return 0
        q = int((until - first[0]) // window)
        while q > 0 and first[0] + q * window > until:
            q -= 1
        while first[0] + (q + 1) * window <= until:
            q += 1
        base = q * window
        j = bisect_right(first, until - base)
        while j > 0 and first[j - 1] + base > until:
            j -= 1
        while j < size and first[j] + base <= until:
            j += 1
        return q * size + j


class _Both:
    """A slot that needs one of each of two counters (a new order and one of the domain's certificates):
    the n-th comes when both have freed their n-th."""

    __slots__ = ("a", "b")

    def __init__(self, a: _Cycle, b: _Cycle) -> None:
        self.a, self.b = a, b

    def nth(self, n: int) -> float:
        return max(self.a.nth(n), self.b.nth(n))

    def count(self, until: float) -> int:
        return min(self.a.count(until), self.b.count(until))


def _kth(streams: Sequence[_Cycle | _Both], k: int) -> float:
    """The k-th (from 0) earliest moment of all ``streams`` together (what merging them would give)."""
    if not streams:
        return math.inf
    if len(streams) == 1:
        return streams[0].nth(k)
    need = k + 1
    best = math.inf
    for stream in streams:
        # The first of this stream's moments by which at least k + 1 moments (of all) have come.
        lo, hi = 0, k
        while lo < hi:
            mid = (lo + hi) // 2
            at = stream.nth(mid)
            if sum(s.count(at) for s in streams) >= need:
                hi = mid
            else:
                lo = mid + 1
        best = min(best, stream.nth(lo))
    return best


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
        count = getattr(ledger, "count", None)
        if count is None:
            def count(ca: str, counter: str, key: str, since: float) -> int:
                return len(ledger.times(ca, counter, key, since))
        self._count = count

    @property
    def limits(self) -> UpstreamLimits:
        return self._limits

    @limits.setter
    def limits(self, limits: UpstreamLimits) -> None:
        self._limits = limits
        self._ari_exempt = limits.ari_renewals_exempt
        self._renewals_exempt = limits.renewals_exempt

        def counter(name: str, limit: int, whose: int) -> _Counter:
            allowed = tuple(self._allowed(name, limit, priority) for priority in Priority)
            return name, whose, WINDOWS[name], allowed, _limit_text(name, limit)

        # (counter, whose, window, allowed per priority, the refusal's text), in the order they are
        # checked; the text is made once here, not at every refusal
        self._own_counters = (
            counter("names", limits.duplicates_per_week, _NAMES),
            counter("authfail", limits.auth_failures_per_hour, _NAMES),
        )
        self._all_counters = (
            *self._own_counters,
            counter("orders", limits.new_orders_per_3h, _ACCOUNT),
            counter("domain", limits.certs_per_domain_per_week, _DOMAIN),
        )

    # -- limits -------------------------------------------------------------------------------------------

    def exempt(self, request: Request) -> bool:
        """A renewal inside this CA's own ARI window, where the CA exempts those from every limit."""
        return request.ari and request.previous_ca == self.name and self._ari_exempt

    def _counters_of(self, request: Request) -> tuple[_Counter, ...]:
        """The counters this request spends (see ``_own_counters``)."""
        if request.previous_ca == self.name:  # a renewal at this CA
            if request.ari and self._ari_exempt:
                return ()
            if self._renewals_exempt:
                return self._own_counters
        return self._all_counters

    def _allowed(self, counter: str, limit: int, priority: Priority) -> int:
        if counter in ("orders", "domain"):
            return limit - math.ceil(limit * RESERVE[priority]) if priority else limit
        return limit

    def check(self, request: Request, now: float, *, healthy_only: bool = True) -> Verdict:
        """Within the limits now? Else when the first slot this request may use frees.
        ``healthy_only=False``: a CA found down still counts (the last resort when none is up)."""
        if healthy_only and now < self.down_until:
            return Verdict(False, self.down_until, self.down_reason, "down")
        counters = self._counters_of(request)
        if not counters:  # the fleet's most common case: a renewal the CA exempts, no counter to read
            return _OK
        count, name, priority = self._count, self.name, request.priority
        worst = _OK
        for counter, whose, window, allowed_by, text in counters:
            key = request.names_key if whose == _NAMES else "" if whose == _ACCOUNT else request.domain
            allowed = allowed_by[priority]
            since = now - window
            if count(name, counter, key, since) < allowed:
                continue
            if allowed <= 0:
                return Verdict(False, math.inf, f"{counter} limit is 0", counter)
            times = self.ledger.times(name, counter, key, since)
            frees = times[len(times) - allowed] + window
            if not worst.ok and worst.at >= frees:
                continue
            worst = Verdict(False, frees, text, counter)
        return worst

    def competes_kind(self, previous_ca: str | None, ari: bool) -> bool:
        """Whether requests of this kind spend the CA's shared new-order budget."""
        return not (previous_ca == self.name and (self._renewals_exempt or (ari and self._ari_exempt)))

    def competes(self, request: Request) -> bool:
        """Whether this request spends the CA's shared new-order budget (else only its own counters)."""
        return self.competes_kind(request.previous_ca, request.ari)

    def spend(self, request: Request, now: float) -> None:
        for counter, whose, _window, _allowed, _text in self._counters_of(request):
            if counter != "authfail":
                key = request.names_key if whose == _NAMES else "" if whose == _ACCOUNT else request.domain
                self.ledger.add(self.name, counter, key, now)

    # -- outcomes -----------------------------------------------------------------------------------------

    def succeeded(self) -> None:
        self._down_streak = 0
        self.down_until, self.down_reason = 0.0, ""

    def validation_failed(self, request: Request, now: float) -> None:
        """The CA could not validate this name: its authorization-failure counter, not the CA's health."""
        if not (request.previous_ca == self.name and request.ari and self._ari_exempt):
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

    def slots(self, priority: Priority, now: float, domain: str | None = None) -> _Cycle | _Both | None:
        """When this CA's new-order slots free for ``priority``, assuming every slot is taken as soon as
        it frees (what the scheduler does with a queue), as ``nth``/``count``. With ``domain`` (a
        registered domain that the requests ahead share, a zone not on the PSL) each slot also needs one of
        that domain's certificates. None if a limit is 0 (no slot ever)."""
        orders = self._cycle("orders", "", self._limits.new_orders_per_3h, priority, now)
        if domain is None or orders is None:
            return orders
        certificates = self._cycle("domain", domain, self._limits.certs_per_domain_per_week, priority, now)
        return None if certificates is None else _Both(orders, certificates)

    def free_slots(self, priority: Priority, now: float, domain: str | None = None) -> Iterator[float]:
        """The moments of :meth:`slots`, earliest first. Endless, unless a limit is 0."""
        slots = self.slots(priority, now, domain)
        if slots is not None:
            for n in itertools.count():
                yield slots.nth(n)

    def _cycle(self, counter: str, key: str, limit: int, priority: Priority, now: float) -> _Cycle | None:
        window = WINDOWS[counter]
        allowed = self._allowed(counter, limit, priority)
        if allowed <= 0:
            return None
        start = max(now, self.down_until)
        spent = self.ledger.times(self.name, counter, key, now - window)
        # Those free now are taken at ``start``; each of the ``allowed`` most recent spends frees one
        # window after it was spent (not before ``start``); each slot then frees again a window later.
        recent = list(itertools.islice(spent, max(0, len(spent) - allowed), None))
        return _Cycle([start] * (allowed - len(recent)) + [max(start, at + window) for at in recent], window)


def _limit_text(counter: str, limit: int) -> str:
    return {
        "orders": f"new-orders limit reached ({limit} per 3 h)",
        "domain": f"certificates-per-domain limit reached ({limit} per 7 days)",
        "names": f"duplicate-certificate limit reached ({limit} per name set per 7 days)",
        "authfail": f"authorization-failure limit reached ({limit} per name per hour)",
    }[counter]


@dataclass(slots=True)
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


class _Waiting:
    __slots__ = ("key", "kind", "request", "seen", "seq")

    def __init__(self, seq: int, key: str, request: Request, seen: float = 0.0) -> None:
        self.seq = seq  # its ticket: first come, first served within a priority
        self.key = key  # "" once out of the queue (dropped from its FIFO lazily)
        self.request = request
        self.seen = seen
        self.kind: Kind = (int(request.priority), request.previous_ca, request.ari)

    def before(self, other: _Waiting) -> bool:
        return (self.request.priority, self.seq) < (other.request.priority, other.seq)


class _Tickets:
    """The waiting requests of one kind by ticket, as a Fenwick tree: how many hold a ticket below a
    given one, in O(log n)."""

    __slots__ = ("tree",)

    def __init__(self, size: int) -> None:
        self.tree = [0] * (size + 1)

    def add(self, seq: int, delta: int) -> None:
        tree = self.tree
        i, n = seq + 1, len(tree)
        while i < n:
            tree[i] += delta
            i += i & -i

    def below(self, seq: int) -> int:
        tree = self.tree
        total = 0
        while seq > 0:
            total += tree[seq]
            seq &= seq - 1
        return total


class Scheduler:
    """The CAs in order of preference, and the requests waiting for a slot: first in, first out within
    a priority, one queue per kind (priority, previous CA, ARI) so that a kind the CAs refuse on a shared
    budget waits as a whole while another kind (a renewal the CA exempts) still goes."""

    MIN_TICKETS = 1024  # tickets are renumbered (the waiting ones from 0) when they run out

    def __init__(self, budgets: list[Budget]) -> None:
        self.budgets = budgets
        self._waiting: dict[str, _Waiting] = {}
        self._asked: dict[str, _Waiting] = {}  # those a requester must ask about again (may go stale)
        self._queues: dict[Kind, deque[_Waiting]] = {}
        self._tickets: dict[Kind, _Tickets] = {}
        self._live: dict[Kind, int] = {}  # waiting requests per kind
        self._domains: dict[str, int] = {}  # waiting requests per registered domain
        self._next_seq = 0
        self._capacity = self.MIN_TICKETS
        self._swept = -math.inf

    def choose(self, request: Request, now: float, exclude: frozenset[str] = frozenset()) -> Choice:
        """The first CA, in order, that is up and within its limits for this request."""
        skipped: dict[str, str] = {}
        soonest = math.inf
        shared = domain = True
        for budget in self.budgets:
            if exclude and budget.name in exclude:
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

    def _drop(self, entry: _Waiting) -> None:
        """Out of the counts (the caller takes it out of ``_waiting``; its FIFO drops it lazily)."""
        entry.key = ""
        kind = entry.kind
        self._tickets[kind].add(entry.seq, -1)
        self._live[kind] -= 1
        domain = entry.request.domain
        left = self._domains[domain] - 1
        if left:
            self._domains[domain] = left
        else:
            del self._domains[domain]

    def _renumber(self) -> None:
        """Tickets from 0 again for those waiting, in their order; room for as many more again."""
        waiting = sorted(self._waiting.values(), key=lambda w: w.seq)
        for seq, entry in enumerate(waiting):
            entry.seq = seq
        self._next_seq = len(waiting)
        self._capacity = max(self.MIN_TICKETS, 2 * len(waiting))
        for queue in self._queues.values():
            live = [w for w in queue if w.key]
            queue.clear()
            queue.extend(live)
        self._tickets = {kind: _Tickets(self._capacity) for kind in self._queues}
        for entry in waiting:
            self._tickets[entry.kind].add(entry.seq, 1)

    def _add(self, key: str, request: Request, seen: float) -> _Waiting:
        old = self._waiting.pop(key, None)
        if old is not None:
            self._drop(old)
        if self._next_seq >= self._capacity:
            self._renumber()
        entry = _Waiting(self._next_seq, key, request, seen)
        self._next_seq += 1
        self._waiting[key] = entry
        if math.isfinite(seen):
            self._asked[key] = entry
        else:
            self._asked.pop(key, None)
        kind = entry.kind
        queue = self._queues.get(kind)
        if queue is None:
            queue = self._queues[kind] = deque()
            self._tickets[kind] = _Tickets(self._capacity)
            self._live[kind] = 0
        queue.append(entry)
        self._tickets[kind].add(entry.seq, 1)
        self._live[kind] += 1
        self._domains[request.domain] = self._domains.get(request.domain, 0) + 1
        return entry

    def _ahead(self, entry: _Waiting, budget: Budget) -> int:
        """How many waiting before ``entry`` want the same shared slots at ``budget`` (a renewal the CA
        exempts takes none of theirs)."""
        priority = entry.kind[0]
        ahead = 0
        for kind, live in self._live.items():
            if not live or kind[0] > priority or not budget.competes_kind(kind[1], kind[2]):
                continue
            ahead += live if kind[0] < priority else self._tickets[kind].below(entry.seq)
        return ahead

    def _shared_domain(self, entry: _Waiting, budget: Budget, ahead: int) -> str | None:
        """The registered domain of ``entry`` if one of the ``ahead`` shares it (a zone not on the PSL)."""
        domain = entry.request.domain
        others = self._domains.get(domain, 0) - 1
        if not ahead or others <= 0:
            return None
        if others == len(self._waiting) - 1:  # every waiting request shares it, those ahead too
            return domain
        for w in self._waiting.values():  # boxes of several registered domains: look
            if w is not entry and w.request.domain == domain and w.before(entry):
                if budget.competes(w.request):
                    return domain
        return None

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
        ahead = self._ahead(entry, first) if first.competes(request) else 0
        # Those ahead of the same registered domain (a zone not on the PSL) share its certificates too.
        domain = self._shared_domain(entry, first, ahead)
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
            self._drop(entry)

    def waiting(self) -> int:
        return len(self._waiting)

    def _streams(self, priority: Priority, now: float, domain: str | None) -> list[_Cycle | _Both]:
        return [s for s in (b.slots(priority, now, domain) for b in self.budgets) if s is not None]

    def estimate(self, priority: Priority, now: float, ahead: int, domain: str | None = None) -> float:
        """When the request behind ``ahead`` others gets a new-order slot at one of the CAs (``domain``:
        a registered domain all of them share, see :meth:`Budget.slots`)."""
        return _kth(self._streams(priority, now, domain), ahead)

    def _slots_before(
        self, priority: Priority, now: float, until: float, most: int, domain: str | None = None
    ) -> int:
        return min(most, sum(s.count(until) for s in self._streams(priority, now, domain)))

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
            self._queues[kind].popleft()
            request = best.request
            if full and (kind, request.domain) in full:
                deferred.setdefault(kind, []).append(best)
                continue
            choice = self.choose(request, now)
            if choice.budget is None:
                deferred.setdefault(kind, []).append(best)
                if choice.shared_block:
                    blocked.add(kind)
                elif choice.domain_block:
                    if self._domains.get(request.domain) == len(self._waiting):
                        blocked.add(kind)  # every one waiting shares that domain (a zone not on the PSL)
                    else:
                        full.add((kind, request.domain))
                continue
            key = best.key
            del self._waiting[key]
            self._asked.pop(key, None)
            self._drop(best)
            choice.budget.spend(request, now)
            yield key, request, choice.budget
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
