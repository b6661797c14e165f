"""The service port's ASGI app: a front that answers the calls ``lancert up`` and every box make before
FastAPI is imported, and the FastAPI app (:mod:`lancert.service.api`: routes, ``/openapi.json``,
``/docs``) built on first need behind it.

The native call, the one request every box makes, is served by :class:`NativeLane` in front of FastAPI's
stack; whatever the lane does not take goes through FastAPI as before. The answers and exception handlers
both layers give are :mod:`lancert.service.answers`'s.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from starlette._exception_handler import _lookup_exception_handler
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from lancert.service.answers import (
    EXCEPTION_HANDLERS,
    NATIVE_PATH,
    ROOT_PATH,
    error_response,
    native_answer,
    root_answer,
    service_too_large,
)
from lancert.service.database import WouldWait
from lancert.service.errors import InternalError
from lancert.service.issuer import Issuer
from lancert.service.metrics import MetricsEndpoint
from lancert.service.provisioning import Provisioner
from lancert.serving.lazy import BuiltOnFirstNeed
from lancert.serving.ports import replaying, whole_body

if TYPE_CHECKING:
    from fastapi import FastAPI

    from lancert.wire.provisioning import CertificateRequest

log = logging.getLogger("lancert.service")

__all__ = ["NATIVE_PATH", "NativeLane", "ServiceApp", "create_app", "error_response", "native_answer",
           "service_too_large"]


class ServiceApp:
    """The service port's app: ``POST /api/v1/certificates`` through :class:`NativeLane`, ``GET
    /api/v1/root`` answered here, everything else (and every native call the lane declines) by the
    FastAPI app, built on the first request that needs it.

    Why: ``service run`` is the whole critical path of ``lancert up`` (bench/README.md, "``lancert up``
    warm"), and FastAPI's import (its OpenAPI models built by pydantic, pydantic.v1 at route creation)
    was ~0.4 s of its ~1.1 s of CPU before it served, and ~12 MiB of its RSS; the ACME server and a
    fleet of boxes never need it. The two calls served here are the ones a box and ``up`` make (``up``
    reads the root right after the ready line); ``/docs``, ``/openapi.json``, ``/healthz``,
    ``/metrics``, the compatible call, every 404/405 and every other form are FastAPI's, unchanged.
    Only exact matches are taken (the method, the path, no ``root_path``): a ``HEAD`` or a ``POST`` on
    the root gets FastAPI's 405 with its ``Allow`` as before.

    The FastAPI app is built in a worker thread (:attr:`api`, :mod:`lancert.serving.lazy`), never in the
    event loop: the lane and the ACME port, served by the same loop, go on answering for the ~0.5 s the
    import takes. Not imported in the background at start: then every ``up`` and every box-only
    service paid it anyway, beside the start of ``up``'s other processes on a 2-core machine.
    """

    def __init__(self, provisioner: Provisioner, issuer: Issuer, metrics: MetricsEndpoint) -> None:
        self.provisioner = provisioner
        self.issuer = issuer
        self.metrics = metrics  # the server adds the DNS workers' counts once they run
        self.exception_handlers = EXCEPTION_HANDLERS
        self.native_lane = NativeLane(self, provisioner)
        self.api: BuiltOnFirstNeed[FastAPI] = BuiltOnFirstNeed(self._build_api)

    def _build_api(self) -> FastAPI:
        from lancert.service.api import build_api

        return build_api(self.provisioner, self.issuer, self.metrics)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope.get("root_path"):
            path, method = scope["path"], scope["method"]
            if path == NATIVE_PATH and method == "POST":
                scope["app"] = self
                await self.native_lane(scope, receive, send)
                return
            if path == ROOT_PATH and method == "GET":
                scope["app"] = self
                await self._answer(scope, receive, send, lambda: root_answer(self.issuer))
                return
        await self.forward(scope, receive, send)

    async def forward(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Hand the request to the FastAPI app (built now if it is not yet)."""
        try:
            api = await self.api.get()
        except Exception as exc:
            log.error("cannot build the service's API: %s", exc, exc_info=exc)
            if scope["type"] == "http":
                await error_response(InternalError("internal error"), scope.get("path", ""))(
                    scope, receive, send)
            return
        await api(scope, receive, send)

    async def _answer(self, scope: Scope, receive: Receive, send: Send, make: Any) -> None:
        """``make()``'s response, or the handler's answer to what it raised (as Starlette picks it)."""
        try:
            response = make()
        except Exception as exc:
            await self.handle(exc, scope, receive, send)
            return
        await response(scope, receive, send)

    async def handle(self, exc: Exception, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer ``exc`` with the handler FastAPI's app would pick for it (the shared table, looked up
        as Starlette does), so refusals, 503s and 500s are the same answers and log lines. Unlike
        Starlette's outermost middleware, nothing is raised again after a 500 is answered: the handler
        already logged the traceback once. The table has a handler for Exception itself."""
        handler: Any = _lookup_exception_handler(self.exception_handlers, exc)
        response = await handler(Request(scope, receive), exc)
        await response(scope, receive, send)


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

    def __init__(self, app: ServiceApp, provisioner: Provisioner) -> None:
        self.app = app
        self.provisioner = provisioner
        self.parse: BuiltOnFirstNeed[Parse] = BuiltOnFirstNeed(_request_parser)
        # SQLite with an issuer that signs at once: a request whose code this process already verified
        # (Registry.verified_before) is served right here in the event loop, with transactions that
        # begin at once or not at all (Database.now_transaction: busy timeout 0, this process's writer
        # lock taken without waiting, checkpoints in a thread of their own) and no scrypt: where any
        # of that would wait, WouldWait is raised before anything is recorded, and the request is
        # served again, whole, in the lane's one thread below, where waiting blocks no port. The hop
        # to a thread and back (a futex wake, the loop's self-pipe, the GIL handed over twice) was
        # 0.25-0.3 ms of service CPU per certificate at 1 client (context switches 5.7 -> 2.2).
        # One thread of the lane's own when every certificate queues on one writer anyway: 4 and 16
        # clients in the pool's threads contended for that lock and the GIL (5-9 context switches
        # per certificate -> 2-3, service CPU per certificate 0.25-0.35 ms less). A code check that
        # needs scrypt (30-50 ms; a wrong code, an unknown database, a box's first request) goes to
        # the pool as before, so a guesser cannot hold up the boxes that know their code.
        self.worker: ThreadPoolExecutor | None = None
        if provisioner.database.is_sqlite and not provisioner.issuer.places_orders:
            self.worker = ThreadPoolExecutor(1, thread_name_prefix="lancert-native")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await whole_body(receive)
        if body is None:
            return  # nobody is left to answer
        request = _native_request(scope, body, await self.parse.get())
        if request is None:
            await self.app.forward(scope, replaying(body, receive), send)
            return
        client = scope.get("client")  # the peer, as answers.source_ip reads it
        source_ip = client[0] if client else "unknown"
        registry = self.provisioner.authority.registry
        try:
            if self.worker is not None and registry.verified_before(request.db_uuid, request.enterprise_code):
                try:
                    answer = self.provisioner.native(request, source_ip, now=True)
                except WouldWait:  # nothing was kept: all of it again where waiting is allowed
                    answer = await asyncio.get_running_loop().run_in_executor(
                        self.worker, self.provisioner.native, request, source_ip)
            else:
                answer = await run_in_threadpool(self.provisioner.native, request, source_ip)
        except Exception as exc:
            await self.app.handle(exc, scope, receive, send)
            return
        await native_answer(answer)(scope, receive, send)


Parse = Callable[[bytes], "CertificateRequest | None"]


def _request_parser() -> Parse:
    """The native request's parser: :class:`CertificateRequest` on the raw bytes, None for a body the
    model refuses. Made on the lane's first request (:attr:`NativeLane.parse`): the wire models and
    pydantic are ~0.1 s of CPU and 8 MiB to import, which ``service run`` paid before its ready line and
    the ACME server never needs (its requests are not pydantic's)."""
    from pydantic import ValidationError

    from lancert.wire.provisioning import CertificateRequest

    def parse(body: bytes) -> CertificateRequest | None:
        try:
            return CertificateRequest.model_validate_json(body)
        except ValidationError:
            return None

    return parse


def _native_request(scope: Scope, body: bytes, parse: Parse) -> CertificateRequest | None:
    """The request if :class:`NativeLane` may serve it (a JSON body the model accepts), else None."""
    for name, value in scope["headers"]:
        if name == b"content-type":
            if value.split(b";", 1)[0].strip().lower() != b"application/json":
                return None
            return parse(body)
    return None


def create_app(provisioner: Provisioner, issuer: Issuer) -> ServiceApp:
    """The service port's app (:class:`ServiceApp`); its FastAPI app is built on first need."""
    endpoint = MetricsEndpoint(
        provisioner.database, queue_length=getattr(getattr(issuer, "scheduler", None), "waiting", None)
    )
    return ServiceApp(provisioner, issuer, endpoint)
