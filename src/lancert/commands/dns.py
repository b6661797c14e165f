"""``lancert dns``: the zone's authoritative DNS server on its own (it also runs inside
``lancert service run``), and the configuration of PowerDNS for production."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

from lancert.dns import DNSService, RateLimit, ServerSpec, ZoneSpec
from lancert.errors import LancertError

app = typer.Typer(help="Authoritative DNS for the managed zone.", no_args_is_help=True)

DbUrl = Annotated[str | None, typer.Option("--db", help="Service database URL (its TXT records).")]
DataDir = Annotated[
    Path | None, typer.Option("--data-dir", help="Service data dir (its SQLite), for TXT records.")
]


@app.command("run")
def run(
    zone: Annotated[str, typer.Option("--zone", help="The managed zone, e.g. iot.example.net.")],
    host: Annotated[str, typer.Option("--host", help="Listen address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="UDP and TCP port (0 = any free).")] = 8053,
    db: DbUrl = None,
    data_dir: DataDir = None,
    workers: Annotated[
        int | None, typer.Option("--workers", help="Worker processes on the port (default: cores).")
    ] = None,
    rate_limit: Annotated[
        int, typer.Option("--rate-limit", help="Identical answers/s to one /24 or /56 over UDP (0 = off).")
    ] = 50,
) -> None:
    """Answer <a-b-c-d>.<label>.<zone> with its address; TXT records from the service's database if given."""
    from lancert.service.config import ServiceConfig, normalize_zone

    zone = normalize_zone(zone)
    source = None
    if db is not None or data_dir is not None:
        from lancert.service.database import open_database
        from lancert.service.dnsrecords import txt_source

        config = ServiceConfig().with_options(db=db, data_dir=data_dir)
        open_database(config).dispose()  # migrated, so the TXT table exists
        source = txt_source(config.db_url)
    if workers is not None and not 1 <= workers <= 256:
        raise LancertError("--workers must be 1 to 256")
    if rate_limit < 0:
        raise LancertError("--rate-limit must be 0 (off) or more")
    spec = ServerSpec(
        ZoneSpec(zone), host=host, txt_source=source, rate_limit=RateLimit(responses_per_second=rate_limit)
    )
    try:
        server = DNSService(spec, port, workers=workers or os.cpu_count() or 1)
        server.start()
    except OSError as exc:
        raise LancertError(f"cannot listen for DNS on {host}:{port}: {exc.strerror or exc}") from None
    typer.echo(f"lancert dns: serving {zone} on {host}:{server.port} (udp+tcp, {server.workers} workers)")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())  # stop the workers too, not only this process
    try:
        while not stop.wait(1.0):  # a timed wait: Ctrl-C is delivered between rounds
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


@app.command("powerdns")
def powerdns(
    out: Annotated[Path, typer.Option("--out", help="Directory for pdns.conf (created, file 0600).")],
    zone: Annotated[str, typer.Option("--zone", help="The managed zone, e.g. iot.example.net.")],
    db: DbUrl = None,
    data_dir: DataDir = None,
    address: Annotated[
        str, typer.Option("--address", help="PowerDNS listen address(es), comma-separated.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="PowerDNS UDP and TCP port.")] = 53,
    ns_address: Annotated[
        str, typer.Option("--ns-address", help="Address of ns.<zone> (the NS record's name).")
    ] = "127.0.0.1",
    caa_issuer: Annotated[
        list[str] | None,
        typer.Option("--caa-issuer", help="CA domain for a CAA 'issue' record at the apex (repeat)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Write DIR/pdns.conf and DIR/lancert-zone.lua so that `pdns_server --config-dir=DIR` serves the zone
    from lancert's database (lua2 backend: names computed in PowerDNS, challenge TXT and CAA read live;
    needs pdns-backend-lua2 and lua-sql-postgres or lua-sql-sqlite3). See README, "DNS in production"."""
    import ipaddress
    import json

    from lancert.dns.powerdns import PowerDNSLayout, write_config
    from lancert.service.config import ServiceConfig, normalize_zone
    from lancert.service.database import open_database

    zone = normalize_zone(zone)
    if not 1 <= port <= 65535:
        raise LancertError("--port must be 1 to 65535")
    try:
        ipaddress.ip_address(ns_address)
        for one in address.split(","):
            ipaddress.ip_address(one.strip())
    except ValueError as exc:
        raise LancertError(f"invalid address: {exc}") from None
    config = ServiceConfig().with_options(db=db, data_dir=data_dir, caa_issuers=caa_issuer or [])
    if config.db is None:  # PowerDNS runs elsewhere: give it the absolute path
        config = config.with_options(data_dir=config.data_dir.resolve())
    open_database(config).dispose()  # migrated: the table PowerDNS reads exists
    layout = PowerDNSLayout(
        zone, config.db_url, ns_address=ns_address, caa_issuers=config.caa_issuers, address=address, port=port
    )
    path = write_config(out, layout)
    if as_json:
        typer.echo(json.dumps({"config": str(path), "zone": zone}))
    else:
        typer.echo(f"lancert dns: wrote {path}; run: pdns_server --config-dir={out.resolve()}")
