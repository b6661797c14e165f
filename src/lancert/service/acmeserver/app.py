"""HTTP transport of the ACME server: a thin ASGI dispatch over :class:`~.protocol.AcmeServer`.

Every answer, problems included, carries a fresh ``Replay-Nonce`` and the directory as
``Link: rel="index"`` (RFC 8555 6.5, 7.1); problems go out as ``application/problem+json`` without a
traceback; bodies over :data:`.front.MAX_BODY_BYTES` (64 KiB) are refused by the port before parsing (a
JWS carrying a CSR is a few KiB; :func:`acme_too_large` is the answer).

No framework: no route here has a parameter to validate (the protocol module checks every byte of a
request itself), and there are 14 fixed routes. FastAPI's layers (dependency solving, its telemetry and
body-limit middleware, an exit stack) were a fifth of the app's CPU per signed request and went first;
then Starlette's (its two exception middlewares, the router's scan of every route, ``request_response``
with its exception wrapper, ``Request`` and ``Response`` objects) were ~9% of the service's CPU per
``GET /acme/directory`` over HTTPS under py-spy, as much as asyncio's whole SSL read path. What they did
is done here the same way: a path matched in full against the same patterns (a ``{param}`` is one
non-empty path segment), 404 for no route and 405 for a route without that method (``GET`` routes take
``HEAD``), as problem documents; exceptions answered by class along their MRO (:data:`AcmeProblem`,
the storage outages as 503, anything else 500 with one error line and then re-raised, so uvicorn closes
the connection as it did behind Starlette); the headers Starlette's ``Response`` wrote (content-length
except on 1xx/204/304, the content-type). What is not done: Starlette's redirect of a path with or
without a trailing slash (an ACME client follows the directory's URLs, so such a path is a 404).

Signed requests run in :attr:`AcmeServer.worker` when it has one (SQLite: they queue on one writer lock
anyway, so one thread of their own instead of a pool of 40 contending for that lock and the GIL).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.exc import InterfaceError, OperationalError
from starlette.concurrency import run_in_threadpool

from lancert.service.acmeserver.problems import (
    PROBLEM_CONTENT_TYPE,
    AcmeProblem,
    internal_error,
    malformed,
    storage_unavailable,
)
from lancert.service.acmeserver.protocol import AcmeServer, Reply
from lancert.service.acmeserver.resources import PREFIX, Urls
from lancert.service.acmeserver.worker import SerialWorker
from lancert.service.errors import storage_outage
from lancert.serving.ports import whole_body

log = logging.getLogger("lancert.acme")
_HOST = re.compile(r"^(?:[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])(?::\d{1,5})?$")
# A {param} of a route: one non-empty path segment (Starlette's default "str" convertor).
_PARAM = re.compile(r"\{([a-z_]+)\}")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class Answer:
    """A response as the ASGI messages need it: status, raw headers, body."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, body: bytes, status: int, media_type: str | None,
                 headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.body = body
        raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
        if not (status < 200 or status in (204, 304)):
            raw.append((b"content-length", str(len(body)).encode()))
        if media_type is not None:
            raw.append((b"content-type", media_type.encode("latin-1")))
        self.headers = raw

    def set(self, name: str, value: str) -> None:
        """Set ``name`` (lower case) to ``value``, replacing a header of that name."""
        key = name.encode("latin-1")
        self.headers = [h for h in self.headers if h[0] != key] + [(key, value.encode("latin-1"))]

    async def send(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status, "headers": self.headers})
        await send({"type": "http.response.body", "body": self.body})


class Call:
    """What a route reads of one request's ASGI scope (Starlette's ``Request``, the parts used here)."""

    __slots__ = ("_headers", "method", "path", "path_params", "receive", "scope")

    def __init__(self, scope: Scope, receive: Receive, path_params: dict[str, str]) -> None:
        self.scope = scope
        self.receive = receive
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        self.path_params = path_params
        self._headers: dict[str, str] | None = None

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (lower case), latin-1 as Starlette's ``Headers`` reads it."""
        if self._headers is None:
            headers: dict[str, str] = {}
            for key, value in self.scope["headers"]:
                headers.setdefault(key.decode("latin-1").lower(), value.decode("latin-1"))
            self._headers = headers
        return self._headers.get(name)

    @property
    def client_host(self) -> str:
        client = self.scope.get("client")
        return client[0] if client else "unknown"

    async def body(self) -> bytes | None:
        """The whole body; None when the client went away before it ended (nobody to answer)."""
        return await whole_body(self.receive)


