"""Every HTTP(S) port of lancert, served one way: a :class:`Port` on a :class:`PortServer`.

Each server used to build its own uvicorn: three identical subclasses, four body caps, and connection
guards on five ports but not on the ACME port nor the printer's, where 1,000 half-open TLS connections
from one host took the whole process down while asyncio logged a traceback per refused ``accept()``
(103 MB in 15 s on the service, 175 MB in 30 s on the printer). A port is now described once (its app,
its listening socket, its body cap, its TLS context) and every port gets the same:

- the connection bounds of :mod:`lancert.serving.connections`: one cap per process with eviction of the
  flooding client's oldest idle connection, TLS handshake, header and body timeouts, one log line per
  burst of refused ``accept()`` calls (the loop's exception handler is set when a port starts);
- a body cap (:class:`BodyLimit`) counted on what arrives, so a lying or absent Content-Length cannot get
  more than the cap past it; a route that takes less reads its body with :func:`read_body`;
- one log format: uvicorn's and asyncio's own records go through lancert's handlers (never uvicorn's
  ``INFO:     `` lines, never an access log), no ``Server`` header, ``X-Forwarded-*`` ignored (every
  port is reached directly: trusting it from 127.0.0.1, uvicorn's default, would let any local process
  choose the client address that the logs and the guessing budgets count);
- signals left to the caller: :func:`serve_ports` runs several ports in one event loop, stops them
  together, and calls ``on_ready`` once every one of them is listening in the loop, so a ready line
  printed there means the ports answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import socket
import ssl
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import uvicorn
from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lancert.serving.connections import GuardedHttpProtocol, guarded_listener, one_line_refusals

log = logging.getLogger("lancert.serving")

# How long a stop waits for requests in flight before closing what is left (an idle WebSocket, a
# kept-alive connection): uvicorn alone would wait for them without end.
STOP_GRACE = 2.0

Refusal = Callable[[int], ASGIApp]


def plain_too_large(limit: int) -> Response:
    """The 413 of a port whose app has no error format of its own."""
    return PlainTextResponse(f"request body larger than {limit} bytes\n", status_code=413)


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes with ``refuse(limit)``, counting what actually arrives.

    The whole (small) body is read here and replayed to the app, so a lying or absent Content-Length
    (chunked transfer) cannot get more than ``limit`` bytes past this point. WebSocket scopes pass
    untouched (their frames are capped by ``ws_max_size``).
    """

    def __init__(self, app: ASGIApp, limit: int, refuse: Refusal = plain_too_large) -> None:
        self.app = app
        self.limit = limit
        self.refuse = refuse

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await self.refuse(self.limit)(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await self.refuse(self.limit)(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        await self.app(scope, replaying(b"".join(chunks), receive), send)


async def whole_body(receive: Receive) -> bytes | None:
    """The request's whole body, for an app behind :class:`BodyLimit` (which already counted it against
    the port's cap); None when the client went away before it ended: nobody is left to answer."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def replaying(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives ``body`` whole as its first message and then what ``receive`` gives (the
    disconnect): for the app behind one that has read the body already."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class BodyTooLarge(Exception):
    """The body passed the route's limit (declared or counted)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"body larger than {limit} bytes")
        self.limit = limit


class BodyIncomplete(Exception):
    """The client went away mid-body (or the body timeout closed it): nobody is left to answer."""


async def read_body(request: Request, limit: int) -> bytes:
    """The request body of a route that takes less than its port's cap: :class:`BodyTooLarge` as soon
    as it passes ``limit`` (never read whole first), :class:`BodyIncomplete` if the client left."""
    declared = request.headers.get("content-length")
    if declared is not None and not (declared.isascii() and declared.isdigit() and int(declared) <= limit):
        raise BodyTooLarge(limit)
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise BodyTooLarge(limit)
    except ClientDisconnect:
        raise BodyIncomplete("the client left before its body was complete") from None
    return bytes(body)


@dataclass(eq=False)
class Port:
    """One listening HTTP(S) port and what it serves.

    ``listener`` is a listening socket (:func:`lancert.loopback.listen_tcp`, bound before anything else
    starts so that a taken port fails a start cleanly); it is taken over and counted by the process's
    connection guard. ``max_body`` is the largest body any route of the port takes; ``too_large`` answers
    a larger one in the app's own error format. ``tls`` is the context every handshake uses (a renewal
    that loads a new chain into it reaches new connections at once).
    """

    name: str
    app: ASGIApp
    listener: socket.socket
    max_body: int
    too_large: Refusal = plain_too_large
    tls: ssl.SSLContext | None = None
    keep_alive: int = 5
    graceful_shutdown: int = 2
    http: type[GuardedHttpProtocol] = GuardedHttpProtocol
    ws: type[asyncio.Protocol] | str = "none"
    ws_max_size: int = 64 * 1024

    def __post_init__(self) -> None:
        self.listener = guarded_listener(self.listener)

    @property
    def host(self) -> str:
        return str(self.listener.getsockname()[0])

    @property
    def port(self) -> int:
        return int(self.listener.getsockname()[1])

    def url(self, host: str | None = None) -> str:
        """``http(s)://host:port/`` of this port (``host``: a name to show instead of the address)."""
        shown = host or self.host
        shown = f"[{shown}]" if ":" in shown else shown
        return f"{'https' if self.tls else 'http'}://{shown}:{self.port}/"

    def config(self) -> uvicorn.Config:
        tls = self.tls
        return uvicorn.Config(
            BodyLimit(self.app, self.max_body, self.too_large),
            http=self.http, ws=self.ws, ws_max_size=self.ws_max_size, loop="asyncio", lifespan="off",
            log_config=None, log_level="warning", access_log=False, server_header=False,
            proxy_headers=False, timeout_keep_alive=self.keep_alive,
            timeout_graceful_shutdown=self.graceful_shutdown,
            ssl_context_factory=(lambda _config, _default: tls) if tls is not None else None,
        )


class PortServer(uvicorn.Server):
    """uvicorn serving one :class:`Port`; signals are the caller's (ports share a process and a loop)."""

    def __init__(self, port: Port) -> None:
        route_server_logs()
        super().__init__(port.config())
        self.port = port

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        one_line_refusals(asyncio.get_running_loop())
        lean_tls_read_buffers()
        await super().startup(sockets)
        collect_from_now_on()

    async def serve_port(self, listener: socket.socket | None = None) -> None:
        """Serve until :attr:`should_exit`; ``listener`` (a ``dup()`` of the port's socket) when the
        port is served again after this server ends (uvicorn closes the socket it served)."""
        await self.serve(sockets=[listener or self.port.listener])


_start_frozen = False


def collect_from_now_on() -> None:
    """The start of the process is over once a port serves: what it made is frozen, and the cyclic
    collector runs again, even inside the command's start pause (lancert.commands.main).

    Collecting: a request leaves a few KiB of reference cycles (uvicorn, asyncio, Starlette), and 1,000
    requests inside the pause filled pymalloc arenas that were never given back once collected (the box
    agent: 48 -> 52 MiB; issue 21, < 50 MB). Freezing (``gc.freeze``, once a process): the start's
    objects (modules, classes, the app) live as long as the process, and a full collection would scan
    them all each time; frozen, it scans only what came after (``lancert up`` warm to its summary 0.67 ->
    0.61 s, the ACME port's CPU per certificate ~5% less; bench/README.md). The price is the start's own
    cyclic garbage, if any, never collected."""
    global _start_frozen
    if not _start_frozen:
        gc.freeze()
        _start_frozen = True
    gc.enable()


# What asyncio reads a TLS connection's ciphertext into, per connection. asyncio's own is 256 KiB, made
# (and zero-filled, so resident) when the TCP connection is accepted, before any handshake: 16 ACME
# clients held 4 MiB of them, and a flood of idle connections up to the guard's hard limit (512) would
# hold 128 MiB. Two full TLS records (16 KiB and their overhead each) fit in 34 KiB; a larger read
# only arrives in more than one recv(), and lancert's bodies are at most 64 KiB.
TLS_READ_BUFFER = 34 * 1024


def lean_tls_read_buffers() -> None:
    """Make asyncio's TLS connections of this process read into :data:`TLS_READ_BUFFER` bytes.

    ``asyncio.sslproto.SSLProtocol.max_size`` is the size of that buffer (``get_buffer``, CPython 3.11
    and later) and the most plaintext taken per ``SSLObject.read``; the loop makes the protocol itself,
    so its class attribute is the only place to set it (the clients of the process get the same)."""
    import asyncio.sslproto

    asyncio.sslproto.SSLProtocol.max_size = min(asyncio.sslproto.SSLProtocol.max_size, TLS_READ_BUFFER)


async def serve_ports(
    ports: Sequence[Port],
    on_ready: Callable[[], None] | None = None,
    *,
    stop: asyncio.Event | None = None,
    grace: float = STOP_GRACE,
) -> bool:
    """Serve ``ports`` in this loop until SIGINT/SIGTERM (or ``stop`` is set); whether all started.

    ``on_ready`` runs once every port listens in the loop, which is what a ready line must mean. One
    port ending (an error) stops the others. Requests in flight get ``grace`` seconds when stopping.
    """
    loop = asyncio.get_running_loop()
    stop = stop or asyncio.Event()
    handled: list[int] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError, RuntimeError):  # not the main thread: the caller's signals
            loop.add_signal_handler(sig, stop.set)
            handled.append(sig)
    servers = [PortServer(port) for port in ports]
    tasks = [asyncio.create_task(server.serve_port()) for server in servers]
    for task in tasks:
        task.add_done_callback(lambda _task: stop.set())
    started = False
    try:
        while not stop.is_set():
            if all(server.started for server in servers):
                started = True
                if on_ready is not None:
                    on_ready()
                break
            await asyncio.sleep(0.01)
        await stop.wait()
    finally:  # also when on_ready fails: no port is left serving
        for server in servers:
            server.should_exit = True

        def force_exit() -> None:
            for server in servers:
                server.force_exit = True

        timer = loop.call_later(grace, force_exit)
        results = await asyncio.gather(*tasks, return_exceptions=True)
        timer.cancel()
        for sig in handled:
            loop.remove_signal_handler(sig)
        for port in ports:
            port.listener.close()
    for result in results:
        if isinstance(result, BaseException) and not isinstance(result, (SystemExit, asyncio.CancelledError)):
            raise result
    return started


class _ThroughLancert(logging.Handler):
    """Hands a record of uvicorn or asyncio to lancert's handlers (``lancert.logs``, the box's log
    file), so that a port's log has one format, whichever library wrote the line."""

    def emit(self, record: logging.LogRecord) -> None:
        log.handle(record)


def route_server_logs() -> None:
    """Send uvicorn's and asyncio's loggers through lancert's handlers (idempotent)."""
    for name in ("uvicorn", "asyncio"):
        logger = logging.getLogger(name)
        if not any(isinstance(h, _ThroughLancert) for h in logger.handlers):
            logger.handlers = [_ThroughLancert()]
            logger.propagate = False


class BackgroundPorts:
    """Ports served in a thread of their own, with its own event loop: a page a process serves beside
    its main work (``lancert up``'s POS demo page, the devices tests stand up), the one serving way."""

    def __init__(self, ports: Sequence[Port], name: str = "ports") -> None:
        self.ports = list(ports)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._ready = threading.Event()
        self._errors: list[BaseException] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None

    def start(self, timeout: float = 30.0) -> BackgroundPorts:
        """Serve; returns once every port answers (or raises what stopped them from starting)."""
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"{self._thread.name} did not start within {timeout:g} s")
        if self._errors:
            raise self._errors[0]
        return self

    def stop(self) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                loop.call_soon_threadsafe(stop.set)
        self._thread.join(10)

    def _run(self) -> None:
        async def serve() -> None:
            self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
            if not await serve_ports(self.ports, self._ready.set, stop=self._stop):
                raise OSError(f"{self._thread.name}: a port did not start")

        try:
            asyncio.run(serve())
        except BaseException as exc:  # reported to the starting thread
            self._errors.append(exc)
        finally:
            self._ready.set()
