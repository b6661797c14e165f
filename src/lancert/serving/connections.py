"""Bounds on the connections of every HTTP(S) port that :mod:`lancert.serving.ports` serves.

uvicorn closes a connection only when it has been idle after a response (``timeout_keep_alive``): a
client that connects and says nothing, sends half a header, stops in the middle of a body, streams an
endless chunked body, or completes a TLS handshake and then stays silent is kept for ever. Fuzzing found
1,100 such connections enough to make a service with a 1,024-descriptor limit stop answering, and asyncio
then wrote a traceback for every refused ``accept()`` (58-71 MB of stderr in under a minute); 2,000 silent
TLS connections held 380 MB of the terminal. The same bounds reached the ACME port and the printer only
when they joined the one serving layer: before, 1,000 half-open TLS connections to the ACME port took the
whole service down (``/healthz`` included) while asyncio logged 103 MB of tracebacks in 15 s. The bounds:

- **timeouts** (:class:`GuardedHttpProtocol`, :meth:`ConnectionGuard.admit`): a TLS handshake must be
  done :data:`HANDSHAKE_TIMEOUT` seconds after ``accept()`` (asyncio's own default is 60 s); a request's
  headers must have arrived
  :data:`HEADER_TIMEOUT` seconds after the connection is ready (after the TLS handshake) or after the
  first byte of a next request on a kept-alive connection, and its body :data:`BODY_TIMEOUT` seconds
  after the headers; otherwise the connection is closed;
- **a bounded head**: a request line and header fields over :data:`MAX_HEAD` bytes are refused (431)
  and the connection closed;
- **a cap with eviction** (:class:`ConnectionGuard`, fed by :func:`guarded_listener`): every accepted
  socket is counted from ``accept()`` on, TLS handshake included; beyond the cap (below the process's
  descriptor limit, so ``accept()`` itself keeps working) the oldest connection that is not running a
  request or a WebSocket, of the client address holding the most connections, is closed: a flood of
  idle connections from one machine evicts itself, never a POS or browser with a connection or two;
- **one log line per burst** (:func:`one_line_refusals`) if ``accept()`` fails anyway (descriptors used
  elsewhere in the process), instead of a traceback per refusal.

The guard is one per process and may be fed by event loops in several threads (``lancert up`` serves the
printer in a thread of its own): its table is behind a lock, and a connection is closed in its own loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import resource
import socket
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("lancert.serving")

HANDSHAKE_TIMEOUT = 10.0
HEADER_TIMEOUT = 10.0
BODY_TIMEOUT = 30.0
# A request's line and header fields, at most: h11's default, which every port had while it served with
# h11. llhttp (httptools) takes a header of any length and httptools keeps it whole until its end (a
# 10 MB header went through), so the bound is kept here: over the reads of a head still incomplete, and
# on a complete head's fields (GuardedHttpProtocol.data_received, .on_headers_complete).
MAX_HEAD = 16 * 1024
# Enough for a shop's POS systems and browsers, small enough to bound memory: an idle TLS connection
# costs about 64 KiB with the ports' read buffer (lancert.serving.ports.TLS_READ_BUFFER), 285 KiB with
# asyncio's own (200 idle ones on the ACME port: +12.4 MiB against +55.7 MiB, bench/README.md).
DEFAULT_MAX_CONNECTIONS = 256
# Descriptors kept for everything else the process opens (files, the database, DNS, log files).
RESERVED_DESCRIPTORS = 64
# Newcomers of other clients than a flooding one may pass the hard limit by this many while evicted
# connections close (a loop turn): a quarter of the reserved descriptors.
OVER_LIMIT = RESERVED_DESCRIPTORS // 4
REFUSAL_LOG_INTERVAL = 10.0
_ACCEPT_FAILURE = "socket.accept() out of system resource"
HEAD_TOO_LARGE = "Request head too large."


def descriptor_budget(limit: int | None = None) -> int:
    """How many connections the process's descriptor limit leaves room for, open or closing."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0] if limit is None else limit
    if soft == resource.RLIM_INFINITY:
        return 1 << 20
    return max(16, soft - RESERVED_DESCRIPTORS)


