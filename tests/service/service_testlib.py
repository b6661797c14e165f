"""Helpers of the certificate-service tests: the real ``lancert service run`` as a subprocess on
127.0.0.1, driven over HTTP (httpx), DNS (dnspython) and its CLI.

A uniquely named module, not ``conftest``: every test directory has a conftest, and ``from conftest
import`` would get whichever one was imported first.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from cryptography.hazmat.primitives import serialization

from lancert.pki import SubjectNames, create_csr, generate_private_key
from lancert.up.stack import Child
from lancert_cli import lancert

ZONE = "iot.lancert.test"
CODE = "correct horse battery staple"


def make_csr(names: list[str] | None = None, key: object = None) -> str:
    key = key or generate_private_key()
    csr = create_csr(key, SubjectNames.parse(dns=names or []))  # type: ignore[arg-type]
    return csr.public_bytes(serialization.Encoding.PEM).decode()


@dataclass
class ServiceProcess:
    data_dir: Path
    args: list[str]
    env: dict[str, str] | None = None
    child: Child | None = None
    url: str = ""
    dns_port: int = 0

    @property
    def output(self) -> list[str]:
        return self.child.lines if self.child else []

    def start(self, timeout: float = 30) -> ServiceProcess:
        self.child = Child.start(
            "the service", ["service", "run", "--data-dir", str(self.data_dir), "--port", "0", *self.args],
            self.data_dir.parent / f"{self.data_dir.name}.stderr.log", env=self.env,
        )
        self.url = self.child.wait_for("listening on http://", timeout).strip().rsplit(" ", 1)[-1]
        dns = next((line for line in self.child.lines if " dns for " in line), None)
        if dns:
            self.dns_port = int(dns.split(" on ", 1)[1].split()[0].rsplit(":", 1)[1])
        return self

    def stop(self) -> str:
        """Stop the service; return its stderr (for asserting that no traceback leaked elsewhere)."""
        if self.child is None:
            return ""
        self.child.stop()
        return self.child.log_text()

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30)


def write_config(path: Path, **rate_limit: int) -> Path:
    lines = [f'zone = "{ZONE}"', "[rate_limit]"] + [f"{k} = {v}" for k, v in rate_limit.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


class Registry:
    """The eligibility registry of one service's data directory. ``add`` goes through the Python API
    (one CLI start costs a second on a loaded machine; the CLI itself is tested in
    test_service_registry.py); ``set`` goes through ``lancert service db set``, as an operator would."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.counter = 0

    def add(self, *options: str, code: str = CODE) -> str:
        from lancert.service.database import Database
        from lancert.service.registry import DatabaseKind, Registry, SubscriptionStatus

        self.counter += 1
        uuid = f"db-{os.getpid()}-{time.monotonic_ns()}-{self.counter}"
        opts = dict(zip(options[::2], options[1::2], strict=False))
        database = Database(f"sqlite:///{self.data_dir / 'service.db'}")
        try:
            Registry(database).add(
                uuid,
                code,
                kind=DatabaseKind(opts.get("--kind", "production")),
                subscription=SubscriptionStatus(opts.get("--subscription", "in_progress")),
                iot_box_line="--no-iot-line" not in options,
            )
        finally:
            database.dispose()
        return uuid

    def set(self, uuid: str, *options: str) -> dict[str, object]:
        out = lancert(
            "service", "db", "set", "--uuid", uuid, *options, "--json", "--data-dir", str(self.data_dir)
        )
        return json.loads(out.stdout)


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
        from lancert.loopback import free_port

        self.port = free_port()
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
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.base} -c fsync=off -c max_connections=100"
        )
        self._pg_ctl("-o", options, "-l", str(self.base / "log"), "-w", "-t", "60", "start")

    def stop(self) -> None:
        """Stop at once (-m immediate): clients see their connections dropped, as in a crash."""
        self._pg_ctl("-m", "immediate", "-w", "stop", check=False)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)
