"""Idle and half-open connections against every HTTP/TLS port, with the descriptor limit lowered to 256:
each component must still answer a legitimate client within 5 s, keep its memory bounded, write no
traceback, and close connections that never finish a request (issue 9, points 4 and 11). Every port is
served by the one serving layer, the ACME port and the printer's included: 1,000 half-open TLS
connections to either leave every port of that process answering a fresh client within 2 s, with under
5 MB of log (issue 18: before, they took the whole service down and logged 103 MB in 15 s). And hostile
requests (every route of every port, broken bodies and headers, hostile JWS headers) get a 4xx on every
port, never a 5xx or a traceback (issue 24)."""

from __future__ import annotations

import asyncio
import base64
import logging
import resource
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from fuzz_harness import (
    ATTACKER,
    HOSTILE_KINDS,
    NOFILE,
    Component,
    closed_by_peer,
    hostile_connection,
    start_box,
    start_printer,
    start_service,
    start_terminal,
    start_trust_page,
)

from lancert.serving.connections import ConnectionGuard, one_line_refusals

FLOOD = 600  # connections opened against one port: more than twice the descriptor limit


@pytest.fixture(scope="module")
def components(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Component]]:
    base = tmp_path_factory.mktemp("fuzz-connections")
    started: list[Component] = []
    try:
        service, data = start_service(base, acme=True)
        started.append(service)
        started.append(start_box(base, f"http://127.0.0.1:{service.info['http']}", data))
        started.append(start_terminal(base))
        started.append(start_printer(base))
        started.append(start_trust_page(base, base / "terminal" / "ca" / "root.pem"))
        yield {c.name: c for c in started}
    finally:
        for component in started:
            component.stop()


def _legitimate(component: Component, port_name: str) -> int:
    """One real client's request on that port; its HTTP status."""
    port = int(component.info[port_name])  # type: ignore[call-overload]
    insecure = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    insecure.check_hostname, insecure.verify_mode = False, ssl.CERT_NONE
    if component.name == "service" and port_name == "acme":
        url, verify, headers = f"https://127.0.0.1:{port}/acme/directory", insecure, {}
    elif component.name == "service":
        url, verify, headers = f"http://127.0.0.1:{port}/healthz", True, {}
    elif component.name == "printer":
        url, verify, headers = f"https://127.0.0.1:{port}/", insecure, {}
    elif component.name == "trust":
        url, verify, headers = f"http://127.0.0.1:{port}/", True, {}
    elif component.name == "box":
        scheme = "https" if port_name == "https" else "http"
        url, verify, headers = f"{scheme}://127.0.0.1:{port}/status.json", insecure, {}
    elif port_name == "port":
        url, verify = f"https://127.0.0.1:{port}/root-ca.pem", ssl.create_default_context(
            cafile=str(component.info["root"]))
        headers = {}
    else:
        url, verify = f"{component.info['screen']}state", True
        headers = {"Authorization": f"Bearer {component.info['token']}"}
    return httpx.get(url, verify=verify, headers=headers, timeout=5, trust_env=False).status_code


def _screen_port(component: Component) -> None:
    if "screen_port" not in component.info:
        component.info["screen_port"] = int(str(component.info["screen"]).rstrip("/").rsplit(":", 1)[1])


PORTS = [("service", "http", False), ("service", "acme", True), ("box", "http", False),
         ("box", "https", True), ("terminal", "port", True), ("terminal", "screen_port", False),
         ("printer", "https", True), ("trust", "http", False)]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "port_name", "tls"), PORTS, ids=[f"{n}-{p}" for n, p, _ in PORTS])
def test_a_legitimate_client_is_served_within_5_s_during_an_idle_connection_flood(
    components: dict[str, Component], name: str, port_name: str, tls: bool
) -> None:
    component = components[name]
    if name == "terminal":
        _screen_port(component)
    port = int(component.info[port_name])  # type: ignore[call-overload]
    assert _legitimate(component, port_name) < 500
    rss_before = component.rss_kib()
    held: list = []
    stop = threading.Event()

    def flood() -> None:
        for i in range(FLOOD):
            if stop.is_set():
                return
            try:
                held.append(hostile_connection(port, HOSTILE_KINDS[i % len(HOSTILE_KINDS)], tls=tls))
            except OSError:
                pass  # closed by the server during the TLS handshake (evicted): what the cap does

    flooder = threading.Thread(target=flood)
    flooder.start()
    try:
        while flooder.is_alive() and len(held) < FLOOD // 2:
            time.sleep(0.01)
        started = time.monotonic()
        status = _legitimate(component, port_name)
        elapsed = time.monotonic() - started
        flooder.join(120)
        assert status < 500 and elapsed < 5, (status, elapsed)
        descriptors = component.open_descriptors()
        assert descriptors < NOFILE - 16
        grown_mib = (component.rss_kib() - rss_before) / 1024
        print(f"\n{name} {port_name}: {FLOOD} hostile connections, legitimate answer {status} in "
              f"{elapsed:.2f} s, {descriptors} descriptors open, RSS +{grown_mib:.1f} MiB")
        assert grown_mib < 64, f"{name} grew by {grown_mib:.0f} MiB"
        assert _legitimate(component, port_name) < 500
    finally:
        stop.set()
        flooder.join(120)
        for sock in held:
            sock.close()
    assert _legitimate(component, port_name) < 500
    log = component.log()
    assert "Traceback" not in log, log[-3000:]
    assert log.count("refusing connections") <= 10


