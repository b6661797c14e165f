"""What ``scan`` tries: the addresses of a CIDR and a list of ports, refused when absurdly large."""

from __future__ import annotations

import ipaddress

from lancert.errors import UsageError

# 443: ePOS-Print over HTTPS and most web configurations; 8043: Epson's ePOS-Device port for TLS;
# 8443: IoT boxes and payment terminals behind a non-root port.
DEFAULT_PORTS = (443, 8043, 8443)
# A /16 is 65,534 addresses: already minutes of probing; anything larger is almost surely a typo.
MAX_ADDRESSES = 65_536
MAX_PORTS = 64


class ScanTooLarge(UsageError):
    """A range over a /16 without ``--allow-large``."""


def parse_ports(text: str) -> tuple[int, ...]:
    """``443,8043,8443`` -> the ports, each 1-65535, at most 64, duplicates dropped."""
    ports: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not (part.isascii() and part.isdigit()) or not 1 <= int(part) <= 65535:
            raise UsageError(f"--ports: {part!r} is not a port number (1-65535)")
        if int(part) not in ports:
            ports.append(int(part))
    if not ports or len(ports) > MAX_PORTS:
        raise UsageError(f"--ports: give 1 to {MAX_PORTS} ports, for example 443,8043,8443")
    return tuple(ports)


def scan_targets(cidr: str, *, allow_large: bool = False) -> list[str]:
    """The host addresses of ``cidr`` (a single address is a /32 or /128)."""
    try:
        network = ipaddress.ip_network(cidr.strip(), strict=False)
    except ValueError:
        raise UsageError(f"{cidr}: not a CIDR range such as 192.168.1.0/24") from None
    if network.num_addresses > MAX_ADDRESSES and not allow_large:
        raise ScanTooLarge(f"{cidr} holds {network.num_addresses} addresses, more than a /16; "
                           "scan a smaller range or pass --allow-large")
    hosts = list(network.hosts()) if network.num_addresses > 2 else list(network)
    return [str(h) for h in hosts]