class _Burst:
    """One log line per :data:`REFUSAL_LOG_INTERVAL` for a repeated event, with the count in between."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.last = -REFUSAL_LOG_INTERVAL
        self.count = 0

    def happened(self, detail: object) -> None:
        self.count += 1
        now = time.monotonic()
        if now - self.last >= REFUSAL_LOG_INTERVAL:
            log.warning("%s: %s (%d since the last report; connections open: %d, cap %d)", self.what, detail,
                        self.count, _guard.open_connections(), _guard.cap)
            self.last, self.count = now, 0


def client_key(address: str) -> str:
    """The unit a client is counted by: an IPv4 address, or the /64 of an IPv6 address.

    An IPv6 host picks addresses in its /64 at will (privacy addresses), so counting single addresses
    would give it as many budgets as it likes; IPv4-mapped addresses count as the IPv4 address they carry.
    """
    try:
        ip = ipaddress.ip_address(address.partition("%")[0])
    except ValueError:
        return address[:64]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


@dataclass(eq=False)
class _Entry:
    sock: weakref.ref[socket.socket]
    client: str
    busy: bool = False
    evicted: bool = False
    protocol: weakref.ref[Any] | None = None
    loop: asyncio.AbstractEventLoop | None = None

    def alive(self) -> bool:
        sock = self.sock()
        return sock is not None and sock.fileno() != -1

    def close(self) -> None:
        """Close it now, in the loop that drives it: abort its transport (no TLS close_notify exchange a
        silent peer would make last 30 s), or shut the socket down when no protocol has it yet
        (mid-handshake: asyncio then reads EOF and releases it)."""
        self.evicted = True
        if self.loop is not None and not _in_loop(self.loop):
            with contextlib.suppress(RuntimeError):  # that loop is closed: its sockets are gone with it
                self.loop.call_soon_threadsafe(self._close)
            return
        self._close()

    def handshake_expired(self) -> None:
        """Close it if no protocol has it yet: its TLS handshake is still not done."""
        if self.protocol is None and not self.evicted and self.alive():
            self.close()

    def _close(self) -> None:
        protocol = self.protocol() if self.protocol is not None else None
        transport = getattr(protocol, "transport", None)
        if transport is not None:
            transport.abort()
            return
        sock = self.sock()
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


@dataclass
class ConnectionGuard:
    """Every connection of the process's guarded servers, oldest first, and the bounds on their number.

    Beyond :attr:`cap` live connections the oldest one that is not busy is closed. A descriptor stays
    counted until it is really closed (asyncio closes at its next turn, and accepts up to the listen
    backlog in one go), so with :attr:`hard_limit` descriptors in use the listener closes a newcomer at
    once when its client holds the most connections (the flood) or every connection is busy, and lets
    another client's newcomer in (up to :data:`OVER_LIMIT` over the limit while the evicted close).
    """

    max_connections: int = DEFAULT_MAX_CONNECTIONS
    _entries: dict[int, _Entry] = field(default_factory=dict)
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    @property
    def hard_limit(self) -> int:
        return min(2 * self.max_connections, descriptor_budget())

    @property
    def cap(self) -> int:
        return max(8, min(self.max_connections, self.hard_limit // 2))

    def full(self) -> bool:
        with self._lock:
            self._purge()
            return len(self._entries) >= self.hard_limit

    def closing(self) -> bool:
        """Whether evicted connections still hold descriptors (they go at the loop's next turn)."""
        with self._lock:
            return any(e.evicted for e in self._entries.values())

    def admit(self, sock: socket.socket, client: str) -> None:
        """Count ``sock``, just accepted from ``client``; beyond the cap, evict the oldest idle connection
        of the client that holds the most, so a flood from one machine evicts its own connections and
        never those of a client with one or two. Called in the accepting loop, which also gets the
        deadline of the connection's TLS handshake (:data:`HANDSHAKE_TIMEOUT`)."""
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:  # counted outside a loop (the guard's own tests): no deadline to keep
            loop = None
        entry = _Entry(weakref.ref(sock), client_key(client), loop=loop)
        if loop is not None:
            loop.call_later(HANDSHAKE_TIMEOUT, entry.handshake_expired)
        with self._lock:
            self._admit(sock.fileno(), entry)

    def _admit(self, fd: int, entry: _Entry) -> None:
        self._entries.pop(fd, None)  # a reused descriptor number goes to the end: the order is by age
        self._entries[fd] = entry
        live = [e for e in self._entries.values() if not e.evicted]
        for _ in range(len(live) - self.cap):
            idle = [e for e in live if not e.busy and not e.evicted]
            if not idle:
                break
            held: dict[str, int] = {}
            for entry in live:
                if not entry.evicted:
                    held[entry.client] = held.get(entry.client, 0) + 1
            top = max(held[e.client] for e in idle)
            next(e for e in idle if held[e.client] == top).close()  # the oldest, as entries are by age

    def attach(self, protocol: Any, transport: asyncio.BaseTransport) -> _Entry | None:
        """The entry of ``transport``'s socket, now known to be driven by ``protocol``."""
        sock = transport.get_extra_info("socket")
        with self._lock:
            entry = self._entries.get(sock.fileno()) if sock is not None else None
        if entry is not None:
            entry.protocol = weakref.ref(protocol)
            if entry.evicted:
                transport.abort()
        return entry

    def floods(self, client: str) -> bool:
        """Whether ``client`` holds the most connections of all (ties included), not counting evicted ones."""
        key = client_key(client)
        with self._lock:
            held: dict[str, int] = {}
            for entry in self._entries.values():
                if not entry.evicted:
                    held[entry.client] = held.get(entry.client, 0) + 1
        return bool(held) and held.get(key, 0) >= max(held.values())

    def room_over_limit(self) -> bool:
        """Whether a newcomer may be counted beyond :attr:`hard_limit` while evicted descriptors close:
        at most :data:`OVER_LIMIT` more, taken from the descriptors kept for the rest of the process."""
        with self._lock:
            return len(self._entries) < self.hard_limit + OVER_LIMIT

    def open_connections(self) -> int:
        with self._lock:
            self._purge()
            return len(self._entries)

    def _purge(self) -> None:
        for fd in [fd for fd, e in self._entries.items() if not e.alive()]:
            del self._entries[fd]


def _in_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


_guard = ConnectionGuard()
_refused = _Burst("refusing connections")


def connection_guard() -> ConnectionGuard:
    """The process's guard: one descriptor table, so one count for all its servers."""
    return _guard


class _GuardedListener(socket.socket):
    """A listening socket that has the guard admit each connection (asyncio calls ``accept``)."""

    def accept(self) -> tuple[socket.socket, Any]:
        while True:  # ends with a connection, or BlockingIOError (asyncio: "nothing to accept now")
            conn, address = super().accept()
            client = str(address[0]) if isinstance(address, tuple) else "local"
            if not _guard.full():
                _guard.admit(conn, client)
                return conn, address
            if _guard.closing() and _guard.room_over_limit() and not _guard.floods(client):
                # Evicted connections free their descriptors at the loop's next turn: a newcomer of
                # another client gets in now (a few descriptors over the limit, for a turn).
                _guard.admit(conn, client)
                return conn, address
            # At the limit: the newcomer of the client holding the most connections (a flood) is closed
            # at once, so the kernel's accept queue drains at accept() speed and a POS or browser queued
            # behind the flood is reached within milliseconds (waiting for evictions took 1-2 s behind
            # 1,000 half-open connections), and so is one when every slot is busy.
            conn.close()
            _refused.happened("the client holding the most connections" if _guard.closing()
                              else "every connection slot is busy")


def guarded_listener(sock: socket.socket, max_connections: int | None = None) -> socket.socket:
    """``sock`` (a listening socket from :func:`lancert.loopback.listen_tcp`) with its connections counted
    and capped; ``max_connections`` sets the process's cap (the smallest asked for wins)."""
    if max_connections is not None:
        _guard.max_connections = min(_guard.max_connections, max_connections)
    if isinstance(sock, _GuardedListener):
        return sock
    listener = _GuardedListener(sock.family, sock.type, sock.proto, fileno=sock.detach())
    listener.set_inheritable(True)
    return listener


class _OneLineClientErrors(logging.Filter):
    """uvicorn's lines about what only a client did wrong, kept to one line per burst.

    It logs a malformed WebSocket text frame (invalid UTF-8) with ``logger.exception`` (a traceback, at
    ERROR): one warning line instead. It writes a warning per malformed request or unsupported
    ``Upgrade``, so a fuzzer's 10,000 requests made 10,000 lines: one per :data:`REFUSAL_LOG_INTERVAL`
    with the count instead. Its advice to "pip install" a WebSocket library, given for an ``Upgrade``
    to a port that has WebSockets off on purpose, is dropped.
    """

    TRACEBACKS = ("Invalid UTF-8 sequence received from client.",)
    BURSTS = ("Invalid HTTP request received.", HEAD_TOO_LARGE, "Unsupported upgrade request.", *TRACEBACKS)
    DROPPED = "No supported WebSocket library detected."

    def __init__(self) -> None:
        super().__init__()
        self._last: dict[str, float] = {}
        self._count: dict[str, int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.msg if isinstance(record.msg, str) else ""
        if message.startswith(self.DROPPED):
            return False
        if message in self.TRACEBACKS:
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        if message in self.BURSTS:
            self._count[message] = self._count.get(message, 0) + 1
            now = time.monotonic()
            if now - self._last.get(message, -REFUSAL_LOG_INTERVAL) < REFUSAL_LOG_INTERVAL:
                return False
            record.msg, record.args = f"{message} ({self._count[message]} since the last report)", None
            self._last[message], self._count[message] = now, 0
        return True


def one_line_refusals(loop: asyncio.AbstractEventLoop) -> None:
    """Log refused ``accept()`` calls as one line per burst instead of asyncio's traceback for each, and
    clients' malformed frames as one line instead of uvicorn's traceback."""
    uvicorn_errors = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _OneLineClientErrors) for f in uvicorn_errors.filters):
        uvicorn_errors.addFilter(_OneLineClientErrors())
    previous = loop.get_exception_handler()

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if str(context.get("message", "")).startswith(_ACCEPT_FAILURE):
            _refused.happened(context.get("exception") or "out of resources")
        elif previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)


