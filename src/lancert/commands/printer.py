"""``lancert printer``: the ePOS printer simulator."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

import typer

from lancert.errors import UsageError
from lancert.logs import configure_logging
from lancert.printer.device import DEFAULT_DEVICE_ID, Printer
from lancert.printer.server import PrinterServer

app = typer.Typer(help="A simulated Epson ePOS receipt printer.", no_args_is_help=True)


def _origin(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
        raise UsageError(f"--allow-origin {value}: expected an origin such as https://pos.example.com")
    return f"{parts.scheme}://{parts.netloc}"


@app.command("run")
def run(
    directory: Annotated[Path, typer.Option("--dir", help="The state directory; receipts in DIR/receipts/.")],
    ip: Annotated[str | None, typer.Option("--ip", help="The printer's address (CN of its certificate); "
                                           "default: --host.")] = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int | None, typer.Option(
        "--port", help="Port for HTTP, or HTTPS once it has a certificate (0: any free port). Default 443, "
        "where Odoo's POS reaches a printer entered by its IP alone; 8043 where 443 is not allowed (not "
        "root), said at start.")] = None,
    allow_origin: Annotated[list[str] | None, typer.Option(
        "--allow-origin", help="A POS page origin allowed to print (repeat); default: any origin.")] = None,
    device_id: Annotated[list[str] | None, typer.Option(
        "--device-id", help=f"A device id ePOS-Print accepts (repeat); default {DEFAULT_DEVICE_ID}.")] = None,
) -> None:
    """Run an ePOS printer: its web configuration and the ePOS-Print endpoint; receipts go to DIR/receipts/.

    Without a certificate in DIR it speaks plain HTTP, as a printer fresh from the box. Sign in to its page
    with ID epson and the serial number (in DIR/printer.json) to create a self-signed certificate, or a
    CSR for the shop's CA and import what it signed; choose it under SSL/TLS and Reset to apply it
    (HTTPS on the same port). A certificate already in DIR (lancert device create) is served at start.
    """
    origins = tuple(_origin(o) for o in allow_origin) if allow_origin else None
    printer = Printer(directory, ip=ip or host, device_ids=tuple(device_id or (DEFAULT_DEVICE_ID,)))
    server = PrinterServer(printer, host=host, port=port, allow_origins=origins)
    if server.port_note:
        typer.echo(f"lancert printer: {server.port_note}", err=True)

    def ready(s: PrinterServer) -> None:
        typer.echo(f"lancert printer: {s.url} ePOS-Print {s.epos_url} "
                   f"(admin: ID epson, password: the serial number in {directory / 'printer.json'})")

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: server.stop())
    configure_logging()  # the port's own lines (refusals, errors) in lancert's format on stderr
    asyncio.run(server.serve(ready))
