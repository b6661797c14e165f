"""One ``lancert up`` per data directory: a second one says who holds it and exits 1, touching nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def _start_up(data_dir: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "lancert", "up", "--check", "--data-dir", str(data_dir)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "COLUMNS": "200"})


def test_two_cold_up_checks_on_one_data_dir_one_wins_the_other_names_its_pid(tmp_path: Path) -> None:
    first, second = _start_up(tmp_path), _start_up(tmp_path)
    results = {}
    for proc in (first, second):
        out, err = proc.communicate(timeout=150)
        results[proc.pid] = (proc.returncode, out, err)
    codes = sorted(code for code, _, _ in results.values())
    assert codes == [0, 1], results
    winner = next(pid for pid, (code, _, _) in results.items() if code == 0)
    _, loser_out, loser_err = next(r for r in results.values() if r[0] == 1)
    assert loser_err == (f"lancert: another 'lancert up' (PID {winner}) is using {tmp_path}; stop it first, "
                         "or give this one its own --data-dir\n")
    assert "padlock" not in loser_out
    assert results[winner][1].count("padlock:  yes") == 3, results[winner]