HALF_OPEN = 1000  # the finding: this many half-open TLS connections from one host


def _more_descriptors_for_this_test(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed if hard == resource.RLIM_INFINITY else
                                                    min(needed, hard), hard))


@pytest.mark.slow
@pytest.mark.parametrize(("name", "port_name"), [("service", "acme"), ("printer", "https")])
def test_1000_half_open_tls_connections_leave_every_port_of_the_process_answering_within_2_s(
    components: dict[str, Component], name: str, port_name: str
) -> None:
    """Half-open: TCP connected, no ClientHello. The flooded port and every other port of the same
    process answer a fresh client from another address within 2 s while the flood is held, and the
    process's log grows by under 5 MB (no traceback per refused accept)."""
    _more_descriptors_for_this_test(HALF_OPEN + 512)
    component = components[name]
    every_port = {"service": ["http", "acme"], "printer": ["https"]}[name]
    port = int(component.info[port_name])  # type: ignore[call-overload]
    log_before = component.stderr.stat().st_size + component.stdout.stat().st_size
    held: list[socket.socket] = []
    try:
        deadline = time.monotonic() + 60
        while len(held) < HALF_OPEN and time.monotonic() < deadline:
            try:
                held.append(hostile_connection(port, "idle", tls=True))
            except OSError:
                pass  # the kernel's backlog was full while the server evicted: the next one goes in
        assert len(held) == HALF_OPEN
        for each in every_port:
            started = time.monotonic()
            status = _legitimate(component, each)
            elapsed = time.monotonic() - started
            print(f"\n{name} {each}: {HALF_OPEN} half-open on {port_name}, answered {status} in "
                  f"{elapsed:.2f} s")
            assert status < 500 and elapsed < 2, (each, status, elapsed)
    finally:
        for sock in held:
            sock.close()
    grown = component.stderr.stat().st_size + component.stdout.stat().st_size - log_before
    print(f"{name}: log grew by {grown} bytes during {HALF_OPEN} half-open connections")
    assert grown < 5 * 1024 * 1024, f"the log grew by {grown} bytes"
    assert "Traceback" not in component.log()
    for each in every_port:
        assert _legitimate(component, each) < 500


@pytest.mark.slow
def test_connections_that_never_finish_a_request_are_closed(components: dict[str, Component]) -> None:
    """A TLS handshake within 10 s of accept(), headers within 10 s of the connection (after the TLS
    handshake), a body within 30 s of its headers; before, each such connection stayed open for ever
    (a half-open TLS one for asyncio's 60 s)."""
    service, terminal, printer = components["service"], components["terminal"], components["printer"]
    cases = [
        (int(service.info["acme"]), "idle", True, 10),  # type: ignore[call-overload]
        (int(printer.info["https"]), "idle", True, 10),  # type: ignore[call-overload]
        (int(service.info["http"]), "partial-headers", False, 10),  # type: ignore[call-overload]
        (int(service.info["http"]), "incomplete-body", False, 30),  # type: ignore[call-overload]
        (int(service.info["http"]), "chunked-forever", False, 30),  # type: ignore[call-overload]
        (int(terminal.info["port"]), "silent", True, 10),  # type: ignore[call-overload]
    ]
    socks = [hostile_connection(port, kind, tls=tls) for port, kind, tls, _ in cases]
    try:
        with ThreadPoolExecutor(len(cases)) as pool:
            closed = list(pool.map(lambda s: closed_by_peer(s, 45), socks))
    finally:
        for sock in socks:
            sock.close()
    for (_, kind, _, limit), seconds in zip(cases, closed, strict=True):
        assert seconds is not None and seconds <= limit + 2, (kind, seconds)


