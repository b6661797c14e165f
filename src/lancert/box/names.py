"""The box's LAN address and its HTTPS URL; the name itself comes from :mod:`lancert.dns.names`."""

from __future__ import annotations

import socket

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
