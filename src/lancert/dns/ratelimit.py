"""Response rate limiting (RRL) for UDP: how the zone's server avoids being an amplifier for spoofed
sources.

UDP sources can be forged, so a flood "from" a victim makes any DNS server send answers to the victim.
As in BIND and Knot, what is limited is identical answers to one source prefix (IPv4 /24, IPv6 /56 by
default: one customer network), per second: a positive answer counts per (name, type), NXDOMAIN/NODATA
per zone (random-subdomain floods share one budget), errors together. Over the limit, every ``slip``-th
answer goes out truncated (TC=1, no records: smaller than the query) so a real resolver behind that
prefix retries over TCP, which cannot be spoofed; the others are dropped. TCP is never limited here.

Counters live in one dictionary per second that is emptied when the second changes, so memory is bounded
by one second of traffic; so do the prefixes of the source addresses seen in that second (a resolver
sends many queries a second from one address: its prefix is computed once, not per query, which halved
the limiter's cost per answer). Each worker process counts on its own: with N workers a prefix gets up to N
times the rate if its packets spread over several workers (the kernel spreads by source address and port).
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass

SEND, SLIP, DROP = 0, 1, 2


@dataclass(frozen=True)
class RateLimit:
    """``responses_per_second`` identical answers per prefix (0 = no limit); ``slip``: one in N answers
    over the limit is sent truncated (0 = drop all)."""

    responses_per_second: int = 50
    slip: int = 2
    ipv4_prefix: int = 24
    ipv6_prefix: int = 56


class ResponseRateLimiter:
    def __init__(self, limit: RateLimit) -> None:
        self.limit = limit
        self.rate = limit.responses_per_second
        self.window = -1
        self.counts: dict[tuple[object, object], int] = {}
        self.prefixes: dict[str, int | tuple[int]] = {}  # source address -> prefix, this second
        self.v4_shift = 32 - limit.ipv4_prefix
        self.v6_shift = 128 - limit.ipv6_prefix

    def prefix(self, address: str) -> int | tuple[int]:
        try:
            if ":" in address:
                return (int.from_bytes(socket.inet_pton(socket.AF_INET6, address.split("%")[0]), "big")
                        >> self.v6_shift,)
            return int.from_bytes(socket.inet_aton(address), "big") >> self.v4_shift
        except OSError:
            return 0

    def check(self, address: str, key: object) -> int:
        """SEND, SLIP (send truncated) or DROP for one answer with rate-limit ``key`` to ``address``."""
        now = int(time.monotonic())
        if now != self.window:
            self.window = now
            self.counts.clear()
            self.prefixes.clear()
        prefix = self.prefixes.get(address)
        if prefix is None:
            prefix = self.prefixes[address] = self.prefix(address)
        counted = (prefix, key)
        count = self.counts.get(counted, 0) + 1
        self.counts[counted] = count
        if count <= self.rate:
            return SEND
        slip = self.limit.slip
        return SLIP if slip and (count - self.rate) % slip == 0 else DROP
