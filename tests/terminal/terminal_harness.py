"""A real terminal subprocess on loopback, with a clock the tests move (no sleeping 300 s)."""

from __future__ import annotations

import json
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from lancert_with_hooks import program


@dataclass
class RunningTerminal:
    state_dir: Path
    clock_file: Path
    process: subprocess.Popen[str]
    log_file: Path
    info: dict[str, Any] = field(default_factory=dict)
    offset: float = 0.0

    @property
    def https(self) -> str:
        return self.info["https"]

    @property
    def wss(self) -> str:
        return self.info["wss"]

    @property
    def root_pem(self) -> bytes:
        return (self.state_dir / "ca" / "root.pem").read_bytes()

    def _screen(self, method: str, path: str) -> dict[str, Any]:
        response = httpx.request(method, self.info["screen"] + path.lstrip("/"), trust_env=False,
                                 headers={"Authorization": f"Bearer {self.info['token']}"}, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()

    def code(self) -> dict[str, Any]:
        """Tap Generate Code (the screen endpoint behind ``lancert terminal code``)."""
        return self._screen("POST", "/code")

    def current(self) -> dict[str, Any]:
        """What the screen shows now, without generating."""
        return self._screen("GET", "/state")

    def advance(self, seconds: float) -> None:
        self.offset += seconds
        self.clock_file.write_text(str(self.offset))

    def pair_raw(self, body: Any, *, source: str | None = None, **kwargs: Any) -> httpx.Response:
        """POST / with no client certificate, verifying the terminal against its root; ``source``: the
        loopback address to connect from (127.0.0.2 is another machine on the LAN, to the terminal)."""
        ctx = ssl.create_default_context(cadata=self.root_pem.decode())
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        transport = httpx.HTTPTransport(verify=ctx, local_address=source)
        headers = {"Content-Type": "application/json", **kwargs.pop("headers", {})}
        with httpx.Client(transport=transport, timeout=30, trust_env=False) as client:
            return client.post(self.https, content=content, headers=headers, **kwargs)

    def log(self) -> str:
        return self.log_file.read_text()


def start_terminal(base: Path, command: list[str] | None = None) -> RunningTerminal:
    """``lancert terminal run`` (or ``command`` given the same arguments) on a free port, with the clock
    file; returns once its screen file says it is ready."""
    state_dir, clock_file, log_file = base / "state", base / "clock", base / "terminal.log"
    clock_file.write_text("0")
    # The test-only entry point binds the terminal's clock to clock_file; the shipped lancert has no such
    # switch (tests/lancert_with_hooks.py).
    with log_file.open("w") as log:
        process = subprocess.Popen(
            [*(command or [*program("--clock-offset-file", str(clock_file)), "terminal", "run"]),
             "--state-dir", str(state_dir), "--port", "0", "--key-pool", "2"],
            stdout=log, stderr=subprocess.STDOUT, text=True,
        )
    running = RunningTerminal(state_dir, clock_file, process, log_file)
    deadline = time.monotonic() + 60
    screen = state_dir / "screen.json"
    while not screen.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"terminal did not start: {log_file.read_text()}")
        time.sleep(0.1)
    running.info = json.loads(screen.read_text())
    return running


def stop_terminal(running: RunningTerminal) -> None:
    running.process.terminate()
    running.process.wait(timeout=20)


@pytest.fixture(scope="module")
def terminal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningTerminal]:
    running = start_terminal(tmp_path_factory.mktemp("terminal"))
    yield running
    stop_terminal(running)
