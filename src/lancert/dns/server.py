"""The zone's DNS server: worker processes that share one UDP and one TCP socket on one port.

Why processes: one Python process answers one query at a time (the GIL), so ``--dns-workers N`` starts N
of them. The parent binds the port once, without SO_REUSEPORT, and hands the same two sockets to every
worker (file descriptors passed at spawn); the kernel gives each datagram to one worker blocked in
``recvfrom`` (datagram waits are exclusive, no thundering herd) and each connection to one ``accept``.
Why not a socket per worker with SO_REUSEPORT, as before: any other process of the same user could then
bind the same port too and the kernel split the queries between the two servers (issue 24: 22 of 40
answers REFUSED from a second ``dns run`` on the service's port), and every datagram the kernel had
queued on the parent's own member of the group was dropped when the parent closed it (326 of 1,047
queries lost while 4 workers started). Now a second server's bind fails (``address in use``), and a
query that reaches the port waits in the socket until a worker reads it. The parent keeps the sockets
(it reads nothing from them), restarts a worker that dies with the same sockets, and says it is ready
only once a query over UDP and one over TCP have come back from the workers. A worker exits when its
parent is gone.

Per worker: the UDP loop in the main thread (address queries by the zone's shortcut, everything else
from a dictionary of answers by query bytes, then the zone's general path), TCP on asyncio in a second
thread, the TXT snapshot refreshed from the database in a third, so no query ever waits on SQL.

Hostile input (issue 9): responses (QR=1) are never answered and nothing is sent to the server's own
address and port, which together make the "DNS loop" of a spoofed self-addressed packet (CVE-2024-2169)
impossible; unreadable packets get FORMERR or nothing, one log line a minute at most. TCP connections
are capped per worker, closed after an idle timeout, and carry any number of queries (RFC 7766 §6.2).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from lancert.dns import wire
from lancert.dns.ratelimit import DROP, SEND, RateLimit, ResponseRateLimiter
from lancert.dns.zone import CACHE_ENTRIES, TXT_REFRESH_INTERVAL, ZoneAnswers, ZoneSpec, address_key

log = logging.getLogger("lancert.dns")

TxtSnapshot = Callable[[], Mapping[str, Sequence[str]]]
# Made inside each worker (a database connection cannot cross a fork or a pickle): a picklable callable,
# such as functools.partial of a module-level function, that returns the snapshot reader.
TxtSourceFactory = Callable[[], TxtSnapshot]

TCP_IDLE_TIMEOUT = 10.0  # RFC 7766 §6.2.3: seconds, not minutes; shortened under load (below)
TCP_MAX_CONNECTIONS = 256  # per worker: bounded descriptors and memory whatever clients do
TCP_BACKLOG = 128
# The UDP socket's receive buffer: queries wait there while the workers start (a second or more of
# imports each) and through bursts; the kernel's default of 208 KiB held about 200 of them, and the
# rest were dropped (counted in /proc/net/snmp RcvbufErrors). Linux caps it at net.core.rmem_max.
UDP_RECEIVE_BUFFER = 4 << 20
START_TIMEOUT = 60.0


@dataclass(frozen=True)
class ServerSpec:
    """Everything a worker needs; picklable (it crosses into spawned processes)."""

    zone: ZoneSpec
    host: str = "127.0.0.1"
    txt_source: TxtSourceFactory | None = None
    rate_limit: RateLimit = field(default_factory=RateLimit)
    tcp_idle_timeout: float = TCP_IDLE_TIMEOUT
    tcp_max_connections: int = TCP_MAX_CONNECTIONS
    txt_refresh_interval: float = TXT_REFRESH_INTERVAL


def bind_sockets(host: str, port: int) -> tuple[socket.socket, socket.socket]:
    """A UDP and a TCP socket on ``host`` and one port number (port 0: one free for both), this
    process's alone: no SO_REUSEPORT, so a port another server holds is refused (EADDRINUSE) rather
    than shared. SO_REUSEADDR on TCP only lets a restart bind while old connections sit in TIME_WAIT;
    Linux still refuses it while another socket listens there."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(20):
        udp = socket.socket(family, socket.SOCK_DGRAM)
        tcp = socket.socket(family, socket.SOCK_STREAM)
        try:
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RECEIVE_BUFFER)
            udp.bind((host, port))
            chosen = udp.getsockname()[1]
            try:
                tcp.bind((host, chosen))
            except OSError:
                if port:
                    raise
                udp.close()
                tcp.close()
                continue  # the number UDP got is taken on TCP: try another
            tcp.listen(TCP_BACKLOG)
            return udp, tcp
        except OSError:
            udp.close()
            tcp.close()
            raise
    raise OSError(98, "no port free for both UDP and TCP")


