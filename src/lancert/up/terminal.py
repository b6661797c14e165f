"""The payment terminal of ``lancert up``: ``lancert terminal run`` and one demo POS paired with it.

Pairing is once per POS (a cashier types the setup code once), so the POS directory is kept across runs
and every run only proves the pairing still works with one mutual-TLS ``GET /api/v1/status``. When that
call fails (the terminal's state was wiped, so its CA and registry are new), the demo POS pairs again.
The terminal gets a new free port on each run, so the stored pairing is pointed at the current address
first, as a POS would be after the terminal moved.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from lancert.errors import LancertError
from lancert.up.stack import Child, lancert_command

# The POS client, the terminal's state and the credential files (cryptography, httpx, websockets) are
# imported where used: ``up`` launches the terminal first of all, before it needs any of them.

DEMO_POS_ID = "demo-pos"
TERMINAL_HOST = "127.0.0.1"


@dataclass(frozen=True)
class RunningTerminal:
    url: str
    state_dir: Path
    root: Path


@dataclass(frozen=True)
class PosPairing:
    """The demo POS's pairing and what its mutual-TLS status call answered."""

    directory: Path
    pos_id: str
    paired_now: bool
    serial: str | None
    answered: bool
    detail: str

    @property
    def state(self) -> str:
        if self.serial is None:
            return f"posId {self.pos_id}, not paired"
        how = "paired on this run" if self.paired_now else "reused from an earlier run"
        return f"posId {self.pos_id}, {how}; POS files in {self.directory}"


def launch_terminal(data_dir: Path, children: list[Child]) -> Child:
    """Start ``lancert terminal run`` on a free loopback port without waiting for it: it needs nothing
    from the other devices, so ``up`` starts it first and lets it come up beside the service. Port 0:
    the terminal binds a free port itself and names it in its ready line (a number picked here and bound
    by the child a second later was taken meanwhile in about 1 start of 50)."""
    # No key pool: the only pairing up makes is the first run's, and it can wait for one RSA key.
    child = Child.start("the payment terminal", [
        "terminal", "run", "--state-dir", str(data_dir / "terminal"), "--host", TERMINAL_HOST,
        "--port", "0", "--key-pool", "0"], data_dir / "logs" / "terminal.log", die_with_parent=True)
    children.append(child)
    return child


def start_terminal(data_dir: Path, children: list[Child], launched: Child | None = None) -> RunningTerminal:
    """The terminal once it answers (``launched`` by :func:`launch_terminal`, or started now); it
    activates itself (its CA) on the first run."""
    child = launched or launch_terminal(data_dir, children)
    line = child.wait_for("Details: HTTPS ")
    url = line.split("Details: HTTPS ", 1)[1].split()[0]
    state_dir = data_dir / "terminal"
    from lancert.terminal.device import TerminalState

    return RunningTerminal(url, state_dir, TerminalState(state_dir).ca_dir.root_path)


def _setup_code(terminal: RunningTerminal) -> str:
    """Tap Generate Code exactly as ``lancert terminal code --json`` does, and read the code it shows."""
    command = lancert_command("terminal", "code", "--json", "--state-dir", str(terminal.state_dir))
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise LancertError(f"cannot get the terminal's setup code: {result.stderr.strip()}")
    try:
        code = json.loads(result.stdout)["code"]
    except (ValueError, KeyError, TypeError):
        raise LancertError("lancert terminal code --json printed no code") from None
    return str(code)


def _status(directory: Path) -> tuple[bool, str, str | None]:
    """One mutual-TLS ``GET /api/v1/status``: (answered with our posId, why, client certificate serial)."""
    from lancert.pos import PosClient

    try:
        with PosClient(directory) as pos:
            serial = format(pos_certificate_serial(directory), "x")
            answer = pos.status()
            if answer.get("posId") != pos.pos_id:
                return False, f"status answered posId {answer.get('posId')!r}, not {pos.pos_id}", serial
            return True, f"mTLS GET /api/v1/status answered posId {pos.pos_id}", serial
    except (LancertError, OSError, ValueError) as exc:
        return False, f"mTLS GET /api/v1/status failed: {exc}", None


def pos_certificate_serial(directory: Path) -> int:
    """The serial of the POS's client certificate: the same serial across runs means the same pairing."""
    from lancert.storage.files import CredentialFiles

    return CredentialFiles(directory).read().certificate.serial_number


def _point_at(directory: Path, url: str) -> bool:
    """Point a stored pairing at the terminal's current address; False when there is no pairing."""
    from lancert.pos.client import POS_FILE
    from lancert.storage.files import read_json, write_json

    info = read_json(directory / POS_FILE)
    if not isinstance(info, dict) or "posId" not in info or "terminal" not in info:
        return False
    if info["terminal"] != url:
        write_json(directory / POS_FILE, {**info, "terminal": url})
    return True


def pair_demo_pos(data_dir: Path, terminal: RunningTerminal, pos_id: str = DEMO_POS_ID) -> PosPairing:
    """Reuse the stored pairing when its status call works; otherwise pair (again) with a fresh code."""
    from lancert.pos import PosClient

    directory = data_dir / "pos"
    if _point_at(directory, terminal.url):
        answered, detail, serial = _status(directory)
        if answered:
            return PosPairing(directory, pos_id, False, serial, True, detail)
    try:
        PosClient.pair(terminal.url, pos_id=pos_id, setup_code=_setup_code(terminal), directory=directory,
                       ca=terminal.root).close()
    except LancertError as exc:
        return PosPairing(directory, pos_id, False, None, False, f"pairing failed: {exc}")
    answered, detail, serial = _status(directory)
    return PosPairing(directory, pos_id, True, serial, answered, detail)
