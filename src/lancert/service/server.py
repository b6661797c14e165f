"""Wiring of ``lancert service run``: database, shared identity (CA, label secret), authority, issuer,
HTTP app on uvicorn, and the DNS server in the same process unless ``--dns-port 0``."""

from __future__ import annotations

import logging
import socket
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import uvicorn
from fastapi import FastAPI

from lancert.dns import DNSService, ZoneResolver
from lancert.errors import LancertError
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
    authority: Authority


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
    return Service(config, database, identity, issuer, app, authority)


class _AnnouncingServer(uvicorn.Server):
    """Prints the ready line once the socket listens, so a parent process can wait for it."""

    def _log_started_message(self, listeners: Sequence[socket.SocketType]) -> None:
        host, port = listeners[0].getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        print(f"lancert service: listening on http://{shown}:{port}", flush=True)


class _AcmeEndpoint(uvicorn.Server):
    """The ACME server (HTTPS) beside the main one, in a thread of its own: uvicorn installs signal
    handlers only in the main thread, so Ctrl-C stops the main server, which then stops this one."""

    def __init__(self, config: uvicorn.Config, name: str) -> None:
        super().__init__(config)
        self.name = name
        self.thread = threading.Thread(target=self.run, name="acme-server", daemon=True)

    def _log_started_message(self, listeners: Sequence[socket.SocketType]) -> None:
        host, port = listeners[0].getsockname()[:2]
        print(
            f"lancert service: acme directory https://{self.name}:{port}/acme/directory "
            f"(listening on {host}:{port}; trust 'lancert service root')",
            flush=True,
        )

    def start(self) -> None:
        self.thread.start()
        while not self.started and self.thread.is_alive():
            self.thread.join(0.01)
        if not self.started:
            raise LancertError(f"cannot listen for ACME on {self.config.host}:{self.config.port}")

    def stop(self) -> None:
        self.should_exit = True
        self.thread.join(10)


def _acme_endpoint(service: Service) -> _AcmeEndpoint:
    from lancert.acme import build_acme_server
    from lancert.acme.app import create_acme_app
    from lancert.acme.tls import default_endpoint_name, endpoint_credential, given_credential

    config = service.config
    zone = service.identity.zone
    name = config.acme_name or default_endpoint_name(zone)
    if config.acme_tls_cert or config.acme_tls_key:
        if not (config.acme_tls_cert and config.acme_tls_key):
            raise LancertError("--acme-tls-cert and --acme-tls-key go together")
        cert_path, key_path = given_credential(config.acme_tls_cert, config.acme_tls_key)
    else:
        if not name.endswith(f".{zone}"):  # the CA is name-constrained to the zone
            raise LancertError(f"--acme-name must be under the zone {zone} (or give --acme-tls-cert/-key)")
        files = endpoint_credential(service.identity.ca, name, config.data_dir / "acme-tls")
        cert_path, key_path = files.cert_path, files.key_path
    app = create_acme_app(build_acme_server(service.database, service.authority, service.issuer))
    return _AcmeEndpoint(
        uvicorn.Config(
            app, host=config.host, port=config.acme_port or 0, log_level="warning", access_log=False,
            server_header=False, proxy_headers=False, timeout_keep_alive=5, timeout_graceful_shutdown=5,
            ssl_certfile=str(cert_path), ssl_keyfile=str(key_path),
        ),
        name,
    )


def run_service(config: ServiceConfig) -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(name)s: %(message)s")
    service = build_service(config)
    # Made (and its TLS credential checked) before anything listens: a bad option fails the start cleanly.
    acme = _acme_endpoint(service) if config.acme_port is not None else None
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
    if acme is not None:
        acme.start()
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
        if acme is not None:
            acme.stop()
        if dns is not None:
            dns.stop()
        service.database.dispose()
    if not server.started:
        raise LancertError(f"cannot listen on {config.host}:{config.port} (address in use or not local)")