class _OneWritePerTurn:
    """A transport whose writes of one turn of the event loop go out as one: uvicorn writes a response's
    head and its body apart, and each ``write`` on an idle socket is a ``send()`` of its own (on TLS, a
    record of its own too). Joined at the end of the turn (``call_soon``), in order, and before a
    ``close`` or ``write_eof``; everything else is the transport's."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not data:
            return
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(data)

    def _flush(self) -> None:
        if self._pending:
            data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
            self._pending.clear()
            if not self._transport.is_closing():
                self._transport.write(data)

    def writelines(self, lines: Any) -> None:
        for data in lines:
            self.write(data)

    def write_eof(self) -> None:
        self._flush()
        self._transport.write_eof()

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with header and body timeouts and a bounded head, reporting its state
    to the guard.

    httptools (llhttp, in C) rather than h11 (pure Python): a request's parse and answer cost about half
    (a keep-alive HTTPS GET of the ACME directory 0.24 -> 0.14 ms of server CPU; bench/README.md). What h11
    gave that llhttp does not, the head's bound, is kept here (:data:`MAX_HEAD`). llhttp is the stricter
    of the two, each a 400 where h11 passed the request on (tried on a served port): a method it does not
    know (``FOO``, HTTP/2's ``PRI`` preface), a header folded over two lines, lines ended by a bare LF,
    and Content-Length beside Transfer-Encoding (h11 took the chunked body and ignored the length: the
    shape of request smuggling).
    """

    _deadline: asyncio.TimerHandle | None = None
    _due: float | None = None
    _deadline_cycle: object = None
    _entry: _Entry | None = None
    _in_head = False  # from a request's first byte to the end of its header fields
    _head_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_OneWritePerTurn(transport, self.loop))  # type: ignore[arg-type]
        self._entry = _guard.attach(self, transport)
        self._arm(HEADER_TIMEOUT, None)

    def connection_lost(self, exc: Exception | None) -> None:
        self._drop_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._due is None and (self.cycle is None or self.cycle.response_complete):
            self._arm(HEADER_TIMEOUT, None)  # the first byte of a next request on a kept-alive connection
        super().data_received(data)
        if self._in_head:
            # An unfinished head: the whole read counts, as the parser does not say where in it the head
            # began (a pipelined request's can follow the end of the previous body), so a head is cut at
            # MAX_HEAD plus at most one read, never later.
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD:
                self._refuse_head()
                return
        self._follow()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head, self._head_bytes = True, 0

    def on_headers_complete(self) -> None:
        self._in_head = False
        # A head that came whole in one read was never counted above: its size is what the parser gave.
        size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if size > MAX_HEAD:
            self._refuse_head()
            return  # no request for the app
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self.transport.is_closing():  # refused in this read: the rest of it is dropped
            super().on_body(body)

    def on_message_complete(self) -> None:
        if not self.transport.is_closing():
            super().on_message_complete()

    def _refuse_head(self) -> None:
        self._in_head = False
        if self.transport.is_closing():
            return
        self.logger.warning(HEAD_TOO_LARGE)
        text = f"request line and headers over {MAX_HEAD} bytes\n".encode()
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain; charset=utf-8\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(text), text)
        )
        self.transport.close()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._follow()

    def handle_websocket_upgrade(self) -> None:
        self._drop_timer()
        if self._entry is not None:
            self._entry.busy = True  # a WebSocket is a client's live session, never evicted as idle
        super().handle_websocket_upgrade()

    def _follow(self) -> None:
        """Move the deadline along with the request: the body timeout once its headers are in, none while
        the app works on a complete request, and between requests only the header deadline of a next
        request's first byte (uvicorn's keep-alive timeout covers a silent kept-alive connection)."""
        cycle = self.cycle
        if cycle is None or (cycle.response_complete and not cycle.more_body):
            busy = False
            if self._deadline_cycle is not None:
                self._disarm()
        elif cycle.more_body:  # the body is still coming, even after an early answer (endless chunks)
            if self._deadline_cycle is not cycle:
                self._arm(BODY_TIMEOUT, cycle)
            busy = False  # a trickling body may be evicted: real clients send theirs at once
        else:
            self._disarm()
            busy = True
        if self._entry is not None and not self.transport.is_closing():
            self._entry.busy = busy

    def _arm(self, seconds: float, cycle: object) -> None:
        """Set the deadline to ``seconds`` from now. One timer per connection serves every deadline: a
        deadline moved later only updates ``_due`` and the timer, when it fires early, sleeps on to the
        new one (a keep-alive connection re-arms two or three times per request; a ``call_later`` and a
        ``cancel`` each time were ~4% of the ACME port's CPU under load). The deadline itself is exact."""
        due = self.loop.time() + seconds
        self._due, self._deadline_cycle = due, cycle
        if self._deadline is None or self._deadline.when() > due:
            if self._deadline is not None:
                self._deadline.cancel()
            self._deadline = self.loop.call_at(due, self._expire)

    def _disarm(self) -> None:
        """No deadline: the timer, if any, finds ``_due`` unset when it fires and goes away."""
        self._due, self._deadline_cycle = None, None

    def _drop_timer(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline, self._due, self._deadline_cycle = None, None, None

    def _expire(self) -> None:
        self._deadline = None
        due = self._due
        if due is None:
            return
        if due > self.loop.time():  # re-armed later since the timer was set
            self._deadline = self.loop.call_at(due, self._expire)
            return
        self._due, self._deadline_cycle = None, None
        if not self.transport.is_closing():
            self.transport.abort()  # nothing to flush: the client never finished its request
