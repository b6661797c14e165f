"""``/metrics`` of the service, in Prometheus' text format (prometheus-client).

What an operator scrapes: certificates issued and refused, by front (``native``, ``compatible``,
``acme``) and reason; upstream orders by CA and outcome, with their latency; the queue of requests
waiting for an upstream slot; DNS answers by rcode (summed over the DNS worker processes); rate-limit
answers from upstream CAs; days until the soonest expiry of a certificate in use.

Labels hold only what ``lancert service certs`` already shows an operator: fronts, reasons (short
machine words the service itself chose, or an upstream CA's ACME problem type), CA directory URLs and
rcodes. Never an enterprise code, a key, a database UUID or a box label: a label per database would
also make the scrape grow with the fleet. A reason that is not a plain word is counted as ``other``.

The counters are process-wide (one service per process; in-process tests share them, so they compare
before and after); what is read at scrape time (expiry, queue, DNS) comes from the collectors each
service registers on its own :class:`MetricsEndpoint`.

Why the counters are plain integers under a lock and prometheus-client is imported by the first scrape:
every service counts, few are scraped, and the library's import with its metric objects is ~1.3 MiB of
the serving process (issue 21: the memory a small box can spare). prometheus-client still writes the
whole exposition (families built at scrape time), so the text format is the library's, not ours.
"""

from __future__ import annotations

import re
import threading
from bisect import bisect_left
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import func, select

from lancert.service.database import Database
from lancert.service.models import ISSUED_CERTIFICATES

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric

_WORD = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,47}")
FRONTS = ("native", "compatible", "acme")
UPSTREAM_BUCKETS = (0.5, 1, 2, 3, 5, 8, 13, 20, 30, 60, 90, 120)

_lock = threading.Lock()  # the ACME server's upstream orders count from worker threads
_issued: dict[str, int] = {}
_refused: dict[tuple[str, str], int] = {}
_upstream_orders: dict[tuple[str, str], int] = {}
# Per CA: a count per bucket (not cumulative; the last one is +Inf) and the sum of the seconds.
_upstream_seconds: dict[str, tuple[list[int], list[float]]] = {}
_rate_limited: dict[str, int] = {}


def word(value: object) -> str:
    """A label value the operator can read and that cannot grow without bound: a plain word or ``other``."""
    return value if isinstance(value, str) and _WORD.fullmatch(value) else "other"


def front_of(path: str) -> str:
    """The front a request path belongs to."""
    if path.startswith("/odoo-enterprise/"):
        return "compatible"
    if path.startswith("/acme"):
        return "acme"
    return "native"


def issued(front: str) -> None:
    label = front if front in FRONTS else "other"
    with _lock:
        _issued[label] = _issued.get(label, 0) + 1


def refused(front: str, reason: str) -> None:
    key = (front if front in FRONTS else "other", word(reason))
    with _lock:
        _refused[key] = _refused.get(key, 0) + 1


def upstream_order(ca: str, outcome: str, seconds: float) -> None:
    """The hook of :class:`lancert.service.fallback.UpstreamChoice`: one per order placed."""
    key = (ca, word(outcome))
    with _lock:
        _upstream_orders[key] = _upstream_orders.get(key, 0) + 1
        counts, total = _upstream_seconds.setdefault(ca, ([0] * (len(UPSTREAM_BUCKETS) + 1), [0.0]))
        counts[bisect_left(UPSTREAM_BUCKETS, seconds)] += 1  # le: a value on a bound is in its bucket
        total[0] += seconds
        if outcome == "rateLimited":
            _rate_limited[ca] = _rate_limited.get(ca, 0) + 1