def acme_too_large(app: object, limit: int) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """The ACME port's 413, as a problem document with a fresh nonce when ``app`` is the ACME app, as
    every other problem has (RFC 8555 section 6.5: a client retries a refused POST with the nonce of
    the refusal, instead of another newNonce round). The cap itself is the serving layer's."""
    problem = malformed(f"request body exceeds {limit} bytes", status=413)
    server = app.server if isinstance(app, AcmeApp) else None

    async def answer(scope: Scope, receive: Receive, send: Send) -> None:
        await _problem_answer(problem, None, server.new_nonce() if server is not None else None).send(send)

    return answer


def _urls(call: Call) -> Urls:
    host = call.header("host") or ""
    if not _HOST.match(host):
        raise malformed("missing or invalid Host header")
    return Urls(f"https://{host}")


def _problem_answer(problem: AcmeProblem, urls: Urls | None, nonce: str | None) -> Answer:
    headers = dict(problem.headers)
    if nonce:
        headers["Replay-Nonce"] = nonce
    if urls is not None:
        headers["Link"] = f'<{urls.directory}>;rel="index"'
    return Answer(json.dumps(problem.to_json()).encode(), problem.status, PROBLEM_CONTENT_TYPE, headers)


def _path(call: Call) -> str:
    """The request's path as Starlette's ``request.url.path`` gave it (the three characters that would end
    a path escaped), without building a URL object: urlsplit and the URL were 6% of the event loop's time
    per signed request (``bench/acme_inprocess.py`` under py-spy)."""
    return call.path.replace("?", "%3F").replace("#", "%23").replace("\\", "%5C")


