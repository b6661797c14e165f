"""A fleet of databases getting public certificates through two upstream CAs, in virtual time.

The real scheduler (``lancert.service.scheduler``: the limits, the priorities, the queue, the CA health
back-off) and the real renewal spread (``lancert.service.fallback.renewal_moment``) decide; the CAs are
simulated here, each enforcing Let's Encrypt's published limits on its own, written apart from the
scheduler's accounting (a refusal counts as a limit hit, which must stay 0):

- 300 new orders per account per 3 hours; 50 new certificates per registered domain per 7 days; 5
  certificates per exact name set per 7 days. A renewal (the name set this CA issued before) is exempt
  from the first two; one inside the CA's ARI window is exempt from all.
- The first CA offers ARI with a 2-day suggested window starting at two thirds of the 90-day lifetime
  (what Let's Encrypt suggests); the renewal falls at a uniformly random moment of it, as the acme
  library picks it. The second CA has no ARI: the renewal falls where ``renewal_moment`` puts it.
- Every database is there on day 0 (a provider switching lancert on for its fleet) and has one name set
  (``*.<label>.<zone>``). With ``--psl`` the zone is on the Public Suffix List, so each box's name is
  its own registered domain; without it all share the zone's.
- The first CA is unreachable for one day from ``--outage-day`` (default 100, while both onboarding and
  renewals run).

Time jumps from event to event (a minute in which renewals fall due, a slot frees, the outage begins
or ends; at least 1 s, at most ``--step`` seconds): due renewals ask the scheduler as a box would, then
it hands out to the queue what the limits allow.

Reports: days until every database had its first certificate (or how many did by the end), the peak of
orders in any 3 hours at each CA (counted against the limit, and all), limit hits, the fewest days a
certificate had left when its renewal was issued, expiries, the estimate the scheduler gave a sample of
queued databases against when they actually got their certificate, and what the outage did.

    python bench/upstream_fleet_sim.py --databases 1000000 --days 400 --json
"""

from __future__ import annotations

import argparse
import bisect
import gc
import heapq
import itertools
import json
import math
import random
import sys
import time
from array import array
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from lancert.service.config import UpstreamLimits
from lancert.service.fallback import renewal_moment
from lancert.service.scheduler import DAY, HOUR, Budget, MemoryLedger, Priority, Request, Scheduler

LIFETIME = 90 * DAY
ARI_START = LIFETIME * 2 / 3
ARI_LENGTH = 2 * DAY
ZONE = "iot.example.net"
_random = random.random
MINUTE = 60.0  # renewals fall due on the minute (the renewal moment rounded up)
QUEUE_TOPUP = 1000  # databases waiting for their first certificate in the queue at once (> 2 x 300)


