"""Settings of ``lancert service run``: defaults, then a TOML config file, then command-line options.

Example config (every key optional)::

    zone = "iot.example.net"
    db = "postgresql+psycopg://lancert@/lancert?host=/run/postgresql"
    host = "127.0.0.1"
    port = 8470
    dns_port = 8053
    dns_workers = 4                # DNS worker processes (default: the number of cores)
    dns_rate_limit = 50            # identical DNS answers per second per source /24 or /56 (0 = off)
    caa_issuers = ["letsencrypt.org"]   # CAA at the zone's apex (default none: any CA may issue)
    cert_lifetime = "90d"          # also "47d", "12h", "120s"
    issuer = "acme"                # default "internal"
    acme_directory = "https://acme-staging-v02.api.letsencrypt.org/directory"
    acme_contact = "ops@example.net"
    acme_ca_bundle = "/etc/lancert/test-ca.pem"   # only for a test CA's HTTPS (Pebble)
    acme_eab_kid = "kid-1"         # the HMAC key: LANCERT_ACME_EAB_HMAC or acme_eab_hmac_file (0600)
    acme_eab_hmac_file = "/etc/lancert/eab-hmac"
    zone_on_public_suffix_list = false   # true once the zone is a PSL entry: each box its own domain
    acme_port = 8471               # ACME over HTTPS (absent: no ACME server)
    acme_name = "acme.iot.example.net"   # the ACME endpoint's name (default acme.<zone>)
    acme_tls_cert = "/etc/lancert/acme-chain.pem"   # with acme_tls_key: serve this instead of making one
    acme_tls_key = "/etc/lancert/acme-key.pem"
    acme_terms_of_service = "https://iot.example.net/acme-terms"   # the directory's meta (clients show it)
    acme_website = "https://iot.example.net/"
    [[upstream]]                   # several CAs, tried in this order (instead of acme_directory)
    directory = "https://acme-v02.api.letsencrypt.org/directory"
    [[upstream]]
    directory = "https://acme.zerossl.com/v2/DV90"
    eab_kid = "kid-2"              # each CA its own EAB and CA bundle
    eab_hmac_file = "/etc/lancert/zerossl-hmac"
    new_orders_per_3h = 300        # the CA's published limits (Let's Encrypt's by default); raise
    certs_per_domain_per_week = 50 # them to what the CA granted you (see UpstreamLimits)
    [orders]                       # orders placed with the issuer (see lancert.service.orders)
    compatible_deadline = 3.5      # seconds a compatible call waits before answering "pending"
    native_deadline = 8.0
    failures_per_hour = 5          # failed orders per name per hour
    retry_backoff = 60.0           # seconds after a first failure, doubled per consecutive failure
    lease = 30.0                   # seconds an instance's order stays its own without a heartbeat
    upstream_down_backoff = 60.0   # seconds a CA found down is passed over (doubling, up to 1 h)
    [rate_limit]
    failures_per_ip = 20
    failures_per_database = 10
    window_seconds = 300
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field, fields, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from lancert.errors import UsageError
from lancert.service.database import default_url
from lancert.service.ratelimit import RateLimits

DEFAULT_DATA_DIR = Path("~/.local/share/lancert/service").expanduser()
DEFAULT_ZONE = "iot.lancert.test"
DEFAULT_PORT = 8470
DEFAULT_DNS_PORT = 8053
DEFAULT_LIFETIME = timedelta(days=90)

_DURATION = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")
_CAA_ISSUER = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "": 86400}


def parse_lifetime(value: str | int) -> timedelta:
    """``90d``, ``12h``, ``30m``, ``120s`` (a bare number means days); 60 s to the TLS server maximum."""
    match = _DURATION.match(str(value))
    if not match:
        raise UsageError(f"invalid certificate lifetime {value!r} (examples: 90d, 12h, 120s)")
    lifetime = timedelta(seconds=int(match[1]) * _UNITS[match[2]])
    from lancert.pki import TLS_SERVER  # here: the registry commands need no X.509 (cryptography import)

    if lifetime < timedelta(seconds=60) or lifetime > TLS_SERVER.max_validity:
        raise UsageError(f"certificate lifetime must be between 60s and {TLS_SERVER.max_validity.days}d")
    return lifetime


def normalize_zone(zone: str) -> str:
    from lancert.pki.names import normalize_dns_name

    try:
        name = normalize_dns_name(zone)
    except Exception:
        raise UsageError(f"invalid zone {zone!r}") from None
    if name.startswith("*") or "." not in name:
        raise UsageError(f"invalid zone {zone!r}: give a domain such as iot.example.net")
    return name


@dataclass(frozen=True)
class OrderPolicy:
    """Deadlines and bounds of the orders placed with the issuer (``[orders]`` in the TOML config; used by
    :mod:`lancert.service.orders`, kept here so that reading the configuration imports no order machinery)."""

    # The most impatient field boxes give up after 5 s; the wait is counted from the request's arrival,
    # and 1.5 s are left for the credential check under load and the way back.
    compatible_deadline: float = 3.5
    native_deadline: float = 8.0  # lancert's box agent waits 10 s
    failures_per_hour: int = 5
    retry_backoff: float = 60.0
    lease: float = 30.0
    workers: int = 4
    # Seconds an upstream CA found down (unreachable, 5xx, rateLimited) is passed over for the next one,
    # doubled per consecutive failure up to an hour; never less than the CA's Retry-After.
    upstream_down_backoff: float = 60.0


@dataclass(frozen=True)
class UpstreamLimits:
    """One upstream CA's published limits, which the scheduler (:mod:`lancert.service.scheduler`) spends
    without ever exceeding. Defaults: Let's Encrypt's, as published in 2025 (letsencrypt.org/docs/
    rate-limits): 300 new orders per account per 3 hours; 50 new certificates per registered domain per
    7 days; 5 certificates per exact set of names per 7 days; 5 authorization failures per name per
    account per hour. A renewal (the exact name set of an earlier certificate) is exempt from the first two;
    a renewal the CA's ARI window asked for is exempt from all. A CA that grants an integrator more
    (Let's Encrypt's rate-limit adjustment form) is given its raised values here."""

    new_orders_per_3h: int = 300
    certs_per_domain_per_week: int = 50
    duplicates_per_week: int = 5
    auth_failures_per_hour: int = 5
    renewals_exempt: bool = True  # same name set: exempt from new orders and per-domain certificates
    ari_renewals_exempt: bool = True  # renewal inside the CA's suggested window: exempt from all limits


@dataclass(frozen=True)
class UpstreamConfig:
    """One upstream ACME CA: an ``[[upstream]]`` table, or one ``--acme-directory``."""

    directory: str
    contact: str | None = None
    ca_bundle: Path | None = None
    eab_kid: str | None = None
    eab_hmac_file: Path | None = None
    limits: UpstreamLimits = field(default_factory=UpstreamLimits)


_UPSTREAM_KEYS = {"directory", "contact", "ca_bundle", "eab_kid", "eab_hmac_file"}


def _upstream_table(table: object, where: str) -> UpstreamConfig:
    if not isinstance(table, dict):
        raise UsageError(f"{where}: [[upstream]] must be a table")
    limit_names = {f.name: f.type for f in fields(UpstreamLimits)}
    unknown = set(table) - _UPSTREAM_KEYS - set(limit_names)
    if unknown:
        raise UsageError(f"{where}: unknown [[upstream]] setting(s) {', '.join(sorted(unknown))}")
    directory = table.get("directory")
    if not isinstance(directory, str) or not directory.startswith("https://"):
        raise UsageError(
            f"{where}: each [[upstream]] needs directory = an https:// URL (ACME requires HTTPS)"
        )
    limits: dict[str, Any] = {}
    for name, value in table.items():
        if name not in limit_names:
            continue
        wanted = bool if isinstance(getattr(UpstreamLimits(), name), bool) else int
        if type(value) is not wanted or (wanted is int and value < 0):
            kind = "true or false" if wanted is bool else "an integer >= 0"
            raise UsageError(f"{where}: [[upstream]] {name} must be {kind}")
        limits[name] = value
    paths = {k: Path(str(table[k])).expanduser() for k in ("ca_bundle", "eab_hmac_file") if k in table}
    return UpstreamConfig(
        directory,
        contact=table.get("contact"),
        eab_kid=table.get("eab_kid"),
        limits=UpstreamLimits(**limits),
        **paths,
    )


@dataclass(frozen=True)
class ServiceConfig:
    data_dir: Path = DEFAULT_DATA_DIR
    db: str | None = None
    zone: str = DEFAULT_ZONE
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    dns_port: int = DEFAULT_DNS_PORT
    dns_workers: int | None = None  # None: os.cpu_count()
    dns_rate_limit: int = 50
    caa_issuers: tuple[str, ...] = ()
    cert_lifetime: timedelta = DEFAULT_LIFETIME
    acme_port: int | None = None
    acme_name: str | None = None
    acme_tls_cert: Path | None = None  # a chain (leaf first) for the ACME endpoint instead of one made here
    acme_tls_key: Path | None = None
    acme_terms_of_service: str | None = None  # RFC 8555 7.1.1 directory meta; some clients need one
    acme_website: str | None = None
    rate_limit: RateLimits = field(default_factory=RateLimits)
    issuer: str = "internal"
    acme_directory: tuple[str, ...] = ()  # --acme-directory, repeatable: CAs in order of preference
    upstream: tuple[UpstreamConfig, ...] = ()  # the [[upstream]] tables of the config file
    zone_on_public_suffix_list: bool = False
    acme_contact: str | None = None
    acme_ca_bundle: Path | None = None
    acme_eab_kid: str | None = None
    acme_eab_hmac_file: Path | None = None
    orders: OrderPolicy = field(default_factory=OrderPolicy)

    @property
    def db_url(self) -> str:
        return self.db or default_url(self.data_dir)

    @property
    def ca_dir(self) -> Path:
        return self.data_dir / "ca"

    def upstreams(self) -> tuple[UpstreamConfig, ...]:
        """The upstream CAs in order. Directories given with ``--acme-directory`` (or ``acme_directory``)
        choose and order them, each taking its settings from the ``[[upstream]]`` table of the same
        directory if there is one, else ``--acme-contact``/``--acme-eab-*``; without any, the tables in
        file order. ``--acme-ca-bundle`` applies to every CA that names no bundle of its own."""
        tables = {u.directory: u for u in self.upstream}
        if self.acme_directory:
            if self.acme_eab_kid and len(self.acme_directory) > 1:
                raise UsageError(
                    "--acme-eab-kid with several --acme-directory: give each CA's EAB in an [[upstream]] "
                    "table of the config file (eab_kid, eab_hmac_file)"
                )
            chosen = [
                tables.get(d)
                or UpstreamConfig(d, self.acme_contact, None, self.acme_eab_kid, self.acme_eab_hmac_file)
                for d in self.acme_directory
            ]
        else:
            chosen = list(self.upstream)
        if len({u.directory for u in chosen}) != len(chosen):
            raise UsageError("each upstream ACME directory may be given once")
        return tuple(
            replace(
                u,
                ca_bundle=u.ca_bundle or self.acme_ca_bundle,
                contact=u.contact or self.acme_contact,
            )
            for u in chosen
        )

    def with_options(self, **options: Any) -> ServiceConfig:
        """This config with every option that is not None applied (command line over file)."""
        changes = {k: v for k, v in options.items() if v is not None}
        if "cert_lifetime" in changes:
            changes["cert_lifetime"] = parse_lifetime(changes["cert_lifetime"])
        if "zone" in changes:
            changes["zone"] = normalize_zone(changes["zone"])
        if "data_dir" in changes:
            changes["data_dir"] = Path(changes["data_dir"]).expanduser()
        if "dns_workers" in changes and not 1 <= int(changes["dns_workers"]) <= 256:
            raise UsageError("--dns-workers must be 1 to 256")
        if "dns_rate_limit" in changes and int(changes["dns_rate_limit"]) < 0:
            raise UsageError("--dns-rate-limit must be 0 (off) or more")
        if "zone_on_public_suffix_list" in changes and not isinstance(
            changes["zone_on_public_suffix_list"], bool
        ):
            raise UsageError("zone_on_public_suffix_list must be true or false")
        if "caa_issuers" in changes:
            changes["caa_issuers"] = _caa_issuers(changes["caa_issuers"])
        for name in ("acme_ca_bundle", "acme_eab_hmac_file"):
            if name in changes:
                changes[name] = Path(changes[name]).expanduser()
        if "issuer" in changes and changes["issuer"] not in ("internal", "acme"):
            raise UsageError(f"--issuer must be internal or acme, not {changes['issuer']!r}")
        if "acme_directory" in changes:
            given = changes["acme_directory"]
            directories = (given,) if isinstance(given, str) else tuple(given)
            if not directories:
                del changes["acme_directory"]  # an empty repeatable option: as if not given
            elif not all(isinstance(d, str) and d.startswith("https://") for d in directories):
                raise UsageError("--acme-directory must be an https:// URL (ACME requires HTTPS)")
            else:
                changes["acme_directory"] = directories
        for path in ("acme_tls_cert", "acme_tls_key"):
            if path in changes:
                changes[path] = Path(changes[path]).expanduser()
        if "acme_name" in changes:
            changes["acme_name"] = normalize_zone(changes["acme_name"])
        for url in ("acme_terms_of_service", "acme_website"):
            if url in changes and not (isinstance(changes[url], str) and changes[url].startswith("https://")):
                raise UsageError(f"{url} must be an https:// URL")
        for port in ("port", "dns_port", "acme_port"):
            if port in changes and not 0 <= int(changes[port]) <= 65535:
                raise UsageError(f"--{port.replace('_', '-')} must be 0 to 65535")
        return replace(self, **changes)


def _caa_issuers(values: object) -> tuple[str, ...]:
    """CAA issuer domains (RFC 8659 §4.2: a domain name, e.g. ``letsencrypt.org``), lower-case."""
    if isinstance(values, str) or not isinstance(values, list | tuple):
        raise UsageError("caa_issuers must be a list of CA domain names")
    issuers = []
    for value in values:
        if not isinstance(value, str) or not _CAA_ISSUER.fullmatch(value):
            raise UsageError(f"invalid CAA issuer {value!r}: give the CA's domain, e.g. letsencrypt.org")
        issuers.append(value.lower())
    return tuple(issuers)


def load_config(path: Path | None) -> ServiceConfig:
    config = ServiceConfig()
    if path is None:
        return config
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise UsageError(f"{path}: cannot read config ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: invalid TOML ({exc})") from None
    rate = data.pop("rate_limit", {})
    order_settings = data.pop("orders", {})
    tables = data.pop("upstream", [])
    if not isinstance(tables, list):
        raise UsageError(f"{path}: write each upstream CA as an [[upstream]] table")
    upstream = tuple(_upstream_table(t, str(path)) for t in tables)
    known = {f.name for f in fields(ServiceConfig)} - {"rate_limit", "orders", "upstream"}
    unknown = set(data) - known
    if unknown:
        raise UsageError(f"{path}: unknown setting(s) {', '.join(sorted(unknown))}")
    try:
        limits = RateLimits(**{k: int(v) for k, v in rate.items()})
    except TypeError as exc:
        raise UsageError(f"{path}: invalid [rate_limit]: {exc}") from None
    try:
        policy = OrderPolicy(**{k: type(getattr(OrderPolicy(), k))(v) for k, v in order_settings.items()})
    except (TypeError, AttributeError, ValueError) as exc:
        raise UsageError(f"{path}: invalid [orders]: {exc}") from None
    return replace(config, rate_limit=limits, orders=policy, upstream=upstream).with_options(**data)
