"""Wiring of ``lancert service run``: database, shared identity (CA, label secret), authority, issuer,
HTTP app on uvicorn, and the DNS server in the same process unless ``--dns-port 0``."""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
from dataclasses import dataclass

import uvicorn
from fastapi import FastAPI

from lancert.connections import GuardedH11Protocol, guarded_listener, one_line_refusals
from lancert.dns import DNSService, ZoneResolver
from lancert.errors import LancertError
from lancert.loopback import listen_tcp
from lancert.service.app import create_app
from lancert.service.authority import Authority
from lancert.service.config import ServiceConfig
from lancert.service.database import Database
from lancert.service.dnsrecords import database_txt_lookup
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

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        one_line_refusals(asyncio.get_running_loop())
        await super().startup(sockets)
        if sockets and not self.should_exit:
            host, port = sockets[0].getsockname()[:2]
            shown = f"[{host}]" if ":" in host else host
            print(f"lancert service: listening on http://{shown}:{port}", flush=True)


def run_service(config: ServiceConfig) -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(name)s: %(message)s")
    service = build_service(config)
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
            http=GuardedH11Protocol,
            log_level="warning",
            access_log=False,
            server_header=False,
            proxy_headers=False,
            timeout_keep_alive=5,
            timeout_graceful_shutdown=5,  # in-flight requests finish; idle keep-alives do not hold a stop
        )
    )
    try:
        server.run(sockets=[guarded_listener(listen_tcp(config.host, config.port))])
    except SystemExit:  # uvicorn exits when it cannot bind; say it as every lancert command does
        if server.started:
            raise
    finally:
        if dns is not None:
            dns.stop()
        service.database.dispose()
    if not server.started:
        raise LancertError(f"cannot listen on {config.host}:{config.port} (address in use or not local)")
