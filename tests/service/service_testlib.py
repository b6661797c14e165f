"""Helpers of the certificate-service tests: the real ``lancert service run`` as a subprocess on
127.0.0.1 (:class:`service_process.ServiceProcess`, shared by every test directory), driven over HTTP
(httpx), DNS (dnspython) and its CLI.

A uniquely named module, not ``conftest``: every test directory has a conftest, and ``from conftest
import`` would get whichever one was imported first.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from lancert.pki import SubjectNames, create_csr, generate_private_key
from lancert_cli import lancert
from postgres_server import PG_INITDB, PostgresServer  # noqa: F401  (re-exported for the service tests)
from service_process import ServiceProcess  # noqa: F401  (re-exported for the service tests)

ZONE = "iot.lancert.test"
CODE = "correct horse battery staple"

# The rate limiter's windows are fixed, aligned to multiples of their length since the epoch: a test whose
# guesses straddle a boundary of a 600 s window sees its counts start again (a 403 where it counts on a
# 429; this failed CI). Windows of 10**9 s have their only boundary of these years at 2033-05-18T03:33:20Z.
ONE_WINDOW = 1_000_000_000
ONE_WINDOW_ENDS = 2 * ONE_WINDOW  # Unix time


def seconds_to_window_end() -> float:
    """What a 429's Retry-After must say, give or take a second, for a limit of ``ONE_WINDOW``."""
    return ONE_WINDOW_ENDS - time.time()


def make_csr(names: list[str] | None = None, key: object = None) -> str:
    key = key or generate_private_key()
    csr = create_csr(key, SubjectNames.parse(dns=names or []))  # type: ignore[arg-type]
    return csr.public_bytes(serialization.Encoding.PEM).decode()


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


