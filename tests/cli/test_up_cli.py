"""``lancert up`` as a new user meets it: one ``up`` per data directory, and logs that say what happened.

One module-wide race of two cold ``up --check`` on one data directory serves every test here: the
loser shows the lock, the winner's files show the logs.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.machine_lock("up")]  # subprocesses; one up at a time


@dataclass
class Run:
    pid: int
    code: int
    out: str
    err: str


@dataclass
class Race:
    data_dir: Path
    winner: Run
    loser: Run


def _start_up(data_dir: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "lancert", "up", "--check", "--data-dir", str(data_dir)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "COLUMNS": "200"})


@pytest.fixture(scope="module")
def race(tmp_path_factory: pytest.TempPathFactory) -> Race:
    data_dir = tmp_path_factory.mktemp("up")
    procs = [_start_up(data_dir), _start_up(data_dir)]
    runs = []
    for proc in procs:
        out, err = proc.communicate(timeout=150)
        runs.append(Run(proc.pid, proc.returncode, out, err))
    assert sorted(r.code for r in runs) == [0, 1], runs
    winner, loser = sorted(runs, key=lambda r: r.code)
    return Race(data_dir, winner, loser)


def test_two_cold_up_checks_on_one_data_dir_one_wins_the_other_names_its_pid(race: Race) -> None:
    assert race.loser.err == (f"lancert: another 'lancert up' (PID {race.winner.pid}) is using "
                              f"{race.data_dir}; stop it first, or give this one its own --data-dir\n")
    assert "padlock" not in race.loser.out
    assert race.winner.out.count("padlock:  yes") == 4, race.winner  # printer, POS page, box, terminal
    # "yes" says what it means: a padlock once the trust file is trusted, an error in the browser until then.
    assert "until you trust that file, your browser shows a certificate error" in race.winner.out


def test_summary_names_the_logs_directory(race: Race) -> None:
    assert f"logs: {race.data_dir / 'logs'} (service.log, box.log, terminal.log)" in race.winner.out


def test_service_log_has_one_line_per_issued_certificate_without_secrets(race: Race) -> None:
    database = json.loads((race.data_dir / "demo-database.json").read_text())
    box = json.loads((race.data_dir / "box" / "state.json").read_text())
    label = box["hostname"].split(".")[1]
    log = (race.data_dir / "logs" / "service.log").read_text()
    issued = [line for line in log.splitlines() if " issued " in line]
    assert len(issued) == 1, log
    assert re.search(rf"INFO lancert\.service: issued \*\.{label}\.iot\.lancert\.test for database "
                     rf"{database['uuid']}, label {label} \(native call from 127\.0\.0\.1\): "
                     r"serial [0-9a-f]{20,40}, not_after \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00$", issued[0])
    assert database["code"] not in log and "PRIVATE KEY" not in log


def test_terminal_log_has_the_pairing_without_secrets(race: Race) -> None:
    log = (race.data_dir / "logs" / "terminal.log").read_text()
    serial = json.loads(race.winner.out.split("POS cert: serial ")[1].split()[0].join('""'))
    assert f"INFO lancert.terminal: paired posId demo-pos (certificate serial {serial})" in log
    assert "PRIVATE KEY" not in log


def test_summary_names_the_trust_page_with_its_qr_code_and_the_lan_command(race: Race) -> None:
    """Issue 20: the page every tablet gets its file from, in up's summary (on loopback while up runs)."""
    line = next(line for line in race.winner.out.splitlines() if line.startswith("trust page "))
    url = re.search(r"(http://127\.0\.0\.1:\d+/)", line)
    assert url, line
    assert f"QR code {url[1]}qr.png" in line
    assert "lancert trust serve " in line and line.endswith(" --host 0.0.0.0)")
    for name in ("printer/cert.pem", "shop-ca/root.pem"):  # the printer's own file and the shop root
        assert str(race.data_dir / name) in line
