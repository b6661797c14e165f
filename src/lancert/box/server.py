"""The running box: plain HTTP at once, HTTPS from the first certificate on, and the check timer.

HTTPS uses one ``ssl.SSLContext`` for the box's whole life. A renewal calls ``load_cert_chain`` on that
same context: OpenSSL copies the certificate into each connection when it starts, so new handshakes get
the new certificate while open connections keep theirs. No restart, no dropped connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import logging.handlers
import signal
import socket
import ssl
import sys
from collections.abc import Mapping
from pathlib import Path

from lancert.box.agent import CertificateKeeper, parse_time
from lancert.box.diagnose import Address
from lancert.box.files import LOG_FILE, BoxSettings
from lancert.box.names import ready_line
from lancert.box.web import MAX_FORM_BYTES, box_too_large, create_app
from lancert.errors import LancertError
from lancert.loopback import listen_tcp
from lancert.pki import utcnow
from lancert.serving.ports import Port, PortServer
from lancert.storage.files import Credential
from lancert.storage.locks import BOX_LOCK, directory_lock

log = logging.getLogger("lancert.box")

# Keep-alive as long as nginx's default (75 s), so clients hold connections across a renewal.
KEEP_ALIVE_SECONDS = 75
LOG_MAX_BYTES = 1024 * 1024


class _Redact(logging.Filter):
    """Belt and braces: the enterprise code never reaches the log even if a message quoted it."""

    def __init__(self, state_dir: Path) -> None:
        super().__init__()
        self.state_dir = state_dir

    def filter(self, record: logging.LogRecord) -> bool:
        code = BoxSettings.load(self.state_dir).enterprise_code
        if code and len(code) >= 4:
            message = record.getMessage()
            if code in message:
                record.msg, record.args = message.replace(code, "********"), None
        return True


def configure_logging(state_dir: Path) -> None:
    logger = logging.getLogger("lancert")
    logger.setLevel(BoxSettings.load(state_dir).log_level)
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    file_handler = logging.handlers.RotatingFileHandler(state_dir / LOG_FILE, maxBytes=LOG_MAX_BYTES,
                                                        backupCount=1)
    stderr_handler = logging.StreamHandler(sys.stderr)
    for handler in (file_handler, stderr_handler):
        handler.setFormatter(formatter)
        handler.addFilter(_Redact(state_dir))
        logger.addHandler(handler)


def new_tls_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["http/1.1"])
    return context


def run_box(
    state_dir: Path,
    *,
    host: str,
    http_port: int,
    https_port: int,
    lan_ip: str,
    saved: Mapping[str, str | None],
    check_interval: float = 300.0,
    resolver: Address | None = None,
    zone_server: Address | None = None,
) -> None:
    """Serve the box until interrupted; ``saved``: settings given on the command line (None: keep).

    Both ports are bound before the state directory is touched (its lock, the settings, the log): a
    start on a taken port is one line and leaves no state directory behind, or an existing one as it
    was."""
    with contextlib.ExitStack() as sockets:
        http_socket = sockets.enter_context(listen_tcp(host, http_port))
        https_socket = sockets.enter_context(listen_tcp(host, https_port))
        # One box per state directory: two would renew into the same cert.pem and state.json at once.
        with directory_lock(state_dir, BOX_LOCK, "'lancert box run'", "--state-dir"):
            settings = BoxSettings.load(state_dir)
            for name, value in saved.items():
                if value is not None:
                    setattr(settings, name, value.strip())
            settings.save(state_dir)
            configure_logging(state_dir)
            box = BoxServer(state_dir, http_socket, https_socket, host=host, lan_ip=lan_ip,
                            check_interval=check_interval, resolver=resolver, zone_server=zone_server)
            try:
                asyncio.run(box.run())
            except OSError as exc:
                raise LancertError(f"cannot serve on {host}: {exc.strerror or exc}") from None


class BoxServer:
    def __init__(
        self,
        state_dir: Path,
        http_socket: socket.socket,
        https_socket: socket.socket,
        *,
        host: str = "127.0.0.1",
        lan_ip: str,
        check_interval: float = 300.0,
        resolver: Address | None = None,
        zone_server: Address | None = None,
    ) -> None:
        self.state_dir = state_dir
        self.host = host
        self._http_socket = http_socket
        self.check_interval = check_interval
        self.keeper = CertificateKeeper(state_dir, lan_ip=lan_ip, on_certificate=self._install)
        self.app = create_app(self.keeper, resolver=resolver, zone_server=zone_server, listen_host=host)
        self.tls = new_tls_context()
        self._https_socket = https_socket
        self._https: PortServer | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def _port(self, listener: socket.socket, tls: bool) -> PortServer:
        # The box is reached directly, never through a proxy: the serving layer ignores X-Forwarded-*
        # from anyone (even 127.0.0.1, uvicorn's default trusted proxy), which must not turn plain HTTP
        # into "https".
        return PortServer(Port("box https" if tls else "box http", self.app, listener, MAX_FORM_BYTES,
                               box_too_large, tls=self.tls if tls else None, keep_alive=KEEP_ALIVE_SECONDS))

    def _install(self, credential: Credential) -> None:
        """Serve ``credential`` for every handshake from now on (see the module docstring)."""
        self.tls.load_cert_chain(self.keeper.files.cert_path, self.keeper.files.key_path)
        if self._https is None and self._https_socket is not None:
            self._https = self._port(self._https_socket, tls=True)
            self._tasks.append(asyncio.get_running_loop().create_task(self._https.serve_port()))
            log.info("serving HTTPS on %s:%d", self.host, self.keeper.state.https_port)

    async def _timer(self) -> None:
        """Check every ``check_interval`` seconds, and exactly when the service said to renew."""
        failures = 0
        while True:
            delay = self.check_interval
            renew_after = parse_time(self.keeper.state.renew_after)
            if self.keeper.state.problems:
                # Back off (5 s, 10 s, ... up to the interval): a service that is down is not hammered by
                # every box whose renewal is due; a homepage load still retries at once.
                failures += 1
                delay = min(delay, 5.0 * 2 ** min(failures - 1, 8))
            else:
                failures = 0
                if renew_after is not None:
                    delay = min(delay, max(0.5, (renew_after - utcnow()).total_seconds() + 0.1))
            await asyncio.sleep(delay)
            try:
                await self.keeper.check("timer")
            except Exception:
                log.exception("check failed unexpectedly")

    async def run(self) -> None:
        self.keeper.recover()
        http = self._port(self._http_socket, tls=False)
        self.keeper.set_ports(http.port.port, self._https_socket.getsockname()[1])
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        self._tasks.append(loop.create_task(http.serve_port()))
        await self.keeper.check("start")
        for server in (http, self._https):
            while server is not None and not server.started:  # "ready" means answering on both ports
                await asyncio.sleep(0.01)
        state = self.keeper.state
        print(ready_line(self.host, state), flush=True)
        timer = loop.create_task(self._timer())
        await stop.wait()
        log.info("stopping")
        http.should_exit = True
        if self._https is not None:
            self._https.should_exit = True
        timer.cancel()
        await asyncio.gather(timer, *self._tasks, return_exceptions=True)
