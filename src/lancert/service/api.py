"""The service's FastAPI app: its routes, the OpenAPI schema (``/openapi.json``) and ``/docs``.

Imported only when a request needs it (:attr:`lancert.service.app.ServiceApp.api`): FastAPI's
import builds its OpenAPI models with pydantic, ~0.4 s of CPU and ~12 MiB on this project's 2-core
machine, which were a third of ``service run``'s start and so of ``lancert up``'s. The front in
:mod:`lancert.service.app` serves the native call and the root without it; every other request, and
every native one the lane declines, is this app's, with the same handlers (:mod:`lancert.service.answers`).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from lancert.service import requestlog
from lancert.service.answers import (
    EXCEPTION_HANDLERS,
    NATIVE_PATH,
    ROOT_PATH,
    error_response,
    native_answer,
    root_answer,
    source_ip,
)
from lancert.service.compatible import COMPATIBLE_PATH, compatible_certificate, compatible_refusal
from lancert.service.errors import (
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    ServiceError,
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

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse} for status in (400, 403, 413, 424, 429, 500)
}


# Every refusal of the compatible call carries ``"result": null`` beside the error (service.compatible).
COMPATIBLE_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": CompatibleRefusal} for status in (400, 403, 413, 424, 429, 500)
}


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


def build_api(provisioner: Provisioner, issuer: Issuer, endpoint: MetricsEndpoint) -> FastAPI:
    """The FastAPI app of the service port (the front in :mod:`lancert.service.app` calls it)."""
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
    for kind, handler in EXCEPTION_HANDLERS.items():
        app.add_exception_handler(kind, handler)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        error = _validation_error(exc)
        requestlog.refused(error, path=request.url.path, source_ip=source_ip(request))
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

    serve_docs_locally(app)

    @app.get("/healthz", response_model=HealthResponse)
    def healthz() -> HealthResponse:
        return HealthResponse()

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        """Prometheus text format (lancert.service.metrics says what and why)."""
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(endpoint.render(), media_type=CONTENT_TYPE_LATEST)

    @app.get(
        ROOT_PATH,
        response_class=PlainTextResponse,
        responses={200: {"content": {"application/x-pem-file": {}}}, 404: {"model": ErrorResponse}},
    )
    def root_certificate() -> Response:
        """The root CA certificate to trust (PEM); 404 when a public CA issues (browsers hold its roots)."""
        return root_answer(issuer)

    @app.post(NATIVE_PATH, response_model=CertificateResponse, responses=ERROR_RESPONSES)
    def issue_certificate(body: CertificateRequest, request: Request) -> Response:
        """Issue ``*.<box-label>.<zone>`` for the box's CSR, if its database is eligible."""
        # Most of these calls are served by the front's native lane before FastAPI sees them; this
        # route is the API's schema and serves the requests the lane declines.
        return native_answer(provisioner.native(body, source_ip(request)))

    @app.post(COMPATIBLE_PATH, response_model=CompatibleResponse, responses=COMPATIBLE_RESPONSES)
    def odoo_iot_x509(body: CompatibleRequest, request: Request) -> Response:
        """The call existing Odoo IoT boxes make; the answer carries a key made by the service.

        A refusal is the native API's status (403, 429 with Retry-After, 424) with ``"result": null``
        beside the error: the one form that no Odoo box generation in the field crashes on.
        """
        source = source_ip(request)
        try:
            answer = provisioner.compatible(body, source)
        except ServiceError as refusal:
            requestlog.refused(
                refusal, path=COMPATIBLE_PATH, source_ip=source, db_uuid=body.params.db_uuid
            )
            return compatible_refusal(refusal, body.id)
        return compatible_certificate(answer)

    return app
