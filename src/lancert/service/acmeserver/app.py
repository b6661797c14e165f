"""HTTP transport of the ACME server (FastAPI): thin routes over :class:`~.protocol.AcmeServer`.

Every answer, problems included, carries a fresh ``Replay-Nonce`` and the directory as
``Link: rel="index"`` (RFC 8555 6.5, 7.1); problems go out as ``application/problem+json`` without a
traceback; bodies over :data:`MAX_BODY_BYTES` (64 KiB) are refused by the port before parsing (a JWS
carrying a CSR is a few KiB; :func:`acme_too_large` is the answer).
"""

from __future__ import annotations

import json
import logging
import re

from fastapi import FastAPI, Request
from fastapi.responses import Response
from sqlalchemy.exc import InterfaceError, OperationalError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from lancert.service.acmeserver.problems import PROBLEM_CONTENT_TYPE, AcmeProblem, malformed
from lancert.service.acmeserver.protocol import AcmeServer, Reply
from lancert.service.acmeserver.resources import PREFIX, Urls
from lancert.service.errors import StorageUnavailable, storage_outage

log = logging.getLogger("lancert.acme")
_HOST = re.compile(r"^(?:[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])(?::\d{1,5})?$")
MAX_BODY_BYTES = 64 * 1024


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


def create_acme_app(server: AcmeServer) -> FastAPI:
    app = FastAPI(title="lancert ACME", docs_url=None, redoc_url=None, openapi_url=None, debug=False)

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

    @app.exception_handler(AcmeProblem)
    async def _problem(request: Request, exc: AcmeProblem) -> Response:
        try:
            urls = _urls(request)
        except AcmeProblem:
            urls = None
        return _problem_response(exc, urls, server.new_nonce())

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        problem = malformed("no such resource" if exc.status_code == 404 else "method not allowed here",
                            status=exc.status_code if exc.status_code in (404, 405) else 400)
        return await _problem(request, problem)

    # As on the service's port: for the classes themselves (Starlette re-raises what its Exception handler
    # answered, a second traceback), a 503 with Retry-After when the database or the disk is down.
    @app.exception_handler(OperationalError)
    @app.exception_handler(InterfaceError)
    @app.exception_handler(OSError)
    async def _storage(request: Request, exc: Exception) -> Response:
        reason = storage_outage(exc)
        if reason is None:
            return await _bug(request, exc)
        log.warning("database unavailable on %s %s, answered 503: %s", request.method, request.url.path,
                    reason)
        return await _problem(request, AcmeProblem(
            "serverInternal", "the database is unavailable; try again shortly", status=503,
            headers={"Retry-After": str(StorageUnavailable.retry_after)}))

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> Response:
        log.error("internal error on %s %s: %s", request.method, request.url.path, exc, exc_info=exc)
        return await _problem(request, AcmeProblem("serverInternal", "internal error"))

    # Async, so no thread hop: the directory and a nonce need no I/O (a nonce is an HMAC, no write).
    @app.get(f"{PREFIX}/directory")
    async def directory(request: Request) -> Response:
        urls = _urls(request)
        return respond(server.directory(urls), urls)

    @app.api_route(f"{PREFIX}/new-nonce", methods=["HEAD", "GET"])
    async def new_nonce(request: Request) -> Response:
        urls = _urls(request)
        response = respond(Reply(200 if request.method == "HEAD" else 204), urls)
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.get(f"{PREFIX}/renewal-info/{{cert_id}}")
    def renewal_info(request: Request, cert_id: str) -> Response:
        urls = _urls(request)
        return respond(server.renewal_info(urls, cert_id), urls)

    def signed(endpoint: str, path: str) -> None:
        async def route(request: Request) -> Response:
            urls = _urls(request)
            body = await request.body()
            reply = await run_in_threadpool(
                server.post, endpoint, urls, urls.origin + request.url.path, body,
                request.headers.get("content-type"),
                request.client.host if request.client else "unknown", **request.path_params,
            )
            return respond(reply, urls)

        app.add_api_route(f"{PREFIX}{path}", route, methods=["POST"], name=endpoint)

    signed("new-account", "/new-account")
    signed("new-order", "/new-order")
    signed("revoke-cert", "/revoke-cert")
    signed("key-change", "/key-change")
    signed("account", "/acct/{account_id}")
    signed("orders", "/acct/{account_id}/orders")
    signed("order", "/order/{order_id}")
    signed("finalize", "/order/{order_id}/finalize")
    signed("authz", "/authz/{order_id}/{index}")
    signed("chall", "/chall/{order_id}/{index}")
    signed("cert", "/cert/{certificate_id}")

    return app