@dataclass
class SimCA:
    """One CA as the outside world sees it: it enforces its limits by itself."""

    name: str
    limits: UpstreamLimits
    ari: bool
    databases: int
    down: tuple[float, float] = (0.0, 0.0)
    limit_hits: int = 0
    orders: int = 0
    issued: int = 0
    refused_down: int = 0
    peak_counted_3h: int = 0
    peak_all_3h: int = 0
    _counted: deque[float] = field(default_factory=deque)
    _all: deque[float] = field(default_factory=deque)
    _domains: dict[str, list[float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # When this CA last issued each database's name set (-1: never) and its ARI window's start.
        self.last_issued = array("d", [-1.0]) * self.databases
        self.window_start = array("d", [-1.0]) * self.databases
        # The duplicate limit: the last ``duplicates_per_week`` counted issues of each name set, a ring
        # per database in one array (``_dup_next``: the oldest's place), so no object per name set.
        self._dup_size = self.limits.duplicates_per_week
        self._dup = array("d", [-math.inf]) * (self.databases * max(0, self._dup_size))
        self._dup_next = array("l", [0]) * self.databases

    def order(self, db: int, domain: str, now: float) -> tuple[str, float]:
        """("issued", renewal moment) or ("unreachable" | "rateLimited", 0)."""
        if self.down[0] <= now < self.down[1]:
            self.refused_down += 1
            return "unreachable", 0.0
        self.orders += 1
        renewal = self.last_issued[db] >= 0
        if not (renewal and self.ari and now >= self.window_start[db]):  # an ARI renewal counts nowhere
            week_ago = now - 7 * DAY
            size = self._dup_size
            if size <= 0:
                return self._refuse()
            slot = db * size + self._dup_next[db]
            if self._dup[slot] > week_ago:  # the oldest of the last ``size`` is still in the week
                return self._refuse()
            if not renewal:
                counted = self._counted
                since = now - 3 * HOUR
                while counted and counted[0] <= since:
                    counted.popleft()
                if len(counted) >= self.limits.new_orders_per_3h:
                    return self._refuse()
                domains = self._domains.get(domain)
                if domains and domains[0] <= week_ago:
                    del domains[: bisect.bisect_right(domains, week_ago)]
                if domains is not None and len(domains) >= self.limits.certs_per_domain_per_week:
                    return self._refuse()
                counted.append(now)
                if domains is None:
                    self._domains[domain] = [now]
                else:
                    domains.append(now)
                if len(counted) > self.peak_counted_3h:
                    self.peak_counted_3h = len(counted)
            self._dup[slot] = now
            self._dup_next[db] = (self._dup_next[db] + 1) % size
        everything = self._all
        everything.append(now)
        since = now - 3 * HOUR
        while everything[0] <= since:
            everything.popleft()
        if len(everything) > self.peak_all_3h:
            self.peak_all_3h = len(everything)
        self.issued += 1
        self.last_issued[db] = now
        if self.issued % 100_000 == 0:  # forget what left the 7-day windows (memory, at a million domains)
            self._domains = {k: v for k, v in self._domains.items() if v and v[-1] > now - 7 * DAY}
        if self.ari:
            self.window_start[db] = start = now + ARI_START
            end = now + ARI_START + ARI_LENGTH
            return "issued", start + (end - start) * _random()  # random.uniform(start, end), to the bit
        return "issued", renewal_moment(now, now + LIFETIME)

    def _refuse(self) -> tuple[str, float]:
        self.limit_hits += 1
        return "rateLimited", 0.0


def simulate(databases: int, days: int, psl: bool, outage_day: float | None, step: float, seed: int) -> dict:
    random.seed(seed)
    limits = UpstreamLimits()
    cas = [
        SimCA("first", limits, ari=True, databases=databases),
        SimCA("second", limits, ari=False, databases=databases),
    ]
    if outage_day is not None:
        cas[0].down = (outage_day * DAY, (outage_day + 1) * DAY)
    by_name = {ca.name: ca for ca in cas}
    ledger = MemoryLedger()
    scheduler = Scheduler([Budget(ca.name, limits, ledger) for ca in cas])
    not_after = array("d", [0.0]) * databases
    # Renewals due, by the minute they fall in (a calendar queue: a heap of a million (time, database)
    # pairs cost more than the scheduler itself); ``minutes`` is the heap of the minutes that have some.
    renewals: dict[int, list[int]] = {}
    minutes: list[int] = []
    onboarded = 0
    next_new = 0  # databases 0..next_new-1 have been queued for their first certificate
    onboard_done: float | None = None
    min_days_left = float("inf")
    expired = 0
    renewals_issued = 0
    outage = {"orders_to_second": 0, "renewals_waiting_max": 0, "min_days_left": float("inf")}
    samples = {p for p in (99, 999, 4999) if p < databases} | {databases * k // 5 - 1 for k in range(1, 6)}
    estimates: dict[int, float] = {}
    estimate_errors: list[float] = []

    def request(db: int, priority: Priority, previous: str | None = None, ari: bool = False) -> Request:
        domain = f"b{db}.{ZONE}" if psl else ZONE
        return Request(str(db), domain, priority, previous, ari)

    # The scheduler's estimate for sampled databases, given when they joined the queue at t=0.
    shared = None if psl else ZONE  # without the PSL entry every box counts against the zone's domain
    for db in sorted(samples):
        estimates[db] = scheduler.estimate(Priority.NO_CERTIFICATE, 0.0, db, shared)

    end = days * DAY
    now = 0.0
    issued_by = bytearray(databases)  # 0: none, 1: first, 2: second
    names = [ca.name for ca in cas]
    number = {ca.name: i + 1 for i, ca in enumerate(cas)}
    ari_of = {ca.name: ca.ari for ca in cas}
    sim_of = {budget: by_name[budget.name] for budget in scheduler.budgets}
    down_from, down_to = cas[0].down
    ask, enqueue, drain, waiting = scheduler.ask, scheduler.enqueue, scheduler.drain, scheduler.waiting
    heappop, heappush, ceil = heapq.heappop, heapq.heappush, math.ceil
    NO_CERTIFICATE, DUE = Priority.NO_CERTIFICATE, Priority.DUE
    # Request(...) of every field, without the named tuple's Python-level __new__ (a renewal makes one each)
    new_request = tuple.__new__
    while now < end:
        in_outage = outage_day is not None and down_from <= now < down_to
        # Due renewals ask as a box would (Scheduler.ask): one that takes nobody's slot (a renewal
        # the CA exempts) goes at once; any other joins the queue and waits its turn.
        due: list[tuple[str, Request, Budget]] = []
        while minutes and minutes[0] * MINUTE <= now:
            for db in renewals.pop(heappop(minutes)):
                ca = names[issued_by[db] - 1]
                key = str(db)
                req = new_request(Request, (key, f"b{db}.{ZONE}" if psl else ZONE, DUE, ca, ari_of[ca]))
                choice = ask(key, req, now)
                if choice.budget is None:
                    enqueue(key, req, now)
                else:
                    choice.budget.spend(req, now)
                    due.append((key, req, choice.budget))
        while next_new < databases and waiting() < QUEUE_TOPUP:
            enqueue(str(next_new), request(next_new, NO_CERTIFICATE), now)
            next_new += 1
        if in_outage:
            outage["renewals_waiting_max"] = max(outage["renewals_waiting_max"], waiting())
        retry: list[tuple[str, Request]] = []
        for key, req, budget in itertools.chain(due, drain(now)):
            db = int(key)
            ca = sim_of[budget]
            outcome, renew_at = ca.order(db, req.domain, now)
            if outcome != "issued":
                if outcome == "unreachable":
                    budget.down(now, "upstream_unreachable")
                retry.append((key, req))
                continue
            budget.succeeded()
            if in_outage and ca.name == "second":
                outage["orders_to_second"] += 1
            if req.priority == NO_CERTIFICATE and issued_by[db] == 0:
                onboarded += 1
                if db in estimates:
                    estimate_errors.append((now - estimates[db]) / HOUR)
                if onboarded == databases:
                    onboard_done = now
            else:
                renewals_issued += 1
                left = (not_after[db] - now) / DAY
                if left < min_days_left:
                    min_days_left = left
                if in_outage:
                    outage["min_days_left"] = min(outage["min_days_left"], left)
                if left < 0:
                    expired += 1
            issued_by[db] = number[ca.name]
            not_after[db] = now + LIFETIME
            minute = ceil(renew_at / MINUTE)
            bucket = renewals.get(minute)
            if bucket is None:
                renewals[minute] = bucket = []
                heappush(minutes, minute)
            bucket.append(db)
        for key, req in retry:
            enqueue(key, req, now)
        # The next moment anything can happen: a renewal falls due, a slot frees, the outage begins or
        # ends; at most ``step`` ahead (the queue is topped up then).
        upcoming = min(now + step, scheduler.next_slot(now))
        if minutes and minutes[0] * MINUTE < upcoming:
            upcoming = minutes[0] * MINUTE
        if outage_day is not None:
            for t in (down_from, down_to):
                if now < t < upcoming:
                    upcoming = t
        now = max(now + 1.0, upcoming)
    return {
        "databases": databases,
        "days": days,
        "public_suffix_list": psl,
        "onboarded": onboarded,
        "days_to_onboard": round(onboard_done / DAY, 1) if onboard_done is not None else None,
        "peak_orders_per_3h": {ca.name: ca.peak_counted_3h for ca in cas},
        "peak_orders_per_3h_with_exempt_renewals": {ca.name: ca.peak_all_3h for ca in cas},
        "limit_hits": sum(ca.limit_hits for ca in cas),
        "orders": {ca.name: ca.orders for ca in cas},
        "renewals_issued": renewals_issued,
        "min_days_left_at_renewal": round(min_days_left, 2) if renewals_issued else None,
        "expired_before_renewal": expired,
        "estimate_error_hours": [round(e, 2) for e in estimate_errors],
        "outage": {
            "first_ca_down_days": [outage_day, outage_day + 1] if outage_day is not None else None,
            "refused_while_down": cas[0].refused_down,
            "issued_by_second_during_outage": outage["orders_to_second"],
            "queue_max_during_outage": outage["renewals_waiting_max"],
            "min_days_left_at_renewal_during_outage": (
                round(outage["min_days_left"], 2) if outage["min_days_left"] != float("inf") else None
            ),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--databases", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=400)
    parser.add_argument("--psl", action=argparse.BooleanOptionalAction, default=True,
                        help="the zone is on the Public Suffix List (default: yes)")
    parser.add_argument("--outage-day", type=float, default=100.0, help="first CA down for one day from here")
    parser.add_argument("--no-outage", action="store_true")
    parser.add_argument("--step", type=float, default=3600.0, help="longest virtual jump, seconds")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = parser.parse_args()
    if args.databases < 1 or args.days < 1:
        parser.error("--databases and --days must be at least 1")
    # No cyclic garbage collector during the run: what the simulation keeps (arrays, dicts of lists of
    # floats, tuples, the scheduler's queue) holds no reference cycles, so reference counting frees it
    # all, but a million databases keep two million lists or so alive (the ledger's times, the simulated
    # CAs' domains, the renewal calendar) and each full collection walked every one of them: 61 full
    # collections took 17 of 80 CPU seconds of a million-database run. A batch simulation, not the
    # service: the scheduler there runs with the collector on and a queue, not a fleet, in memory.
    gc.disable()
    started = time.process_time()
    result = simulate(
        args.databases, args.days, args.psl, None if args.no_outage else args.outage_day, args.step, args.seed
    )
    result["cpu_seconds"] = round(time.process_time() - started, 1)
    if args.json:
        print(json.dumps(result))
        return
    for key, value in result.items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
