"""Host names of provisioned devices: ``<ip-with-dashes>.<box-label>.<zone>`` (the sslip.io convention)."""

from __future__ import annotations

import ipaddress

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def dashed_address(ip: str | IPAddress) -> str:
    """``192.168.1.25`` -> ``192-168-1-25``; ``fd00::1`` -> ``fd00--1`` (compressed form, ``:`` -> ``-``)."""
    address = ipaddress.ip_address(ip) if isinstance(ip, str) else ip
    return str(address).replace(".", "-").replace(":", "-")


def device_hostname(ip: str | IPAddress, box_label: str, zone: str) -> str:
    """The name a device is reached by; lower case, the form certificates and DNS answers use."""
    return f"{dashed_address(ip)}.{box_label}.{zone}".lower()


def address_from_label(label: str) -> IPAddress | None:
    """The address a dashed first label stands for, or None if it stands for none."""
    parts = label.split("-")
    if len(parts) == 4 and all(p.isdigit() for p in parts):
        try:
            return ipaddress.IPv4Address(".".join(parts))
        except ValueError:
            return None
    if len(parts) < 3 or not all(c in "0123456789abcdef-" for c in label.lower()):
        return None
    try:
        return ipaddress.IPv6Address(label.replace("-", ":"))
    except ValueError:
        return None
