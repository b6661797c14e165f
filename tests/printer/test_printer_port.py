"""Where a printer entered by its IP alone is reached, and what the SDK's connection probe does.

Odoo's POS (15 and later) posts ePOS-Print to ``https://<printer IP>/cgi-bin/epos/service.cgi``: port 443,
as real Epson printers serve it. The simulator takes 443 by default; where it may not, it says why and
which port it took. The ePOS SDK's probe (an epos-print with no command) is answered, never printed.
"""

from __future__ import annotations

import os
import socket
import xml.etree.ElementTree as ET
from pathlib import Path

import httpx
import pytest
from printer_helpers import EPOS, SOAP, envelope, receipts

from capabilities import require
from lancert.printer.device import Printer
from lancert.printer.server import PrinterServer
from lancert_cli import lancert

pytestmark = pytest.mark.slow  # starts a server

EPOS_PORT = 443  # Epson's ePOS-Print port over HTTPS, where Odoo's POS sends to a printer's IP alone
FALLBACK_PORT = 8043  # the ePOS SDK's HTTPS device port, which a POS must then be given


def _answer(response: httpx.Response) -> dict[str, str]:
    found = ET.fromstring(response.content).find(f"{{{SOAP}}}Body/{{{EPOS}}}response")  # noqa: S314
    assert found is not None, response.text
    return dict(found.attrib)


def test_a_printer_at_an_ip_serves_epos_print_on_443(tmp_path: Path) -> None:
    require(os.geteuid() == 0, "port 443 needs root (CI runs the tests as root)")
    ip = "127.0.0.27"
    lancert("device", "create", "--ip", ip, "--dir", str(tmp_path / "p"))
    server = PrinterServer(Printer(tmp_path / "p", ip=ip), host=ip, port=None).start_in_thread()
    try:
        assert (server.port, server.port_note, server.url) == (EPOS_PORT, None, f"https://{ip}/")
        assert server.epos_url == f"https://{ip}/cgi-bin/epos/service.cgi?devid=local_printer&timeout=10000"
        # A second printer on the same address cannot have 443: it says so and takes 8043.
        other = PrinterServer(Printer(tmp_path / "q", ip=ip), host=ip, port=None)
        try:
            assert other.port == FALLBACK_PORT
            assert other.port_note is not None and f"{ip}:{EPOS_PORT}" in other.port_note
            assert f"port {FALLBACK_PORT} instead" in other.port_note and "root" in other.port_note
        finally:
            other.sock.close()
    finally:
        server.stop()


def test_without_the_right_to_443_it_says_so_and_names_the_port_it_took(tmp_path: Path) -> None:
    """What a user who is not root sees: a clear line, and the port to give the POS."""
    ip = "127.0.0.28"
    holder = socket.socket()
    try:
        holder.bind((ip, EPOS_PORT))  # as root: held here, as a non-root user finds it refused
    except PermissionError:
        holder.close()
        holder = socket.socket()  # not root: 443 is refused to the printer as well
    try:
        server = PrinterServer(Printer(tmp_path / "p", ip=ip), host=ip, port=None)
        try:
            assert server.port != EPOS_PORT and server.port_note is not None
            assert f"ePOS-Print on port {server.port} instead" in server.port_note
            assert "Odoo's POS reaches a printer entered by its IP alone on 443 only" in server.port_note
        finally:
            server.sock.close()
    finally:
        holder.close()


def test_the_sdk_connection_probe_is_answered_and_not_printed(tmp_path: Path) -> None:
    ip = "127.0.0.1"
    server = PrinterServer(Printer(tmp_path, ip=ip), host=ip, port=0).start_in_thread()
    try:
        url = f"{server.url}cgi-bin/epos/service.cgi?devid=local_printer&timeout=10000"
        for _ in range(2):  # Odoo 14's ePOSDevice.connect sends two
            probe = httpx.post(url, content=envelope(""), timeout=10)
            assert probe.status_code == 200
            assert _answer(probe) == {"success": "true", "code": "", "status": "0"}
        assert receipts(tmp_path) == []
        printed = httpx.post(url, content=envelope("<text>one</text><cut type=\"feed\"/>"), timeout=10)
        assert _answer(printed)["success"] == "true"
        assert [r["text"] for r in receipts(tmp_path)] == ["one"]
    finally:
        server.stop()
