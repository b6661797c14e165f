"""``lancert service``: run the certificate service, print its root, edit the eligibility registry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from lancert.errors import LancertError, UsageError
from lancert.logs import LogLevel, LogLevelOption
from lancert.service.config import DEFAULT_DATA_DIR, ServiceConfig, load_config
from lancert.service.registry import DatabaseKind, DatabaseRecord, Registry, SubscriptionStatus

app = typer.Typer(help="The certificate service for IoT boxes (provider side).", no_args_is_help=True)
db_app = typer.Typer(
    help="The eligibility registry: which databases may get certificates.", no_args_is_help=True
)
app.add_typer(db_app, name="db")

DataDir = Annotated[
    Path | None, typer.Option("--data-dir", help=f"Service state (default {DEFAULT_DATA_DIR}).")
]
DbUrl = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="SQLAlchemy URL, e.g. postgresql+psycopg://user@host/db (default: SQLite in the data dir).",
    ),
]
KIND_HELP = "Only production databases get certificates."
SUBSCRIPTION_HELP = "Only a subscription in progress gets certificates."
ConfigFile = Annotated[Path | None, typer.Option("--config", help="TOML config file (see README).")]


def _config(config_file: Path | None = None, **options: object) -> ServiceConfig:
    return load_config(config_file).with_options(**options)


@app.command("run")
def run(
    data_dir: DataDir = None,
    config_file: ConfigFile = None,
    db: DbUrl = None,
    zone: Annotated[
        str | None, typer.Option("--zone", help="Managed zone (default iot.lancert.test).")
    ] = None,
    host: Annotated[str | None, typer.Option("--host", help="Listen address (default 127.0.0.1).")] = None,
    port: Annotated[
        int | None, typer.Option("--port", help="HTTP port (default 8470; 0 = any free).")
    ] = None,
    dns_port: Annotated[
        int | None, typer.Option("--dns-port", help="DNS port, UDP+TCP (default 8053; 0 = no DNS).")
    ] = None,
    cert_lifetime: Annotated[
        str | None,
        typer.Option(
            "--cert-lifetime", help="Lifetime of issued certificates: 90d (default), 47d, 12h, 120s."
        ),
    ] = None,
    cert_days: Annotated[
        int | None, typer.Option("--cert-days", help="Lifetime in days (same as --cert-lifetime Nd).")
    ] = None,
    log_level: LogLevelOption = LogLevel.INFO,
) -> None:
    """Serve the native API, the compatible Odoo endpoint, and (unless --dns-port 0) the zone's DNS."""
    from lancert.service.server import run_service

    if cert_lifetime is not None and cert_days is not None:
        raise UsageError("give --cert-lifetime or --cert-days, not both")
    lifetime = (
        cert_lifetime if cert_lifetime is not None else (f"{cert_days}d" if cert_days is not None else None)
    )
    run_service(
        _config(
            config_file,
            data_dir=data_dir,
            db=db,
            zone=zone,
            host=host,
            port=port,
            dns_port=dns_port,
            cert_lifetime=lifetime,
        ),
        log_level=log_level,
    )


@app.command("root")
def root(data_dir: DataDir = None, db: DbUrl = None, config_file: ConfigFile = None) -> None:
    """Print the service's root CA certificate (PEM): what browsers and POS devices must trust."""
    from lancert.pki import pem
    from lancert.service.database import open_database
    from lancert.service.issuer import load_service_identity

    database = open_database(_config(config_file, data_dir=data_dir, db=db))
    identity = load_service_identity(database)
    database.dispose()
    if identity is None:
        raise LancertError("no CA yet: start the service once with 'lancert service run'")
    typer.echo(pem([identity.ca.root]).decode(), nl=False)


def _registry(data_dir: Path | None, db: str | None, config_file: Path | None) -> Registry:
    from lancert.service.database import open_database

    return Registry(open_database(_config(config_file, data_dir=data_dir, db=db)))


def _show(record: DatabaseRecord, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(record.as_json()))
    else:
        typer.echo(
            f"{record.uuid}: {record.kind.value}, subscription {record.subscription.value}, "
            f"{'with' if record.iot_box_line else 'no'} IoT box line"
        )


@db_app.command("add")
def db_add(
    uuid: Annotated[str, typer.Option("--uuid", help="The database UUID the box sends.")],
    code: Annotated[str, typer.Option("--code", help="The enterprise code (stored hashed only).")],
    kind: Annotated[DatabaseKind, typer.Option("--kind", help=KIND_HELP)] = DatabaseKind.PRODUCTION,
    subscription: Annotated[
        SubscriptionStatus, typer.Option("--subscription", help=SUBSCRIPTION_HELP)
    ] = SubscriptionStatus.IN_PROGRESS,
    iot_line: Annotated[
        bool, typer.Option("--iot-line/--no-iot-line", help="Subscription has an IoT box line.")
    ] = True,
    data_dir: DataDir = None,
    db: DbUrl = None,
    config_file: ConfigFile = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Register a database (production, in progress, with an IoT box line unless told otherwise)."""
    registry = _registry(data_dir, db, config_file)
    _show(registry.add(uuid, code, kind=kind, subscription=subscription, iot_box_line=iot_line), as_json)
    registry.database.dispose()


@db_app.command("set")
def db_set(
    uuid: Annotated[str, typer.Option("--uuid", help="The registered database to change.")],
    code: Annotated[str | None, typer.Option("--code", help="A new enterprise code.")] = None,
    kind: Annotated[DatabaseKind | None, typer.Option("--kind", help=KIND_HELP)] = None,
    subscription: Annotated[
        SubscriptionStatus | None, typer.Option("--subscription", help=SUBSCRIPTION_HELP)
    ] = None,
    iot_line: Annotated[
        bool | None, typer.Option("--iot-line/--no-iot-line", help="Subscription has an IoT box line.")
    ] = None,
    data_dir: DataDir = None,
    db: DbUrl = None,
    config_file: ConfigFile = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Change a registered database; the next request of its boxes sees the change."""
    registry = _registry(data_dir, db, config_file)
    _show(registry.set(uuid, code=code, kind=kind, subscription=subscription, iot_box_line=iot_line), as_json)
    registry.database.dispose()


@db_app.command("list")
def db_list(
    data_dir: DataDir = None,
    db: DbUrl = None,
    config_file: ConfigFile = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """The eligibility registry (never the codes)."""
    registry = _registry(data_dir, db, config_file)
    records = registry.list()
    registry.database.dispose()
    if as_json:
        typer.echo(json.dumps([r.as_json() for r in records], indent=2))
        return
    for record in records:
        _show(record, False)
    if not records:
        typer.echo("no databases registered")
