"""The running printer: one listening port that speaks HTTP until the printer has a certificate, HTTPS after.

A reset (the admin page's button, as on the real printers) restarts the web server on the same listening
socket with the certificate stored now: uvicorn is given a duplicate of the socket each time, so its
shutdown closes only the duplicate and connections arriving meanwhile wait in the backlog. The port is
served by the one serving layer (:mod:`lancert.serving.ports`): connection cap, timeouts, body cap
(:data:`~lancert.printer.web.MAX_EPOS_BODY`), one log format.
"""

from __future__ import annotations

import asyncio
import threading
import time

from lancert.errors import LancertError
from lancert.loopback import listen_tcp
from lancert.printer.device import Printer
from lancert.printer.web import EPOS_PATH, MAX_EPOS_BODY, Origins, create_app, too_large
from lancert.serving.ports import Port, PortServer

START_TIMEOUT = 30.0


class PrinterServer:
    """The printer's web server on ``host:port`` (0: a free port), restarted in place by a reset."""

    def __init__(self, printer: Printer, *, host: str = "127.0.0.1", port: int = 0,
                 allow_origins: tuple[str, ...] | None = None) -> None:
        self.printer = printer
        self.host = host
        self.sock = listen_tcp(host, port)
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
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}/"

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
