"""The one way tests run the certificate service: the real ``lancert service run`` as a child process on
127.0.0.1, ready when it prints its ``listening on http://`` line.

Shared by every directory (``tests/`` is on pytest's ``pythonpath``): the service tests
(``service_testlib``), the ACME server's (``acme_harness``), the box's (``box_harness``) and single tests
that need one service of their own. The process is a :class:`lancert.up.stack.Child`, as ``lancert up``
starts it: stdout lines collected by a thread, stderr in a log file beside the data directory, and a
start that fails says why in one line and names that log.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import httpx

from lancert.up.stack import Child
from lancert_cli import lancert

READY = "listening on http://"


@dataclass
class ServiceProcess:
    """``lancert service run --data-dir DATA_DIR --port PORT ARGS``; ``port`` 0 takes a free port, which
    :attr:`url` reads from the ready line (as do :attr:`dns_port` and :attr:`acme_port` when the service
    runs its DNS or its ACME server). ``entry``: a test-only script that wraps ``service run`` and takes
    its options (e.g. tests/service/slow_issuer_service.py). ``log_path``: where stderr goes (default
    ``<data_dir>.stderr.log`` beside the data directory)."""

    data_dir: Path
    args: list[str]
    env: dict[str, str] | None = None
    entry: Path | None = None
    port: int = 0
    log_path: Path | None = None
    child: Child | None = None
    url: str = ""
    dns_port: int = 0
    acme_port: int = 0

    @property
    def output(self) -> list[str]:
        return self.child.lines if self.child else []

    def start(self, timeout: float = 30) -> ServiceProcess:
        args = ["--data-dir", str(self.data_dir), "--port", str(self.port), *self.args]
        log = self.log_path or self.data_dir.parent / f"{self.data_dir.name}.stderr.log"
        if self.entry is None:
            self.child = Child.start("the service", ["service", "run", *args], log, env=self.env)
        else:
            self.child = Child.start("the service", args, log, env=self.env,
                                     program=[sys.executable, str(self.entry)])
        self.url = self.child.wait_for(READY, timeout).strip().rsplit(" ", 1)[-1]
        dns = next((line for line in self.child.lines if " dns for " in line), None)
        if dns:
            self.dns_port = int(dns.split(" on ", 1)[1].split()[0].rsplit(":", 1)[1])
        acme = next((line for line in self.child.lines if "acme directory " in line), None)
        if acme:
            self.acme_port = int(acme.split("acme directory ", 1)[1].split("/")[2].rsplit(":", 1)[1])
        return self

    def stop(self) -> str:
        """Stop the service; return its stderr (for asserting that no traceback leaked elsewhere)."""
        if self.child is None:
            return ""
        self.child.stop()
        return self.child.log_text()

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30)

    def root_pem(self, db: str | None = None) -> Path:
        """The service's root (``lancert service root``) in ``<data_dir>-root.pem``, written once: the file a
        box's or a client's trust is given."""
        path = self.data_dir.parent / f"{self.data_dir.name}-root.pem"
        if not path.exists():
            path.write_text(lancert("service", "root", "--data-dir", str(self.data_dir),
                                    *(["--db", db] if db else [])).stdout)
        return path
