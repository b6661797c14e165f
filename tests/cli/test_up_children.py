"""``lancert up``'s children die with it, whatever kills it, and a later ``up`` notices leftovers
(issue 24 point 6). Before: after SIGHUP (the terminal closed) or SIGKILL, ``service run``, ``box run`` and
``terminal run`` lived on under PID 1 and the next ``up`` started beside them without a word."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lancert.up.stack import Child
from lancert_cli import lancert

pytestmark = [pytest.mark.slow, pytest.mark.machine_lock("up")]

LOCKS = {"service": "service.lock", "box": "box.lock", "terminal": "terminal.lock"}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] if Path(
        f"/proc/{pid}").exists() else "X"
    return status != "Z"  # a zombie is dead, only not reaped yet


def _children_of_up(data_dir: Path) -> dict[str, int]:
    """The PIDs of up's three children, from the locks of their directories."""
    return {name: int((data_dir / name / lock).read_text().strip()) for name, lock in LOCKS.items()}


def _running_up(data_dir: Path) -> subprocess.Popen[str]:
    up = subprocess.Popen([sys.executable, "-m", "lancert", "up", "--data-dir", str(data_dir)],
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                          start_new_session=True, env={**os.environ, "COLUMNS": "200"})
    assert up.stdout is not None
    deadline = time.monotonic() + 150
    for line in up.stdout:
        if "Ctrl-C to stop" in line:
            return up
        assert time.monotonic() < deadline, "up did not come up"
    up.wait(10)
    raise AssertionError(f"up exited with {up.returncode} before it ran")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGHUP])
def test_up_killed_takes_its_children_with_it(tmp_path: Path, sig: signal.Signals) -> None:
    data_dir = tmp_path / "up"
    up = _running_up(data_dir)
    children = _children_of_up(data_dir)
    try:
        assert all(_alive(pid) for pid in children.values()), children
        up.send_signal(sig)
        up.wait(30)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(_alive(pid) for pid in children.values()):
            time.sleep(0.2)
        left = {name: pid for name, pid in children.items() if _alive(pid)}
        assert left == {}, f"{sig.name}: still running {left}"
    finally:
        for pid in children.values():
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_up_refuses_to_start_beside_a_leftover_naming_its_pid(tmp_path: Path) -> None:
    data_dir = tmp_path / "up"
    leftover = Child.start("a leftover terminal", [
        "terminal", "run", "--state-dir", str(data_dir / "terminal"), "--port", "0", "--key-pool", "0"],
        tmp_path / "leftover.log")
    try:
        leftover.wait_for("ready", 60)
        result = lancert("up", "--check", "--data-dir", str(data_dir), check=False)
        assert result.returncode == 1
        assert result.stderr.strip().splitlines()[-1] == (
            f"lancert: an earlier 'lancert up' on {data_dir} left the payment terminal "
            f"(PID {leftover.proc.pid}) running; stop it (kill {leftover.proc.pid}) and start again")
        assert not (data_dir / "service").exists()  # nothing was started beside it
    finally:
        leftover.stop()
