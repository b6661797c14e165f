"""Fixtures of the DNS tests; helpers live in ``dns_testlib``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from dns_testlib import ZONE, CliDNS, RunningDNS, start_dns, worker_pids

from lancert.up.stack import Child


@pytest.fixture(scope="session")
def zone_dns(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDNS]:
    """Two workers, as ``--dns-workers 2`` starts them; no rate limit (tests send bursts); TCP limits
    lowered by the test (idle 1 s, 32 connections per worker) so that their effect shows quickly."""
    running = start_dns(
        tmp_path_factory.mktemp("dns"), workers=2, tcp_idle_timeout=1.0, tcp_max_connections=32
    )
    yield running
    running.stop()


@pytest.fixture(scope="session")
def cli_dns(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CliDNS]:
    """``lancert dns run`` as users start it (two workers, TXT from a data dir), its stderr in a file:
    the hostile-packet tests read what the server logged."""
    data_dir = tmp_path_factory.mktemp("cli-dns")
    child = Child.start(
        "lancert dns run",
        ["dns", "run", "--zone", ZONE, "--port", "0", "--workers", "2", "--rate-limit", "0",
         "--data-dir", str(data_dir)],
        data_dir / "stderr.log",
    )
    line = child.wait_for("lancert dns: serving", 60)
    port = int(line.split(" on ", 1)[1].split()[0].rsplit(":", 1)[1])
    yield CliDNS(child, port, worker_pids(child.proc.pid))
    child.stop()
