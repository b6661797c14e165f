"""``PosClient`` against a terminal that sends TLS 1.3 session tickets, as most TLS servers do: it must
never hang. websockets' threaded client did, now and then (7 of 2,000 connections in 4 threads, measured
with this terminal; see lancert.pos.websocket), so the loop below is long enough to meet that race."""

from __future__ import annotations

import json
import socket
import ssl
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from terminal_harness import RunningTerminal, start_terminal, stop_terminal

from lancert.pos import PosClient

pytestmark = pytest.mark.slow  # starts a server or subprocess (tests/conftest.py)

THREADS, CONNECTIONS_PER_THREAD = 8, 300
BOUND = 30.0  # seconds: the longest any one connection may take (PosClient's own timeout)
ALL_WITHIN = 150.0  # seconds for all of them: ~20 s here; a hung connection never ends


@pytest.fixture(scope="module")
def ticketing_terminal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningTerminal]:
    entry_point = Path(__file__).parent / "ticketing_terminal.py"
    running = start_terminal(tmp_path_factory.mktemp("ticketing"), [sys.executable, str(entry_point)])
    yield running
    stop_terminal(running)


def test_the_test_terminal_does_send_session_tickets(ticketing_terminal: RunningTerminal) -> None:
    host, port = ticketing_terminal.https.removeprefix("https://").rstrip("/").rsplit(":", 1)
    ctx = ssl.create_default_context(cadata=ticketing_terminal.root_pem.decode())
    with socket.create_connection((host, int(port)), timeout=30) as raw, \
            ctx.wrap_socket(raw, server_hostname=host) as tls:
        tls.sendall(f"GET /root-ca.pem HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        while tls.recv(65536):
            pass
        assert tls.version() == "TLSv1.3"
        assert tls.session is not None and tls.session.has_ticket


def test_pos_client_websockets_never_hang_against_a_ticketing_terminal(
    ticketing_terminal: RunningTerminal, tmp_path: Path
) -> None:
    client = PosClient.pair(ticketing_terminal.wss, pos_id="tickets", directory=tmp_path,
                            setup_code=ticketing_terminal.code()["code"], ca=ticketing_terminal.root_pem)
    outcomes: Counter[str] = Counter()
    slowest = [0.0]

    def one_connection() -> None:
        start = time.monotonic()
        try:
            with client.websocket() as ws:
                ws.send(json.dumps({"type": "status"}))
                assert json.loads(ws.recv())["posId"] == "tickets"
            outcomes["ok"] += 1
        except Exception as exc:
            outcomes[f"{type(exc).__name__}: {exc}"] += 1
        slowest[0] = max(slowest[0], time.monotonic() - start)

    def worker() -> None:
        for _ in range(CONNECTIONS_PER_THREAD):
            one_connection()

    workers = [threading.Thread(target=worker, daemon=True) for _ in range(THREADS)]
    for thread in workers:
        thread.start()
    deadline = time.monotonic() + ALL_WITHIN
    for thread in workers:
        thread.join(max(0.0, deadline - time.monotonic()))
    assert not any(thread.is_alive() for thread in workers), f"a connection hung; so far {dict(outcomes)}"
    assert outcomes == Counter(ok=THREADS * CONNECTIONS_PER_THREAD), dict(outcomes)
    assert slowest[0] < BOUND
    assert client.status()["posId"] == "tickets"


def test_a_receive_without_an_answer_ends_at_its_timeout(
    ticketing_terminal: RunningTerminal, tmp_path: Path
) -> None:
    client = PosClient.pair(ticketing_terminal.https, pos_id="quiet", directory=tmp_path,
                            setup_code=ticketing_terminal.code()["code"], ca=ticketing_terminal.root_pem)
    with client.websocket() as ws:
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.5)
        assert 0.4 < time.monotonic() - start < 5
        ws.send(json.dumps({"type": "status"}))  # the connection is still usable after a timeout
        assert json.loads(ws.recv())["posId"] == "quiet"
