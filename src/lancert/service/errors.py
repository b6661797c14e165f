"""Errors of the HTTP APIs as types, and the one table that maps each to its HTTP status.

Handlers raise these; :mod:`lancert.service.app` turns any of them into
``{"error": {"code", "message", ...}}`` with the status from :data:`HTTP_STATUS`. Anything else that
escapes a handler becomes a bare 500 ``internal_error``, never a traceback.
"""

from __future__ import annotations

import errno
from typing import Any, ClassVar


class ServiceError(Exception):
    """A refusal the client can act on; ``code`` is the machine-readable part of the answer."""

    code: ClassVar[str] = "internal_error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = {k: v for k, v in details.items() if v is not None}

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, **self.details}}

    def headers(self) -> dict[str, str]:
        return {}


class InvalidRequest(ServiceError):
    """Malformed JSON, or a field missing or of the wrong type (``field`` names it)."""

    code = "invalid_request"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message, field=field)


class InvalidCSRError(ServiceError):
    """A CSR that does not parse, whose signature does not verify, or whose key is weak."""

    code = "invalid_csr"


class NotEligible(ServiceError):
    """The database may not have a certificate; ``reason`` is one of :class:`~.authority.Refusal`."""

    code = "not_eligible"

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message, reason=reason)
        self.reason = reason


class NameNotAllowed(ServiceError):
    """The CSR asks for a name outside the box's own subdomain."""

    code = "name_not_allowed"


class TooLarge(ServiceError):
    code = "too_large"


class RateLimited(ServiceError):
    """Too many failed credentials from this source or for this database; come back later."""

    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message, retry_after=retry_after)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class IssuancePending(ServiceError):
    """The certificate is being ordered and did not come within the request's deadline; the order goes
    on in the background (for the compatible call, the next request gets its result)."""

    code = "issuance_pending"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message, retry_after=retry_after)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class UpstreamFailed(ServiceError):
    """The issuer (an upstream ACME CA) could not issue: ``reason`` is its short reason (an ACME problem
    type such as ``rateLimited``, or ``upstream_unreachable``); ``retry_after`` when the service will
    try again. Not a 5xx: the service works, its dependency refused (a box keeps its certificate)."""

    code = "upstream_failed"

    def __init__(self, message: str, *, reason: str, retry_after: int | None = None) -> None:
        super().__init__(message, reason=reason, retry_after=retry_after)
        self.reason = reason
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)} if self.retry_after is not None else {}


class NotFound(ServiceError):
    code = "not_found"


class MethodNotAllowed(ServiceError):
    code = "method_not_allowed"


class InternalError(ServiceError):
    code = "internal_error"


class StorageUnavailable(ServiceError):
    """The database or the disk refused for now (PostgreSQL stopped, a full disk, SQLite's ``disk I/O
    error``): a 503 with ``Retry-After``, since the service recovers by itself as soon as it is back."""

    code = "service_unavailable"
    retry_after = 5

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


# errno values of a disk that cannot take a write now: full, over quota, read-only, failing.
_DISK_TROUBLE = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO})


def storage_outage(exc: BaseException) -> str | None:
    """Why ``exc`` means the storage is unavailable (one line, for the log), or None for anything else.

    SQLAlchemy wraps every driver's "cannot reach or write the database" in OperationalError (connection
    refused, server closed the connection, ``database or disk is full``, ``disk I/O error``, locked) and
    a connection dropped mid-use in InterfaceError; a file written beside the database raises OSError."""
    from sqlalchemy.exc import InterfaceError, OperationalError

    if isinstance(exc, OperationalError | InterfaceError):
        text = str(exc.orig if exc.orig is not None else exc).strip()
        return (text.splitlines() or ["database error"])[0][:200]
    if isinstance(exc, OSError) and exc.errno in _DISK_TROUBLE:
        return f"{exc.strerror or exc}"[:200]
    return None


HTTP_STATUS: dict[type[ServiceError], int] = {
    InvalidRequest: 400,
    InvalidCSRError: 400,
    NotEligible: 403,
    NameNotAllowed: 403,
    NotFound: 404,
    MethodNotAllowed: 405,
    TooLarge: 413,
    UpstreamFailed: 424,
    RateLimited: 429,
    IssuancePending: 429,
    InternalError: 500,
    StorageUnavailable: 503,
}


def http_status(exc: ServiceError) -> int:
    for cls in type(exc).__mro__:
        if cls in HTTP_STATUS:
            return HTTP_STATUS[cls]
    return 500
