"""Ports on 127.0.0.1 for the servers that ``lancert up``, the tests and the benchmarks start."""

from __future__ import annotations

import socket

from lancert.errors import LancertError


def free_port() -> int:
    """A port free for both TCP and UDP on 127.0.0.1: the DNS server takes one number for both."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = tcp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    raise LancertError("no free port on 127.0.0.1")
