"""The service port's answers shared by its two ASGI layers: the front (:class:`lancert.service.app.
ServiceApp`, with the native lane) and the FastAPI app behind it (:mod:`lancert.service.api`).

Hostile-input rules live here once: the 413 of the port's 64 KiB body cap (counted on the raw stream by
the serving layer, not trusting Content-Length), every error as ``{"error": {...}}`` with the status
from :data:`lancert.service.errors.HTTP_STATUS`, and a catch-all that answers 500 without a traceback.

Starlette only, no FastAPI: the front answers with these before FastAPI is imported (see
:class:`lancert.service.app.ServiceApp` for why), and the FastAPI app registers the same handlers, so an
answer does not depend on which layer gave it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from sqlalchemy.exc import InterfaceError, OperationalError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from lancert.pki import pem
from lancert.service import requestlog
from lancert.service.compatible import COMPATIBLE_PATH, compatible_refusal
from lancert.service.errors import (
    InternalError,
    NotFound,
    ServiceError,
    StorageUnavailable,
    TooLarge,
    http_status,
    storage_outage,
)
from lancert.service.issuer import Issuer

if TYPE_CHECKING:
    from lancert.wire.provisioning import CertificateResponse

log = logging.getLogger("lancert.service")

NATIVE_PATH = "/api/v1/certificates"
ROOT_PATH = "/api/v1/root"

Handler = Callable[[Request, Exception], Awaitable[Response]]


def error_response(exc: ServiceError, path: str = "") -> JSONResponse:
    """The error answer; on the compatible path in the form every field box reads."""
    if path == COMPATIBLE_PATH:
        return compatible_refusal(exc)
    return JSONResponse(exc.body(), status_code=http_status(exc), headers=exc.headers())


def service_too_large(limit: int) -> ASGIApp:
    """The service port's 413, in the form of the path asked (the compatible call's own form there); the
    cap itself is the serving layer's :class:`lancert.serving.ports.BodyLimit`."""

    async def answer(scope: Scope, receive: Receive, send: Send) -> None:
        refusal = error_response(TooLarge(f"request body exceeds {limit} bytes"), scope.get("path", ""))
        await refusal(scope, receive, send)

    return answer


def native_answer(answer: CertificateResponse) -> Response:
    """The 200 of the native call. The answer is a CertificateResponse its constructor already
    validated: serialized once here, since FastAPI would validate it again against the response model
    before encoding it (a fifth of the framework's share of a certificate). The response model stays on
    the route for the API's schema."""
    return Response(answer.model_dump_json(), media_type="application/json")


def root_answer(issuer: Issuer) -> Response:
    """The root CA certificate to trust (PEM); NotFound when a public CA issues (browsers hold its
    roots). Answered by the front for ``GET`` (:class:`lancert.service.app.ServiceApp`) and by the
    FastAPI route, which carries it in the API's schema, for every other method."""
    roots = issuer.root_certificates()
    if not roots:
        raise NotFound("this service issues through a public CA whose roots browsers already hold")
    return Response(pem(roots), media_type="application/x-pem-file")


def source_ip(request: Request) -> str:
    # The peer address only: X-Forwarded-For is forgeable unless a trusted proxy is configured.
    return request.client.host if request.client else "unknown"


async def service_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServiceError)
    requestlog.refused(exc, path=request.url.path, source_ip=source_ip(request))
    return error_response(exc, request.url.path)


async def storage_error(request: Request, exc: Exception) -> Response:
    reason = storage_outage(exc)
    if reason is None:
        return await internal_error(request, exc)
    log.warning("database unavailable on %s %s, answered 503: %s", request.method, request.url.path,
                reason)
    return error_response(StorageUnavailable("the database is unavailable; try again shortly"),
                          request.url.path)


async def internal_error(request: Request, exc: Exception) -> Response:
    log.error("internal error on %s %s: %s", request.method, request.url.path, exc, exc_info=exc)
    return error_response(InternalError("internal error"), request.url.path)


# Registered for the classes themselves, not under Exception: Starlette re-raises what its Exception
# handler answered, and the server then logged a second traceback (about 4 per request before).
# The FastAPI app adds its own two (request validation, Starlette's HTTP exceptions) to these.
EXCEPTION_HANDLERS: dict[type[Exception], Handler] = {
    ServiceError: service_error,
    OperationalError: storage_error,
    InterfaceError: storage_error,
    OSError: storage_error,
    Exception: internal_error,
}
