"""The receipt printer of ``lancert up`` and the POS demo page that prints on it.

The printer is the ePOS simulator (:mod:`lancert.printer`) with a self-signed certificate made once with
``device create`` and kept, because every client that trusted it would lose HTTPS if it changed. The POS
demo page is what a browser POS is: an HTTPS page (its certificate from the shop's own CA, ``shop-ca/``
in the data directory) whose "Print test receipt" button sends an ePOS-Print request to the printer, so
the page shows what a shop sees: printing fails until the printer's certificate is trusted.
"""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from cryptography import x509
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from lancert.device.certificate import create_device_certificate
from lancert.loopback import listen_tcp
from lancert.printer.device import Printer
from lancert.printer.server import PrinterServer
from lancert.serving.ports import BackgroundPorts, Port
from lancert.storage.files import Credential, CredentialFiles, StorageError

PRINTER_IP = "127.0.0.1"  # the POS demo page
# The printer's own loopback address (every 127/8 address is the machine on Linux): there it listens on
# 443 as a real Epson printer, the port Odoo's POS reaches a printer entered by its IP alone on, without
# taking 443 of 127.0.0.1 from whatever else serves HTTPS there.
PRINTER_ADDRESS = "127.0.0.25"

def _page_app(page: bytes) -> ASGIApp:
    """``page`` for every GET (and HEAD), whatever the path: a device with one fixed web page."""
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["method"] not in ("GET", "HEAD"):
            answer: Response = PlainTextResponse("method not allowed\n", status_code=405,
                                                 headers={"Allow": "GET, HEAD"})
        else:
            answer = HTMLResponse(page)
        await answer(scope, receive, send)

    return app


@dataclass
class RunningServer:
    """A page served over HTTPS by a thread of its own; ``port`` is the one the system chose for 0."""

    host: str
    port: int
    server: BackgroundPorts

    def url(self, host: str | None = None) -> str:
        return f"https://{host or self.host}:{self.port}/"

    def stop(self) -> None:
        self.server.stop()


# The page takes no body: a GET's.
PAGE_BODY_LIMIT = 1024


def serve_page(cert_file: Path, key_file: Path, page: bytes, *, host: str = PRINTER_IP,
               port: int = 0) -> RunningServer:
    """Serve ``page`` for every GET over HTTPS with this certificate chain (leaf first) and key, on the
    one serving layer (connection cap, timeouts, one log format), from a background thread.

    What a device with a fixed web page does; the demo printer and the browser tests use it.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    served = Port("page", _page_app(page), listen_tcp(host, port), PAGE_BODY_LIMIT, tls=context)
    return RunningServer(host, served.port, BackgroundPorts([served], "https-page").start())


@dataclass
class RunningPrinter:
    url: str
    cert_path: Path
    server: PrinterServer

    @property
    def epos_url(self) -> str:
        return self.server.epos_url

    def stop(self) -> None:
        self.server.stop()


def start_printer(directory: Path, *, host: str = PRINTER_ADDRESS, port: int | None = None) -> RunningPrinter:
    """Make the printer's certificate once (kept across runs, made again only for a new address), then run
    the ePOS simulator there: on 443 by default, else where :class:`PrinterServer` says."""
    files = CredentialFiles(directory)
    files.recover()
    if not files.exists() or not _names_address(files.read().certificate, host):
        create_device_certificate(directory, ip=host, force=files.exists())
    files.read()  # refuse to serve a pair that does not belong together
    server = PrinterServer(Printer(directory, ip=host), host=host, port=port).start_in_thread()
    return RunningPrinter(server.url, files.cert_path, server)


def _names_address(certificate: x509.Certificate, address: str) -> bool:
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    return ipaddress.ip_address(address) in san.get_values_for_type(x509.IPAddress)


_templates = Environment(loader=PackageLoader("lancert.up", "templates"), autoescape=select_autoescape())
DEMO_RECEIPT = "lancert demo shop\nEspresso          1.80\nCroissant         2.10\nTotal EUR         3.90\n"
# The page's certificate is re-issued (from the same shop root, so nothing to re-trust) this long before
# it expires.
POS_RENEW_BEFORE = timedelta(days=30)


def pos_demo_page(epos_url: str, printer_cert: Path) -> bytes:
    """The POS demo page printing to ``epos_url``; ``printer_cert`` is the file the page tells to trust."""
    return _templates.get_template("pos_demo.html").render(
        epos_url=epos_url, printer_cert=str(printer_cert), default_text=DEMO_RECEIPT
    ).encode()


@dataclass
class RunningPosPage:
    url: str
    trust_file: Path
    server: RunningServer

    def stop(self) -> None:
        self.server.stop()


def start_pos_demo(data_dir: Path, printer: RunningPrinter, *, host: str = PRINTER_IP) -> RunningPosPage:
    """Serve the POS demo page over HTTPS with a certificate from the shop CA (``data_dir/shop-ca``)."""
    from lancert.ca.directory import CADirectory
    from lancert.ca.issue import issue_device_certificate
    from lancert.pki import SubjectNames, generate_private_key, served_chain, utcnow

    shop = CADirectory(data_dir / "shop-ca")
    authority = shop.load_or_create("lancert shop")
    files = CredentialFiles(data_dir / "pos-demo")
    files.recover()
    try:
        current = files.read().chain
    except StorageError:
        current = ()
    if not current or current != served_chain(current[0], authority.chain) or (
            current[0].not_valid_after_utc - utcnow() < POS_RENEW_BEFORE):
        key = generate_private_key()
        names = SubjectNames.parse(dns=["localhost"], ips=[host])
        chain = issue_device_certificate(authority, key.public_key(), names, validity=timedelta(days=365))
        files.write(Credential(chain, key))
    page = pos_demo_page(printer.epos_url, printer.cert_path)
    server = serve_page(files.cert_path, files.key_path, page, host=host)
    return RunningPosPage(server.url(), shop.root_path, server)
