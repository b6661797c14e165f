"""``lancert service``: run the certificate service, print its root, edit the eligibility registry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from lancert.errors import LancertError, UsageError
from lancert.logs import LogLevel, LogLevelOption
from lancert.service.config import DEFAULT_DATA_DIR, ServiceConfig, load_config
from lancert.service.registry import (
    DatabaseKind,
    DatabaseRecord,
    Registry,
    SubscriptionStatus,
    start_making_dummy_hash,
)

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


def _existing(config: ServiceConfig) -> ServiceConfig:
    """``config``, once its SQLite database is known to exist: the commands that only read (root, certs,
    db list, acme-eab) made a mistyped --data-dir with an empty database and answered "nothing
    registered"."""
    from lancert.service.database import DB_FILE

    if config.db is None and not (config.data_dir / DB_FILE).is_file():
        raise LancertError(f"{config.data_dir}: no service data here (a mistyped --data-dir? 'lancert "
                           "service run' or 'lancert service db add' makes it)")
    return config


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
    listen_fd: Annotated[
        int | None,
        typer.Option("--listen-fd", help="Serve HTTP on this inherited listening socket (bound to --host "
                     "by the program that started the service, e.g. lancert up) instead of --port."),
    ] = None,
    dns_port: Annotated[
        int | None, typer.Option("--dns-port", help="DNS port, UDP+TCP (default 8053; 0 = no DNS).")
    ] = None,
    dns_workers: Annotated[
        int | None,
        typer.Option("--dns-workers", help="DNS worker processes, UDP+TCP on one port (default: cores)."),
    ] = None,
    dns_rate_limit: Annotated[
        int | None,
        typer.Option(
            "--dns-rate-limit",
            help="Identical DNS answers per second to one /24 or /56 over UDP (default 50; 0 = off).",
        ),
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
    issuer: Annotated[
        str | None,
        typer.Option(
            "--issuer",
            help="internal (default: the service's own CA, whose root devices must import) or acme "
            "(a public ACME CA such as Let's Encrypt: browsers trust it as they are).",
        ),
    ] = None,
    acme_directory: Annotated[
        list[str] | None,
        typer.Option(
            "--acme-directory",
            help="ACME directory URL, e.g. https://acme-staging-v02.api.letsencrypt.org/directory; "
            "repeat it for fallback CAs, tried in order (each CA's EAB: [[upstream]] in the config).",
        ),
    ] = None,
    acme_contact: Annotated[
        str | None, typer.Option("--acme-contact", help="E-mail of the ACME account (expiry notices).")
    ] = None,
    acme_ca_bundle: Annotated[
        Path | None,
        typer.Option(
            "--acme-ca-bundle",
            help="PEM CA(s) to trust for the ACME servers' HTTPS (a test CA); for every upstream CA.",
        ),
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
    acme_port: Annotated[
        int | None,
        typer.Option(
            "--acme-port",
            help="Also serve ACME (RFC 8555) over HTTPS on this port (0 = any free); directory at "
            "https://acme.<zone>:P/acme/directory. Clients need an EAB pair: 'service acme-eab'.",
        ),
    ] = None,
    acme_name: Annotated[
        str | None,
        typer.Option("--acme-name", help="Name of the ACME endpoint, under the zone (default acme.<zone>)."),
    ] = None,
    acme_tls_cert: Annotated[
        Path | None,
        typer.Option("--acme-tls-cert", help="Serve ACME with this chain (PEM, leaf first) instead of a "
                     "certificate from the service's CA; needs --acme-tls-key."),
    ] = None,
    acme_tls_key: Annotated[
        Path | None, typer.Option("--acme-tls-key", help="The private key of --acme-tls-cert (PEM).")
    ] = None,
) -> None:
    """Serve the native API, the compatible Odoo endpoint, and (unless --dns-port 0) the zone's DNS.

    With --issuer acme, certificates come from the ACME CA, proven by DNS-01 through this service's
    own DNS (the zone must be delegated to it)."""
    if cert_lifetime is not None and cert_days is not None:
        raise UsageError("give --cert-lifetime or --cert-days, not both")
    if listen_fd is not None and port is not None:
        raise UsageError("give --port or --listen-fd, not both")
    # Beside the server's imports below, on another core (the registry's comparison hash, one scrypt).
    start_making_dummy_hash()
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
            dns_workers=dns_workers,
            dns_rate_limit=dns_rate_limit,
            cert_lifetime=lifetime,
            issuer=issuer,
            acme_directory=acme_directory,
            acme_contact=acme_contact,
            acme_ca_bundle=acme_ca_bundle,
            acme_eab_kid=acme_eab_kid,
            acme_eab_hmac_file=acme_eab_hmac_file,
            acme_port=acme_port,
            acme_name=acme_name,
            acme_tls_cert=acme_tls_cert,
            acme_tls_key=acme_tls_key,
        ),
        log_level=log_level,
        listen_fd=listen_fd,
    )


