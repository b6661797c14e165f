"""Wiring of ``lancert service run``: database, shared identity (CA, label secret), authority, issuer
(the internal CA, or an upstream ACME CA with ``--issuer acme``), the HTTP and ACME ports on the one
serving layer (:mod:`lancert.serving.ports`, one event loop), and the DNS
server in the same process unless ``--dns-port 0``.

Only what the start needs before the DNS workers are launched is imported with this module; the rest
(the HTTP stack, the PKI core, the issuance step, the metrics) is imported by :func:`build_service` and
:func:`_serve`, after the launch, so that a worker's start (a spawned interpreter, ~0.2 s to its first
answer on a 2-core machine) runs beside those imports instead of after them (:func:`_serve`).

``wrap_issuer`` is for tests only, passed by a test's own entry point (never read from the environment):
it wraps the real issuer, e.g. to make issuance slow and test the deadlines of the order desk.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import ssl
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.engine import make_url

from lancert.errors import LancertError, UsageError
from lancert.logs import configure_logging
from lancert.loopback import inherited_listener, listen_tcp
from lancert.service.config import ServiceConfig
from lancert.service.database import Database, migrate_apart, open_database
from lancert.service.dnsrecords import caa_issuers, publish_caa, txt_source
from lancert.service.registry import Registry, return_large_blocks
from lancert.storage.locks import SERVICE_LOCK, directory_lock
from lancert.wire.limits import MAX_BODY_BYTES

if TYPE_CHECKING:
    from starlette.types import ASGIApp

    from lancert.dns import DNSService
    from lancert.service.app import ServiceApp
    from lancert.service.authority import Authority
    from lancert.service.issuer import Issuer, ServiceIdentity
    from lancert.service.provisioning import Provisioner
    from lancert.serving.ports import Port


@dataclass
class Service:
    config: ServiceConfig
    database: Database
    identity: ServiceIdentity
    issuer: Issuer
    provisioner: Provisioner
    app: ServiceApp
    authority: Authority


IssuerWrapper = Callable[["Issuer"], "Issuer"]


def make_issuer(config: ServiceConfig, database: Database, identity: ServiceIdentity) -> Issuer:
    """The internal CA (default), or the upstream ACME CAs that ``--issuer acme`` names, in order, each
    with its own account, EAB and CA bundle, behind one scheduler (:mod:`lancert.service.fallback`)."""
    from lancert.service import metrics
    from lancert.service.issuer import InternalCAIssuer

    if config.issuer != "acme":
        return InternalCAIssuer(identity.ca, config.cert_lifetime)
    from lancert.service.fallback import UpstreamChoice
    from lancert.service.upstream import EAB_HMAC_ENV, AcmeIssuer, AcmeSettings, read_eab_hmac

    upstreams = config.upstreams()
    if not upstreams:
        raise UsageError(
            "--issuer acme needs --acme-directory URL (Let's Encrypt staging first) or [[upstream]] tables"
        )
    issuers = []
    for upstream in upstreams:
        hmac_key = read_eab_hmac(upstream.eab_hmac_file)
        if upstream.eab_kid and not hmac_key:
            raise UsageError(
                f"{upstream.directory}: the EAB kid needs its HMAC key in {EAB_HMAC_ENV} or an HMAC file "
                "(--acme-eab-hmac-file, or eab_hmac_file in its [[upstream]] table)"
            )
        if upstream.ca_bundle is not None and not upstream.ca_bundle.is_file():
            raise UsageError(f"--acme-ca-bundle {upstream.ca_bundle}: no such file")
        settings = AcmeSettings(
            upstream.directory, upstream.contact, upstream.ca_bundle, upstream.eab_kid, hmac_key
        )
        issuers.append(AcmeIssuer(database, settings))
    return UpstreamChoice(
        database,
        issuers,
        [u.limits for u in upstreams],
        zone=identity.zone,
        on_public_suffix_list=config.zone_on_public_suffix_list,
        down_backoff=config.orders.upstream_down_backoff,
        observe=metrics.upstream_order,
    )


def build_service(config: ServiceConfig, wrap_issuer: IssuerWrapper | None = None) -> Service:
    from lancert.service.app import create_app
    from lancert.service.authority import Authority
    from lancert.service.issuer import ensure_service_identity
    from lancert.service.provisioning import Provisioner
    from lancert.service.ratelimit import FailedCredentialLimiter

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
    return Service(config, database, identity, issuer, provisioner, app, authority)


@dataclass
class _AcmeEndpoint:
    """The ACME port (HTTPS), served in the service's loop beside the HTTP port, and the name that its
    directory URL shows."""

    port: Port
    name: str

    def ready_line(self) -> str:
        return (f"lancert service: acme directory https://{self.name}:{self.port.port}/acme/directory "
                f"(listening on {self.port.host}:{self.port.port}; trust 'lancert service root')")


def _acme_endpoint(service: Service) -> _AcmeEndpoint:
    """The ACME port: its TLS credential made or checked now (a bad option fails the start), the ACME
    server itself built on the port's first request (:mod:`lancert.service.acmeserver.front` says why)."""
    from lancert.service.acmeserver.front import MAX_BODY_BYTES as ACME_MAX_BODY
    from lancert.service.acmeserver.front import AcmeFront
    from lancert.service.acmeserver.tls import default_endpoint_name, endpoint_credential, given_credential
    from lancert.serving.ports import Port

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
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        tls.load_cert_chain(cert_path, key_path)
    except (OSError, ssl.SSLError) as exc:
        raise LancertError(f"cannot use the ACME TLS certificate {cert_path}: {exc}") from None
    meta = {"termsOfService": config.acme_terms_of_service, "website": config.acme_website}

    def build() -> ASGIApp:
        from lancert.service.acmeserver.app import create_acme_app
        from lancert.service.acmeserver.build import build_acme_server

        acme = build_acme_server(service.database, service.authority, service.provisioner,
                                 meta={k: v for k, v in meta.items() if v})
        return create_acme_app(acme)

    def too_large(app: ASGIApp, limit: int) -> ASGIApp:
        from lancert.service.acmeserver.app import acme_too_large

        return acme_too_large(app, limit)

    front = AcmeFront(build, too_large)
    listener = listen_tcp(config.host, config.acme_port or 0)
    return _AcmeEndpoint(Port("acme", front, listener, ACME_MAX_BODY, front.too_large, tls=tls), name)


