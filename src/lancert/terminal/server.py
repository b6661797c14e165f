"""``terminal run``: the TLS port (pairing + API) and the loopback screen, in one process and loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from pathlib import Path

from lancert.loopback import listen_tcp
from lancert.pki import SubjectNames, fingerprint_sha256
from lancert.serving.ports import Port, serve_ports
from lancert.storage.files import write_json
from lancert.storage.locks import TERMINAL_LOCK, directory_lock
from lancert.terminal.app import create_app, terminal_too_large
from lancert.terminal.codes import SetupCodes
from lancert.terminal.device import DEFAULT_NAME, SERVER_CERT, SERVER_KEY, PairingDesk, TerminalState
from lancert.terminal.keypool import RsaKeyPool
from lancert.terminal.schemas import API_BODY_LIMIT, PAIR_BODY_LIMIT
from lancert.terminal.screen import SCREEN_BODY_LIMIT, SCREEN_FILE, Details, Screen, create_screen_app
from lancert.terminal.tls import (
    ClientCertHttpProtocol,
    ClientCertWebSocketProtocol,
    TerminalEventLoop,
    server_ssl_context,
)

log = logging.getLogger("lancert.terminal")

SHUTDOWN_GRACE = 2.0


def _url(scheme: str, host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown}:{port}/"


def run_terminal(
    state_dir: Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8443,
    name: str = DEFAULT_NAME,
    screen_port: int = 0,
    key_pool_size: int = 4,
) -> None:
    """Activate if needed, then serve until interrupted; writes ``screen.json`` while running.

    Both ports are bound before the state directory is touched (its lock included): a start on a taken
    port is one line and leaves no half-made terminal (a CA, a lock file) behind, and an existing state
    directory as it was."""
    with contextlib.ExitStack() as sockets:
        tls_sock = sockets.enter_context(listen_tcp(host, port))
        screen_sock = sockets.enter_context(listen_tcp("127.0.0.1", screen_port))
        # One terminal per state directory: two would pair into one registry and rotate one CA.
        with directory_lock(state_dir, TERMINAL_LOCK, "'lancert terminal run'", "--state-dir"):
            _serve(state_dir, tls_sock, screen_sock, host=host, name=name, key_pool_size=key_pool_size)


def _serve(
    state_dir: Path,
    tls_sock: socket.socket,
    screen_sock: socket.socket,
    *,
    host: str,
    name: str,
    key_pool_size: int,
) -> None:
    state = TerminalState(state_dir)
    screen_file = state.state_dir / SCREEN_FILE
    if not state.is_activated():
        SubjectNames.parse(dns=[name])
        print(f"Activating terminal {name}: making its CA in {state.ca_dir.directory}", flush=True)
        state.activate(name=name)
    state.server_credential([host], name)
    ca = state.authority()
    ctx = server_ssl_context(
        str(state.state_dir / SERVER_CERT), str(state.state_dir / SERVER_KEY), [ca.root, ca.certificate]
    )
    port = tls_sock.getsockname()[1]
    details = Details(_url("https", host, port), _url("wss", host, port), port, fingerprint_sha256(ca.root))
    screen = Screen(name, details)
    pool = RsaKeyPool(key_pool_size)
    desk = PairingDesk(state, codes=SetupCodes(), key_pool=pool, on_paired=screen.paired,
                       on_guessing=screen.guessing)
    token = secrets.token_urlsafe(24)
    screen_url = f"http://127.0.0.1:{screen_sock.getsockname()[1]}/"
    ports = [
        Port("terminal", create_app(desk, name=name), tls_sock, API_BODY_LIMIT, terminal_too_large, tls=ctx,
             keep_alive=30, http=ClientCertHttpProtocol, ws=ClientCertWebSocketProtocol,
             ws_max_size=PAIR_BODY_LIMIT * 4),
        Port("terminal screen", create_screen_app(desk, screen, token), screen_sock, SCREEN_BODY_LIMIT),
    ]

    def ready() -> None:
        write_json(screen_file, {
            "pid": os.getpid(), "screen": screen_url, "token": token, **details.as_dict(),
        }, mode=0o600)
        screen.say(f"Terminal {name} ready. Generate Code: lancert terminal code --state-dir {state_dir}")
        screen.say(f"Details: HTTPS {details.https}  WSS {details.wss}  port {port}")
        screen.say(f"Screen: {screen_url}?token={token}")

    pool.start()
    try:
        with asyncio.Runner(loop_factory=TerminalEventLoop) as runner:
            runner.run(serve_ports(ports, ready, grace=SHUTDOWN_GRACE))
    finally:
        pool.stop()
        with contextlib.suppress(FileNotFoundError):
            screen_file.unlink()
