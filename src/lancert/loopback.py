"""Ports on 127.0.0.1 for the servers that ``lancert up``, the tests and the benchmarks start."""

from __future__ import annotations

import socket

from lancert.errors import LancertError


def free_port() -> int:
    """A port free for both TCP and UDP on 127.0.0.1: the DNS server takes one number for both.

    The TCP check binds the wildcard address (without ``listen``: nothing can connect to it), so the port is
    refused when any address holds it: servers on 127.0.0.2 and up (``scan``'s devices, the fuzz tests'
    hostile servers) share the port space with 127.0.0.1, and a port free only on 127.0.0.1 was handed to
    a server for 127.0.0.2 that another process already held there (a full test run in two processes).

    Free *now*: another process may take it before the caller's child binds it (1 start of ``up`` in 50
    failed so). A server that can say which port it got is started on port 0 instead; for the DNS port,
    ``lancert.up.stack.start_service`` picks again when the child reports it taken."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = tcp.getsockname()[1]
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as anywhere, \
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            try:
                anywhere.bind(("0.0.0.0", port))  # noqa: S104 - bound, never listening: a check only
                udp.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise LancertError("no free port on 127.0.0.1")


def listen_tcp(host: str, port: int) -> socket.socket:
    """A listening TCP socket for uvicorn's ``sockets=``, or a one-line error naming the address.

    ``proto=IPPROTO_TCP`` matters: asyncio sets TCP_NODELAY only on sockets that say so, and without it
    the separately written response headers and body meet delayed ACKs (~40 ms per request).
    """
    address = host.strip("[]")
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((address, port))
    except OSError as exc:
        sock.close()
        raise LancertError(f"cannot listen on {host}:{port} ({exc.strerror})") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def inherited_listener(fd: int, host: str) -> socket.socket:
    """The listening TCP socket a parent bound and passed down as descriptor ``fd`` (``lancert up``
    binds the service's HTTP port itself, so the box can be told the URL before the service runs), or a
    one-line error: it must be a listening TCP socket bound to ``host``, the address the service was
    told to listen on."""
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise LancertError(f"--listen-fd {fd}: not an open socket ({exc.strerror or exc})") from None
    try:
        listening = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
        bound = sock.getsockname()[0]
    except OSError as exc:
        sock.detach()
        raise LancertError(f"--listen-fd {fd}: not a usable socket ({exc.strerror or exc})") from None
    if sock.type != socket.SOCK_STREAM or sock.family not in (socket.AF_INET, socket.AF_INET6) or (
            not listening):
        sock.detach()
        raise LancertError(f"--listen-fd {fd}: not a listening TCP socket")
    if bound != host.strip("[]"):
        sock.detach()
        raise LancertError(f"--listen-fd {fd}: bound to {bound}, not to --host {host}")
    return sock
