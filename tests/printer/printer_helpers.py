"""Helpers of the printer tests: a simulator in a background thread, ePOS-Print requests, receipts."""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from lancert.printer.device import Printer
from lancert.printer.server import PrinterServer

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
EPOS = "http://www.epson-pos.com/schemas/2011/03/epos-print"
PRINTER_IP = "192.168.1.25"


def envelope(body: str) -> bytes:
    """An ePOS-Print SOAP request as the ePOS SDK for JavaScript writes it (literal, not from the code)."""
    return (f'<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="{SOAP}"><s:Body>'
            f'<epos-print xmlns="{EPOS}">{body}</epos-print></s:Body></s:Envelope>').encode()


@contextmanager
def running_printer(directory: Path, *, ip: str = "127.0.0.1",
                    allow_origins: tuple[str, ...] | None = None) -> Iterator[PrinterServer]:
    server = PrinterServer(Printer(directory, ip=ip), host="127.0.0.1", port=0,
                           allow_origins=allow_origins).start_in_thread()
    try:
        yield server
    finally:
        server.stop()


def receipts(directory: Path) -> list[dict[str, object]]:
    return [json.loads(p.read_text()) for p in sorted((directory / "receipts").glob("*.json"))]


def sign_in(client: httpx.Client, directory: Path) -> None:
    serial = json.loads((directory / "printer.json").read_text())["serial"]
    answer = client.post("/signin", data={"id": "epson", "password": serial})
    assert answer.status_code == 303, answer.text


def choose_and_reset(client: httpx.Client, certificate: str) -> None:
    """Security → SSL/TLS: choose ``self-signed`` or ``ca-signed`` as the server certificate, then Reset."""
    chosen = client.post("/certificate/server", data={"certificate": certificate})
    assert chosen.status_code == 200, chosen.text
    assert client.post("/reset", data={}).status_code == 200


def wait_for_scheme(server: PrinterServer, scheme: str, resets: int, timeout: float = 20) -> None:
    """Poll until the server restarted (``resets`` done) and serves ``scheme``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.resets >= resets and server.scheme == scheme and server.url.startswith(scheme):
            try:
                ctx = ssl.create_default_context()
                ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
                httpx.get(server.url, verify=ctx if scheme == "https" else True, timeout=2)
                return
            except httpx.HTTPError:
                pass
        time.sleep(0.05)
    raise AssertionError(f"the printer did not come back on {scheme} within {timeout} s")
