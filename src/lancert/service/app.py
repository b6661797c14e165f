"""The HTTP fronts (FastAPI): thin handlers over :class:`~lancert.service.provisioning.Provisioner`.

Hostile-input rules live here once: the 413 of the port's 64 KiB body cap (counted on the raw stream by
the serving layer, not trusting Content-Length), every error as ``{"error": {...}}`` with the status
from :data:`lancert.service.errors.HTTP_STATUS`, and a catch-all that answers 500 without a traceback.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy.exc import InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from lancert.pki import pem
from lancert.service import requestlog
from lancert.service.compatible import COMPATIBLE_PATH, compatible_certificate, compatible_refusal
from lancert.service.errors import (
    InternalError,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    ServiceError,
    StorageUnavailable,
    TooLarge,
    http_status,
    storage_outage,
)
from lancert.service.issuer import Issuer
from lancert.service.metrics import MetricsEndpoint
from lancert.service.provisioning import Provisioner
from lancert.serving.docs import serve_docs_locally
from lancert.wire.provisioning import (
    CertificateRequest,
    CertificateResponse,
    CompatibleRefusal,
    CompatibleRequest,
    CompatibleResponse,
    ErrorResponse,
    HealthResponse,
)

log = logging.getLogger("lancert.service")

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse} for status in (400, 403, 413, 424, 429, 500)
}


# Every refusal of the compatible call carries ``"result": null`` beside the error (service.compatible).
COMPATIBLE_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": CompatibleRefusal} for status in (400, 403, 413, 424, 429, 500)
}


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


def _field_of(error: dict[str, Any]) -> str:
    loc = [str(part) for part in error.get("loc", ()) if part != "body"]
    return ".".join(loc) if loc else "body"


def _validation_error(exc: RequestValidationError) -> InvalidRequest:
    errors = list(exc.errors())
    first = errors[0] if errors else {}
    kind = first.get("type", "")
    if kind == "json_invalid":
        return InvalidRequest("request body is not valid JSON", field="body")
    field = _field_of(first)
    if field == "body" or kind in ("model_attributes_type", "dict_type", "model_type"):
        return InvalidRequest(
            f"{'request body' if field == 'body' else field} must be a JSON object", field=field
        )
    if kind == "missing":
        return InvalidRequest(f"missing field {field!r}", field=field)
    return InvalidRequest(f"invalid field {field!r}: {first.get('msg', 'invalid value')}", field=field)


def create_app(provisioner: Provisioner, issuer: Issuer) -> FastAPI:
    app = FastAPI(
        title="lancert certificate service",
        version="1",
        description="Certificates for IoT boxes under a managed zone. See /docs.",
        debug=False,
        # /docs with Swagger UI's files from this port (serve_docs_locally), never from a CDN; no ReDoc.
        docs_url=None,
        redoc_url=None,
        # Starlette's trailing-slash redirect builds its Location from the client's Host header
        # (Host: evil.example -> Location: http://evil.example/...): an unknown path is a 404 instead.
        redirect_slashes=False,
    )

    @app.exception_handler(ServiceError)
    async def _service_error(request: Request, exc: ServiceError) -> JSONResponse:
        requestlog.refused(exc, path=request.url.path, source_ip=_source_ip(request))
        return error_response(exc, request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        error = _validation_error(exc)
        requestlog.refused(error, path=request.url.path, source_ip=_source_ip(request))
        return error_response(error, request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            return error_response(NotFound("no such endpoint"))
        if exc.status_code == 405:  # Starlette's router names the allowed methods in Allow (RFC 9110)
            allowed = MethodNotAllowed("method not allowed on this endpoint")
            return JSONResponse(allowed.body(), status_code=405, headers=dict(exc.headers or {}))
        if exc.status_code == 400:  # e.g. Starlette refusing a body it cannot decode
            return error_response(InvalidRequest("malformed request", field="body"), request.url.path)
        return JSONResponse(
            {"error": {"code": "http_error", "message": str(exc.detail)[:200]}}, status_code=exc.status_code
        )

    # Registered for the classes themselves, not under Exception: Starlette re-raises what its Exception
    # handler answered, and the server then logged a second traceback (about 4 per request before).
    @app.exception_handler(OperationalError)
    @app.exception_handler(InterfaceError)
    @app.exception_handler(OSError)
    async def _storage(request: Request, exc: Exception) -> JSONResponse:
        reason = storage_outage(exc)
        if reason is None:
            return await _bug(request, exc)
        log.warning("database unavailable on %s %s, answered 503: %s", request.method, request.url.path,
                    reason)
        return error_response(StorageUnavailable("the database is unavailable; try again shortly"),
                              request.url.path)

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        log.error("internal error on %s %s: %s", request.method, request.url.path, exc, exc_info=exc)
        return error_response(InternalError("internal error"), request.url.path)

    serve_docs_locally(app)

    @app.get("/healthz", response_model=HealthResponse)
    def healthz() -> HealthResponse:
        return HealthResponse()

    endpoint = MetricsEndpoint(
        provisioner.database, queue_length=getattr(getattr(issuer, "scheduler", None), "waiting", None)
    )
    app.state.metrics = endpoint  # the server adds the DNS workers' counts once they run

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        """Prometheus text format (lancert.service.metrics says what and why)."""
        return Response(endpoint.render(), media_type=CONTENT_TYPE_LATEST)

    @app.get(
        "/api/v1/root",
        response_class=PlainTextResponse,
        responses={200: {"content": {"application/x-pem-file": {}}}, 404: {"model": ErrorResponse}},
    )
    def root_certificate() -> Response:
        """The root CA certificate to trust (PEM); 404 when a public CA issues (browsers hold its roots)."""
        roots = issuer.root_certificates()
        if not roots:
            raise NotFound("this service issues through a public CA whose roots browsers already hold")
        return Response(pem(roots), media_type="application/x-pem-file")

    @app.post("/api/v1/certificates", response_model=CertificateResponse, responses=ERROR_RESPONSES)
    def issue_certificate(body: CertificateRequest, request: Request) -> Response:
        """Issue ``*.<box-label>.<zone>`` for the box's CSR, if its database is eligible."""
        # The answer is a CertificateResponse its constructor already validated: serialized once here,
        # since FastAPI would validate it again against the response model before encoding it (a fifth
        # of the framework's share of a certificate). The response model stays for the API's schema.
        answer = provisioner.native(body, _source_ip(request))
        return Response(answer.model_dump_json(), media_type="application/json")

    @app.post(COMPATIBLE_PATH, response_model=CompatibleResponse, responses=COMPATIBLE_RESPONSES)
    def odoo_iot_x509(body: CompatibleRequest, request: Request) -> Response:
        """The call existing Odoo IoT boxes make; the answer carries a key made by the service.

        A refusal is the native API's status (403, 429 with Retry-After, 424) with ``"result": null``
        beside the error: the one form that no Odoo box generation in the field crashes on.
        """
        source_ip = _source_ip(request)
        try:
            answer = provisioner.compatible(body, source_ip)
        except ServiceError as refusal:
            requestlog.refused(
                refusal, path=COMPATIBLE_PATH, source_ip=source_ip, db_uuid=body.params.db_uuid
            )
            return compatible_refusal(refusal, body.id)
        return compatible_certificate(answer)

    return app


def _source_ip(request: Request) -> str:
    # The peer address only: X-Forwarded-For is forgeable unless a trusted proxy is configured.
    return request.client.host if request.client else "unknown"
