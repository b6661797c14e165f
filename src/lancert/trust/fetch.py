"""Reaching a live device over TLS without trusting it: the target, the served chain, nothing verified.

``trust fetch`` and ``check`` both need what the device actually sends, before any decision about
trust, exactly as a browser's certificate viewer shows it. ``--resolve HOST:IP`` connects to IP while
keeping HOST as the name to check (and as SNI when it is a DNS name), like curl's option.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
import time
import warnings
from dataclasses import dataclass
from urllib.parse import urlsplit

from cryptography import x509

from lancert.errors import LancertError, UsageError
from lancert.pki.formats import InvalidPEM, check_extensions

DEFAULT_TIMEOUT = 10.0
# A real chain has 2-4 certificates; more is a hostile or broken peer.
MAX_CHAIN = 16


class UnreachableError(LancertError):
    """Nobody answered at the address (refused, timed out, unresolvable): not a trust verdict."""

    exit_code = 1


class HandshakeError(LancertError):
    """Something answered but no TLS session could be set up (not TLS, no common version or cipher)."""


class HandshakeStalled(UnreachableError):
    """The peer took the TCP connection but never finished a TLS handshake: something is there (a scan
    reports it), though nothing can be said about its certificate (``check``'s exit 1, as unreachable)."""


class UnreadableCertificate(HandshakeError):
    """The handshake worked, but the certificate has a part ``cryptography`` refuses to parse (a
    malformed or duplicated extension): it cannot be judged, so it is reported as such, not a crash."""


class Deadline:
    """A limit on a whole exchange with a peer, not on each read: socket timeouts (and httpx's) are per
    operation, so a peer answering one byte every 1.5 s kept a 2 s timeout happy forever and a scan never
    ended. When the time is up, every socket handed to :meth:`guard` is shut down, which wakes whatever
    read or handshake blocks on it; :attr:`expired` then tells a timeout from a peer's own close."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expired = False
        self._end = time.monotonic() + seconds
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def remaining(self, at_most: float) -> float:
        """Seconds left, capped at ``at_most``; a small positive number once expired (never 0, which
        would make a socket non-blocking)."""
        return max(0.001, min(at_most, self._end - time.monotonic()))

    def __enter__(self) -> Deadline:
        return self

    def __exit__(self, *_exc: object) -> None:
        self._timer.cancel()

    def guard(self, sock: socket.socket) -> None:
        """Shut ``sock`` down when the time is up (at once if it is up already)."""
        with self._lock:
            self._sockets.append(sock)
            expired = self.expired
        if expired:
            _shut(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            sockets = list(self._sockets)
        for sock in sockets:
            _shut(sock)


def _stalled(target: Target, seconds: float) -> HandshakeStalled:
    return HandshakeStalled(f"{target.display}: TLS handshake timed out after {seconds:g} s (the port takes "
                            "connections but does not finish a handshake)")


def _shut(sock: socket.socket) -> None:
    # The plain socket's shutdown, also on an SSLSocket: SSLSocket.shutdown() drops the TLS object
    # under the thread reading it, which then fails with ValueError instead of seeing the end of input.
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass  # closed already, or detached into the SSLSocket that is guarded too


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class Target:
    """Where to connect, and the name the certificate must be valid for."""

    host: str
    port: int
    connect_host: str

    @property
    def sni(self) -> str | None:
        """TLS forbids IP literals in SNI (RFC 6066 §3), so browsers send none for an IP URL."""
        return None if _is_ip(self.host) else self.host

    @property
    def display(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        via = f" via {self.connect_host}" if self.connect_host != self.host else ""
        return f"{host}:{self.port}{via}"


RESOLVE_HELP = "HOST:IP or curl's HOST:PORT:IP: connect to IP, check the certificate for HOST."


def parse_target(url: str, resolve: str | None = None) -> Target:
    """``https://host[:port][/path]`` (the scheme may be left out) plus an optional ``--resolve`` mapping."""
    text = url.strip()
    if "://" not in text:
        text = "https://" + text
    try:
        parts = urlsplit(text)
        port = parts.port or 443
    except ValueError as exc:
        raise LancertError(f"{url}: not a valid URL ({exc})") from None
    if parts.scheme.lower() != "https":
        raise LancertError(f"{url}: only https:// URLs carry a certificate")
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        raise LancertError(f"{url}: no host in the URL")
    connect = host
    if resolve:
        name, mapped_port, ip = _parse_resolve(resolve)
        if name != host:
            raise LancertError(f"--resolve {resolve}: {name} is not the URL's host ({host})")
        if mapped_port is not None and mapped_port != port:
            raise LancertError(f"--resolve {resolve}: maps port {mapped_port}, the URL's port is {port}")
        connect = ip
    return Target(host, port, connect)


def _parse_resolve(resolve: str) -> tuple[str, int | None, str]:
    """``HOST:IP``, or curl's ``HOST:PORT:IP`` (IPv6 as ``[::1]`` or bare): (host, port or None, ip)."""
    text = resolve.strip()
    if text.startswith("["):
        name, sep, rest = text[1:].partition("]:")
    else:
        name, sep, rest = text.partition(":")
    name = name.rstrip(".").lower()
    port_text, colon, after = rest.partition(":")
    if sep and colon and port_text.isdigit() and _is_ip(after.strip("[]")):
        mapped = int(port_text)
        if not 0 < mapped < 65536:
            raise LancertError(f"--resolve {resolve}: port {mapped} is not 1-65535")
        return name, mapped, after.strip("[]")
    if not sep or not _is_ip(rest.strip("[]")):
        raise LancertError(f"--resolve {resolve}: expected HOST:IP or HOST:PORT:IP (as curl), for example "
                           "printer.lan:192.168.1.25")
    return name, None, rest.strip("[]")


def _context(legacy: bool) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # only the chain is read; trust is decided by the caller
    if legacy:
        # Old printers still speak TLS 1.0 with weak ciphers; fetching their certificate must still work.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # deprecated on purpose: old devices
            ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    return ctx


def served_chain(
    target: Target, *, timeout: float = DEFAULT_TIMEOUT, legacy: bool = False,
    deadline: Deadline | None = None,
) -> list[x509.Certificate]:
    """The certificates the server sends, leaf first, unverified, each one's extensions parsed.

    ``legacy`` accepts TLS 1.0/1.1 and weak ciphers (for ``fetch``); without it the handshake is what
    a current browser would accept, so a server only old clients can reach fails with HandshakeError.
    ``timeout`` bounds the connection and the handshake as a whole (a :class:`Deadline` of its own
    unless the caller's ``deadline`` bounds more than this exchange).
    """
    if not timeout > 0:  # 0 would make the socket non-blocking: "Operation now in progress"
        raise UsageError(f"--timeout must be more than 0 seconds, not {timeout:g}")
    if deadline is None:
        with Deadline(timeout) as own:
            return served_chain(target, timeout=timeout, legacy=legacy, deadline=own)
    try:
        raw = socket.create_connection((target.connect_host, target.port),
                                       timeout=deadline.remaining(timeout))
    except ConnectionRefusedError:
        raise UnreachableError(f"{target.display}: connection refused (nothing listens there)") from None
    except TimeoutError:
        raise UnreachableError(f"{target.display}: no answer within {timeout:g} s") from None
    except socket.gaierror:
        raise UnreachableError(f"{target.display}: cannot resolve {target.connect_host}") from None
    except OSError as exc:
        raise UnreachableError(f"{target.display}: cannot connect ({exc.strerror or exc})") from None
    deadline.guard(raw)
    try:
        raw.settimeout(deadline.remaining(timeout))
        # wrap_socket moves the descriptor into a new object: that one is what the deadline must shut.
        with _context(legacy).wrap_socket(raw, server_hostname=target.sni,
                                          do_handshake_on_connect=False) as tls:
            deadline.guard(tls)
            tls.do_handshake()
            items = tls._sslobj.get_unverified_chain() or []  # public in Python 3.13, present since 3.10
            ders = [i if isinstance(i, bytes) else i.public_bytes(ssl._ssl.ENCODING_DER) for i in items]
            if not ders:
                leaf = tls.getpeercert(binary_form=True)
                ders = [leaf] if leaf else []
    except ssl.SSLError as exc:
        if deadline.expired:
            raise _stalled(target, deadline.seconds) from None
        if exc.reason == "WRONG_VERSION_NUMBER":
            # OpenSSL read something that is not a TLS record: the server answered in clear.
            raise HandshakeError(f"{target.display}: TLS handshake failed: this port speaks plain HTTP (or "
                                 "another protocol without TLS), not HTTPS (WRONG_VERSION_NUMBER)") from None
        raise HandshakeError(f"{target.display}: TLS handshake failed ({exc.reason or exc})") from None
    except TimeoutError:
        raise _stalled(target, deadline.seconds if deadline.expired else timeout) from None
    except OSError as exc:
        if deadline.expired:
            raise _stalled(target, deadline.seconds) from None
        raise UnreachableError(f"{target.display}: connection lost during the handshake ({exc})") from None
    finally:
        raw.close()
    if not ders:
        raise HandshakeError(f"{target.display}: the server sent no certificate")
    certs = []
    for der_bytes in ders[:MAX_CHAIN]:
        try:
            cert = x509.load_der_x509_certificate(der_bytes)
        except ValueError:
            raise HandshakeError(f"{target.display}: the server sent an unparsable certificate") from None
        try:
            check_extensions(cert)  # a traceback deep in check or scan otherwise (it aborted whole scans)
        except InvalidPEM as exc:
            raise UnreadableCertificate(
                f"{target.display}: the server's certificate cannot be parsed: {exc}; it cannot be judged"
            ) from None
        certs.append(cert)
    return certs
