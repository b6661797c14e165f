"""Wiring of ``lancert service run``: database, shared identity (CA, label secret), authority, issuer,
HTTP app on uvicorn, and the DNS server in the same process unless ``--dns-port 0``."""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass

import uvicorn
from fastapi import FastAPI

from lancert.dns import DNSService, RateLimit, ServerSpec, ZoneSpec
from lancert.errors import LancertError
from lancert.logs import configure_logging
from lancert.service.app import create_app
from lancert.service.authority import Authority
from lancert.service.config import ServiceConfig
from lancert.service.database import Database
from lancert.service.dnsrecords import txt_source
from lancert.service.issuer import InternalCAIssuer, ServiceIdentity, ensure_service_identity
from lancert.service.provisioning import Provisioner
from lancert.service.ratelimit import FailedCredentialLimiter
from lancert.service.registry import Registry


@dataclass
class Service:
    config: ServiceConfig
    database: Database
    identity: ServiceIdentity
    issuer: InternalCAIssuer
    app: FastAPI


def open_database(config: ServiceConfig) -> Database:
    """The service's database, migrated to the newest schema (the CLI's registry commands use it too)."""
    config.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    database = Database(config.db_url)
    database.migrate()
    return database


def build_service(config: ServiceConfig) -> Service:
    database = open_database(config)
    identity = ensure_service_identity(database, config.zone, config.ca_dir)
    issuer = InternalCAIssuer(identity.ca, config.cert_lifetime)
    authority = Authority(
        Registry(database),
        FailedCredentialLimiter(database, config.rate_limit),
        zone=identity.zone,
        label_secret=identity.label_secret,
    )
    app = create_app(Provisioner(database, authority, issuer), issuer)
    return Service(config, database, identity, issuer, app)


class _AnnouncingServer(uvicorn.Server):
    """Prints the ready line once the socket listens, so a parent process can wait for it."""

    def _log_started_message(self, listeners: Sequence[socket.SocketType]) -> None:
        host, port = listeners[0].getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        print(f"lancert service: listening on http://{shown}:{port}", flush=True)


def start_dns(config: ServiceConfig, zone: str) -> DNSService:
    """The zone's DNS workers (``--dns-workers``, default one per core), reading TXT from the database.

    ``config.caa_issuers`` become CAA records at the apex: an upstream ACME issuer sets them to its
    CA's identities (the directory's ``meta.caaIdentities``) so that the CA's CAA check passes.
    """
    spec = ServerSpec(
        ZoneSpec(zone, caa_issuers=config.caa_issuers),
        host=config.host,
        txt_source=txt_source(config.db_url),
        rate_limit=RateLimit(responses_per_second=config.dns_rate_limit),
    )
    try:
        dns = DNSService(spec, config.dns_port, workers=config.dns_workers or os.cpu_count() or 1)
        dns.start()
    except OSError as exc:
        raise LancertError(
            f"cannot listen for DNS on {config.host}:{config.dns_port}: {exc.strerror or exc}"
        ) from None
    return dns


def run_service(config: ServiceConfig, log_level: str = "INFO") -> None:
    configure_logging(log_level)
    service = build_service(config)
    dns: DNSService | None = None
    if config.dns_port:
        dns = start_dns(config, service.identity.zone)
        print(
            f"lancert service: dns for {service.identity.zone} on {config.host}:{dns.port} (udp+tcp, "
            f"{dns.workers} workers)",
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
        service.database.dispose()
    if not server.started:
        raise LancertError(f"cannot listen on {config.host}:{config.port} (address in use or not local)")
