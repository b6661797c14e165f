"""What a box keeps in its state directory, besides the certificate pair of ``lancert.storage``.

``settings.json`` (mode 0600: it holds the enterprise code) is what the user configured; ``state.json``
is what the box learned (docs/box.md, "Files"). Both are written atomically, so a crash leaves
the old file or the new one.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from lancert.errors import UsageError
from lancert.storage.files import KEY_MODE, read_json, write_json

SETTINGS_FILE = "settings.json"
STATE_FILE = "state.json"
LOG_FILE = "box.log"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
# Field limits: what a settings form or a hand-edited file may hold, so hostile input stays small.
MAX_FIELD = 256
# One label of a host name as the box's resolver takes it (RFC 1123 letters, digits, hyphens; underscores
# too, which LAN names carry): a percent escape or any other byte is no name a resolver can be asked for.
_HOST_LABEL = re.compile(rb"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")


class InvalidServiceURL(UsageError):
    """A service URL the box cannot use; ``str()`` says why in one line."""


def check_service_url(url: str) -> str:
    """``url`` if the box can POST to it, else :class:`InvalidServiceURL` naming the flaw.

    Checked fully, with both parsers the box relies on (``urlsplit`` and httpx), because a URL that
    passes a scheme-and-host test can still blow up at connect time: ``:99999`` (httpx accepts it and
    the socket layer raises ``OverflowError``), ``:abc``, ``:1:2``, ``:-1`` or ``http://[::1`` used to
    pass the form and leave the box answering 500 and unable to start.
    """
    import httpx  # 8 MiB resident: loaded when a URL is checked or a request sent, not to serve the page

    if not url or len(url) > MAX_FIELD:
        raise InvalidServiceURL(f"the service URL must be 1 to {MAX_FIELD} characters")
    if any(ord(c) < 33 or ord(c) == 127 for c in url):
        raise InvalidServiceURL("the service URL must not hold spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
        parsed = httpx.URL(url)
    except (ValueError, httpx.InvalidURL) as exc:
        raise InvalidServiceURL(f"the service URL is not valid: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidServiceURL("the service URL must be an http:// or https:// URL with a host")
    if not _is_host(parsed.raw_host):
        raise InvalidServiceURL("the service URL's host must be a host name or an IP address")
    if any(p is not None and not 1 <= p <= 65535 for p in (port, parsed.port)):
        raise InvalidServiceURL("the service URL's port must be 1 to 65535")
    if parts.username is not None or parts.password is not None:
        raise InvalidServiceURL("the service URL must not hold a user name or password")
    if parts.query or parts.fragment:
        raise InvalidServiceURL("the service URL must not hold a query or fragment")
    return url


def _is_host(raw_host: bytes) -> bool:
    """Whether httpx's host (IDNA-encoded: ASCII) is an IP address or a host name: both parsers take
    ``http://%00/`` with the host ``%00``, which the box would then hand to the resolver as a name.

    Not :func:`lancert.pki.names.normalize_dns_name`: that checks a certificate's dNSName, which refuses
    the underscores LAN host names carry and takes a wildcard label, which no URL's host is."""
    try:
        ipaddress.ip_address(raw_host.decode("ascii"))
        return True
    except ValueError:
        pass
    labels = raw_host.removesuffix(b".").split(b".")
    return len(raw_host) <= 253 and all(_HOST_LABEL.fullmatch(label) for label in labels)


@dataclass
class BoxSettings:
    """What the user configures: the service, the credential, the log level.

    ``pending_server_url`` is a service URL entered on the homepage but not yet confirmed: the box never
    sends its stored enterprise code to a new address until the user confirms it on the box's own page.
    """

    server_url: str = ""
    db_uuid: str = ""
    enterprise_code: str = ""
    log_level: str = "INFO"
    pending_server_url: str = ""

    @classmethod
    def load(cls, state_dir: Path) -> BoxSettings:
        data = read_json(state_dir / SETTINGS_FILE, {})
        if not isinstance(data, dict):
            data = {}
        known = {f.name for f in fields(cls)}
        values = {k: str(v)[:MAX_FIELD] for k, v in data.items() if k in known and isinstance(v, str)}
        settings = cls(**values)
        if settings.log_level not in LOG_LEVELS:
            settings.log_level = "INFO"
        return settings

    def save(self, state_dir: Path) -> None:
        write_json(state_dir / SETTINGS_FILE, asdict(self), mode=KEY_MODE)

    @property
    def has_credential(self) -> bool:
        return bool(self.db_uuid.strip() and self.enterprise_code.strip())


@dataclass
class BoxState:
    """What the box learned: its identity, names, certificate validity and the last check's outcome."""

    box_id: str = ""
    lan_ip: str = ""
    box_label: str = ""
    zone: str = ""
    hostname: str = ""
    https_url: str = ""
    http_port: int = 0
    https_port: int = 0
    fingerprint: str = ""
    not_before: str = ""
    not_after: str = ""
    renew_after: str = ""
    last_check: str = ""
    last_check_reason: str = ""
    last_renewal: str = ""
    status: str = ""  # "OK" when serving a valid certificate, else the first problem's code
    serving: bool = False
    problems: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)  # newest first, bounded
    dns: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, state_dir: Path) -> BoxState:
        data = read_json(state_dir / STATE_FILE, {})
        if not isinstance(data, dict):
            data = {}
        state = cls()
        for f in fields(cls):
            value = data.get(f.name)
            if value is not None and isinstance(value, type(getattr(state, f.name))):
                setattr(state, f.name, value)
        if not state.box_id:
            # Stable for the box's life: the service ties the box's subdomain to it.
            state.box_id = secrets.token_hex(8)
        return state

    def save(self, state_dir: Path) -> None:
        write_json(state_dir / STATE_FILE, asdict(self))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
