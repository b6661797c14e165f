"""A real PostgreSQL (Debian's server binaries) started by the tests on a free port of 127.0.0.1.

Shared by the test directories (``tests/`` is on pytest's ``pythonpath``): the service's multi-instance
and internal-error tests (which stop it under a running service) and the PowerDNS tests.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from capabilities import require
from lancert.loopback import free_port

# Debian's PostgreSQL server (package 'postgresql'), newest version installed; None when absent.
PG_INITDB = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), reverse=True)), None)


def _as_postgres(*command: str) -> list[str]:
    # initdb and postgres refuse to run as root.
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else list(command)


class PostgresServer:
    """A throw-away PostgreSQL cluster on 127.0.0.1 (a free port, fsync off), which a test may stop and
    start again: the real failure behind a service whose database went away."""

    def __init__(self) -> None:
        assert PG_INITDB is not None
        self.bindir = PG_INITDB.parent
        self.base = Path(tempfile.mkdtemp(prefix="lancert-pg-"))
        self.data = self.base / "data"
        if os.geteuid() == 0:
            shutil.chown(self.base, "postgres", "postgres")
        self.port = free_port()
        self.started = False
        subprocess.run(
            _as_postgres(str(PG_INITDB), "-D", str(self.data), "-U", "postgres", "--auth=trust", "--no-sync",
                         "-E", "UTF8"),
            check=True, capture_output=True, timeout=120,
        )

    @property
    def url(self) -> str:
        return self.database_url("postgres")

    def database_url(self, name: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"

    def create_database(self, name: str) -> str:
        """A new, empty database in this cluster (tests that must not share one); its URL."""
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres",
                             autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')  # a test's own constant name
        return self.database_url(name)

    def _pg_ctl(self, *args: str, check: bool = True) -> None:
        subprocess.run(_as_postgres(str(self.bindir / "pg_ctl"), "-D", str(self.data), *args),
                       check=check, capture_output=True, timeout=90)

    def start(self) -> None:
        """Start the cluster; a first start whose port was taken meanwhile (initdb takes seconds, and the
        suite runs in two processes) is made again on a new free port. A later start (after
        :meth:`stop`) keeps the port: the services under test hold URLs naming it."""
        log = self.base / "log"
        for attempt in range(3):
            options = (f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.base} -c fsync=off "
                       "-c max_connections=100")
            logged_before = log.stat().st_size if log.exists() else 0
            try:
                self._pg_ctl("-o", options, "-l", str(log), "-w", "-t", "60", "start")
            except subprocess.CalledProcessError:
                said = log.read_bytes()[logged_before:].decode(errors="replace") if log.exists() else ""
                if self.started or attempt == 2 or "already in use" not in said:
                    raise
                self.port = free_port()
                continue
            self.started = True
            return

    def stop(self) -> None:
        """Stop at once (-m immediate): clients see their connections dropped, as in a crash."""
        self._pg_ctl("-m", "immediate", "-w", "stop", check=False)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)


PG_BIN = PG_INITDB
MISSING = (
    "PostgreSQL server binaries (Debian package 'postgresql') are not installed: "
    "/usr/lib/postgresql/*/bin/initdb missing"
)


@contextmanager
def running_postgres() -> Iterator[str]:
    """A throw-away cluster for one block; yields its SQLAlchemy URL, removes it afterwards."""
    server = PostgresServer()
    try:
        server.start()
        yield server.url
    finally:
        server.remove()


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A module's own PostgreSQL cluster (import this name into a test module to use it)."""
    require(PG_BIN is not None, MISSING)
    with running_postgres() as url:
        yield url
