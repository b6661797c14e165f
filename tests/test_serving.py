"""The serving layer's contract, in one process: two ports served together, each with its body cap (64
bytes here) answered in its own form, no Server header, X-Forwarded-For ignored, a ready callback that
comes once both ports answer, and a stop that ends both (issue 18 point 2)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.types import Receive, Scope, Send

from lancert.loopback import listen_tcp
from lancert.serving.ports import BackgroundPorts, BodyTooLarge, Port, read_body

pytestmark = pytest.mark.slow  # servers on loopback, though in this process

CAP = 64


async def echo(scope: Scope, receive: Receive, send: Send) -> None:
    """Who the client is, and the body it sent (read with a route limit of 16 bytes under /small)."""
    request = Request(scope, receive)
    try:
        body = await read_body(request, 16) if request.url.path == "/small" else await request.body()
    except BodyTooLarge as refusal:
        await PlainTextResponse(f"route refuses: {refusal}", status_code=413)(scope, receive, send)
        return
    answer = JSONResponse({"client": request.client.host if request.client else None, "length": len(body)})
    await answer(scope, receive, send)


def json_too_large(limit: int) -> Response:
    return JSONResponse({"error": f"over {limit}"}, status_code=413)


@pytest.fixture(scope="module")
def ports() -> Iterator[list[Port]]:
    served = [Port("plain", echo, listen_tcp("127.0.0.1", 0), CAP),
              Port("json", echo, listen_tcp("127.0.0.1", 0), CAP, json_too_large)]
    background = BackgroundPorts(served, "test-ports").start()
    yield served
    background.stop()


def test_both_ports_answer_once_started(ports: list[Port]) -> None:
    for port in ports:
        answer = httpx.get(port.url(), timeout=5, trust_env=False)
        assert answer.status_code == 200 and "server" not in answer.headers


def test_a_body_over_the_cap_is_refused_in_the_ports_own_form(ports: list[Port]) -> None:
    plain, json_port = ports
    assert httpx.post(plain.url(), content=b"x" * CAP, timeout=5, trust_env=False).json()["length"] == CAP
    refused = httpx.post(plain.url(), content=b"x" * (CAP + 1), timeout=5, trust_env=False)
    assert refused.status_code == 413 and "64" in refused.text
    refused = httpx.post(json_port.url(), content=b"x" * (CAP + 1), timeout=5, trust_env=False)
    assert refused.status_code == 413 and refused.json() == {"error": "over 64"}


def test_a_chunked_body_is_counted_as_it_arrives(ports: list[Port]) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(5):
            yield b"y" * 20

    refused = httpx.post(ports[0].url(), content=chunks(), timeout=5, trust_env=False)
    assert refused.status_code == 413


def test_a_route_limit_under_the_cap(ports: list[Port]) -> None:
    url = f"{ports[0].url()}small"
    assert httpx.post(url, content=b"z" * 16, timeout=5, trust_env=False).json()["length"] == 16
    refused = httpx.post(url, content=b"z" * 17, timeout=5, trust_env=False)
    assert refused.status_code == 413 and "16 bytes" in refused.text


def test_x_forwarded_for_is_ignored_even_from_loopback(ports: list[Port]) -> None:
    answer = httpx.get(ports[0].url(), headers={"X-Forwarded-For": "203.0.113.9"}, timeout=5, trust_env=False)
    assert answer.json()["client"] == "127.0.0.1"


def raw_exchange(port: Port, pieces: list[bytes]) -> bytes:
    """Send ``pieces`` one by one, then read until the server closes (or 5 s pass: a timeout error)."""
    with socket.create_connection(("127.0.0.1", port.port), timeout=5) as sock:
        for piece in pieces:
            sock.sendall(piece)
        answer = b""
        while data := sock.recv(65536):
            answer += data
    return answer


def test_a_request_head_over_16_kib_is_refused_before_it_ends(ports: list[Port]) -> None:
    # 16 KiB for the request line and header fields, as h11 bounded them; the head here never ends, so
    # only the bound answers (without it the port would wait the header timeout out, silently).
    start = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: "
    answer = raw_exchange(ports[0], [start] + [b"b" * 1024] * 16)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert b"16384 bytes" in answer


def test_a_whole_request_head_over_16_kib_is_refused_too(ports: list[Port]) -> None:
    # 3,000 short header fields (18 KiB), the whole head in one write: one read on loopback.
    head = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X: y\r\n" * 3000 + b"\r\n"
    answer = raw_exchange(ports[0], [head])
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    # The connection is closed after the refusal; the port goes on serving others.
    assert httpx.get(ports[0].url(), timeout=5, trust_env=False).status_code == 200


def test_a_request_head_under_16_kib_is_served(ports: list[Port]) -> None:
    big = b"X-Big: " + b"b" * (15 * 1024) + b"\r\n"
    head = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n" + big + b"Connection: close\r\n\r\n"
    answer = raw_exchange(ports[0], [head[i:i + 1000] for i in range(0, len(head), 1000)])
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]


def test_stop_ends_every_port() -> None:
    served = [Port(name, echo, listen_tcp("127.0.0.1", 0), CAP) for name in ("a", "b")]
    numbers = [port.port for port in served]
    background = BackgroundPorts(served, "stopped-ports").start()
    background.stop()
    for number in numbers:
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", number), timeout=2).close()


def test_a_port_collects_cycles_from_its_first_request_even_inside_the_start_pause() -> None:
    # A command starts with the cyclic collector paused (imports); once a port serves, each request's
    # garbage cycles must be collected as they come, or the first seconds of load stay in the RSS.
    import gc

    from lancert.commands.main import _pause_gc_while_starting

    _pause_gc_while_starting(seconds=600)
    try:
        assert not gc.isenabled()
        background = BackgroundPorts([Port("gc", echo, listen_tcp("127.0.0.1", 0), CAP)], "gc-port").start()
        try:
            assert gc.isenabled()
            assert gc.get_freeze_count() > 0  # the start's objects, scanned no more
        finally:
            background.stop()
    finally:
        gc.enable()


def test_a_tls_port_reads_a_large_body_whole_and_holds_a_small_read_buffer(tmp_path: Path) -> None:
    # asyncio reads each TLS connection into a buffer made when the TCP connection is accepted (256 KiB
    # of its own): the served ports keep it to a few records, so that idle or flooding connections cost
    # little (bench/README.md), and a body many times that buffer still arrives whole.
    import asyncio.sslproto
    import ipaddress
    import ssl
    from datetime import timedelta

    from lancert.pki import SubjectNames, generate_private_key, pem, private_key_pem, self_signed_certificate

    key = generate_private_key()
    cert = self_signed_certificate(key, SubjectNames(ips=(ipaddress.ip_address("127.0.0.1"),)),
                                   validity=timedelta(days=1))
    (tmp_path / "cert.pem").write_bytes(pem([cert]))
    (tmp_path / "key.pem").write_bytes(private_key_pem(key))
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    body = bytes(range(256)) * 1024  # 256 KiB
    port = Port("tls", echo, listen_tcp("127.0.0.1", 0), len(body), tls=server)
    background = BackgroundPorts([port], "tls-port").start()
    try:
        client = ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))
        answer = httpx.post(port.url(), content=body, verify=client, timeout=10, trust_env=False)
        assert answer.status_code == 200 and answer.json()["length"] == len(body)
        assert asyncio.sslproto.SSLProtocol.max_size <= 64 * 1024
    finally:
        background.stop()


def test_the_writes_of_one_loop_turn_leave_as_one_and_before_a_close_or_an_eof() -> None:
    # uvicorn writes a response's head and body apart: one send() (and on TLS one record) each, unless
    # the serving layer joins what one turn of the loop wrote; nothing may be reordered or lost by it.
    import asyncio

    from lancert.serving.connections import _OneWritePerTurn

    class Recorder:
        def __init__(self) -> None:
            self.calls: list[tuple[str, bytes]] = []
            self.closing = False

        def write(self, data: bytes) -> None:
            self.calls.append(("write", bytes(data)))

        def write_eof(self) -> None:
            self.calls.append(("eof", b""))

        def close(self) -> None:
            self.calls.append(("close", b""))
            self.closing = True

        def is_closing(self) -> bool:
            return self.closing

        def get_extra_info(self, name: str, default: object = None) -> object:
            return ("127.0.0.1", 1) if name == "peername" else default

    loop = asyncio.new_event_loop()
    try:
        sent = Recorder()
        transport = _OneWritePerTurn(sent, loop)  # type: ignore[arg-type]
        transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\n")
        transport.write(b"")
        transport.write(b"body")
        assert sent.calls == []  # nothing before the turn ends
        loop.run_until_complete(asyncio.sleep(0))
        assert sent.calls == [("write", b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nbody")]
        transport.writelines([b"a", b"b"])
        transport.write_eof()
        transport.write(b"late")
        transport.close()
        assert sent.calls[1:] == [("write", b"ab"), ("eof", b""), ("write", b"late"), ("close", b"")]
        loop.run_until_complete(asyncio.sleep(0))  # the flushes scheduled for them find nothing left
        assert len(sent.calls) == 5
        assert transport.get_extra_info("peername") == ("127.0.0.1", 1)
    finally:
        loop.close()
