"""Why a browser on the LAN cannot reach the box by name: the DNS diagnosis.

The box's name resolves to its private LAN address. Many shop and home routers run a resolver with
DNS-rebinding protection, which drops public names whose answer is a private address: the zone's DNS
server answers correctly, the local resolver answers nothing. Asking both and comparing names that case.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import dns.rdatatype

# dnspython (3 MiB resident) is imported by the functions that ask: a box loads it the first time
# someone asks for the diagnosis, not to serve its page.

Address = tuple[str, int]


def parse_server(value: str, default_port: int = 53) -> Address:
    """``IP``, ``IP:PORT`` or ``[IPv6]:PORT`` as an address tuple."""
    value = value.strip()
    if value.startswith("["):
        host, _, port = value[1:].partition("]:")
        return host.rstrip("]"), int(port or default_port)
    if value.count(":") == 1:
        host, _, port = value.partition(":")
        return host, int(port)
    return value, default_port


@dataclass(frozen=True)
class DnsDiagnosis:
    hostname: str
    expected_ip: str
    resolver: str
    resolver_answer: list[str]
    resolver_error: str
    zone_server: str
    zone_answer: list[str]
    zone_error: str
    verdict: str  # ok | rebind_protection | resolver_failed | wrong_address | zone_dns_failed | zone_wrong
    message: str

    @property
    def ok(self) -> bool:
        return self.verdict == "ok"

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _rdtype(ip: str) -> dns.rdatatype.RdataType:
    import dns.rdatatype

    return dns.rdatatype.AAAA if ipaddress.ip_address(ip).version == 6 else dns.rdatatype.A


def _ask_resolver(hostname: str, rdtype: dns.rdatatype.RdataType, resolver: Address | None,
                  timeout: float) -> tuple[list[str], str]:
    """Answers of the machine's resolver (``getaddrinfo``, as a browser asks) or of ``resolver``."""
    import dns.exception
    import dns.rdatatype
    import dns.resolver

    if resolver is None:
        family = socket.AF_INET6 if rdtype == dns.rdatatype.AAAA else socket.AF_INET
        try:
            infos = socket.getaddrinfo(hostname, None, family, socket.SOCK_STREAM)
        except socket.gaierror as exc:
            return [], f"not resolved ({exc.strerror})"
        return sorted({str(info[4][0]) for info in infos}), ""
    res = dns.resolver.Resolver(configure=False)
    res.nameservers, res.port, res.lifetime = [resolver[0]], resolver[1], timeout
    try:
        answer = res.resolve(hostname, rdtype, search=False)
    except dns.resolver.NXDOMAIN:
        return [], "NXDOMAIN (no such name)"
    except dns.resolver.NoAnswer:
        return [], "no address in the answer"
    except dns.resolver.NoNameservers as exc:
        return [], f"the resolver refused or failed ({exc})"
    except dns.exception.Timeout:
        return [], "timeout"
    return sorted(r.to_text() for r in answer), ""


def _zone_servers(zone: str, timeout: float) -> list[Address]:
    """The zone's authoritative servers, found through the machine's resolver."""
    import dns.exception
    import dns.resolver

    res = dns.resolver.Resolver()
    res.lifetime = timeout
    servers: list[Address] = []
    try:
        for ns in res.resolve(zone, "NS"):
            for a in res.resolve(ns.target, "A"):
                servers.append((a.to_text(), 53))
    except dns.exception.DNSException:
        return []
    return servers


def _ask_zone(hostname: str, rdtype: dns.rdatatype.RdataType, server: Address,
              timeout: float) -> tuple[list[str], str]:
    import dns.exception
    import dns.message
    import dns.query
    import dns.rcode

    query = dns.message.make_query(hostname, rdtype)
    try:
        response = dns.query.udp(query, server[0], port=server[1], timeout=timeout)
    except (dns.exception.DNSException, OSError) as exc:
        return [], f"no answer from {server[0]}:{server[1]} ({type(exc).__name__})"
    if response.rcode() != dns.rcode.NOERROR:
        return [], dns.rcode.to_text(response.rcode())
    return sorted(r.to_text() for rrset in response.answer if rrset.rdtype == rdtype for r in rrset), ""


def _rebind_advice(zone: str) -> str:
    return (
        "The local DNS resolver (usually the shop's router) drops answers that point to private addresses: "
        "DNS-rebinding protection. The zone's own DNS server answers correctly. Allow the zone in the "
        f"router: add {zone} to its DNS-rebind exceptions (Fritz!Box: Home Network > Network > Network "
        f"Settings > DNS rebind protection; OpenWrt, Pi-hole, dnsmasq: rebind-domain-ok=/{zone}/; pfSense "
        f"or OPNsense: a private domain / domain override for {zone}; unbound: private-domain: \"{zone}\"), "
        "or have the POS devices use a DNS server without this filter."
    )


def diagnose(
    hostname: str,
    expected_ip: str,
    zone: str,
    *,
    resolver: Address | None = None,
    zone_server: Address | None = None,
    timeout: float = 2.0,
) -> DnsDiagnosis:
    """Resolve ``hostname`` through the local resolver and at the zone's server, and say what is wrong."""
    rdtype = _rdtype(expected_ip)
    local, local_error = _ask_resolver(hostname, rdtype, resolver, timeout)
    servers = [zone_server] if zone_server else _zone_servers(zone, timeout)
    if servers:
        direct, direct_error = _ask_zone(hostname, rdtype, servers[0], timeout)
        zone_label = f"{servers[0][0]}:{servers[0][1]}"
    else:
        direct, direct_error, zone_label = [], f"no DNS server found for {zone}", ""
    private = not ipaddress.ip_address(expected_ip).is_global

    if direct_error or not direct:
        verdict, message = "zone_dns_failed", (
            f"The zone's DNS server does not answer for {hostname} ({direct_error or 'empty answer'}): "
            "the certificate service's DNS is down or unreachable; nothing on the box or the LAN can fix it.")
    elif expected_ip not in direct:
        verdict, message = "zone_wrong", (
            f"The zone's DNS server answers {', '.join(direct)} instead of {expected_ip}.")
    elif expected_ip in local:
        verdict, message = "ok", f"{hostname} resolves to {expected_ip} through the local resolver."
    elif local:
        verdict, message = "wrong_address", (
            f"The local resolver answers {', '.join(local)} instead of {expected_ip}: a local DNS override "
            "or a stale cache; remove the override or flush the resolver's cache.")
    elif private and "timeout" not in local_error:
        verdict, message = "rebind_protection", _rebind_advice(zone)
    else:
        verdict, message = "resolver_failed", (
            f"The local resolver cannot resolve {hostname} ({local_error}) although the zone's DNS server "
            "answers: check the DNS server the devices use.")
    return DnsDiagnosis(
        hostname=hostname, expected_ip=expected_ip,
        resolver="system" if resolver is None else f"{resolver[0]}:{resolver[1]}",
        resolver_answer=local, resolver_error=local_error, zone_server=zone_label,
        zone_answer=direct, zone_error=direct_error, verdict=verdict, message=message,
    )