async def _in_worker(worker: SerialWorker, call: Callable[[], Reply]) -> Reply:
    """``call()`` in ``worker``, awaited: the worker hands its outcome to the loop with one
    ``call_soon_threadsafe`` (:class:`~.worker.SerialWorker`); requests run one at a time, in order."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[Reply] = loop.create_future()

    def settle(result: Reply | None, error: BaseException | None) -> None:
        if done.cancelled():
            return
        if error is not None:
            done.set_exception(error)
        else:
            done.set_result(result)  # type: ignore[arg-type]

    worker.submit(loop, call, settle)
    return await done


Route = Callable[[Call], Awaitable["Answer | None"]]


class AcmeApp:
    """The ACME port's ASGI app: routes by exact path or by pattern, answers exceptions by class."""

    def __init__(self, server: AcmeServer) -> None:
        self.server = server
        self._exact: dict[str, dict[str, Route]] = {}
        self._patterns: list[tuple[re.Pattern[str], dict[str, Route]]] = []
        self._handlers: dict[type[BaseException], Callable[[Call, Any], Awaitable[Answer]]] = {
            AcmeProblem: self._problem,
            OperationalError: self._storage, InterfaceError: self._storage, OSError: self._storage,
        }
        self._route("/directory", ("GET",), self._directory)
        self._route("/new-nonce", ("HEAD", "GET"), self._new_nonce)
        self._route("/renewal-info/{cert_id}", ("GET",), self._renewal_info)
        for endpoint, path in (
            ("new-account", "/new-account"), ("new-order", "/new-order"), ("revoke-cert", "/revoke-cert"),
            ("key-change", "/key-change"), ("account", "/acct/{account_id}"),
            ("orders", "/acct/{account_id}/orders"), ("order", "/order/{order_id}"),
            ("finalize", "/order/{order_id}/finalize"), ("authz", "/authz/{order_id}/{index}"),
            ("chall", "/chall/{order_id}/{index}"), ("cert", "/cert/{certificate_id}"),
        ):
            self._route(path, ("POST",), self._signed(endpoint))

    def _route(self, path: str, methods: tuple[str, ...], route: Route) -> None:
        allowed = {m: route for m in methods}
        if "GET" in allowed:
            allowed.setdefault("HEAD", route)
        full = PREFIX + path
        if _PARAM.search(full) is None:
            self._exact[full] = allowed
        else:
            parts = _PARAM.split(full)  # literal, name, literal, name, ..., literal
            pattern = "".join(re.escape(part) if i % 2 == 0 else f"(?P<{part}>[^/]+)"
                              for i, part in enumerate(parts))
            self._patterns.append((re.compile(pattern), allowed))

    def _match(self, path: str) -> tuple[dict[str, Route] | None, dict[str, str]]:
        allowed = self._exact.get(path)
        if allowed is not None:
            return allowed, {}
        for pattern, allowed in self._patterns:
            found = pattern.fullmatch(path)
            if found is not None:
                return allowed, found.groupdict()
        return None, {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await _lifespan(receive, send)
            return
        if kind != "http":  # no WebSocket route: closed, as Starlette's router did
            await send({"type": "websocket.close", "code": 1000})
            return
        allowed, params = self._match(scope["path"])
        call = Call(scope, receive, params)
        try:
            if allowed is None:
                raise malformed("no such resource", status=404)
            route = allowed.get(call.method)
            if route is None:
                # RFC 9110 (15.5.6): a 405 names the methods the resource allows.
                problem = malformed("method not allowed here", status=405)
                problem.headers["Allow"] = ", ".join(sorted(allowed))
                raise problem
            answer = await route(call)
        except Exception as exc:
            handler = next((self._handlers[c] for c in type(exc).__mro__ if c in self._handlers), None)
            if handler is None:
                await (await self._bug(call, exc)).send(send)
                raise  # as Starlette's ServerErrorMiddleware did: uvicorn logs it and closes the connection
            answer = await handler(call, exc)
            exc.__traceback__ = None  # a reused exception instance would accumulate tracebacks
        if answer is not None:
            await answer.send(send)

    def respond(self, reply: Reply, urls: Urls) -> Answer:
        headers = {"Replay-Nonce": self.server.new_nonce(), **reply.headers}
        if reply.location:
            headers["Location"] = reply.location
        if reply.body is None:
            body = b""
        elif isinstance(reply.body, str):
            body = reply.body.encode()
        else:
            body = json.dumps(reply.body).encode()
        answer = Answer(body, reply.status, reply.content_type, headers)
        answer.headers.append((b"link", f'<{urls.directory}>;rel="index"'.encode("latin-1")))
        answer.headers.extend((b"link", link.encode("latin-1")) for link in reply.links)
        return answer

    async def _problem(self, call: Call, exc: AcmeProblem) -> Answer:
        try:
            urls = _urls(call)
        except AcmeProblem:
            urls = None
        return _problem_answer(exc, urls, self.server.new_nonce())

    async def _storage(self, call: Call, exc: Exception) -> Answer:
        reason = storage_outage(exc)
        if reason is None:
            return await self._bug(call, exc)
        log.warning("database unavailable on %s %s, answered 503: %s", call.method, _path(call), reason)
        return await self._problem(call, storage_unavailable())

    async def _bug(self, call: Call, exc: Exception) -> Answer:
        log.error("internal error on %s %s: %s", call.method, _path(call), exc, exc_info=exc)
        return await self._problem(call, internal_error())

    # On the loop, no thread hop: the directory and a nonce need no I/O (a nonce is an HMAC, no write).
    async def _directory(self, call: Call) -> Answer:
        urls = _urls(call)
        return self.respond(self.server.directory(urls), urls)

    async def _new_nonce(self, call: Call) -> Answer:
        urls = _urls(call)
        answer = self.respond(Reply(200 if call.method == "HEAD" else 204), urls)
        answer.set("cache-control", "no-store")
        return answer

    async def _renewal_info(self, call: Call) -> Answer:
        urls = _urls(call)  # reads the database: in a thread, as Starlette ran a plain function
        reply = await run_in_threadpool(self.server.renewal_info, urls, call.path_params["cert_id"])
        return self.respond(reply, urls)

    def _signed(self, endpoint: str) -> Route:
        server = self.server

        async def route(call: Call) -> Answer | None:
            urls = _urls(call)
            body = await call.body()
            if body is None:
                return None  # the client is gone: nothing to answer

            def post() -> Reply:
                return server.post(endpoint, urls, urls.origin + _path(call), body,
                                   call.header("content-type"), call.client_host, **call.path_params)

            if server.worker is None:
                reply = await run_in_threadpool(post)
            else:
                reply = await _in_worker(server.worker, post)
            return self.respond(reply, urls)

        return route


async def _lifespan(receive: Receive, send: Send) -> None:
    """Nothing to start or stop: the server's resources are the service's."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def create_acme_app(server: AcmeServer) -> AcmeApp:
    return AcmeApp(server)
