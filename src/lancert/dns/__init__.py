"""The managed zone's authoritative DNS: the embedded server and what PowerDNS needs to serve the same.

It answers ``<a-b-c-d>.<label>.<zone>`` with A a.b.c.d and the dashed IPv6 form with AAAA, so a box's
certificate for ``*.<label>.<zone>`` names whatever LAN address DHCP gave it; the apex has SOA, NS and
(when the service uses an upstream CA) CAA; ``_acme-challenge.<label>.<zone>`` TXT records come from the
service's database. Any other name under the zone is NXDOMAIN, names outside it are REFUSED.

- :mod:`lancert.dns.names`: the dashed names themselves.
- :mod:`lancert.dns.wire`: reading queries and writing answers as bytes (the fast path).
- :mod:`lancert.dns.zone`: what the zone answers (:class:`ZoneAnswers`), TXT snapshot and its staleness.
- :mod:`lancert.dns.ratelimit`: response rate limiting per source prefix (UDP).
- :mod:`lancert.dns.server`: worker processes sharing one UDP and one TCP socket of one port.
- :mod:`lancert.dns.powerdns`: ``lancert dns powerdns``, the production server's configuration.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lancert.dns.names import address_from_label, dashed_address, device_hostname
    from lancert.dns.ratelimit import RateLimit
    from lancert.dns.server import DNSService, ServerSpec, TxtSourceFactory
    from lancert.dns.zone import ZoneAnswers, ZoneSpec

# Each name is imported from its module on first use (PEP 562): a box agent that only needs
# ``lancert.dns.names`` (a string function) then does not load the server, the zone and with them
# dnslib and dnspython (3-4 MiB of a small box's memory).
# A TXT answer is given only from a snapshot read at most this long ago; an older one (the database is
# unreachable or slow) gives SERVFAIL instead of old values. So a TXT record committed at time t is in
# every answer given after t + TXT_MAX_STALENESS, by every worker of every instance: the ACME flows wait
# that long after writing before asking a CA to validate (lancert.service.dnsrecords). Here, not in the
# zone module, so that a service that only waits for it (``--dns-port 0``, the ACME port alone) does not
# load the DNS server, the zone and dnslib (~1.7 MiB).
TXT_MAX_STALENESS = 2.0

_HOMES = {
    "DNSService": "server",
    "RateLimit": "ratelimit",
    "ServerSpec": "server",
    "TxtSourceFactory": "server",
    "ZoneAnswers": "zone",
    "ZoneSpec": "zone",
    "address_from_label": "names",
    "dashed_address": "names",
    "device_hostname": "names",
}

__all__ = [
    "TXT_MAX_STALENESS",
    "DNSService",
    "RateLimit",
    "ServerSpec",
    "TxtSourceFactory",
    "ZoneAnswers",
    "ZoneSpec",
    "address_from_label",
    "dashed_address",
    "device_hostname",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value
