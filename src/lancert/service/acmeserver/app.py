"""HTTP transport of the ACME server (Starlette): thin routes over :class:`~.protocol.AcmeServer`.

Every answer, problems included, carries a fresh ``Replay-Nonce`` and the directory as
``Link: rel="index"`` (RFC 8555 6.5, 7.1); problems go out as ``application/problem+json`` without a
traceback; bodies over :data:`.front.MAX_BODY_BYTES` (64 KiB) are refused by the port before parsing (a JWS
carrying a CSR is a few KiB; :func:`acme_too_large` is the answer).

A Starlette app, not FastAPI: no route here has a parameter for FastAPI to validate (the protocol
module checks every byte of a request itself), and FastAPI's layers around each call (dependency
solving, its telemetry and body-limit middleware, an exit stack) were a fifth of the app's CPU per
signed request (``bench/acme_inprocess.py``). Starlette's routing, 404/405 and exception handling are
the same ones FastAPI used. Signed requests run in :attr:`AcmeServer.worker` when it has one (SQLite:
they queue on one writer lock anyway, so one thread of their own instead of the framework's pool of 40
contending for that lock and the GIL).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy.exc import InterfaceError, OperationalError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from lancert.service.acmeserver.problems import PROBLEM_CONTENT_TYPE, AcmeProblem, malformed
from lancert.service.acmeserver.protocol import AcmeServer, Reply
from lancert.service.acmeserver.resources import PREFIX, Urls
from lancert.service.errors import StorageUnavailable, storage_outage

log = logging.getLogger("lancert.acme")
_HOST = re.compile(r"^(?:[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])(?::\d{1,5})?$")


def acme_too_large(limit: int) -> Response:
    """The ACME port's 413, as a problem document (the cap itself is the serving layer's)."""
    return _problem_response(malformed(f"request body exceeds {limit} bytes", status=413), None, None)


def _urls(request: Request) -> Urls:
    host = request.headers.get("host", "")
    if not _HOST.match(host):
        raise malformed("missing or invalid Host header")
    return Urls(f"https://{host}")


def _problem_response(problem: AcmeProblem, urls: Urls | None, nonce: str | None) -> Response:
    headers = dict(problem.headers)
    if nonce:
        headers["Replay-Nonce"] = nonce
    if urls is not None:
        headers["Link"] = f'<{urls.directory}>;rel="index"'
    return Response(json.dumps(problem.to_json()), status_code=problem.status,
                    media_type=PROBLEM_CONTENT_TYPE, headers=headers)


def _path(request: Request) -> str:
    """The request's path as ``request.url.path`` gives it (Starlette escapes the three characters that
    would end a path) without building the URL object: urlsplit and the URL were 6% of the event loop's
    time per signed request (``bench/acme_inprocess.py`` under py-spy)."""
    return request.scope["path"].replace("?", "%3F").replace("#", "%23").replace("\\", "%5C")


async def _in_worker(worker: ThreadPoolExecutor, call: Callable[[], Reply]) -> Reply:
    """``call()`` in ``worker``, awaited: the worker hands its outcome to the loop with one
    ``call_soon_threadsafe``. ``loop.run_in_executor`` chains a second future to the executor's (a
    done-callback, a state copy and a thread-safe call per request): a fifth of the loop's time per
    signed request in-process. The executor stays the queue, so requests run one at a time, in order."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[Reply] = loop.create_future()

    def settle(result: Reply | None, error: BaseException | None) -> None:
        if done.cancelled():
            return
        if error is not None:
            done.set_exception(error)
        else:
            done.set_result(result)  # type: ignore[arg-type]

    def run() -> None:
        try:
            result = call()
        except BaseException as exc:  # handed to the awaiting request, as run_in_executor does
            loop.call_soon_threadsafe(settle, None, exc)
        else:
            loop.call_soon_threadsafe(settle, result, None)

    worker.submit(run)
    return await done


