"""``lancert service``: run the certificate service, print its root, edit the eligibility registry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from lancert.errors import LancertError
from lancert.pki import pem
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
    issuer: Annotated[
        str | None,
        typer.Option(
            "--issuer",
            help="internal (default: the service's own CA, whose root devices must import) or acme "
            "(a public ACME CA such as Let's Encrypt: browsers trust it as they are).",
        ),
    ] = None,
    acme_directory: Annotated[
        str | None,
        typer.Option(
            "--acme-directory",
            help="ACME directory URL, e.g. https://acme-staging-v02.api.letsencrypt.org/directory.",
        ),
    ] = None,
    acme_contact: Annotated[
        str | None, typer.Option("--acme-contact", help="E-mail of the ACME account (expiry notices).")
    ] = None,
    acme_ca_bundle: Annotated[
        Path | None,
        typer.Option("--acme-ca-bundle", help="PEM CA(s) to trust for the ACME server's HTTPS (a test CA)."),
    ] = None,
    acme_eab_kid: Annotated[
        str | None,
        typer.Option(
            "--acme-eab-kid",
            help="External Account Binding key id; the HMAC key comes from LANCERT_ACME_EAB_HMAC or "
            "--acme-eab-hmac-file, never from the command line.",
        ),
    ] = None,
    acme_eab_hmac_file: Annotated[
        Path | None,
        typer.Option("--acme-eab-hmac-file", help="File (mode 0600) holding the base64url EAB HMAC key."),
    ] = None,
) -> None:
    """Serve the native API, the compatible Odoo endpoint, and (unless --dns-port 0) the zone's DNS.

    With --issuer acme, certificates come from the ACME CA, proven by DNS-01 through this service's
    own DNS (the zone must be delegated to it)."""
    from lancert.service.server import run_service

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
            issuer=issuer,
            acme_directory=acme_directory,
            acme_contact=acme_contact,
            acme_ca_bundle=acme_ca_bundle,
            acme_eab_kid=acme_eab_kid,
            acme_eab_hmac_file=acme_eab_hmac_file,
        )
    )


@app.command("certs")
def certs(
    data_dir: DataDir = None,
    db: DbUrl = None,
    config_file: ConfigFile = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Each database/label: issuer, not_after, renewal due, whether an order runs, the last upstream error."""
    from lancert.service.orders import certificate_statuses
    from lancert.service.server import open_database

    database = open_database(_config(config_file, data_dir=data_dir, db=db))
    statuses = certificate_statuses(database)
    database.dispose()
    if as_json:
        typer.echo(json.dumps([s.as_json() for s in statuses], indent=2))
        return
    if not statuses:
        typer.echo("no certificates issued yet")
    for status in statuses:
        when = status.not_after.isoformat(timespec="seconds") if status.not_after else "none yet"
        due = status.renew_after.isoformat(timespec="seconds") if status.renew_after else "-"
        line = (
            f"{status.db_uuid} {status.box_label} ({status.style}): {status.issuer}, not after {when}, "
            f"renewal due {due}{', ordering now' if status.ordering else ''}"
        )
        if status.last_error:
            at = status.last_error_at.isoformat(timespec="seconds") if status.last_error_at else "?"
            line += f"; last error at {at}: {status.last_error}"
        typer.echo(line)


@app.command("root")
def root(data_dir: DataDir = None, db: DbUrl = None, config_file: ConfigFile = None) -> None:
    """Print the service's root CA certificate (PEM): what browsers and POS devices must trust."""
    from lancert.service.issuer import load_service_identity
    from lancert.service.server import open_database

    database = open_database(_config(config_file, data_dir=data_dir, db=db))
    identity = load_service_identity(database)
    database.dispose()
    if identity is None:
        raise LancertError("no CA yet: start the service once with 'lancert service run'")
    typer.echo(pem([identity.ca.root]).decode(), nl=False)


def _registry(data_dir: Path | None, db: str | None, config_file: Path | None) -> Registry:
    from lancert.service.server import open_database

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
    kind: Annotated[DatabaseKind, typer.Option("--kind")] = DatabaseKind.PRODUCTION,
    subscription: Annotated[
        SubscriptionStatus, typer.Option("--subscription")
    ] = SubscriptionStatus.IN_PROGRESS,
    iot_line: Annotated[
        bool, typer.Option("--iot-line/--no-iot-line", help="Subscription has an IoT box line.")
    ] = True,
    data_dir: DataDir = None,
    db: DbUrl = None,
    config_file: ConfigFile = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Register a database (production, in progress, with an IoT box line unless told otherwise)."""
    registry = _registry(data_dir, db, config_file)
    _show(registry.add(uuid, code, kind=kind, subscription=subscription, iot_box_line=iot_line), as_json)
    registry.database.dispose()


@db_app.command("set")
def db_set(
    uuid: Annotated[str, typer.Option("--uuid")],
    code: Annotated[str | None, typer.Option("--code", help="A new enterprise code.")] = None,
    kind: Annotated[DatabaseKind | None, typer.Option("--kind")] = None,
    subscription: Annotated[SubscriptionStatus | None, typer.Option("--subscription")] = None,
    iot_line: Annotated[bool | None, typer.Option("--iot-line/--no-iot-line")] = None,
    data_dir: DataDir = None,
    db: DbUrl = None,
    config_file: ConfigFile = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
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
    as_json: Annotated[bool, typer.Option("--json")] = False,
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
