"""The upstream scheduler and the renewal spread (issue 23 points 2 and 3), in virtual time, in process.

The limits are Let's Encrypt's published ones (letsencrypt.org/docs/rate-limits, 2025), written here as
numbers: 300 new orders per account per 3 hours; 50 new certificates per registered domain per 7 days;
5 certificates per exact name set per 7 days; 5 authorization failures per name per hour; a renewal of
the same name set exempt from the first two, one inside the CA's ARI window exempt from all.
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from lancert.errors import UsageError
from lancert.pki import SubjectNames
from lancert.service.config import ServiceConfig, UpstreamLimits, load_config
from lancert.service.fallback import registered_domain, renewal_moment
from lancert.service.scheduler import Budget, MemoryLedger, Priority, Request, Scheduler

HOUR = 3600.0
DAY = 86400.0
ZONE = "iot.example.net"


def _scheduler(*names: str, limits: UpstreamLimits | None = None) -> Scheduler:
    ledger = MemoryLedger()
    return Scheduler([Budget(n, limits or UpstreamLimits(), ledger) for n in names])


def _new(i: int, domain: str | None = None) -> Request:
    return Request(f"n{i}", domain or f"b{i}.{ZONE}", Priority.NO_CERTIFICATE)


def _run(scheduler: Scheduler, until: float, step: float = 60.0) -> list[tuple[float, str, str]]:
    """Drain the queue every ``step`` virtual seconds: (time, key, CA) of every order handed out."""
    handed: list[tuple[float, str, str]] = []
    now = 0.0
    while now <= until:
        handed += [(now, key, budget.name) for key, _r, budget in scheduler.drain(now)]
        now += step
    return handed


def _most_in_any_window(times: list[float], window: float) -> int:
    times = sorted(times)
    most, start = 0, 0
    for end, at in enumerate(times):
        while times[start] <= at - window:
            start += 1
        most = max(most, end - start + 1)
    return most


def test_defaults_are_lets_encrypts_published_limits() -> None:
    limits = UpstreamLimits()
    assert limits.new_orders_per_3h == 300
    assert limits.certs_per_domain_per_week == 50
    assert limits.duplicates_per_week == 5
    assert limits.auth_failures_per_hour == 5
    assert limits.renewals_exempt and limits.ari_renewals_exempt


def test_never_more_than_300_new_orders_in_any_3_hours_and_every_slot_is_used() -> None:
    scheduler = _scheduler("first")
    for i in range(1000):
        scheduler.enqueue(f"n{i}", _new(i), 0.0)
    handed = _run(scheduler, until=10 * HOUR)
    assert _most_in_any_window([t for t, _k, _c in handed], 3 * HOUR) == 300
    # 300 at once, 300 more when the first 300 leave the window, and so on: all 1000 within 9 h.
    assert len(handed) == 1000 and max(t for t, _k, _c in handed) == 9 * HOUR
    assert [k for _t, k, _c in handed] == [f"n{i}" for i in range(1000)]  # first come, first served


def test_the_second_ca_takes_what_the_first_cannot() -> None:
    scheduler = _scheduler("first", "second")
    for i in range(700):
        scheduler.enqueue(f"n{i}", _new(i), 0.0)
    handed = _run(scheduler, until=0.0)
    assert Counter(c for _t, _k, c in handed) == {"first": 300, "second": 300}


def test_50_certificates_per_registered_domain_per_week_without_the_psl_entry() -> None:
    scheduler = _scheduler("first")
    names = lambda i: SubjectNames.parse(dns=[f"*.b{i}.{ZONE}"])  # noqa: E731
    assert registered_domain(names(1), ZONE, False) == registered_domain(names(2), ZONE, False)
    assert registered_domain(names(1), ZONE, True) != registered_domain(names(2), ZONE, True)
    for i in range(120):
        scheduler.enqueue(f"n{i}", _new(i, registered_domain(names(i), ZONE, False)), 0.0)
    handed = _run(scheduler, until=15 * DAY, step=HOUR)
    times = [t for t, _k, _c in handed]
    assert _most_in_any_window(times, 7 * DAY) == 50
    assert len([t for t in times if t < 7 * DAY]) == 50


def test_duplicate_limit_5_per_name_set_per_week_even_for_renewals() -> None:
    scheduler = _scheduler("first")
    budget = scheduler.budgets[0]
    renewal = Request("same", f"b1.{ZONE}", Priority.EARLY, previous_ca="first")
    went = 0
    for _ in range(8):
        choice = scheduler.choose(renewal, 0.0)
        if choice.budget is not None:
            budget.spend(renewal, 0.0)
            went += 1
    assert went == 5
    refused = scheduler.choose(renewal, 0.0)
    assert refused.budget is None and "duplicate" in refused.skipped["first"]
    assert refused.estimate == 7 * DAY


def test_5_authorization_failures_per_name_per_hour() -> None:
    scheduler = _scheduler("first")
    budget = scheduler.budgets[0]
    request = _new(1)
    for _ in range(5):
        assert scheduler.choose(request, 0.0).budget is budget
        budget.validation_failed(request, 0.0)
    refused = scheduler.choose(request, 0.0)
    assert refused.budget is None and "authorization-failure" in refused.skipped["first"]
    assert scheduler.choose(request, HOUR).budget is budget
    assert scheduler.choose(_new(2), 0.0).budget is budget  # another name is not affected


def test_renewals_are_exempt_from_new_orders_and_ari_renewals_from_everything() -> None:
    scheduler = _scheduler("first")
    budget = scheduler.budgets[0]
    for i in range(300):
        budget.spend(_new(i), 0.0)
    assert scheduler.choose(_new(999), 0.0).budget is None  # the 300 new orders are spent
    renewal = Request("n1", f"b1.{ZONE}", Priority.DUE, previous_ca="first")
    assert scheduler.choose(renewal, 0.0).budget is budget
    # At another CA it is a first certificate: not exempt there.
    elsewhere = Request("n1", f"b1.{ZONE}", Priority.DUE, previous_ca="second")
    assert scheduler.choose(elsewhere, 0.0).budget is None
    ari = Request("n2", f"b2.{ZONE}", Priority.DUE, previous_ca="first", ari=True)
    for _ in range(20):  # not even the duplicate limit counts it
        assert scheduler.choose(ari, 0.0).budget is budget
        budget.spend(ari, 0.0)


def test_a_box_without_a_certificate_goes_before_renewals_and_due_before_early() -> None:
    limits = UpstreamLimits(new_orders_per_3h=10, renewals_exempt=False)  # a CA that exempts nothing
    scheduler = _scheduler("first", limits=limits)
    for i in range(6):
        scheduler.enqueue(f"early{i}", Request(f"e{i}", f"e{i}", Priority.EARLY, previous_ca="first"), 0.0)
    for i in range(6):
        scheduler.enqueue(f"due{i}", Request(f"d{i}", f"d{i}", Priority.DUE, previous_ca="first"), 0.0)
    for i in range(6):
        scheduler.enqueue(f"new{i}", _new(i), 0.0)
    first_round = [key for key, _r, _b in scheduler.drain(0.0)]
    # 6 new first, then due renewals, which may not use the last tenth of the budget (1 of 10): 3.
    assert first_round == [f"new{i}" for i in range(6)] + ["due0", "due1", "due2"]
    second_round = [key for key, _r, _b in scheduler.drain(3 * HOUR)]
    # Early renewals may use only half the budget: after the 3 remaining due ones, 2 early.
    assert second_round == ["due3", "due4", "due5", "early0", "early1"]


def test_queued_requests_get_a_truthful_estimate() -> None:
    # Two CAs granting 10 new orders per 3 h each (the raised-limit setting, here lowered).
    scheduler = _scheduler("first", "second", limits=UpstreamLimits(new_orders_per_3h=10))
    keys = [f"n{i}" for i in range(70)]
    estimates = {}
    for i, key in enumerate(keys):
        choice = scheduler.ask(key, _new(i), 0.0)
        if choice.budget is not None:
            choice.budget.spend(_new(i), 0.0)
            scheduler.admitted(key)
            estimates[key] = 0.0
        else:
            assert choice.position == i - 20
            estimates[key] = choice.estimate
    # 20 go now (10 at each CA); the 21st waits 3 h, the 41st 6 h, the 61st 9 h.
    assert [estimates[keys[i]] for i in (0, 19, 20, 39, 40, 60, 69)] == [
        0.0, 0.0, 3 * HOUR, 3 * HOUR, 6 * HOUR, 9 * HOUR, 9 * HOUR
    ]
    # Every waiting box asks again each minute (in a shuffled order): each gets its slot exactly then.
    waiting = [key for key in keys if estimates[key] > 0]
    actual: dict[str, float] = {}
    rng = random.Random(3)
    now = 0.0
    while len(actual) < len(waiting):
        now += 60.0
        for key in rng.sample(waiting, len(waiting)):
            if key in actual:
                continue
            choice = scheduler.ask(key, _new(int(key[1:])), now)
            if choice.budget is not None:
                choice.budget.spend(_new(int(key[1:])), now)
                scheduler.admitted(key)
                actual[key] = now
    assert all(actual[key] == estimates[key] for key in waiting)
    assert sorted(waiting, key=lambda k: (actual[k], int(k[1:]))) == waiting  # in their turn


def test_the_estimate_counts_the_shared_domain_without_the_psl_entry() -> None:
    scheduler = _scheduler("first")
    estimates = []
    for i in range(120):
        request = _new(i, ZONE)  # every box counts against the zone's registered domain
        choice = scheduler.ask(f"n{i}", request, 0.0)
        if choice.budget is not None:
            choice.budget.spend(request, 0.0)
            scheduler.admitted(f"n{i}")
        estimates.append(choice.estimate)
    # 50 certificates per registered domain per 7 days: the 51st waits a week, the 101st two.
    assert estimates[49] == 0.0 and estimates[50] == 7 * DAY and estimates[100] == 14 * DAY


def test_a_ca_found_down_is_passed_over_and_alone_it_is_still_tried() -> None:
    scheduler = _scheduler("first", "second")
    first, second = scheduler.budgets
    first.down(0.0, "upstream_unreachable")
    assert scheduler.choose(_new(1), 1.0).budget is second
    assert scheduler.choose(_new(1), 61.0).budget is first  # 60 s later it is tried again
    alone = _scheduler("only")
    alone.budgets[0].down(0.0, "upstream_unreachable")
    assert alone.choose(_new(1), 1.0).budget is alone.budgets[0]


def test_renewals_of_a_cohort_spread_over_days_not_one_hour() -> None:
    rng = random.Random(7)
    issued = 0.0
    moments = [renewal_moment(issued, issued + 90 * DAY, rng) for _ in range(10_000)]
    # Inside the last third of the lifetime, leaving at least a quarter for retries ...
    assert min(moments) >= 60 * DAY and max(moments) <= 67.5 * DAY
    # ... and no hour holds more than 2% of the cohort (a herd in one hour would be 100%).
    per_hour = Counter(int(m // HOUR) for m in moments)
    assert max(per_hour.values()) <= 200 and len(per_hour) > 170


def test_upstream_tables_and_repeated_directories(tmp_path: Path) -> None:
    config_file = tmp_path / "service.toml"
    config_file.write_text(
        'acme_contact = "ops@example.net"\n'
        '[[upstream]]\ndirectory = "https://one.example/dir"\n'
        '[[upstream]]\ndirectory = "https://two.example/dir"\neab_kid = "kid-2"\n'
        'eab_hmac_file = "/etc/lancert/two"\nca_bundle = "/etc/lancert/two.pem"\nnew_orders_per_3h = 3000\n'
    )
    config = load_config(config_file)
    one, two = config.upstreams()
    assert (one.directory, two.directory) == ("https://one.example/dir", "https://two.example/dir")
    assert two.eab_kid == "kid-2" and two.limits.new_orders_per_3h == 3000  # a raised limit
    assert one.limits == UpstreamLimits() and one.contact == "ops@example.net"
    # The command line chooses and orders; a table of the same directory keeps its settings, and
    # --acme-ca-bundle applies to every CA without a bundle of its own.
    cli = config.with_options(
        acme_directory=["https://two.example/dir", "https://three.example/dir"],
        acme_ca_bundle="/tmp/bundle.pem",
    )
    first, second = cli.upstreams()
    assert first.eab_kid == "kid-2" and str(first.ca_bundle) == "/etc/lancert/two.pem"
    assert second.directory == "https://three.example/dir" and str(second.ca_bundle) == "/tmp/bundle.pem"
    with pytest.raises(UsageError, match="acme-eab-kid"):
        ServiceConfig().with_options(
            acme_directory=["https://a.example/d", "https://b.example/d"], acme_eab_kid="k"
        ).upstreams()
    config_file.write_text('[[upstream]]\ndirectory = "http://plain.example/dir"\n')
    with pytest.raises(UsageError, match="https"):
        load_config(config_file)
    config_file.write_text('[[upstream]]\ndirectory = "https://x.example/dir"\nnew_orders = 5\n')
    with pytest.raises(UsageError, match="new_orders"):
        load_config(config_file)
