"""The receipt printer of ``lancert up``: a self-signed device serving HTTPS on loopback.

It is what an Epson-style ePOS printer does (issue 2's flow): the certificate is made once with
``device create`` and kept, because every client that trusted it would lose HTTPS if it changed.
"""

from __future__ import annotations

import socket
import ssl
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from lancert.device import create_device_certificate
from lancert.storage import CredentialFiles

PRINTER_IP = "127.0.0.1"
_PAGE = (
    b"<!doctype html><meta charset=utf-8><meta name=viewport content='width=device-width'>"
    b"<title>ePOS printer (lancert demo)</title><h1>ePOS printer</h1>"
    b"<p>A self-signed receipt printer served by <code>lancert up</code>.</p>"
)


class _HTTPSServer(ThreadingHTTPServer):
    """HTTPS with the handshake in each connection's own thread, so one silent client blocks no other."""

    daemon_threads = True
    context: ssl.SSLContext

    def finish_request(self, request: socket.socket, client_address: tuple[str, int]) -> None:  # type: ignore[override]
        request.settimeout(10)
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError):
            return  # a client that does not trust the printer closes the handshake: expected, not an error
        super().finish_request(tls, client_address)

    def handle_error(self, request: object, client_address: object) -> None:
        pass


def _page_handler(page: bytes) -> type[BaseHTTPRequestHandler]:
    class Page(BaseHTTPRequestHandler):
        server_version = "lancert-printer"

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Page


@dataclass
class RunningServer:
    """A page served over HTTPS in background threads; ``port`` is the one the system chose for 0."""

    host: str
    port: int
    server: _HTTPSServer

    def url(self, host: str | None = None) -> str:
        return f"https://{host or self.host}:{self.port}/"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def serve_page(cert_file: Path, key_file: Path, page: bytes, *, host: str = PRINTER_IP,
               port: int = 0) -> RunningServer:
    """Serve ``page`` for every GET over HTTPS with this certificate chain (leaf first) and key.

    What a device with a fixed web page does; the demo printer and the browser tests use it.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    server = _HTTPSServer((host, port), _page_handler(page))
    server.context = context
    threading.Thread(target=server.serve_forever, name="https-page", daemon=True).start()
    return RunningServer(host, server.server_address[1], server)


@dataclass
class RunningPrinter:
    url: str
    cert_path: Path
    server: RunningServer

    def stop(self) -> None:
        self.server.stop()


def start_printer(directory: Path, *, host: str = PRINTER_IP, port: int = 0) -> RunningPrinter:
    """Make the printer's certificate once (kept across runs), then serve HTTPS on ``host:port``."""
    files = CredentialFiles(directory)
    files.recover()
    if not files.exists():
        create_device_certificate(directory, ip=host)
    files.read()  # refuse to serve a pair that does not belong together
    server = serve_page(files.cert_path, files.key_path, _PAGE, host=host, port=port)
    return RunningPrinter(server.url(), files.cert_path, server)
