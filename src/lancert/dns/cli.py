"""``lancert dns run``: the zone's authoritative DNS server on its own (it also runs inside
``lancert service run``)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Annotated

import typer

from lancert.dns import DNSService, ZoneResolver
from lancert.errors import LancertError

app = typer.Typer(help="Authoritative DNS for the managed zone.", no_args_is_help=True)


@app.command("run")
def run(
    zone: Annotated[str, typer.Option("--zone", help="The managed zone, e.g. iot.example.net.")],
    host: Annotated[str, typer.Option("--host", help="Listen address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="UDP and TCP port (0 = any free).")] = 8053,
    db: Annotated[
        str | None, typer.Option("--db", help="Service database URL, for ACME TXT records.")
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="Service data dir (its SQLite), for TXT records.")
    ] = None,
) -> None:
    """Answer <a-b-c-d>.<label>.<zone> with its address; TXT records from the service's database if given."""
    from lancert.service.config import normalize_zone

    zone = normalize_zone(zone)
    resolver = ZoneResolver(zone)
    if db is not None or data_dir is not None:
        from lancert.service.config import ServiceConfig
        from lancert.service.database import open_database
        from lancert.service.dnsrecords import database_txt_lookup

        config = ServiceConfig().with_options(db=db, data_dir=data_dir)
        resolver.txt_lookup = database_txt_lookup(open_database(config))
    try:
        server = DNSService(resolver, host=host, port=port)
    except OSError as exc:
        raise LancertError(f"cannot listen for DNS on {host}:{port}: {exc.strerror}") from None
    server.start()
    typer.echo(f"lancert dns: serving {zone} on {host}:{server.port} (udp+tcp)")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
