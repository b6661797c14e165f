"""RFC 7807 problem documents with the RFC 8555 error types, as exceptions the protocol raises.

The JSON is made by the ``acme`` library's :class:`acme.messages.Error` (the same class clients parse
it with), so the type URNs cannot drift from the registry of RFC 8555 section 6.7. The HTTP status of
each type is decided here once.
"""

from __future__ import annotations

from typing import Any

from lancert.service.errors import StorageUnavailable

PROBLEM_CONTENT_TYPE = "application/problem+json"

# RFC 8555 leaves most statuses to the server; these follow Boulder and Pebble, which clients are
# tested against (unauthorized and orderNotReady are 403, the rest of the client's mistakes 400).
_STATUS = {
    "unauthorized": 403,
    "orderNotReady": 403,
    "serverInternal": 500,
    "rateLimited": 429,
}


class AcmeProblem(Exception):
    """A refusal of the ACME server; ``code`` is an RFC 8555 error name (``badNonce``...)."""

    def __init__(
        self,
        code: str,
        detail: str,
        *,
        status: int | None = None,
        headers: dict[str, str] | None = None,
        subproblems: list[AcmeProblem] | None = None,
        identifier: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.status = status if status is not None else _STATUS.get(code, 400)
        self.headers = dict(headers or {})
        self.subproblems = subproblems or []
        self.identifier = identifier
        self.extra = extra or {}

    def to_json(self) -> dict[str, Any]:
        # Imported here: acme.messages brings acme.challenges and requests (4 MiB of the server's RSS),
        # and a server that answers no problem never needs them.
        from acme import messages

        if self.code in messages.ERROR_CODES:
            body = messages.Error.with_code(self.code, detail=self.detail).to_partial_json()
        else:  # registered after the library's table (RFC 9773 alreadyReplaced)
            body = messages.Error(typ=messages.ERROR_PREFIX + self.code, detail=self.detail).to_partial_json()
        if self.identifier:
            body["identifier"] = {"type": "dns", "value": self.identifier}
        if self.subproblems:
            body["subproblems"] = [p.to_json() for p in self.subproblems]
        body["status"] = self.status
        body.update(self.extra)
        return body


def malformed(detail: str, *, status: int = 400) -> AcmeProblem:
    return AcmeProblem("malformed", detail, status=status)


def unauthorized(detail: str) -> AcmeProblem:
    return AcmeProblem("unauthorized", detail)


def storage_unavailable() -> AcmeProblem:
    """The 503 of a database outage, with the Retry-After the service's own port gives for it; answered
    by the ACME app and by its front when the outage comes during the app's build."""
    return AcmeProblem("serverInternal", "the database is unavailable; try again shortly", status=503,
                       headers={"Retry-After": str(StorageUnavailable.retry_after)})


def internal_error() -> AcmeProblem:
    """The 500 of a bug: no detail of it leaves the server (the log has the traceback)."""
    return AcmeProblem("serverInternal", "internal error")
