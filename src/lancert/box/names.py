"""The box's LAN address and its HTTPS URL; the name itself comes from :mod:`lancert.dns.names`."""

from __future__ import annotations

import ipaddress
import socket
from typing import Protocol

# TEST-NET-1 (RFC 5737): a UDP "connect" to it only asks the kernel for a route; no packet is sent.
_ROUTE_PROBE = ("192.0.2.1", 9)


def outbound_ip() -> str:
    """The address the OS would use for outbound traffic: the box's LAN address on a typical network."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(_ROUTE_PROBE)
        except OSError:
            return "127.0.0.1"  # no route at all: only loopback can reach the box
        return probe.getsockname()[0]


def https_url(hostname: str, port: int) -> str:
    return f"https://{hostname}/" if port == 443 else f"https://{hostname}:{port}/"


WILDCARD_HOSTS = frozenset({"0.0.0.0", "::"})  # noqa: S104 - names of "every address", compared, not bound


def name_address(host: str, lan_ip: str | None) -> tuple[str, str | None]:
    """The address the box puts in its name, and why the LAN cannot reach it there (None when it can).

    The name is what other devices connect to, so by default it carries the address the box listens
    on; only a box listening on every address (``--host 0.0.0.0``) takes the outbound LAN address. An
    explicit ``--lan-ip`` the box does not listen on is kept (a port forward or NAT may make it right)
    but said out loud.
    """
    try:
        listen = None if host in WILDCARD_HOSTS else ipaddress.ip_address(host.strip("[]"))
    except ValueError:  # a host name: whatever it resolves to, the outbound address is the best guess
        listen = None
    if lan_ip is None:
        return (outbound_ip() if listen is None else str(listen)), None
    if listen is not None and listen != ipaddress.ip_address(lan_ip):
        return lan_ip, (f"the box's name carries {lan_ip} but it listens on {host} only, so devices that "
                        f"resolve the name cannot reach it; give --host {lan_ip} (or 0.0.0.0), "
                        "or drop --lan-ip")
    return lan_ip, None


class _Served(Protocol):
    status: str
    hostname: str
    https_url: str
    http_port: int
    https_port: int
    serving: bool


def _shown(ip: str) -> str:
    return f"[{ip}]" if ":" in ip else ip


def ready_line(host: str, state: _Served) -> str:
    """The line ``box run`` prints once it answers: the URL that works (the name; a URL with the bare
    IP fails the name check) and how to reach that name from this machine, which has no route to it in
    its own DNS. The first two URLs stay the plain-HTTP address and the HTTPS one, in that order."""
    connect = "127.0.0.1" if host in WILDCARD_HOSTS else host
    http = f"http://{_shown(connect)}:{state.http_port}/"
    if state.serving and state.https_url:
        return (f"lancert box: {http} {state.https_url} status {state.status} (the name resolves through "
                f"the zone's DNS; from this machine: curl --resolve {state.hostname}:{state.https_port}:"
                f"{_shown(connect)} {state.https_url})")
    return (f"lancert box: {http} https://{_shown(connect)}:{state.https_port}/ status {state.status} "
            "(no certificate yet: the HTTPS name comes with it)")
