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
# An absolute URI with a scheme (RFC 3986 3.1) and no spaces or controls: client certificates name their
# holder this way (``urn:lancert:pos:<posId>``) because a POS identifier is not a host name.
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:[\x21-\x7e]+$")


def parse_ip(value: str) -> IPAddress:
    """An IPv4 or IPv6 address, or a one-line error that quotes the input."""
    try:
        ip = ipaddress.ip_address(value.strip().strip("[]"))
    except ValueError:
        raise InvalidName(f"invalid IP address: {value!r}") from None
    if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id:
        # A subjectAltName holds the 16 address bytes only; "%eth0" would silently vanish from the SAN
        # yet stay in the Common Name.
        raise InvalidName(f"IPv6 zone index not allowed in a certificate: {value!r}")
    return ip


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
    if labels[-1].isdigit():
        # An all-numeric top label is an IP address written as a name (RFC 3696 2): browsers never
        # match it as a DNS name, and the baseline requirements forbid IPs in dNSName entries.
        raise InvalidName(f"not a DNS name (an IP address goes in --ip): {value!r}")
    return name


def validate_uri(value: str) -> str:
    """An absolute ASCII URI such as ``urn:lancert:pos:123``, or a one-line error that quotes it."""
    if len(value) > 255 or not _URI.match(value):
        raise InvalidName(f"invalid URI name: {value!r}")
    return value


@dataclass(frozen=True)
class SubjectNames:
    """The DNS names, IP addresses and URIs a certificate is valid for.

    URIs identify clients (a POS paired with a terminal); servers are named by DNS names and addresses.
    """

    dns: tuple[str, ...] = ()
    ips: tuple[IPAddress, ...] = ()
    uris: tuple[str, ...] = ()

    @classmethod
    def parse(
        cls, dns: Iterable[str] = (), ips: Iterable[str | IPAddress] = (), uris: Iterable[str] = ()
    ) -> SubjectNames:
        parsed_ips = tuple(ip if not isinstance(ip, str) else parse_ip(ip) for ip in ips)
        return cls(
            tuple(dict.fromkeys(normalize_dns_name(d) for d in dns)),
            tuple(dict.fromkeys(parsed_ips)),
            tuple(dict.fromkeys(validate_uri(u) for u in uris)),
        )

    @classmethod
    def from_extension(cls, ext: x509.SubjectAlternativeName) -> SubjectNames:
        return cls(
            tuple(ext.get_values_for_type(x509.DNSName)),
            tuple(ext.get_values_for_type(x509.IPAddress)),
            tuple(ext.get_values_for_type(x509.UniformResourceIdentifier)),
        )

    def general_names(self) -> list[x509.GeneralName]:
        return (
            [x509.DNSName(d) for d in self.dns]
            + [x509.IPAddress(ip) for ip in self.ips]
            + [x509.UniformResourceIdentifier(u) for u in self.uris]
        )

    def as_strings(self) -> list[str]:
        return [*self.dns, *(str(ip) for ip in self.ips), *self.uris]

    def __bool__(self) -> bool:
        return bool(self.dns or self.ips or self.uris)


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