def wait_for_dns(config: ServiceConfig, dns: DNSService) -> None:
    """Return when the workers :func:`launch_dns` started answer over UDP and TCP."""
    try:
        dns.wait_ready()
    except OSError as exc:
        raise LancertError(
            f"cannot listen for DNS on {config.host}:{config.dns_port}: {exc.strerror or exc}"
        ) from None


def launch_dns(config: ServiceConfig, zone: str, caa_issuers: Sequence[str] = ()) -> DNSService:
    """The zone's DNS workers (``--dns-workers``, default one per core), reading TXT from the database;
    their sockets bound and the processes started, not yet waited for (:func:`wait_for_dns`).

    ``caa_issuers`` become CAA records at the apex: ``config.caa_issuers`` when the operator set them,
    else an upstream ACME issuer's CA identities (its directory's ``meta.caaIdentities``), so that the
    CA's CAA check passes and no other CA may issue for the zone.

    The DNS server's modules are imported here: a service with ``--dns-port 0`` never loads them.
    """
    from lancert.dns import DNSService, RateLimit, ServerSpec, ZoneSpec

    spec = ServerSpec(
        ZoneSpec(zone, caa_issuers=caa_issuers),
        host=config.host,
        txt_source=txt_source(config.db_url),
        rate_limit=RateLimit(responses_per_second=config.dns_rate_limit),
    )
    try:
        dns = DNSService(spec, config.dns_port, workers=config.dns_workers or os.cpu_count() or 1)
        dns.launch()
    except OSError as exc:
        raise LancertError(
            f"cannot listen for DNS on {config.host}:{config.dns_port}: {exc.strerror or exc}"
        ) from None
    return dns


def _check_upstream_account(issuer: Issuer) -> None:
    """Register with the upstream CA now, so that a wrong EAB key or an unreachable CA shows at start;
    the service runs anyway (orders retry later, and boxes get the reason)."""
    from lancert.service.issuer import IssuanceFailed

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


def run_service(
    config: ServiceConfig, wrap_issuer: IssuerWrapper | None = None, log_level: str = "INFO",
    listen_fd: int | None = None,
) -> None:
    """Serve until interrupted. A start that fails leaves nothing behind: the HTTP port is taken before
    anything is written (a taken port is one ``lancert:`` line, without uvicorn's own ERROR line first),
    and a data directory this run created is removed again when the service never listened.

    ``listen_fd``: serve HTTP on this inherited listening socket instead of binding ``config.port``
    (``lancert up`` binds it, so that it can tell the box the service's URL before the service runs;
    connections made meanwhile wait in the socket's backlog instead of being refused)."""
    configure_logging(log_level)
    return_large_blocks()
    created = config.db is None and not config.data_dir.exists()
    http_socket = (listen_tcp(config.host, config.port) if listen_fd is None
                   else inherited_listener(listen_fd, config.host))
    listened: list[bool] = []
    try:
        # SQLite in the data directory: one service per directory (two made the CA at once, or wrote
        # the same file without a word). PostgreSQL instances share a database by design.
        with _sqlite_data_dir_lock(config):
            _serve(config, http_socket, listened, wrap_issuer)
    except BaseException:
        http_socket.close()
        if created and not listened:
            shutil.rmtree(config.data_dir, ignore_errors=True)
        raise


