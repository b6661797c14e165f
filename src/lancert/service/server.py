"""Wiring of ``lancert service run``: database, shared identity (CA, label secret), authority, issuer,
HTTP app on uvicorn, and the DNS server in the same process unless ``--dns-port 0``."""

from __future__ import annotations

import shutil
import socket
from collections.abc import Sequence
from dataclasses import dataclass

import uvicorn
from fastapi import FastAPI

from lancert.dns import DNSService, ZoneResolver
from lancert.errors import LancertError
from lancert.logs import configure_logging
from lancert.loopback import listen_tcp
from lancert.service.app import create_app
from lancert.service.authority import Authority
from lancert.service.config import ServiceConfig
from lancert.service.database import Database, open_database
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

    listened: list[bool]

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        # uvicorn announces itself only for sockets it bound; run_service binds its own (see there).
        await super().startup(sockets)
        if self.started and sockets:
            self._announce(sockets)

    def _announce(self, listeners: Sequence[socket.SocketType]) -> None:
        self.listened.append(True)
        host, port = listeners[0].getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        print(f"lancert service: listening on http://{shown}:{port}", flush=True)


def run_service(config: ServiceConfig, log_level: str = "INFO") -> None:
    """Serve until interrupted. A start that fails leaves nothing behind: the HTTP port is taken before
    anything is written (a taken port is one ``lancert:`` line, without uvicorn's own ERROR line first),
    and a data directory this run created is removed again when the service never listened."""
    configure_logging(log_level)
    created = config.db is None and not config.data_dir.exists()
    http_socket = listen_tcp(config.host, config.port)
    listened: list[bool] = []
    try:
        _serve(config, http_socket, listened)
    except BaseException:
        http_socket.close()
        if created and not listened:
            shutil.rmtree(config.data_dir, ignore_errors=True)
        raise


def _serve(config: ServiceConfig, http_socket: socket.socket, listened: list[bool]) -> None:
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
    server.listened = listened
    try:
        server.run(sockets=[http_socket])
    except SystemExit:  # uvicorn exits when it cannot bind; say it as every lancert command does
        if server.started:
            raise
    finally:
        if dns is not None:
            dns.stop()
        service.database.dispose()
    if not server.started:
        raise LancertError(f"cannot listen on {config.host}:{config.port} (address in use or not local)")
