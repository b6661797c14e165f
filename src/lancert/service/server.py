"""Wiring of ``lancert service run``: database, shared identity (CA, label secret), authority, issuer
(the internal CA, or an upstream ACME CA with ``--issuer acme``), HTTP app on uvicorn, and the DNS
server in the same process unless ``--dns-port 0``.

``wrap_issuer`` is for tests only, passed by a test's own entry point (never read from the environment):
it wraps the real issuer, e.g. to make issuance slow and test the deadlines of the order desk.
"""

from __future__ import annotations

import logging
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import uvicorn
from fastapi import FastAPI

from lancert.dns import DNSService, ZoneResolver
from lancert.errors import LancertError, UsageError
from lancert.service.app import create_app
from lancert.service.authority import Authority
from lancert.service.config import ServiceConfig
from lancert.service.database import Database
from lancert.service.dnsrecords import database_txt_lookup, store_caa_issuers
from lancert.service.issuer import (
    InternalCAIssuer,
    IssuanceFailed,
    Issuer,
    ServiceIdentity,
    ensure_service_identity,
)
from lancert.service.provisioning import Provisioner
from lancert.service.ratelimit import FailedCredentialLimiter
from lancert.service.registry import Registry


@dataclass
class Service:
    config: ServiceConfig
    database: Database
    identity: ServiceIdentity
    issuer: Issuer
    provisioner: Provisioner
    app: FastAPI


def open_database(config: ServiceConfig) -> Database:
    """The service's database, migrated to the newest schema (the CLI's registry commands use it too)."""
    config.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    database = Database(config.db_url)
    database.migrate()
    return database


IssuerWrapper = Callable[[Issuer], Issuer]


def make_issuer(config: ServiceConfig, database: Database, identity: ServiceIdentity) -> Issuer:
    """The internal CA (default), or the upstream ACME CA that ``--issuer acme`` names."""
    if config.issuer != "acme":
        return InternalCAIssuer(identity.ca, config.cert_lifetime)
    from lancert.service.upstream import EAB_HMAC_ENV, AcmeIssuer, AcmeSettings, read_eab_hmac

    if not config.acme_directory:
        raise UsageError("--issuer acme needs --acme-directory URL (Let's Encrypt staging first)")
    hmac_key = read_eab_hmac(config.acme_eab_hmac_file)
    if config.acme_eab_kid and not hmac_key:
        raise UsageError(f"--acme-eab-kid needs its HMAC key in {EAB_HMAC_ENV} or --acme-eab-hmac-file")
    if config.acme_ca_bundle is not None and not config.acme_ca_bundle.is_file():
        raise UsageError(f"--acme-ca-bundle {config.acme_ca_bundle}: no such file")
    settings = AcmeSettings(
        config.acme_directory, config.acme_contact, config.acme_ca_bundle, config.acme_eab_kid, hmac_key
    )
    return AcmeIssuer(database, settings)


def build_service(config: ServiceConfig, wrap_issuer: IssuerWrapper | None = None) -> Service:
    database = open_database(config)
    identity = ensure_service_identity(database, config.zone, config.ca_dir)
    issuer = make_issuer(config, database, identity)
    if wrap_issuer is not None:
        issuer = wrap_issuer(issuer)
    authority = Authority(
        Registry(database),
        FailedCredentialLimiter(database, config.rate_limit),
        zone=identity.zone,
        label_secret=identity.label_secret,
    )
    provisioner = Provisioner(database, authority, issuer, config.orders)
    app = create_app(provisioner, issuer)
    return Service(config, database, identity, issuer, provisioner, app)


class _AnnouncingServer(uvicorn.Server):
    """Prints the ready line once the socket listens, so a parent process can wait for it."""

    def _log_started_message(self, listeners: Sequence[socket.SocketType]) -> None:
        host, port = listeners[0].getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        print(f"lancert service: listening on http://{shown}:{port}", flush=True)


def _check_upstream_account(issuer: Issuer) -> None:
    """Register with the upstream CA now, so that a wrong EAB key or an unreachable CA shows at start;
    the service runs anyway (orders retry later, and boxes get the reason)."""
    check = getattr(issuer, "check_account", None)
    if check is None:
        return
    try:
        check()
    except IssuanceFailed as failure:
        print(f"lancert service: upstream CA not ready: {failure.message}", file=sys.stderr, flush=True)
    except Exception as exc:  # whatever the CA answers, the service still starts
        reason = f"{type(exc).__name__}: {exc}"
        print(f"lancert service: upstream CA not ready: {reason}", file=sys.stderr, flush=True)
    else:
        print(f"lancert service: issuing through {issuer.description}", flush=True)


def _publish_caa(service: Service) -> None:
    """CAA for the zone names the issuing CA only: the upstream CA's own identities, or none at all
    for the internal CA (whose name constraints already bound it, and which no public CAA governs)."""
    store_caa_issuers(service.database, tuple(getattr(service.issuer, "caa_identities", ())))


def run_service(config: ServiceConfig, wrap_issuer: IssuerWrapper | None = None) -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(name)s: %(message)s")
    service = build_service(config, wrap_issuer)
    _check_upstream_account(service.issuer)
    _publish_caa(service)
    dns: DNSService | None = None
    if config.dns_port:
        try:
            dns = DNSService(
                ZoneResolver(service.identity.zone, txt_lookup=database_txt_lookup(service.database)),
                host=config.host,
                port=config.dns_port,
            )
        except OSError as exc:
            raise LancertError(
                f"cannot listen for DNS on {config.host}:{config.dns_port}: {exc.strerror}"
            ) from None
        dns.start()
        print(
            f"lancert service: dns for {service.identity.zone} on {config.host}:{dns.port} (udp+tcp)",
            flush=True,
        )
    server = _AnnouncingServer(
        uvicorn.Config(
            service.app,
            host=config.host,
            port=config.port,
            log_level="warning",
            access_log=False,
            server_header=False,
            proxy_headers=False,
            timeout_keep_alive=5,
            timeout_graceful_shutdown=5,  # in-flight requests finish; idle keep-alives do not hold a stop
        )
    )
    try:
        server.run()
    except SystemExit:  # uvicorn exits when it cannot bind; say it as every lancert command does
        if server.started:
            raise
    finally:
        if dns is not None:
            dns.stop()
        service.provisioner.close()
        service.database.dispose()
    if not server.started:
        raise LancertError(f"cannot listen on {config.host}:{config.port} (address in use or not local)")