@contextmanager
def _sqlite_data_dir_lock(config: ServiceConfig) -> Iterator[None]:
    """The data directory's lock, and with ``--db sqlite:///FILE`` outside it also a lock beside FILE
    (``FILE.lock``): two services with their own data directories on one SQLite file would race to make
    the CA in it just the same (PostgreSQL instances share a database by design and take neither)."""
    if not config.db_url.startswith("sqlite"):
        yield
        return
    with ExitStack() as held:
        holder = "'lancert service run'"
        held.enter_context(directory_lock(config.data_dir, SERVICE_LOCK, holder, "--data-dir"))
        name = make_url(config.db_url).database
        if name and name != ":memory:" and not name.startswith("file:"):
            path = Path(name).resolve()
            if path.parent != config.data_dir.resolve():
                held.enter_context(directory_lock(path.parent, f"{path.name}.lock", holder, "--db"))
        yield


def _zone_records_known_at_start(config: ServiceConfig) -> bool:
    """Whether the DNS workers' zone can be served before the service is built: the zone is
    ``config.zone`` (:func:`ensure_service_identity` refuses any other), and the apex CAA is the
    operator's ``caa_issuers`` or none, since the internal CA publishes no CAA identities
    (:func:`publish_caa` removes any a former upstream left). Not with ``--issuer acme`` (its CAA comes
    from the upstream's directory, read while the service is built), nor on PostgreSQL (migrated in
    :func:`open_database`, inside the build: a worker would read its TXT table before it exists on a
    first start); SQLite is migrated by :func:`migrate_apart` before this."""
    return config.issuer != "acme" and config.db_url.startswith("sqlite")


def _serve(
    config: ServiceConfig,
    http_socket: socket.socket,
    listened: list[bool],
    wrap_issuer: IssuerWrapper | None,
) -> None:
    migrate_apart(config)  # Alembic stays out of the serving process (see migrate_apart)
    dns: DNSService | None = None
    if config.dns_port and _zone_records_known_at_start(config):
        # Before build_service and its imports (the module docstring): the worker's start (a spawned
        # interpreter, its imports, the first TXT read) was ~0.13-0.19 s of waiting at the end of a
        # start, after the service's own work; beside it, none or little (bench/README.md, issue 21).
        dns = launch_dns(config, config.zone, config.caa_issuers)
    try:
        service = build_service(config, wrap_issuer)
        _check_upstream_account(service.issuer)
        publish_caa(service.database, service.issuer)
        if config.dns_port and dns is None:
            # Launched first, waited for after the ACME endpoint is made: the workers' start runs
            # beside that work instead of after it.
            caa = config.caa_issuers or tuple(caa_issuers(service.database))
            dns = launch_dns(config, service.identity.zone, caa)
        # Made (and its TLS credential checked) before the HTTP and ACME ports serve: a bad option
        # fails the start cleanly (the DNS workers are stopped below).
        acme = _acme_endpoint(service) if config.acme_port is not None else None
        if dns is not None:
            wait_for_dns(config, dns)
    except BaseException:
        if dns is not None:
            dns.stop()
        raise
    if dns is not None:
        service.app.metrics.set_dns(dns.rcode_counts)
        print(
            f"lancert service: dns for {service.identity.zone} on {config.host}:{dns.port} (udp+tcp, "
            f"{dns.workers} workers)",
            flush=True,
        )
    from lancert.service.app import service_too_large
    from lancert.serving.ports import Port, serve_ports

    ports = [Port("service", service.app, http_socket, MAX_BODY_BYTES, service_too_large)]
    if acme is not None:
        ports.append(acme.port)

    def ready() -> None:
        listened.append(True)
        if acme is not None:
            print(acme.ready_line(), flush=True)
        print(f"lancert service: listening on {ports[0].url().rstrip('/')}", flush=True)  # the last line

    try:
        started = asyncio.run(serve_ports(ports, ready))
    finally:
        if acme is not None:
            acme.port.listener.close()
        if dns is not None:
            dns.stop()
        service.provisioner.close()
        service.database.dispose()
    if not started:
        raise LancertError(f"cannot listen on {config.host}:{config.port} (address in use or not local)")