@pytest.mark.slow
def test_malformed_requests_are_one_log_line_per_burst(components: dict[str, Component]) -> None:
    """uvicorn wrote a warning per malformed request (a fuzzer's 10,000 requests, 10,000 lines) and two,
    one advising to "pip install" a WebSocket library, per Upgrade to a port without WebSockets."""
    service = components["service"]
    port = int(service.info["http"])  # type: ignore[call-overload]
    before = service.log()
    for i in range(200):
        with socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(ATTACKER, 0)) as sock:
            sock.sendall(b"NOT HTTP AT ALL\x00\r\n\r\n" if i % 2 else
                         b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
            sock.recv(4096)
    time.sleep(0.5)
    grown = service.log()[len(before):]
    assert grown.count("Invalid HTTP request received") <= 2, grown[-2000:]
    assert grown.count("Unsupported upgrade request") <= 2, grown[-2000:]
    assert "pip install" not in grown and "Traceback" not in grown
    assert _legitimate(service, "http") == 200


def test_refused_accepts_are_logged_as_one_line_per_burst(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The burst's clock is the process's: a refusal another test of this process logged within the
    # interval would hide this burst's line, so the burst starts afresh here.
    from lancert.serving import connections

    monkeypatch.setattr(connections, "_refused", connections._Burst("refusing connections"))
    loop = asyncio.new_event_loop()
    try:
        one_line_refusals(loop)
        with caplog.at_level(logging.WARNING):
            for _ in range(1000):
                loop.call_exception_handler({"message": "socket.accept() out of system resource",
                                             "exception": OSError(24, "Too many open files")})
    finally:
        loop.close()
    lines = [r for r in caplog.records if "refusing connections" in r.getMessage()]
    assert len(lines) == 1 and lines[0].exc_info is None
    assert not any(r.exc_info for r in caplog.records)


@pytest.mark.slow
def test_the_limit_is_really_lowered(components: dict[str, Component]) -> None:
    limits = Path(f"/proc/{components['service'].proc.pid}/limits").read_text()
    assert any(line.startswith("Max open files") and f" {NOFILE} " in line for line in limits.splitlines())


def _shut(client_side: socket.socket) -> bool:
    """Whether the server side of this pair was shut down (the client reads EOF)."""
    client_side.settimeout(0.1)
    try:
        return client_side.recv(1) == b""
    except TimeoutError:
        return False


def test_the_cap_evicts_the_oldest_idle_connection_of_the_client_holding_the_most() -> None:
    guard = ConnectionGuard(max_connections=8)
    pairs = [socket.socketpair() for _ in range(12)]
    try:
        guard.admit(pairs[0][0], "192.168.1.20")  # the POS: the oldest connection of all
        for server_side, _ in pairs[1:11]:
            guard.admit(server_side, "192.168.1.66")  # a flood from one machine
        assert guard.open_connections() == 11  # the evicted still hold descriptors until really closed
        assert [_shut(client) for _, client in pairs[:11]] == [False] + [True] * 3 + [False] * 7
        guard.admit(pairs[11][0], "2001:db8::1")
        # Again the flood's oldest, not the POS nor the newcomer.
        assert [_shut(client) for _, client in pairs[4:]] == [True] + [False] * 7
    finally:
        for a, b in pairs:
            a.close()
            b.close()


# -- hostile requests on every port: never a 5xx (issue 24, "Done when") ----------------------------------

# The routes of each port (its app's own, then ones it does not have), hostile values in their parameters.
ROUTES = {
    ("service", "http"): ["/healthz", "/metrics", "/docs", "/openapi.json", "/api/v1/certificates",
                          "/odoo-enterprise/iot/x509"],
    ("service", "acme"): ["/acme/directory", "/acme/new-nonce", "/acme/renewal-info/%ff.%00",
                          "/acme/new-account", "/acme/new-order", "/acme/order/%C2%B2/finalize",
                          "/acme/authz/1/%C2%B2", "/acme/chall/x/-1", "/acme/cert/..%2f", "/acme/revoke-cert",
                          "/acme/key-change"],
    ("box", "http"): ["/", "/settings", "/log", "/check", "/diagnose", "/status.json", "/metrics"],
    ("box", "https"): ["/", "/settings", "/check", "/status.json"],
    ("terminal", "port"): ["/", "/root-ca.pem", "/api/v1/status", "/api/v1/sale", "/api/v1/ws"],
    ("terminal", "screen_port"): ["/", "/state", "/code"],
    ("printer", "https"): ["/", "/signin", "/certificate/self-signed", "/certificate/csr",
                           "/certificate/import", "/certificate/server", "/reset",
                           "/cgi-bin/epos/service.cgi?devid=local_printer&timeout=%ff"],
    ("trust", "http"): ["/", "/qr.png", "/0/android/x.cer", "/99999999999999999999/ios/%ff"],
}
ELSEWHERE = ["/%00", "/%ff%fe", "/..%2f..%2fetc%2fpasswd", "/" + "a" * 4000, "/²", "//", "/x?%zz&a=%ff"]
NESTED = b"[" * 5000 + b"]" * 5000


def _jws(protected: bytes) -> bytes:
    """A flattened JWS around a hostile protected header (what the ACME port parses before any key)."""
    encoded = base64.urlsafe_b64encode(protected).rstrip(b"=")
    return b'{"protected": "' + encoded + b'", "payload": "", "signature": "AA"}'


JWS_BODIES = [_jws(b'{"alg": "none", "nonce": "n", "url": "u", "kid": "k"}'), _jws(b'{"alg": 5, "nonce": 7}'),
              _jws(b'{"alg": "ES256", "jwk": "x", "url": ["u"]}'), _jws(b"\xff\xfe{"), _jws(NESTED)]


def _hostile_requests(path: str) -> list[bytes]:
    """Raw requests a hostile client sends to ``path``: broken bodies, odd methods, odd headers (never a
    same-origin Origin, so no request of these makes a box query DNS)."""
    target = path.encode()  # a non-ASCII path goes as raw UTF-8 bytes, as no browser would send it

    def request(method: bytes, headers: list[bytes], body: bytes = b"") -> bytes:
        lines = [method + b" " + target + b" HTTP/1.1", b"Host: 127.0.0.1", b"Connection: close", *headers]
        if body or method == b"POST":
            lines.append(b"Content-Length: " + str(len(body)).encode())
        return b"\r\n".join(lines) + b"\r\n\r\n" + body

    return [
        request(b"GET", []),
        request(b"POST", [b"Content-Type: application/json"], b'{"db_uuid": '),
        request(b"POST", [b"Content-Type: application/json"], NESTED),
        request(b"POST", [b"Content-Type: application/jose+json"],
                b'{"protected": "\xff\xfe", "payload": 5, "signature": null}'),
        *(request(b"POST", [b"Content-Type: application/jose+json"], body) for body in JWS_BODIES),
        request(b"POST", [b"Content-Type: application/x-www-form-urlencoded", b"Origin: null"],
                b"server_url=%ff%00&enterprise_code=" + b"x" * 5000),
        request(b"POST", [b"Content-Type: multipart/form-data; boundary=zz"], b"--zz\r\n\xff\r\n--"),
        request(b"POST", [b"Content-Type: text/xml; charset=utf-8"], b"<?xml version='1.0'?><!DOCTYPE a ["
                b"<!ENTITY b 'bbbbbbbb'><!ENTITY c '&b;&b;&b;&b;&b;&b;&b;&b;'>]><a>&c;&c;&c;</a>"),
        request(b"BREW", []),
        request(b"DELETE", [b"Authorization: Bearer \xff" + b"A" * 3000]),
        request(b"GET", [b"Cookie: " + b"s=" * 4000, b"Range: bytes=99999999999999999999-",
                         b"Accept-Encoding: br;q=2, *;q=-1", b"If-Modified-Since: yesterday"]),
        request(b"GET", [b"Connection: Upgrade", b"Upgrade: websocket", b"Sec-WebSocket-Version: 99",
                         b"Sec-WebSocket-Key: not base64"]),
    ]


def _status_of(port: int, tls: bool, raw: bytes) -> int | None:
    """The status of the server's answer to ``raw``, or None when it closed without one."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(ATTACKER, 0))
    if tls:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        sock = context.wrap_socket(sock)
    with sock:
        try:
            sock.sendall(raw)
            head = sock.recv(64)
        except (ConnectionError, ssl.SSLError):
            return None
    if not head.startswith(b"HTTP/1."):
        return None
    return int(head.split(b" ", 2)[1])


@pytest.mark.slow
@pytest.mark.parametrize(("name", "port_name", "tls"), PORTS, ids=[f"{n}-{p}" for n, p, _ in PORTS])
def test_hostile_requests_get_no_5xx_and_no_traceback_on_any_port(
    components: dict[str, Component], name: str, port_name: str, tls: bool
) -> None:
    """Every route of every port, and paths it does not have, with broken bodies (truncated and 5,000-deep
    JSON, non-UTF-8, a bad multipart, an XML entity bomb), unknown methods and hostile headers: each is
    answered below 500 or closed, the process logs no traceback, and a legitimate client is still served."""
    component = components[name]
    if name == "terminal":
        _screen_port(component)
    port = int(component.info[port_name])  # type: ignore[call-overload]
    before = len(component.log())
    answered: dict[int | None, int] = {}
    server_errors = []
    for path in ROUTES[(name, port_name)] + ELSEWHERE:
        for raw in _hostile_requests(path):
            status = _status_of(port, tls, raw)
            answered[status] = answered.get(status, 0) + 1
            if status is not None and status >= 500:
                server_errors.append((status, raw[:120]))
    print(f"\n{name} {port_name}: statuses {sorted(answered.items(), key=str)}")
    assert server_errors == []
    assert None not in answered  # a clear answer each time, not a dropped connection
    grown = component.log()[before:]
    assert "Traceback" not in grown, grown[-3000:]
    assert _legitimate(component, port_name) < 400  # the box's plain HTTP redirects once HTTPS works