def create_acme_app(server: AcmeServer) -> Starlette:
    def respond(reply: Reply, urls: Urls) -> Response:
        headers = {"Replay-Nonce": server.new_nonce(), **reply.headers}
        links = [f'<{urls.directory}>;rel="index"', *reply.links]
        if reply.location:
            headers["Location"] = reply.location
        if reply.body is None:
            body = b""
        elif isinstance(reply.body, str):
            body = reply.body.encode()
        else:
            body = json.dumps(reply.body).encode()
        response = Response(body, status_code=reply.status, media_type=reply.content_type, headers=headers)
        for link in links:
            response.headers.append("Link", link)
        return response

    async def _problem(request: Request, exc: AcmeProblem) -> Response:
        try:
            urls = _urls(request)
        except AcmeProblem:
            urls = None
        return _problem_response(exc, urls, server.new_nonce())

    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        problem = malformed("no such resource" if exc.status_code == 404 else "method not allowed here",
                            status=exc.status_code if exc.status_code in (404, 405) else 400)
        return await _problem(request, problem)

    async def _storage(request: Request, exc: Exception) -> Response:
        reason = storage_outage(exc)
        if reason is None:
            return await _bug(request, exc)
        log.warning("database unavailable on %s %s, answered 503: %s", request.method, request.url.path,
                    reason)
        return await _problem(request, AcmeProblem(
            "serverInternal", "the database is unavailable; try again shortly", status=503,
            headers={"Retry-After": str(StorageUnavailable.retry_after)}))

    async def _bug(request: Request, exc: Exception) -> Response:
        log.error("internal error on %s %s: %s", request.method, request.url.path, exc, exc_info=exc)
        return await _problem(request, AcmeProblem("serverInternal", "internal error"))

    # Async, so no thread hop: the directory and a nonce need no I/O (a nonce is an HMAC, no write).
    async def directory(request: Request) -> Response:
        urls = _urls(request)
        return respond(server.directory(urls), urls)

    async def new_nonce(request: Request) -> Response:
        urls = _urls(request)
        response = respond(Reply(200 if request.method == "HEAD" else 204), urls)
        response.headers["Cache-Control"] = "no-store"
        return response

    def renewal_info(request: Request) -> Response:  # a plain function: Starlette runs it in a thread
        urls = _urls(request)
        return respond(server.renewal_info(urls, request.path_params["cert_id"]), urls)

    def signed(endpoint: str, path: str) -> Route:
        async def route(request: Request) -> Response:
            urls = _urls(request)
            body = await request.body()
            call = functools.partial(
                server.post, endpoint, urls, urls.origin + _path(request), body,
                request.headers.get("content-type"),
                request.client.host if request.client else "unknown", **request.path_params,
            )
            if server.worker is None:
                reply = await run_in_threadpool(call)
            else:
                reply = await _in_worker(server.worker, call)
            return respond(reply, urls)

        return Route(f"{PREFIX}{path}", route, methods=["POST"], name=endpoint)

    routes = [
        Route(f"{PREFIX}/directory", directory, methods=["GET"]),
        Route(f"{PREFIX}/new-nonce", new_nonce, methods=["HEAD", "GET"]),
        Route(f"{PREFIX}/renewal-info/{{cert_id}}", renewal_info, methods=["GET"]),
        signed("new-account", "/new-account"),
        signed("new-order", "/new-order"),
        signed("revoke-cert", "/revoke-cert"),
        signed("key-change", "/key-change"),
        signed("account", "/acct/{account_id}"),
        signed("orders", "/acct/{account_id}/orders"),
        signed("order", "/order/{order_id}"),
        signed("finalize", "/order/{order_id}/finalize"),
        signed("authz", "/authz/{order_id}/{index}"),
        signed("chall", "/chall/{order_id}/{index}"),
        signed("cert", "/cert/{certificate_id}"),
    ]
    # As on the service's port: handlers for the storage classes themselves (Starlette re-raises what its
    # Exception handler answered, a second traceback), a 503 with Retry-After when the database or the
    # disk is down.
    return Starlette(debug=False, routes=routes, exception_handlers={
        AcmeProblem: _problem, StarletteHTTPException: _http,
        OperationalError: _storage, InterfaceError: _storage, OSError: _storage, Exception: _bug,
    })
