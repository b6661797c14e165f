"""A test-only entry point: ``lancert terminal run`` whose TLS sends TLS 1.3 session tickets.

lancert's terminal sends none (``num_tickets = 0``, see :mod:`lancert.terminal.tls`), but other
terminals do (OpenSSL's default is two per handshake). This runs the real terminal with OpenSSL's
default, so tests can prove that :class:`lancert.pos.PosClient` cannot hang against such a terminal.
Usage: ``python ticketing_terminal.py <terminal run arguments>``.
"""

from __future__ import annotations

import ssl
import sys
from typing import Any

from lancert.commands.main import main
from lancert.terminal import server
from lancert.terminal.tls import server_ssl_context

TICKETS = 2  # OpenSSL's default for TLS 1.3


def ticketing_ssl_context(*args: Any, **kwargs: Any) -> ssl.SSLContext:
    ctx = server_ssl_context(*args, **kwargs)
    ctx.num_tickets = TICKETS
    return ctx


if __name__ == "__main__":
    server.server_ssl_context = ticketing_ssl_context  # type: ignore[assignment]
    main(["terminal", "run", *sys.argv[1:]])
