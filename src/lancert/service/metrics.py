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
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from lancert.service.database import Database
from lancert.service.models import IssuedCertificate

REGISTRY = CollectorRegistry(auto_describe=True)
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,47}")
FRONTS = ("native", "compatible", "acme")

ISSUED = Counter(
    "lancert_certificates_issued", "Certificates issued, by front.", ["front"], registry=REGISTRY
)
REFUSED = Counter(
    "lancert_certificates_refused",
    "Certificate requests refused, by front and reason (the error code, or the upstream reason).",
    ["front", "reason"],
    registry=REGISTRY,
)
UPSTREAM_ORDERS = Counter(
    "lancert_upstream_orders",
    "Orders placed with an upstream CA, by CA (directory URL) and outcome (issued, or the reason).",
    ["ca", "outcome"],
    registry=REGISTRY,
)
UPSTREAM_SECONDS = Histogram(
    "lancert_upstream_order_seconds",
    "How long an upstream order took, by CA.",
    ["ca"],
    buckets=(0.5, 1, 2, 3, 5, 8, 13, 20, 30, 60, 90, 120),
    registry=REGISTRY,
)
RATE_LIMITED = Counter(
    "lancert_upstream_rate_limited",
    "rateLimited answers from an upstream CA (the scheduler aims at 0).",
    ["ca"],
    registry=REGISTRY,
)


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


# The issued counter's child per front, looked up on its first certificate only: ``labels()`` takes a
# lock and builds a key on every call (3 us), and every certificate counts itself here. Made on first
# use, so a front appears in the scrape once it issued, as before. Nothing clears these counters.
_ISSUED_BY_FRONT: dict[str, Any] = {}


def issued(front: str) -> None:
    child = _ISSUED_BY_FRONT.get(front)
    if child is None:
        label = front if front in FRONTS else "other"
        child = ISSUED.labels(label)
        if label == front:  # at most the three fronts are kept
            _ISSUED_BY_FRONT[front] = child
    child.inc()


def refused(front: str, reason: str) -> None:
    REFUSED.labels(front if front in FRONTS else "other", word(reason)).inc()


def upstream_order(ca: str, outcome: str, seconds: float) -> None:
    """The hook of :class:`lancert.service.fallback.UpstreamChoice`: one per order placed."""
    UPSTREAM_ORDERS.labels(ca, word(outcome)).inc()
    UPSTREAM_SECONDS.labels(ca).observe(seconds)
    if outcome == "rateLimited":
        RATE_LIMITED.labels(ca).inc()


class _ScrapeTime(Collector):
    """Values read when Prometheus scrapes: the soonest expiry, the queue, DNS rcodes."""

    def __init__(
        self,
        database: Database,
        queue_length: Callable[[], int] | None,
        dns_rcodes: Callable[[], dict[int, int]] | None,
    ) -> None:
        self.database = database
        self.queue_length = queue_length
        self.dns_rcodes = dns_rcodes

    def collect(self) -> Iterator[GaugeMetricFamily]:
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
            from prometheus_client.core import CounterMetricFamily

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
            select(func.max(IssuedCertificate.not_after).label("not_after"))
            .group_by(IssuedCertificate.box_label)
            .subquery()
        )
        with self.database.reading() as session:
            rows = [r for r in session.scalars(select(newest.c.not_after)) if r is not None]
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
    """One service's ``/metrics``: the process-wide counters plus its scrape-time collector."""

    def __init__(
        self,
        database: Database,
        queue_length: Callable[[], int] | None = None,
        dns_rcodes: Callable[[], dict[int, int]] | None = None,
    ) -> None:
        self.scraped = CollectorRegistry(auto_describe=False)
        self.collector = _ScrapeTime(database, queue_length, dns_rcodes)
        self.scraped.register(self.collector)

    def set_dns(self, dns_rcodes: Callable[[], dict[int, int]]) -> None:
        self.collector.dns_rcodes = dns_rcodes

    def render(self) -> bytes:
        return generate_latest(REGISTRY) + generate_latest(self.scraped)
