"""Settings of ``lancert service run``: defaults, then a TOML config file, then command-line options.

Example config (every key optional)::

    zone = "iot.example.net"
    db = "postgresql+psycopg://lancert@/lancert?host=/run/postgresql"
    host = "127.0.0.1"
    port = 8470
    dns_port = 8053
    cert_lifetime = "90d"          # also "47d", "12h", "120s"
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
class ServiceConfig:
    data_dir: Path = DEFAULT_DATA_DIR
    db: str | None = None
    zone: str = DEFAULT_ZONE
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    dns_port: int = DEFAULT_DNS_PORT
    cert_lifetime: timedelta = DEFAULT_LIFETIME
    rate_limit: RateLimits = field(default_factory=RateLimits)

    @property
    def db_url(self) -> str:
        return self.db or default_url(self.data_dir)

    @property
    def ca_dir(self) -> Path:
        return self.data_dir / "ca"

    def with_options(self, **options: Any) -> ServiceConfig:
        """This config with every option that is not None applied (command line over file)."""
        changes = {k: v for k, v in options.items() if v is not None}
        if "cert_lifetime" in changes:
            changes["cert_lifetime"] = parse_lifetime(changes["cert_lifetime"])
        if "zone" in changes:
            changes["zone"] = normalize_zone(changes["zone"])
        if "data_dir" in changes:
            changes["data_dir"] = Path(changes["data_dir"]).expanduser()
        for port in ("port", "dns_port"):
            if port in changes and not 0 <= int(changes[port]) <= 65535:
                raise UsageError(f"--{port.replace('_', '-')} must be 0 to 65535")
        return replace(self, **changes)


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
    known = {f.name for f in fields(ServiceConfig)} - {"rate_limit"}
    unknown = set(data) - known
    if unknown:
        raise UsageError(f"{path}: unknown setting(s) {', '.join(sorted(unknown))}")
    try:
        limits = RateLimits(**{k: int(v) for k, v in rate.items()})
    except TypeError as exc:
        raise UsageError(f"{path}: invalid [rate_limit]: {exc}") from None
    return replace(config, rate_limit=limits).with_options(**data)
