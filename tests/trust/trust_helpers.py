"""Helpers of the trust tests: the real CLI, TLS servers on loopback, NSS databases."""

from __future__ import annotations

import http.server
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/chromium.py

DEVICE_IP = "192.168.1.25"
DEVICE_NAME = "printer.test"
MARKER = "lancert-test-page-7f3a"


def run_lancert(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The installed console script's code path (``python -m lancert``), output captured."""
    return subprocess.run([sys.executable, "-m", "lancert", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=120, check=False)


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"<html><body><p>{MARKER}</p></body></html>".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # browsers abort handshakes with certificates they reject; that is the expected case


@dataclass(frozen=True)
class TLSServer:
    port: int

    def url(self, host: str = DEVICE_IP) -> str:
        return f"https://{host}:{self.port}/"


@contextmanager
def tls_server(cert_chain: Path, key: Path) -> Iterator[TLSServer]:
    """An HTTPS server on 127.0.0.1 (never another address) serving the marker page with this chain."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert_chain, key)
    server = _Server(("127.0.0.1", 0), _Handler)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield TLSServer(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def resolve_args(host: str = DEVICE_IP) -> list[str]:
    return ["--resolve", f"{host}:127.0.0.1"]


def make_nssdb(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(["certutil", "-N", "-d", f"sql:{directory}", "--empty-password"], check=True,
                   capture_output=True)
    return directory


def nss_entries(directory: Path) -> list[tuple[str, str]]:
    from lancert.trust.nss import parse_certutil_list

    out = subprocess.run(["certutil", "-L", "-d", f"sql:{directory}"], check=True, capture_output=True,
                         text=True)
    return parse_certutil_list(out.stdout)
