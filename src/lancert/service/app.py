"""The HTTP fronts (FastAPI): thin handlers over :class:`~lancert.service.provisioning.Provisioner`.

Hostile-input rules live here once: the 413 of the port's 64 KiB body cap (counted on the raw stream by
the serving layer, not trusting Content-Length), every error as ``{"error": {...}}`` with the status
from :data:`lancert.service.errors.HTTP_STATUS`, and a catch-all that answers 500 without a traceback.

The native call, the one request every box makes, is served by :class:`NativeLane` in front of FastAPI's
stack (:class:`ServiceApp`); whatever the lane does not take goes through FastAPI as before.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import ValidationError
from sqlalchemy.exc import InterfaceError, OperationalError
from starlette._exception_handler import _lookup_exception_handler
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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

NATIVE_PATH = "/api/v1/certificates"

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


def native_answer(answer: CertificateResponse) -> Response:
    """The 200 of the native call. The answer is a CertificateResponse its constructor already
    validated: serialized once here, since FastAPI would validate it again against the response model
    before encoding it (a fifth of the framework's share of a certificate). The response model stays on
    the route for the API's schema."""
    return Response(answer.model_dump_json(), media_type="application/json")


class ServiceApp(FastAPI):
    """The service's FastAPI app, with :class:`NativeLane` taking ``POST /api/v1/certificates`` before
    FastAPI's own stack; every other request (and every native one the lane declines) is FastAPI's."""

    native_lane: NativeLane | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        lane = self.native_lane
        if (lane is not None and scope["type"] == "http" and scope["path"] == NATIVE_PATH
                and scope["method"] == "POST" and not scope.get("root_path") and not self.root_path):
            scope["app"] = self
            await lane(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


class NativeLane:
    """The native call without FastAPI's layers, for the request every box makes: its body validated
    once (:meth:`CertificateRequest.model_validate_json` on the raw bytes), the handler run in the lane's
    one thread or the framework's worker-thread pool (below), the answer of :func:`native_answer`,
    and an exception answered by the handler FastAPI would pick for it (the app's own table, looked up
    as Starlette does), so refusals, 503s and 500s are the same answers and log lines.

    Why: py-spy on the service under 4 native clients put FastAPI's part of a certificate (its
    middleware, routing, exit stacks, telemetry hooks, dependency solving, JSON parsing into Python
    objects, then the model's validation of those) beside what ``GET /healthz`` pays for the same layers;
    none of it is a check the model does not already make.

    Only a body whose Content-Type is ``application/json`` and that the model accepts is served here:
    anything else (malformed JSON, a missing or ill-typed field, another media type, a body in UTF-16,
    which :func:`json.loads` reads and the JSON parser of pydantic does not) is replayed into FastAPI's
    route, which answers it exactly as before (its 400 forms with the field named). The body cap is the
    serving layer's, in front of this (:class:`lancert.serving.ports.BodyLimit`). Not a second handler:
    both paths call :meth:`Provisioner.native` and answer with :func:`native_answer`.
    """

    def __init__(self, app: FastAPI, provisioner: Provisioner) -> None:
        self.app = app
        self.provisioner = provisioner
        # One thread of the lane's own when every certificate queues on one writer anyway (SQLite, an
        # issuer that signs at once; as the ACME server's signed requests): 4 and 16 clients in the
        # pool's threads contended for that lock and the GIL, and every hand-over was a thread switch
        # (bench/service_issue.py, 4 and 16 clients: 5-9 context switches per certificate -> 2-3,
        # service CPU per certificate 0.25-0.35 ms less). Only a request whose code this process
        # already verified runs there (Registry.verified_before): a code check that needs scrypt
        # (30-50 ms; a wrong code, an unknown database, a box's first request) goes to the pool as
        # before, so a guesser cannot hold up the boxes that know their code.
        self.worker: ThreadPoolExecutor | None = None
        if provisioner.database.is_sqlite and not provisioner.issuer.places_orders:
            self.worker = ThreadPoolExecutor(1, thread_name_prefix="lancert-native")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # nobody is left to answer
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        request = _native_request(scope, body)
        if request is None:
            replayed = False

            async def replay() -> Message:
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()

            await FastAPI.__call__(self.app, scope, replay, send)
            return
        client = scope.get("client")  # the peer, as _source_ip reads it
        source_ip = client[0] if client else "unknown"
        registry = self.provisioner.authority.registry
        try:
            if self.worker is not None and registry.verified_before(request.db_uuid, request.enterprise_code):
                answer = await asyncio.get_running_loop().run_in_executor(
                    self.worker, self.provisioner.native, request, source_ip)
            else:
                answer = await run_in_threadpool(self.provisioner.native, request, source_ip)
        except Exception as exc:
            # The app registers a handler for Exception itself, so there always is one. Unlike
            # Starlette's outermost middleware, nothing is raised again after a 500 is answered: the
            # handler already logged the traceback once.
            handler: Any = _lookup_exception_handler(self.app.exception_handlers, exc)
            response = await handler(Request(scope, receive), exc)
            await response(scope, receive, send)
            return
        await native_answer(answer)(scope, receive, send)


def _native_request(scope: Scope, body: bytes) -> CertificateRequest | None:
    """The request if :class:`NativeLane` may serve it (a JSON body the model accepts), else None."""
    for name, value in scope["headers"]:
        if name == b"content-type":
            if value.split(b";", 1)[0].strip().lower() != b"application/json":
                return None
            try:
                return CertificateRequest.model_validate_json(body)
            except ValidationError:
                return None
    return None


def create_app(provisioner: Provisioner, issuer: Issuer) -> ServiceApp:
    app = ServiceApp(
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

    @app.post(NATIVE_PATH, response_model=CertificateResponse, responses=ERROR_RESPONSES)
    def issue_certificate(body: CertificateRequest, request: Request) -> Response:
        """Issue ``*.<box-label>.<zone>`` for the box's CSR, if its database is eligible."""
        # Most of these calls are served by app.native_lane before FastAPI sees them; this route is the
        # API's schema and serves the requests the lane declines.
        return native_answer(provisioner.native(body, _source_ip(request)))

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

    app.native_lane = NativeLane(app, provisioner)
    return app


def _source_ip(request: Request) -> str:
    # The peer address only: X-Forwarded-For is forgeable unless a trusted proxy is configured.
    return request.client.host if request.client else "unknown"