def _loopback_of(host: str) -> str:
    """Where this host reaches a server bound to ``host`` (a wildcard: the loopback of its family)."""
    if host in ("0.0.0.0", ""):  # noqa: S104 - comparing, not binding
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host


def answers_on(host: str, port: int, zone: str, timeout: float) -> bool:
    """Whether the server on ``host``:``port`` answers the zone's SOA over UDP and over TCP within
    ``timeout`` (the query is retried over UDP: a datagram may be dropped under load)."""
    ident = int.from_bytes(os.urandom(2), "big")
    query = (wire.HEADER.pack(ident, 0, 1, 0, 0, 0) + wire.encode_name(zone)
             + wire.TYPE_CLASS.pack(wire.TYPE_SOA, wire.CLASS_IN))
    address = (_loopback_of(host), port)
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    deadline = time.monotonic() + timeout
    with socket.socket(family, socket.SOCK_DGRAM) as udp:
        udp.connect(address)
        while True:
            udp.settimeout(min(0.5, max(0.01, deadline - time.monotonic())))
            try:
                udp.send(query)
                if udp.recv(65535)[:2] == query[:2]:
                    break
            except OSError:  # timeout, or refused: not answering yet
                pass
            if time.monotonic() > deadline:
                return False
    try:
        with socket.create_connection(address, timeout=max(0.1, deadline - time.monotonic())) as tcp:
            tcp.sendall(len(query).to_bytes(2, "big") + query)
            return tcp.recv(4)[2:4] == query[:2]
    except OSError:
        return False


def _own_hosts(host: str) -> frozenset[str]:
    """Source addresses that mean "this host": for a wildcard bind, the loopbacks and the host's names."""
    hosts = {host}
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - comparing, not binding
        hosts |= {"127.0.0.1", "::1", "::ffff:127.0.0.1"}
        with contextlib.suppress(OSError):
            hosts |= {str(info[4][0]) for info in socket.getaddrinfo(socket.gethostname(), None)}
    return frozenset(hosts)


def _truncated(reply: bytes) -> bytes:
    """The same answer with TC=1 and only its question: what rate limiting "slips" to a source. Our
    replies have no question (FORMERR, NOTIMP) or one uncompressed question right after the header."""
    flags = (reply[2] << 8 | reply[3]) | wire.TC
    if reply[4:6] == b"\x00\x00":
        return reply[:2] + wire.HEADER.pack(0, flags, 0, 0, 0, 0)[2:]
    pos = 12
    while reply[pos]:
        pos += 1 + reply[pos]
    return reply[:2] + wire.HEADER.pack(0, flags, 1, 0, 0, 0)[2:] + reply[12 : pos + 5]


RCODES = 16  # the header's 4-bit rcode: one answer counter each, per worker


def _countable(counts: Any) -> Any:
    """The answer counters as something whose items are cheap to increment: a ctypes array (the
    shared memory the parent reads) as a memoryview of unsigned 64-bit integers over the same bytes,
    anything else (a list in tests) as it is."""
    try:
        view = memoryview(counts)
    except TypeError:
        return counts
    return view.cast("B").cast("Q")


