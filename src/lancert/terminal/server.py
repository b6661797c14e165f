"""``terminal run``: the TLS port (pairing + API) and the loopback screen, in one process and loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
from collections.abc import Iterator
from pathlib import Path

import uvicorn

from lancert.connections import GuardedH11Protocol, guarded_listener, one_line_refusals
from lancert.loopback import listen_tcp
from lancert.pki import SubjectNames, fingerprint_sha256
from lancert.storage.files import write_json
from lancert.terminal.app import create_app
from lancert.terminal.codes import SetupCodes
from lancert.terminal.device import DEFAULT_NAME, SERVER_CERT, SERVER_KEY, PairingDesk, TerminalState
from lancert.terminal.keypool import RsaKeyPool
from lancert.terminal.schemas import PAIR_BODY_LIMIT
from lancert.terminal.screen import SCREEN_FILE, Details, Screen, create_screen_app
from lancert.terminal.tls import (
    ClientCertH11Protocol,
    ClientCertWebSocketProtocol,
    TerminalEventLoop,
    server_ssl_context,
)

log = logging.getLogger("lancert.terminal")

SHUTDOWN_GRACE = 2.0


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signals to :func:`run_terminal`, which stops both servers together."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield




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
    """Activate if needed, then serve until interrupted; writes ``screen.json`` while running."""
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
    tls_sock = guarded_listener(listen_tcp(host, port))
    screen_sock = guarded_listener(listen_tcp("127.0.0.1", screen_port))
    port = tls_sock.getsockname()[1]
    details = Details(_url("https", host, port), _url("wss", host, port), port, fingerprint_sha256(ca.root))
    screen = Screen(name, details)
    pool = RsaKeyPool(key_pool_size)
    desk = PairingDesk(state, codes=SetupCodes(), key_pool=pool, on_paired=screen.paired,
                       on_guessing=screen.guessing)
    token = secrets.token_urlsafe(24)
    screen_url = f"http://127.0.0.1:{screen_sock.getsockname()[1]}/"

    tls_config = uvicorn.Config(
        create_app(desk, name=name), http=ClientCertH11Protocol, ws=ClientCertWebSocketProtocol,
        ssl_context_factory=lambda _config, _default: ctx, loop="asyncio", lifespan="off",
        access_log=False, log_level="warning", server_header=False, ws_max_size=PAIR_BODY_LIMIT * 4,
        timeout_keep_alive=30,
    )
    screen_config = uvicorn.Config(
        create_screen_app(desk, screen, token), http=GuardedH11Protocol, ws="none", loop="asyncio",
        lifespan="off", access_log=False, log_level="warning", server_header=False,
    )
    servers = [_Server(tls_config), _Server(screen_config)]

    async def serve() -> None:
        def stop() -> None:
            for s in servers:
                s.should_exit = True
            # uvicorn waits for open connections (an idle POS WebSocket) without end; give them a moment.
            loop.call_later(SHUTDOWN_GRACE, force_exit)

        def force_exit() -> None:
            for s in servers:
                s.force_exit = True

        loop = asyncio.get_running_loop()
        one_line_refusals(loop)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop)
        tasks = [
            asyncio.create_task(servers[0].serve([tls_sock])),
            asyncio.create_task(servers[1].serve([screen_sock])),
        ]
        for task in tasks:  # one server ending (an error) ends the other too
            task.add_done_callback(lambda _task: stop())
        while not all(s.started for s in servers):
            if any(t.done() for t in tasks):
                break
            await asyncio.sleep(0.05)
        else:
            write_json(screen_file, {
                "pid": os.getpid(), "screen": screen_url, "token": token, **details.as_dict(),
            }, mode=0o600)
            screen.say(f"Terminal {name} ready. Generate Code: lancert terminal code --state-dir {state_dir}")
            screen.say(f"Details: HTTPS {details.https}  WSS {details.wss}  port {port}")
            screen.say(f"Screen: {screen_url}?token={token}")
        await asyncio.gather(*tasks, return_exceptions=True)

    pool.start()
    try:
        with asyncio.Runner(loop_factory=TerminalEventLoop) as runner:
            runner.run(serve())
    finally:
        pool.stop()
        with contextlib.suppress(FileNotFoundError):
            screen_file.unlink()
