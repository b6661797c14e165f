"""Helpers of the certificate-service tests: the real ``lancert service run`` as a subprocess on
127.0.0.1, driven over HTTP (httpx), DNS (dnspython) and its CLI.

A uniquely named module, not ``conftest``: every test directory has a conftest, and ``from conftest
import`` would get whichever one was imported first.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from cryptography.hazmat.primitives import serialization

from lancert.pki import SubjectNames, create_csr, generate_private_key
from lancert.up.stack import Child
from lancert_cli import lancert
from postgres_server import PG_INITDB, PostgresServer  # noqa: F401  (re-exported for the service tests)

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
    entry: Path | None = None
    child: Child | None = None
    url: str = ""
    dns_port: int = 0

    @property
    def output(self) -> list[str]:
        return self.child.lines if self.child else []

    def start(self, timeout: float = 30) -> ServiceProcess:
        args = ["--data-dir", str(self.data_dir), "--port", "0", *self.args]
        log = self.data_dir.parent / f"{self.data_dir.name}.stderr.log"
        if self.entry is None:
            self.child = Child.start("the service", ["service", "run", *args], log, env=self.env)
        else:  # a test-only entry point that wraps ``service run`` (e.g. slow_issuer_service.py)
            with log.open("a") as stderr:
                proc = subprocess.Popen([sys.executable, str(self.entry), *args], stdout=subprocess.PIPE,
                                        stderr=stderr, text=True, start_new_session=True, env=self.env)
            self.child = Child("the service", proc, log, [])
            threading.Thread(target=self.child._drain, daemon=True).start()
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