@app.command("certs")
def certs(
    data_dir: DataDir = None,
    db: DbUrl = None,
    config_file: ConfigFile = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Each database/label: issuer, not_after, renewal due, whether an order runs, the last upstream error."""
    from lancert.service.database import open_database
    from lancert.service.orders import certificate_statuses

    database = open_database(_existing(_config(config_file, data_dir=data_dir, db=db)))
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
        if status.skipped:
            line += "; skipped " + "; ".join(status.skipped)
        if status.last_error:
            at = status.last_error_at.isoformat(timespec="seconds") if status.last_error_at else "?"
            line += f"; last error at {at}: {status.last_error}"
        typer.echo(line)


@app.command("root")
def root(data_dir: DataDir = None, db: DbUrl = None, config_file: ConfigFile = None) -> None:
    """Print the service's root CA certificate (PEM): what browsers and POS devices must trust."""
    from lancert.pki import pem
    from lancert.service.database import open_database
    from lancert.service.issuer import load_service_identity

    database = open_database(_existing(_config(config_file, data_dir=data_dir, db=db)))
    identity = load_service_identity(database)
    database.dispose()
    if identity is None:
        raise LancertError("no CA yet: start the service once with 'lancert service run'")
    typer.echo(pem([identity.ca.root]).decode(), nl=False)


@app.command("acme-eab")
def acme_eab(
    uuid: Annotated[str, typer.Option("--uuid", help="The registered database the ACME accounts belong to.")],
    revoke: Annotated[
        str | None, typer.Option("--revoke", help="Revoke this key id instead of making a new pair.")
    ] = None,
    bind_key: Annotated[
        Path | None,
        typer.Option(
            "--bind-key",
            help="Instead of a pair: give this existing ACME account key (PEM, e.g. acme-tiny's "
            "account.key) an account of the database, for clients that send no EAB.",
        ),
    ] = None,
    data_dir: DataDir = None,
    db: DbUrl = None,
    config_file: ConfigFile = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Make an External Account Binding pair for ACME clients (kid + base64url HMAC key), bound to a
    database: its accounts get names under that database's label while it stays eligible. Every call
    makes a new pair (rotation); --revoke KID stops a pair and the accounts it opened. Keep the HMAC key
    secret: it is printed once, here. A database that may not order (not registered, not production, no
    IoT box line, subscription not in progress) gets no pair: the command says why and fails.

    --bind-key FILE: clients without EAB support (acme-tiny, acmetool, simp_le) register with their
    own account key; bound here once, their registration finds the account by that key."""
    from lancert.service.acmeserver.eab import EabKeys
    from lancert.service.authority import box_label
    from lancert.service.database import open_database
    from lancert.service.issuer import load_service_identity

    database = open_database(_existing(_config(config_file, data_dir=data_dir, db=db)))
    try:
        keys = EabKeys(database)
        if revoke is not None:
            keys.revoke(revoke, uuid)
            typer.echo(json.dumps({"kid": revoke, "revoked": True}) if as_json else f"revoked {revoke}")
            return
        if bind_key is not None:
            try:
                key_pem = bind_key.read_bytes()
            except OSError as exc:
                raise LancertError(f"--bind-key {bind_key}: {exc.strerror}") from None
            account, kid, created = keys.bind_key(uuid, key_pem)
            bound = {"account": account, "kid": kid, "db_uuid": uuid, "created": created}
            typer.echo(json.dumps(bound) if as_json else
                       f"{'bound' if created else 'already bound'}: account {account} of database {uuid} "
                       f"(revoke it with --revoke {kid})")
            return
        pair = keys.create(uuid)
        identity = load_service_identity(database)
    finally:
        database.dispose()
    answer: dict[str, object] = pair.as_json()
    if identity is not None:  # the label needs the service's secret, made at its first start
        label = box_label(identity.label_secret, uuid, None)
        answer["names"] = [f"*.{label}.{identity.zone}", f"<ip-with-dashes>.{label}.{identity.zone}"]
    if as_json:
        typer.echo(json.dumps(answer))
    else:
        for key, value in answer.items():
            typer.echo(f"{key}: {', '.join(value) if isinstance(value, list) else value}")


# The enterprise code is a credential: on the command line every user sees it in `ps` and it stays in the
# shell's history, so it can come from a file (0600, first line) or the environment instead.
CODE_VARIABLE = "LANCERT_ENTERPRISE_CODE"
CodeFile = Annotated[
    Path | None,
    typer.Option("--code-file", help=f"Read the enterprise code from this file's first line (else "
                 f"{CODE_VARIABLE} or --code)."),
]


def _enterprise_code(code: str | None, code_file: Path | None) -> str | None:
    """The code from --code-file, else from --code or its environment variable."""
    if code_file is None:
        return code
    try:
        lines = code_file.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--code-file {code_file}: {getattr(exc, 'strerror', None) or exc}") from None
    if not lines or not lines[0].strip():
        raise UsageError(f"--code-file {code_file}: the file is empty")
    return lines[0].strip()


def _registry(data_dir: Path | None, db: str | None, config_file: Path | None, *, create: bool = False
              ) -> Registry:
    """The registry; only ``db add`` (``create``) may make the data directory and its database."""
    from lancert.service.database import open_database

    config = _config(config_file, data_dir=data_dir, db=db)
    return Registry(open_database(config if create else _existing(config)))


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
    code: Annotated[str | None, typer.Option("--code", envvar=CODE_VARIABLE, show_envvar=True,
                                             help="The enterprise code (stored hashed only).")] = None,
    code_file: CodeFile = None,
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
    secret = _enterprise_code(code, code_file)
    if secret is None:
        raise UsageError(f"db add needs the enterprise code: --code-file F, {CODE_VARIABLE} or --code")
    registry = _registry(data_dir, db, config_file, create=True)
    _show(registry.add(uuid, secret, kind=kind, subscription=subscription, iot_box_line=iot_line), as_json)
    registry.database.dispose()


@db_app.command("set")
def db_set(
    uuid: Annotated[str, typer.Option("--uuid", help="The registered database to change.")],
    code: Annotated[str | None, typer.Option("--code", envvar=CODE_VARIABLE, show_envvar=True,
                                             help="A new enterprise code.")] = None,
    code_file: CodeFile = None,
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
    changed = registry.set(uuid, code=_enterprise_code(code, code_file), kind=kind, subscription=subscription,
                           iot_box_line=iot_line)
    _show(changed, as_json)
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