def _counters() -> Iterator[Metric]:
    """The process-wide counters as metric families, copied under the lock."""
    from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
    from prometheus_client.utils import floatToGoString

    with _lock:
        issued_now = dict(_issued)
        refused_now = dict(_refused)
        orders_now = dict(_upstream_orders)
        seconds_now = {ca: (list(counts), total[0]) for ca, (counts, total) in _upstream_seconds.items()}
        limited_now = dict(_rate_limited)
    families = (
        ("lancert_certificates_issued", "Certificates issued, by front.", ["front"],
         {(front,): n for front, n in issued_now.items()}),
        ("lancert_certificates_refused",
         "Certificate requests refused, by front and reason (the error code, or the upstream reason).",
         ["front", "reason"], refused_now),
        ("lancert_upstream_orders",
         "Orders placed with an upstream CA, by CA (directory URL) and outcome (issued, or the reason).",
         ["ca", "outcome"], orders_now),
        ("lancert_upstream_rate_limited",
         "rateLimited answers from an upstream CA (the scheduler aims at 0).", ["ca"],
         {(ca,): n for ca, n in limited_now.items()}),
    )
    for name, documentation, labels, values in families:
        family = CounterMetricFamily(name, documentation, labels=labels)
        for key, count in sorted(values.items()):
            family.add_metric(list(key), float(count))
        yield family
    seconds = HistogramMetricFamily(
        "lancert_upstream_order_seconds", "How long an upstream order took, by CA.", labels=["ca"]
    )
    bounds = [floatToGoString(b) for b in UPSTREAM_BUCKETS] + ["+Inf"]
    for ca, (counts, total) in sorted(seconds_now.items()):
        cumulative, buckets = 0, []
        for bound, count in zip(bounds, counts, strict=True):
            cumulative += count
            buckets.append((bound, float(cumulative)))
        seconds.add_metric([ca], buckets, sum_value=total)
    yield seconds


class _ScrapeTime:
    """Values read when Prometheus scrapes: the counters, the soonest expiry, the queue, DNS rcodes."""

    def __init__(
        self,
        database: Database,
        queue_length: Callable[[], int] | None,
        dns_rcodes: Callable[[], dict[int, int]] | None,
    ) -> None:
        self.database = database
        self.queue_length = queue_length
        self.dns_rcodes = dns_rcodes

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        yield from _counters()
        soonest = GaugeMetricFamily(
            "lancert_certificate_soonest_expiry_days",
            "Days until the soonest expiry among the newest certificate of each box label still valid.",
        )
        days = self._soonest_expiry_days()
        if days is not None:
            soonest.add_metric([], days)
        yield soonest
        queue = GaugeMetricFamily(
            "lancert_upstream_queue_length", "Requests waiting for a slot at an upstream CA."
        )
        queue.add_metric([], float(self.queue_length() if self.queue_length else 0))
        yield queue
        if self.dns_rcodes is not None:
            answers = CounterMetricFamily(
                "lancert_dns_queries",
                "DNS queries answered, by the answer's rcode (all DNS workers).",
                labels=["rcode"],
            )
            for rcode, count in sorted(self.dns_rcodes().items()):
                answers.add_metric([_rcode_name(rcode)], float(count))
            yield answers

    def _soonest_expiry_days(self) -> float | None:
        now = datetime.now(UTC)
        newest = (
            select(func.max(ISSUED_CERTIFICATES.c.not_after).label("not_after"))
            .group_by(ISSUED_CERTIFICATES.c.box_label)
            .subquery()
        )
        with self.database.reading() as connection:
            rows = [r for r in connection.execute(select(newest.c.not_after)).scalars() if r is not None]
        valid = [(r if r.tzinfo else r.replace(tzinfo=UTC)) for r in rows]
        valid = [r for r in valid if r > now]
        if not valid:
            return None
        return round((min(valid) - now).total_seconds() / 86400, 3)


def _rcode_name(rcode: int) -> str:
    import dns.rcode

    try:
        return dns.rcode.to_text(dns.rcode.Rcode(rcode))
    except ValueError:
        return str(rcode)


class MetricsEndpoint:
    """One service's ``/metrics``: the process-wide counters and its own scrape-time values."""

    def __init__(
        self,
        database: Database,
        queue_length: Callable[[], int] | None = None,
        dns_rcodes: Callable[[], dict[int, int]] | None = None,
    ) -> None:
        self.collector = _ScrapeTime(database, queue_length, dns_rcodes)
        self._registry: CollectorRegistry | None = None

    def set_dns(self, dns_rcodes: Callable[[], dict[int, int]]) -> None:
        self.collector.dns_rcodes = dns_rcodes

    def render(self) -> bytes:
        from prometheus_client import CollectorRegistry, generate_latest

        if self._registry is None:
            self._registry = CollectorRegistry(auto_describe=False)
            self._registry.register(self.collector)  # type: ignore[arg-type]
        return generate_latest(self._registry)
