"""The components under fuzzing, as real ``lancert`` processes on loopback with a lowered descriptor limit,
and the hostile connections thrown at them (idle, half-open, partial, silent after TLS)."""

from __future__ import annotations

import json
import resource
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from lancert_cli import lancert

# The descriptor limit the components run with: low enough that a few hundred idle connections would
# exhaust it without the connection cap (the finding was 1,100 connections against 1,024).
NOFILE = 256


def _lower_descriptor_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))


@dataclass
class Component:
    name: str
    proc: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path
    info: dict[str, object] = field(default_factory=dict)

    @classmethod
    def start(cls, name: str, args: list[str], directory: Path) -> Component:
        directory.mkdir(parents=True, exist_ok=True)
        out, err = directory / f"{name}.out", directory / f"{name}.err"
        with out.open("wb") as stdout, err.open("wb") as stderr:
            proc = subprocess.Popen([sys.executable, "-m", "lancert", *args], stdout=stdout, stderr=stderr,
                                    preexec_fn=_lower_descriptor_limit, start_new_session=True)
        return cls(name, proc, out, err)

    def wait_for(self, marker: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.stdout.read_text(errors="replace").splitlines():
                if marker in line:
                    return line
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"{self.name} did not start: {self.stderr.read_text(errors='replace')[-2000:]}")

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def open_descriptors(self) -> int:
        return len(list(Path(f"/proc/{self.proc.pid}/fd").iterdir()))

    def log(self) -> str:
        return self.stderr.read_text(errors="replace") + self.stdout.read_text(errors="replace")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def start_service(directory: Path, *, rate_limits: bool = True, acme: bool = False) -> tuple[Component, str]:
    """The service (no DNS: another suite fuzzes it); ``rate_limits=False`` raises the failed-credential
    limits out of reach, so that fuzzed requests reach the code behind them instead of a 429; ``acme``
    adds its ACME port (``info["acme"]``). Port 0: the service binds and tells (no pick-then-bind race)."""
    data = directory / "service-data"
    config = directory / "service.toml"
    config.write_text('zone = "iot.lancert.test"\n' + ("" if rate_limits else
                      "[rate_limit]\nfailures_per_ip = 1000000\nfailures_per_database = 1000000\n"))
    service = Component.start("service", ["service", "run", "--data-dir", str(data), "--port", "0",
                                          "--dns-port", "0", "--config", str(config),
                                          *(["--acme-port", "0"] if acme else [])], directory)
    line = service.wait_for("listening on http://")
    service.info = {"http": int(line.strip().rsplit(":", 1)[1])}
    if acme:
        directory_line = service.wait_for("acme directory https://")
        listening = directory_line.split("(listening on ", 1)[1].split(";")[0]
        service.info["acme"] = int(listening.rsplit(":", 1)[1])
    return service, str(data)


def start_box(directory: Path, service_url: str, data_dir: str) -> Component:
    uuid, code = "fuzz-db", "fuzz enterprise code"
    lancert("service", "db", "add", "--uuid", uuid, "--code", code, "--data-dir", data_dir)
    args = ["box", "run", "--state-dir", str(directory / "box"), "--server", service_url, "--db-uuid", uuid,
            "--enterprise-code", code, "--http-port", "0", "--https-port", "0", "--lan-ip", "127.0.0.1"]
    box = Component.start("box", args, directory)
    urls = box.wait_for("lancert box:").split()[2:4]
    box.info = {"http": int(urls[0].rstrip("/").rsplit(":", 1)[1]),
                "https": int(urls[1].rstrip("/").rsplit(":", 1)[1])}
    return box


def start_printer(directory: Path) -> Component:
    """The ePOS printer simulator over HTTPS: a self-signed certificate made first, as a user would."""
    state = directory / "printer"
    lancert("device", "create", "--ip", "127.0.0.1", "--dir", str(state))
    printer = Component.start("printer", ["printer", "run", "--dir", str(state), "--port", "0"], directory)
    url = printer.wait_for("lancert printer: https://").split()[2]
    printer.info = {"https": int(url.rstrip("/").rsplit(":", 1)[1])}
    return printer


def start_trust_page(directory: Path, certificate: Path) -> Component:
    """``lancert trust serve`` offering ``certificate`` on a free port (plain HTTP, as it is)."""
    page = Component.start("trust", ["trust", "serve", str(certificate), "--port", "0"], directory)
    line = page.wait_for("lancert trust serve: ")
    page.info = {"http": int(line.split("listening on ", 1)[1].split(")")[0].rsplit(":", 1)[1])}
    return page


def start_terminal(directory: Path) -> Component:
    state = directory / "terminal"
    terminal = Component.start("terminal", ["terminal", "run", "--state-dir", str(state), "--port", "0",
                                            "--key-pool", "1"], directory)
    terminal.wait_for("Screen: http://")
    terminal.info = json.loads((state / "screen.json").read_text())
    terminal.info["root"] = str(state / "ca" / "root.pem")
    return terminal


# -- hostile connections ---------------------------------------------------------------------------------

HOSTILE_KINDS = ("idle", "partial-headers", "incomplete-body", "chunked-forever", "silent")


# The attacking machine: another address than the legitimate client's 127.0.0.1 (all of 127/8 is loopback).
ATTACKER = "127.0.0.2"


def hostile_connection(port: int, kind: str, *, tls: bool) -> socket.socket:
    """One connection from :data:`ATTACKER` that never completes a request. Over TLS, ``idle`` stops
    before the handshake (half-open), the others complete it and then misbehave (``silent``: nothing at
    all after it)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(ATTACKER, 0))
    if tls and kind != "idle":
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        sock = context.wrap_socket(sock)
    payload = {
        "idle": b"",
        "silent": b"",
        "partial-headers": b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ",
        "incomplete-body": b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n0123456789",
        "chunked-forever": b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                           b"4\r\nabcd\r\n",
    }[kind]
    if payload:
        sock.sendall(payload)
    return sock


def closed_by_peer(sock: socket.socket, timeout: float) -> float | None:
    """Seconds until the server closed ``sock`` (reading EOF or a reset), or None within ``timeout``."""
    start = time.monotonic()
    sock.settimeout(0.5)
    while time.monotonic() - start < timeout:
        try:
            if sock.recv(4096) == b"":
                return time.monotonic() - start
        except TimeoutError:
            continue
        except (ConnectionError, ssl.SSLError, OSError):
            return time.monotonic() - start
    return None
