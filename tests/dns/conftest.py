"""Fixtures of the DNS tests; helpers live in ``dns_testlib``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from dns_testlib import RunningDNS, start_dns


@pytest.fixture(scope="session")
def zone_dns(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDNS]:
    """Two workers, as ``--dns-workers 2`` starts them; no rate limit (tests send bursts); TCP limits
    lowered by the test (idle 1 s, 32 connections per worker) so that their effect shows quickly."""
    running = start_dns(
        tmp_path_factory.mktemp("dns"), workers=2, tcp_idle_timeout=1.0, tcp_max_connections=32
    )
    yield running
    running.stop()
