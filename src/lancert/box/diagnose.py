"""Why a browser on the LAN cannot reach the box by name: the DNS diagnosis.

The box's name resolves to its private LAN address. Many shop and home routers run a resolver with
DNS-rebinding protection, which drops public names whose answer is a private address: the zone's DNS
server answers correctly, the local resolver answers no address (dnsmasq's ``stop-dns-rebind`` and
unbound's ``private-address`` answer NOERROR with an empty answer). Asking both and comparing names that
case. A resolver that answers REFUSED, or none that answers at all, is another case with another fix:
the router's rebind settings are no help there, so each is named as what it is.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import asdict, dataclass
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import dns.rdatatype

Address = tuple[str, int]


def _dnspython() -> ModuleType:
    """dnspython (3 MiB resident), imported by the functions that ask: a box loads it the first time
    someone asks for the diagnosis, not to serve its page."""
    import dns.exception
    import dns.message
    import dns.query
    import dns.rcode
    import dns.rdatatype
    import dns.resolver

    return dns


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
    # ok | rebind_protection | resolver_refused | no_resolver | resolver_failed | wrong_address |
    # zone_dns_failed | zone_wrong
    verdict: str
    message: str

    @property
    def ok(self) -> bool:
        return self.verdict == "ok"

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _rdtype(ip: str) -> dns.rdatatype.RdataType:
    dns = _dnspython()
    return dns.rdatatype.AAAA if ipaddress.ip_address(ip).version == 6 else dns.rdatatype.A


# How the local resolver answered, when it gave no address.
NO_ADDRESS = "no_address"  # NOERROR without an address, NXDOMAIN, or getaddrinfo's "no such name"
REFUSED = "refused"  # the resolver refuses to answer this client (RCODE 5)
NO_ANSWER = "no_answer"  # nobody answered: no resolver there, unreachable, or none configured
FAILED = "failed"  # SERVFAIL and every other failure


def _ask_server(hostname: str, rdtype: dns.rdatatype.RdataType, server: Address,
                timeout: float) -> tuple[list[str], str, str]:
    """Ask ``server`` as a stub resolver does (recursion desired): its addresses, else why not and how."""
    dns = _dnspython()
    label = f"{server[0]}:{server[1]}"
    query = dns.message.make_query(hostname, rdtype)
    try:
        response, _ = dns.query.udp_with_fallback(query, server[0], timeout=timeout, port=server[1])
    except dns.exception.Timeout:
        return [], f"no answer from {label} within {timeout:g} s", NO_ANSWER
    except OSError as exc:
        return [], f"no answer from {label} ({exc.strerror or exc})", NO_ANSWER
    except dns.exception.DNSException as exc:
        return [], f"an unreadable answer from {label} ({type(exc).__name__})", FAILED
    rcode = response.rcode()
    if rcode == dns.rcode.NXDOMAIN:
        return [], "NXDOMAIN (no such name)", NO_ADDRESS
    if rcode == dns.rcode.REFUSED:
        return [], "REFUSED", REFUSED
    if rcode != dns.rcode.NOERROR:
        return [], dns.rcode.to_text(rcode), FAILED
    addresses = sorted(r.to_text() for rrset in response.answer if rrset.rdtype == rdtype for r in rrset)
    return addresses, "" if addresses else "NOERROR with no address", NO_ADDRESS


def _ask_system(hostname: str, rdtype: dns.rdatatype.RdataType,
                timeout: float) -> tuple[list[str], str, str, str]:
    """The machine's resolver as a browser asks it (``getaddrinfo``); when that fails for another reason
    than "no such name" (glibc says only "temporary failure" for REFUSED, SERVFAIL and silence alike),
    the first nameserver of /etc/resolv.conf is asked directly to learn which. Returns the answers,
    the error, its kind, and which resolver was asked."""
    dns = _dnspython()
    family = socket.AF_INET6 if rdtype == dns.rdatatype.AAAA else socket.AF_INET
    try:
        infos = socket.getaddrinfo(hostname, None, family, socket.SOCK_STREAM)
    except socket.gaierror as exc:
        error = f"not resolved ({exc.strerror})"
        if exc.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)):
            return [], error, NO_ADDRESS, "system"
        try:
            nameservers = [str(ns) for ns in dns.resolver.Resolver().nameservers]
        except dns.exception.DNSException:
            nameservers = []
        if not nameservers:
            return [], f"{error}; no nameserver in /etc/resolv.conf", NO_ANSWER, "system"
        server = (nameservers[0], 53)
        answers, direct_error, kind = _ask_server(hostname, rdtype, server, timeout)
        label = f"system ({server[0]})"
        if answers or kind == NO_ADDRESS:  # it answered this time: report what getaddrinfo said
            return [], error, FAILED, label
        return [], f"{error}: {direct_error}", kind, label
    return sorted({str(info[4][0]) for info in infos}), "", "", "system"


def _zone_servers(zone: str, timeout: float) -> list[Address]:
    """The zone's authoritative servers, found through the machine's resolver."""
    dns = _dnspython()
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
    dns = _dnspython()
    query = dns.message.make_query(hostname, rdtype)
    try:
        response = dns.query.udp(query, server[0], port=server[1], timeout=timeout)
    except (dns.exception.DNSException, OSError) as exc:
        return [], f"no answer from {server[0]}:{server[1]} ({type(exc).__name__})"
    if response.rcode() != dns.rcode.NOERROR:
        return [], dns.rcode.to_text(response.rcode())
    return sorted(r.to_text() for rrset in response.answer if rrset.rdtype == rdtype for r in rrset), ""


def _rebind_advice(zone: str, hostname: str, local_error: str) -> str:
    return (
        f"The local DNS resolver (usually the shop's router) answers {local_error} for {hostname} while "
        "the zone's own DNS server answers correctly: it drops answers that point to private addresses, "
        "DNS-rebinding protection. Allow the zone in the "
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
    if resolver is None:
        local, local_error, kind, resolver_label = _ask_system(hostname, rdtype, timeout)
    else:
        local, local_error, kind = _ask_server(hostname, rdtype, resolver, timeout)
        resolver_label = f"{resolver[0]}:{resolver[1]}"
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
    elif kind == REFUSED:
        verdict, message = "resolver_refused", (
            f"The local resolver {resolver_label} refuses to resolve {hostname} for this box "
            f"({local_error}): it serves no recursion to this network (an access list, or a server that "
            "answers only for its own zones). Let it answer the LAN's devices, or give them a resolver "
            "that does (usually the router's address, handed out by DHCP).")
    elif kind == NO_ANSWER:
        verdict, message = "no_resolver", (
            f"No DNS resolver answers at {resolver_label} ({local_error}): none runs there, or it cannot "
            "be reached. Check the DNS server address the devices get (DHCP or their network settings) "
            "and that the resolver at that address is running.")
    elif private and kind == NO_ADDRESS:
        verdict, message = "rebind_protection", _rebind_advice(zone, hostname, local_error)
    else:
        verdict, message = "resolver_failed", (
            f"The local resolver cannot resolve {hostname} ({local_error}) although the zone's DNS server "
            "answers: check the DNS server the devices use.")
    return DnsDiagnosis(
        hostname=hostname, expected_ip=expected_ip,
        resolver=resolver_label,
        resolver_answer=local, resolver_error=local_error, zone_server=zone_label,
        zone_answer=direct, zone_error=direct_error, verdict=verdict, message=message,
    )
