"""The running printer: one listening port that speaks HTTP until the printer has a certificate, HTTPS after.

A reset (the admin page's button, as on the real printers) restarts the web server on the same listening
socket with the certificate stored now: uvicorn is given a duplicate of the socket each time, so its
shutdown closes only the duplicate and connections arriving meanwhile wait in the backlog. The port is
served by the one serving layer (:mod:`lancert.serving.ports`): connection cap, timeouts, body cap
(:data:`~lancert.printer.web.MAX_EPOS_BODY`), one log format.

The port: a real Epson TM printer serves ePOS-Print on 443 (HTTPS) and 80, and Odoo's POS (15 and later,
``pos_epson_printer``) posts to ``<the page's scheme>//<printer IP>/cgi-bin/epos/service.cgi`` with no
port, so a printer entered by its IP alone (what users do) is reached on 443 from an HTTPS POS. The
simulator listens there by default; where it may not (443 needs root or CAP_NET_BIND_SERVICE, or another
server holds it) it says so and takes :data:`FALLBACK_PORT`, which only a POS given the port reaches.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time

from lancert.errors import LancertError
from lancert.loopback import listen_tcp
from lancert.printer.device import Printer
from lancert.printer.web import EPOS_PATH, MAX_EPOS_BODY, Origins, create_app, too_large
from lancert.serving.ports import Port, PortServer

START_TIMEOUT = 30.0
EPOS_PORT = 443  # where Odoo's POS reaches a printer entered by IP alone (HTTPS default port)
FALLBACK_PORT = 8043  # the ePOS SDK's HTTPS port for ePOSDevice.connect (Odoo 14): where 443 is not allowed


def _listen(host: str, port: int | None) -> tuple[socket.socket, str | None]:
    """The listening socket; for ``port`` None, 443 or else :data:`FALLBACK_PORT` (or any free port),
    with the sentence that says why it is not 443."""
    if port is not None:
        return listen_tcp(host, port), None
    try:
        return listen_tcp(host, EPOS_PORT), None
    except LancertError as refused:
        why = str(refused)
    for fallback in (FALLBACK_PORT, 0):
        try:
            sock = listen_tcp(host, fallback)
        except LancertError:
            continue
        taken = sock.getsockname()[1]
        return sock, (f"{why}: ePOS-Print on port {taken} instead. Odoo's POS reaches a printer entered "
                      f"by its IP alone on {EPOS_PORT} only (run as root, or grant CAP_NET_BIND_SERVICE); "
                      f"give the POS {host}:{taken} meanwhile")
    raise LancertError(f"{why}, and no other port is free on {host}")


class PrinterServer:
    """The printer's web server on ``host:port`` (0: a free port; None: 443, as a real printer, else
    :data:`FALLBACK_PORT` with ``port_note`` saying why), restarted in place by a reset."""

    def __init__(self, printer: Printer, *, host: str = "127.0.0.1", port: int | None = 0,
                 allow_origins: tuple[str, ...] | None = None) -> None:
        self.printer = printer
        self.host = host
        self.sock, self.port_note = _listen(host, port)
        self.port: int = self.sock.getsockname()[1]
        self.origins = Origins(allow_origins)
        self.app = create_app(printer, origins=self.origins, on_reset=self.reset)
        self.scheme = "http"
        self.resets = 0
        self._server: PortServer | None = None
        self._stopping = False
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The printer's address as a browser writes it: no port where it is the scheme's default."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = {"https": 443, "http": 80}[self.scheme]
        return f"{self.scheme}://{host}/" if self.port == default else f"{self.scheme}://{host}:{self.port}/"

    @property
    def epos_url(self) -> str:
        return f"{self.url.rstrip('/')}{EPOS_PATH}?devid={min(self.printer.device_ids)}&timeout=10000"

    def reset(self) -> None:
        """Apply the stored certificate: the serve loop starts again with it."""
        if self._server is not None:
            self._server.should_exit = True

    async def serve(self, on_ready: object = None) -> None:
        """Serve until :meth:`stop`; ``on_ready(self)`` after each (re)start, when the port answers."""
        while not self._stopping:
            try:
                context = self.printer.tls_context()
            except (OSError, ValueError) as exc:
                where = self.printer.directory
                raise LancertError(f"{where}: cannot use the stored certificate ({exc})") from None
            self.printer.served = self.printer.stored_certificate() if context else None
            self.scheme = "https" if context else "http"
            port = Port("printer", self.app, self.sock, MAX_EPOS_BODY, too_large(self.origins), tls=context,
                        keep_alive=5, graceful_shutdown=2)
            self.sock = port.listener  # taken over by the connection guard; served through dups
            server = PortServer(port)
            self._server = server
            task = asyncio.create_task(server.serve_port(self.sock.dup()))
            while not server.started and not task.done():
                await asyncio.sleep(0.02)
            if server.started and callable(on_ready):
                on_ready(self)
            await task
            self.resets += 1
        self.sock.close()

    def stop(self) -> None:
        self._stopping = True
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)

    def start_in_thread(self) -> PrinterServer:
        """Serve in a background thread (``up``, tests); returns once the port answers."""
        ready = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            try:
                asyncio.run(self.serve(lambda _s: ready.set()))
            except BaseException as exc:  # reported to the starting thread
                errors.append(exc)
                ready.set()

        self._thread = threading.Thread(target=run, name="epos-printer", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not ready.wait(0.1):
            if time.monotonic() > deadline:
                raise LancertError(f"the printer did not start within {START_TIMEOUT:g} s")
        if errors:
            raise errors[0]
        return self