class Worker:
    """One worker's three loops over one zone. ``counts``: this worker's answers by rcode, in memory
    shared with the parent (which sums the workers' for ``/metrics``); unlocked, as each worker writes
    only its own slice and a reader may see a count one behind."""

    def __init__(
        self, spec: ServerSpec, udp: socket.socket, tcp: socket.socket, counts: Any = None
    ) -> None:
        self.spec = spec
        self.counts = counts if counts is not None else [0] * RCODES
        self.udp = udp
        self.tcp = tcp
        self.zone = ZoneAnswers(spec.zone)
        if spec.txt_source is None:
            self.zone.txt_max_staleness = float("inf")  # no table: there is nothing to be stale about
        self.port = udp.getsockname()[1]
        self.own = _own_hosts(spec.host)
        limit = spec.rate_limit
        self.rrl = ResponseRateLimiter(limit) if limit.responses_per_second else None
        self.tcp_connections: dict[asyncio.StreamWriter, float] = {}  # -> last activity (monotonic)

    # -- TXT ------------------------------------------------------------------------------------------

    def refresh_txt(self, snapshot: TxtSnapshot) -> None:
        read_at = time.monotonic()
        self.zone.set_txt(snapshot(), read_at)

    def housekeeping(self, snapshot: TxtSnapshot | None, parent: int) -> None:
        """Refresh TXT every interval; exit when the parent is gone (nobody would stop this worker)."""
        failures = 0
        while True:
            started = time.monotonic()
            if os.getppid() != parent:
                os._exit(0)
            if snapshot is not None:
                try:
                    self.refresh_txt(snapshot)
                    failures = 0
                except Exception as exc:  # the database is away: TXT answers turn SERVFAIL once stale
                    failures += 1
                    if failures == 1 or failures % 120 == 0:
                        log.warning("cannot read TXT records (%d time(s)): %s", failures,
                                    str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            time.sleep(max(0.0, self.spec.txt_refresh_interval - (time.monotonic() - started)))

    # -- UDP ------------------------------------------------------------------------------------------

    def serve_udp(self) -> None:
        """The UDP loop. Under load every Python operation in it is paid once per datagram, so it is
        written for that: bound methods held in locals, address queries answered by the zone's
        shortcut before any cache is looked at (a cache keyed by query bytes never hits at a million
        names, and inserting into it cost more than the shortcut's answer), the general path with its
        cache for everything else, the answer counted in a memoryview of the shared counters (a ctypes
        array's item access costs twice as much)."""
        recvfrom = self.udp.recvfrom
        sendto = self.udp.sendto
        address = self.zone.address_reply
        answer = self.zone.answer_parsed
        general = self._reply
        cache = self.zone.cache
        own = self.own
        port = self.port
        rrl = self.rrl
        check = rrl.check if rrl is not None else None
        counts = _countable(self.counts)
        while True:
            try:
                packet, source = recvfrom(65535)
            except InterruptedError:
                continue
            except OSError:
                if self.udp.fileno() < 0:
                    return
                continue  # ICMP errors reported on the socket: nothing to answer
            if source is None:
                return  # shut down (the way to wake a thread blocked in recvfrom)
            if (source[1] == port and source[0] in own) or source[1] == 0:
                continue  # from ourselves (a spoofed loop) or from a port nobody can answer
            try:
                reply = address(packet)
                if reply is None:
                    reply = general(packet, source, cache, answer, rrl)
                    if reply is None:
                        continue
                elif check is not None:
                    verdict = check(source[0], address_key(reply))
                    if verdict == DROP:
                        continue
                    if verdict != SEND:
                        reply = _truncated(reply)
            except Exception:  # a defect must cost one answer, never the worker's loop
                self.zone.malformed.note("internal error")
                log.debug("UDP answer failed", exc_info=True)
                continue
            try:
                sendto(reply, source)
            except OSError:
                continue  # unreachable source, full buffer: UDP makes no promise
            counts[reply[3] & 15] += 1

    @staticmethod
    def _reply(
        packet: bytes,
        source: tuple[str, int],
        cache: dict[bytes, tuple[bytes, object]],
        answer: Callable[[bytes], tuple[bytes | None, object, bool]],
        rrl: ResponseRateLimiter | None,
    ) -> bytes | None:
        hit = cache.get(packet[2:])
        if hit is not None:
            reply = packet[:2] + hit[0]
            key = hit[1]
        else:
            fresh, key, cacheable = answer(packet)
            if fresh is None:
                return None
            reply = fresh
            if cacheable:
                if len(cache) >= CACHE_ENTRIES:
                    cache.clear()
                cache[packet[2:]] = (reply[2:], key)
        if rrl is not None:
            verdict = rrl.check(source[0], key)
            if verdict == DROP:
                return None
            if verdict != SEND:
                return _truncated(reply)
        return reply

    # -- TCP ------------------------------------------------------------------------------------------

    def serve_tcp(self) -> None:
        asyncio.run(self._serve_tcp())

    async def _serve_tcp(self) -> None:
        server = await asyncio.start_server(self._connection, sock=self.tcp, limit=wire.TCP_LIMIT + 2)
        async with server:
            await server.serve_forever()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        spec = self.spec
        connections = self.tcp_connections
        if len(connections) >= spec.tcp_max_connections:
            # At the cap the connection quiet for longest makes room (RFC 7766 §6.2.3 lets a server
            # close idle connections): idle floods evict each other, a client with a query gets in.
            oldest = min(connections, key=connections.__getitem__)
            oldest.transport.abort()
            del connections[oldest]
        connections[writer] = time.monotonic()
        try:
            while True:
                # Under load (over half the cap in use) an idle client gets one second, not ten.
                busy = len(connections) * 2 > spec.tcp_max_connections
                timeout = 1.0 if busy else spec.tcp_idle_timeout
                try:
                    size = int.from_bytes(await asyncio.wait_for(reader.readexactly(2), timeout), "big")
                    packet = await asyncio.wait_for(reader.readexactly(size), timeout)
                except (TimeoutError, asyncio.IncompleteReadError, ConnectionError, OSError):
                    return
                connections[writer] = time.monotonic()
                reply = self.zone.answer(packet, udp=False)[0]
                if reply is None:
                    if len(packet) < 12:
                        return  # not even a header: this is no DNS client
                    continue
                writer.write(len(reply).to_bytes(2, "big") + reply)
                self.counts[reply[3] & 15] += 1
                try:
                    await asyncio.wait_for(writer.drain(), timeout)
                except (TimeoutError, ConnectionError, OSError):
                    return
        finally:
            connections.pop(writer, None)
            writer.close()


def _worker_main(
    spec: ServerSpec,
    udp: socket.socket,
    tcp: socket.socket,
    ready: Connection,
    parent: int,
    counts: Any = None,
) -> None:
    """Entry point of a worker process (spawned: it shares nothing with the parent but ``spec`` and
    the port's two sockets)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it stops us
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(name)s: %(message)s")
    worker = Worker(spec, udp, tcp, counts)
    snapshot: TxtSnapshot | None = None
    if spec.txt_source is not None:
        snapshot = spec.txt_source()
        with contextlib.suppress(Exception):  # logged by housekeeping's next round if it persists
            worker.refresh_txt(snapshot)
    threading.Thread(target=worker.housekeeping, args=(snapshot, parent), daemon=True).start()
    threading.Thread(target=worker.serve_tcp, daemon=True).start()
    ready.send(os.getpid())
    ready.close()
    worker.serve_udp()


class DNSService:
    """``workers`` processes serving ``spec`` on ``port`` (0: a free one, then in ``self.port``)."""

    def __init__(self, spec: ServerSpec, port: int, workers: int = 1) -> None:
        if workers < 1:
            raise ValueError("at least one DNS worker")
        self.spec = spec
        self.workers = workers
        self._sockets: tuple[socket.socket, socket.socket] | None = bind_sockets(spec.host, port)
        self.port: int = self._sockets[0].getsockname()[1]
        self._context = multiprocessing.get_context("spawn")
        self.processes: list[multiprocessing.process.BaseProcess] = []
        self._stopping = threading.Event()
        self._supervisor: threading.Thread | None = None
        # Answers by rcode, one slice per worker process, summed by rcode_counts().
        self._counts = [self._context.RawArray("Q", RCODES) for _ in range(workers)]
        self._owners: list[multiprocessing.process.BaseProcess | None] = [None] * workers
        self._launched: list[tuple[multiprocessing.process.BaseProcess, Connection]] = []

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes if p.pid is not None]

    def rcode_counts(self) -> dict[int, int]:
        """Answers sent so far by rcode, over every worker (``/metrics``)."""
        totals = [sum(column) for column in zip(*self._counts, strict=True)]
        return {rcode: count for rcode, count in enumerate(totals) if count}

    def _free_slot(self) -> int:
        """A counter slice no live worker writes (a restarted worker continues the dead one's)."""
        for slot, owner in enumerate(self._owners):
            if owner is None or not owner.is_alive():
                return slot
        return 0

    def _launch(self) -> tuple[multiprocessing.process.BaseProcess, Connection]:
        if self._sockets is None:
            raise OSError("DNS service stopped")
        udp, tcp = self._sockets
        receive, send = self._context.Pipe(duplex=False)
        slot = self._free_slot()
        process = self._context.Process(  # the sockets cross as descriptors (multiprocessing.reduction)
            target=_worker_main, args=(self.spec, udp, tcp, send, os.getpid(), self._counts[slot]),
            daemon=True, name="lancert-dns-worker",
        )
        process.start()
        self._owners[slot] = process
        send.close()
        return process, receive

    @staticmethod
    def _await_ready(process: multiprocessing.process.BaseProcess, receive: Connection) -> None:
        try:
            if not receive.poll(START_TIMEOUT):
                raise OSError(f"DNS worker did not start within {START_TIMEOUT:.0f} s")
            receive.recv()
        except EOFError:
            raise OSError(f"DNS worker exited at start (status {process.exitcode})") from None
        finally:
            receive.close()

    def _spawn(self) -> multiprocessing.process.BaseProcess:
        process, receive = self._launch()
        self._await_ready(process, receive)
        return process

    def start(self) -> None:
        """Start every worker at once (each spends about a second importing; in turn, N of them would
        delay the service's start by N seconds) and return when they answer over UDP and TCP."""
        self.launch()
        self.wait_ready()

    def launch(self) -> None:
        """Start every worker without waiting for it: a caller with other start-up work (the service
        building its ACME endpoint) does it while the workers import, then calls :meth:`wait_ready`."""
        try:
            self._launched = [self._launch() for _ in range(self.workers)]
            self.processes.extend(process for process, _ in self._launched)
        except BaseException:
            self.stop()
            raise

    def wait_ready(self) -> None:
        """Return when every launched worker answers over UDP and TCP; stop them all if one does not."""
        try:
            launched, self._launched = self._launched, []
            for process, receive in launched:
                self._await_ready(process, receive)
            if not answers_on(self.spec.host, self.port, self.spec.zone.zone, START_TIMEOUT):
                raise OSError(f"DNS workers did not answer within {START_TIMEOUT:.0f} s")
        except BaseException:
            self.stop()
            raise
        self._supervisor = threading.Thread(target=self._supervise, daemon=True, name="lancert-dns-watch")
        self._supervisor.start()

    def _supervise(self) -> None:
        while not self._stopping.wait(1.0):
            for index, process in enumerate(self.processes):
                if process.is_alive() or self._stopping.is_set():
                    continue
                log.warning("DNS worker %s exited (status %s); starting another", process.pid,
                            process.exitcode)
                try:
                    self.processes[index] = self._spawn()
                except OSError as exc:
                    log.warning("cannot restart DNS worker: %s", exc)

    def stop(self) -> None:
        self._stopping.set()
        for _, receive in self._launched:  # launched, never waited for
            receive.close()
        self._launched = []
        for process in self.processes:
            if process.is_alive():
                process.terminate()
        for process in self.processes:
            process.join(5)
            if process.is_alive():
                process.kill()
                process.join(5)
        if self._sockets is not None:
            for sock in self._sockets:
                sock.close()
            self._sockets = None
