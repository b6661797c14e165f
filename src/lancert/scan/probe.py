"""One address and port: is there a TLS service, which chain does it serve, and what device is it.

The chain is read exactly as ``trust fetch`` and ``check`` read it (:func:`lancert.trust.fetch.served_chain`,
nothing verified). What the device is comes from what it shows anyone: an IoT box's certificate is a
wildcard for ``*.<box-label>.<zone>`` (lancert's names); an ePOS printer has the ePOS-Print endpoint,
which refuses a GET with 405 naming POST (a GET never prints); a pairing terminal serves its root at
``/root-ca.pem`` without a client certificate.

Each host's whole probe (connection, handshake, the two GETs) runs under one :class:`Deadline` of
:data:`PROBE_TIMEOUTS` times the per-step timeout: a device answering one byte every 1.5 s satisfied
every per-read timeout and made a scan run forever. What the deadline cuts, what stalls its handshake
and a certificate that cannot be parsed are each reported for that device, and the scan goes on.
"""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass, replace
from typing import Any

import httpx
from cryptography import x509

from lancert.dns.names import dashed_address
from lancert.trust.fetch import (
    Deadline,
    HandshakeError,
    HandshakeStalled,
    Target,
    UnreachableError,
    UnreadableCertificate,
    served_chain,
)

PRINTER, BOX, TERMINAL, UNKNOWN = "ePOS printer", "IoT box", "pairing terminal", "unknown"
MAX_PROBE_BYTES = 64 * 1024
# The handshake and two GETs: three steps of ``timeout`` each, for one host and port in all.
PROBE_TIMEOUTS = 3


@dataclass(frozen=True)
class Found:
    """What answered at ``address:port``: a chain (TLS), or ``error`` when none could be read; ``tls``
    when a handshake completed (a certificate that cannot be parsed has no chain but did TLS)."""

    address: str
    port: int
    chain: tuple[x509.Certificate, ...] = ()
    error: str = ""
    kind: str = UNKNOWN
    tls: bool = True
    stalled: bool = False  # took the connection, never finished the handshake


def probe(address: str, port: int, timeout: float) -> Found | None:
    """``None`` when nothing listens (refused, no TCP answer): most addresses of a range."""
    target = Target(address, port, address)
    with Deadline(timeout * PROBE_TIMEOUTS) as deadline:
        try:
            found = Found(address, port, tuple(served_chain(target, timeout=timeout, deadline=deadline)))
        except HandshakeStalled as exc:
            return Found(address, port, (), str(exc), tls=False, stalled=True)
        except UnreachableError:
            return None
        except UnreadableCertificate as exc:
            found = Found(address, port, (), str(exc))
        except HandshakeError as exc:
            found = Found(address, port, (), str(exc), tls=False)
        kind = device_kind(found, timeout, deadline)
        if deadline.expired:
            why = f"no complete answer within {deadline.seconds:g} s (a device answering very slowly)"
            return replace(found, kind=kind, error=f"{found.error}; {why}" if found.error else why)
        return replace(found, kind=kind)


def browser_name(address: str, leaf: x509.Certificate) -> str:
    """The name a browser would open the device by: its address, or the box name a wildcard implies.

    A provisioned box is reached as ``<ip-with-dashes>.<box-label>.<zone>`` under its ``*.<label>.<zone>``
    certificate, never by bare address; judging it by address would call every box a name mismatch.
    """
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return address
    if ipaddress.ip_address(address) in san.get_values_for_type(x509.IPAddress):
        return address
    for name in san.get_values_for_type(x509.DNSName):
        if name.startswith("*."):
            return f"{dashed_address(address)}.{name[2:]}".lower()
    return address


def _unverified() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # identifying a device, not trusting it
    return context


def _get(url: str, timeout: float, deadline: Deadline) -> tuple[int, dict[str, str], bytes]:
    def guard_socket(event: str, info: dict[str, Any]) -> None:
        # httpcore's trace hands over each stream; over HTTPS the TLS one holds the descriptor.
        if event in ("connection.connect_tcp.complete", "connection.start_tls.complete"):
            deadline.guard(info["return_value"].get_extra_info("socket"))

    with httpx.Client(verify=_unverified(), timeout=deadline.remaining(timeout), trust_env=False) as client, \
            client.stream("GET", url, extensions={"trace": guard_socket}) as response:
        body = b""
        for chunk in response.iter_bytes():
            body += chunk
            if len(body) > MAX_PROBE_BYTES:
                break
        return response.status_code, dict(response.headers), body


def device_kind(found: Found, timeout: float, deadline: Deadline) -> str:
    """What kind of device serves ``found`` (see the module docstring for the signs)."""
    if found.chain and browser_name(found.address, found.chain[0]) != found.address:
        return BOX
    if deadline.expired:
        return UNKNOWN
    host = f"[{found.address}]" if ":" in found.address else found.address
    # Without TLS: a printer fresh from the box still answers ePOS-Print over plain HTTP.
    base = f"{'https' if found.chain else 'http'}://{host}:{found.port}"
    try:
        status, headers, _ = _get(f"{base}/cgi-bin/epos/service.cgi", timeout, deadline)
        if status == 405 and "POST" in headers.get("allow", "").upper():
            return PRINTER
        status, _, body = _get(f"{base}/root-ca.pem", timeout, deadline)
        if found.chain and status == 200 and body.lstrip().startswith(b"-----BEGIN CERTIFICATE-----"):
            return TERMINAL
    except (httpx.HTTPError, OSError, ssl.SSLError):
        pass
    return UNKNOWN
