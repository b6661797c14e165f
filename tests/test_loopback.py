"""``free_port``: the port it gives is free on every loopback address, not only on 127.0.0.1.

Tests and ``scan``'s devices run servers on 127.0.0.2 and up while another test process picks ports; a port
held on 127.0.0.2 and handed out again broke a whole module at setup ('Address already in use')."""

from __future__ import annotations

import socket

import pytest

from lancert.loopback import free_port

pytestmark = pytest.mark.slow  # it listens


def test_a_port_held_on_another_loopback_address_is_never_handed_out() -> None:
    held: dict[int, socket.socket] = {}
    try:
        for _ in range(600):  # ports the kernel itself picks, as it picks them for 127.0.0.1
            server = socket.create_server(("127.0.0.2", 0))
            held[server.getsockname()[1]] = server
        given = {free_port() for _ in range(1000)}
        assert not given & held.keys()
        port = free_port()
        with socket.create_server(("127.0.0.2", port)), socket.create_server(("127.0.0.1", port)):
            pass  # and what it hands out binds on both
    finally:
        for server in held.values():
            server.close()
