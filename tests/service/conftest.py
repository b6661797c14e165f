"""Fixtures of the certificate-service tests; the helpers live in ``service_testlib``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from service_testlib import PG_INITDB, PostgresServer, Registry, ServiceProcess, write_config

from capabilities import require
from lancert.loopback import free_port


@pytest.fixture(scope="session")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """One service for most tests (SQLite, DNS on a free port); rate limits high so tests don't trip them."""
    data_dir = tmp_path_factory.mktemp("service")
    config = write_config(
        data_dir.parent / "service.toml", failures_per_ip=10_000, failures_per_database=10_000
    )
    process = ServiceProcess(data_dir, ["--config", str(config), "--dns-port", str(free_port())]).start()
    yield process
    process.stop()


@pytest.fixture(scope="session")
def registry(service: ServiceProcess) -> Registry:
    return Registry(service.data_dir)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the service tests; a test that stops it starts it again."""
    require(PG_INITDB is not None, "PostgreSQL server binaries (Debian package 'postgresql') are not "
            "installed: /usr/lib/postgresql/*/bin/initdb missing")
    server = PostgresServer()
    server.start()
    yield server
    server.remove()
