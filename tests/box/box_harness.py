"""Helpers of the box tests (imported by ``conftest.py`` and the tests; a unique module name, so that
no other directory's ``conftest`` can shadow it): the real service (with its DNS) and real boxes, as
processes on loopback. Boxes are reached the way a browser reaches them: plain HTTP on 127.0.0.1, and
HTTPS at the box's name with the connection made to 127.0.0.1 and the certificate checked against the
service's root.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import httpx

from lancert.loopback import free_port
from lancert.up.stack import Child
from lancert_cli import lancert
from lancert_with_hooks import program
from service_process import ServiceProcess

ZONE = "iot.lancert.test"
CODE = "box-test enterprise code 7f3a"
# 120 s with the CA's one minute of backdating: renewal (at 2/3 of the lifetime) comes 20 s after issue.
LIFETIME = "120s"


@dataclass
class Service:
    data_dir: Path
    port: int = 0
    dns_port: int = 0
    child: Child | None = None
    process: ServiceProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Service:
        if not self.port:
            self.port = free_port()
        if not self.dns_port:
            self.dns_port = free_port()
        config = self.data_dir.parent / f"{self.data_dir.name}.toml"
        config.write_text(f'zone = "{ZONE}"\n[rate_limit]\nfailures_per_ip = 100000\n'
                          "failures_per_database = 100000\n")
        self.process = ServiceProcess(
            self.data_dir,
            ["--config", str(config), "--dns-port", str(self.dns_port), "--cert-lifetime", LIFETIME],
            port=self.port, log_path=self.data_dir.parent / f"{self.data_dir.name}.log",
        ).start(timeout=30)
        self.child = self.process.child
        return self

    def stop(self) -> None:
        if self.child is not None:
            self.child.stop()
        self.child = None

    def add_db(self, *options: str, code: str = CODE) -> str:
        uuid = f"box-db-{time.monotonic_ns()}"
        lancert("service", "db", "add", "--uuid", uuid, "--code", code, *options,
                "--data-dir", str(self.data_dir))
        return uuid

    def set_db(self, uuid: str, *options: str) -> None:
        lancert("service", "db", "set", "--uuid", uuid, *options, "--data-dir", str(self.data_dir))

    @property
    def root(self) -> Path:
        return (self.process or ServiceProcess(self.data_dir, [])).root_pem()


class MappedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to a name while connecting to 127.0.0.1: what ``--host-resolver-rules`` does for Chromium."""

    def connect(self) -> None:
        raw = socket.create_connection(("127.0.0.1", self.port), self.timeout)
        self.sock = self._context.wrap_socket(raw, server_hostname=self.host)  # type: ignore[attr-defined]


@dataclass
class Box:
    state_dir: Path
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    hooks: list[str] = field(default_factory=list)  # options of tests/lancert_with_hooks.py, e.g. --kill-at
    child: Child | None = None
    http_port: int = 0
    https_port: int = 0

    @property
    def proc(self) -> subprocess.Popen[str]:
        assert self.child is not None, "the box was not started"
        return self.child.proc

    def start(self, *, expect_ready: bool = True) -> Box:
        ports = ["--http-port", str(self.http_port), "--https-port", str(self.https_port)]
        self.child = Child.start("the box", [
            "box", "run", "--state-dir", str(self.state_dir), "--lan-ip", "127.0.0.1", *ports, *self.args,
        ], self.state_dir.parent / f"{self.state_dir.name}.stderr.log", env={**os.environ, **self.env},
            program=program(*self.hooks) if self.hooks else None)
        if expect_ready:
            urls = self.child.wait_for("lancert box:", 30).split()[2:4]
            self.http_port = int(urls[0].rstrip("/").rsplit(":", 1)[1])
            self.https_port = int(urls[1].rstrip("/").rsplit(":", 1)[1])
        return self

    def stop(self) -> None:
        if self.child is not None:
            self.child.stop()

    def state(self) -> dict[str, object]:
        return json.loads((self.state_dir / "state.json").read_text())

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=f"http://127.0.0.1:{self.http_port}", timeout=30, trust_env=False)

    def reload(self) -> httpx.Response:
        """Load the homepage over plain HTTP (a box without a valid certificate answers it; else 302)."""
        with self.http() as client:
            return client.get("/")

    def https(self, root: Path, path: str = "/") -> tuple[int, str, bytes]:
        """GET over HTTPS at the box's name, trusting ``root``: status, body and the served leaf (DER)."""
        conn = self.connection(root)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            body = response.read().decode()
            leaf = conn.sock.getpeercert(binary_form=True)  # type: ignore[union-attr]
            return response.status, body, leaf
        finally:
            conn.close()

    def connection(self, root: Path) -> MappedHTTPSConnection:
        hostname = str(self.state()["hostname"])
        context = ssl.create_default_context(cafile=str(root))
        return MappedHTTPSConnection(hostname, self.https_port, context=context, timeout=30)

    def post_settings(self, **fields: str) -> httpx.Response:
        """Send the settings form over plain HTTP, as from the box's own page (a box with no certificate)."""
        with self.http() as client:
            return client.post("/settings", data=fields,
                               headers={"Origin": f"http://127.0.0.1:{self.http_port}"})

    def set_service_url(self, url: str) -> httpx.Response:
        """Change the service URL from the homepage, then confirm it there (the stored enterprise code
        goes to a new address only after that confirmation); the confirmation's answer."""
        changed = self.post_settings(server_url=url)
        assert changed.status_code == 303, changed.text
        return self.post_settings(confirm_server_url=url)

    def check_now(self, root: Path | None = None) -> int:
        """Press "Check now" on the homepage (plain HTTP, or HTTPS at the box's name trusting ``root``):
        a check at once, where a reload retries at most every 10 s; the status."""
        if root is not None:
            return self.post_https(root, "/check", {})
        with self.http() as client:
            return client.post("/check", headers={"Origin": f"http://127.0.0.1:{self.http_port}"}).status_code

    def post_https(self, root: Path, path: str, fields: dict[str, str]) -> int:
        """POST a form over HTTPS at the box's name, as from its own page; the status."""
        conn = self.connection(root)
        try:
            conn.request("POST", path, body=urlencode(fields), headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Origin": f"https://{self.state()['hostname']}:{self.https_port}",
            })
            response = conn.getresponse()
            response.read()
            return response.status
        finally:
            conn.close()

    def post_settings_https(self, root: Path, **fields: str) -> int:
        """Send the settings form over HTTPS at the box's name, as from its own page; the status."""
        return self.post_https(root, "/settings", fields)


def wait_for(predicate, timeout: float = 40, interval: float = 0.25):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)
