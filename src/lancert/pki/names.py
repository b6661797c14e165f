"""subjectAltName entries: parsing user input into typed names, and reading them back.

Browsers match only the subjectAltName (never the Common Name), so every certificate the core makes
carries one; the Common Name is a label for humans.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography import x509

from lancert.pki.errors import InvalidName

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# RFC 1123 labels; a leading "*." wildcard is allowed for the whole-subdomain certificates of boxes.
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def parse_ip(value: str) -> IPAddress:
    """An IPv4 or IPv6 address, or a one-line error that quotes the input."""
    try:
        return ipaddress.ip_address(value.strip().strip("[]"))
    except ValueError:
        raise InvalidName(f"invalid IP address: {value!r}") from None


def normalize_dns_name(value: str) -> str:
    """Lower-case, IDNA-encoded DNS name, validated label by label (``*.`` allowed as first label)."""
    name = value.strip().rstrip(".").lower()
    try:
        name = name.encode("idna").decode("ascii") if not name.isascii() else name
    except UnicodeError:
        raise InvalidName(f"invalid DNS name: {value!r}") from None
    labels = name.split(".")
    if labels and labels[0] == "*":
        labels = labels[1:]
        if len(labels) < 2:
            raise InvalidName(f"wildcard must cover a subdomain of a registered name: {value!r}")
    if not labels or len(name) > 253 or not all(_LABEL.match(label) for label in labels):
        raise InvalidName(f"invalid DNS name: {value!r}")
    return name


@dataclass(frozen=True)
class SubjectNames:
    """The DNS names and IP addresses a certificate is valid for."""

    dns: tuple[str, ...] = ()
    ips: tuple[IPAddress, ...] = ()

    @classmethod
    def parse(cls, dns: Iterable[str] = (), ips: Iterable[str | IPAddress] = ()) -> SubjectNames:
        parsed_ips = tuple(ip if not isinstance(ip, str) else parse_ip(ip) for ip in ips)
        return cls(tuple(dict.fromkeys(normalize_dns_name(d) for d in dns)), tuple(dict.fromkeys(parsed_ips)))

    @classmethod
    def from_extension(cls, ext: x509.SubjectAlternativeName) -> SubjectNames:
        return cls(
            tuple(ext.get_values_for_type(x509.DNSName)),
            tuple(ext.get_values_for_type(x509.IPAddress)),
        )

    def general_names(self) -> list[x509.GeneralName]:
        return [x509.DNSName(d) for d in self.dns] + [x509.IPAddress(ip) for ip in self.ips]

    def as_strings(self) -> list[str]:
        return [*self.dns, *(str(ip) for ip in self.ips)]

    def __bool__(self) -> bool:
        return bool(self.dns or self.ips)


def certificate_names(cert: x509.Certificate) -> SubjectNames:
    """The subjectAltName of ``cert``, empty when it has none (a legacy CN-only certificate)."""
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return SubjectNames()
    return SubjectNames.from_extension(ext.value)


def common_name(name: x509.Name) -> str | None:
    attrs = name.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else None
