"""The box's ``/metrics`` (Prometheus text format, prometheus-client), on its HTTP port: how many days
its certificate has left, whether it serves a valid one, the code of its current problem, when it last
checked. The codes are the box's own error codes (:class:`lancert.box.codes.ErrorCode`), a fixed set;
never the enterprise code, a key, or the database.

Served over plain HTTP even once HTTPS works (the page itself then redirects): a scraper should not
have to trust the box's certificate to learn that it is about to expire.
"""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest

from lancert.box.codes import ErrorCode
from lancert.box.files import BoxState

__all__ = ["CONTENT_TYPE_LATEST", "render"]

_CODES = {code.value for code in ErrorCode}


def _moment(value: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None
    except ValueError:
        return None
    return moment if moment is None or moment.tzinfo else moment.replace(tzinfo=UTC)


def render(state: BoxState, now: datetime | None = None) -> bytes:
    now = now or datetime.now(UTC)
    registry = CollectorRegistry(auto_describe=False)
    days = Gauge("lancert_box_certificate_days_left", "Days until the box's certificate expires.",
                 registry=registry)
    valid = Gauge("lancert_box_certificate_valid", "1 while the box serves a valid certificate.",
                  registry=registry)
    error = Gauge("lancert_box_last_error", "1 for the code of the box's current problem.", ["code"],
                  registry=registry)
    checked = Gauge("lancert_box_last_check_timestamp_seconds", "When the box last checked (Unix time).",
                    registry=registry)
    not_after = _moment(state.not_after)
    if not_after is not None:
        days.set(round((not_after - now).total_seconds() / 86400, 3))
    valid.set(1 if state.status == "OK" else 0)
    if state.problems:
        code = state.problems[0].get("code")
        error.labels(code if code in _CODES else "other").set(1)
    last_check = _moment(state.last_check)
    if last_check is not None:
        checked.set(last_check.timestamp())
    return generate_latest(registry)
