"""Whole-process times of the commands a new user waits on: ``lancert --help``, ``lancert service db add``
(one row into an existing SQLite registry) and a warm ``lancert up --check`` (every device's state kept
from an earlier run) to its summary and to its exit. A baseline lancert (an older checkout's ``src``,
e.g. ``git archive <commit> src | tar -x -C /tmp/base``) runs the same commands in the same call, in
turn (baseline, new, baseline, new ...), so a machine whose speed drifts moves both alike; the ratio is
taken pair by pair and its median reported.

Each command is a fresh ``python -m lancert`` process (PYTHONPATH picks the baseline's ``src``), timed
with ``time.perf_counter`` from just before ``Popen`` to its exit; for ``up --check`` also to the line
that ends its summary. ``up`` and ``db add`` each use their own data directory per side, prepared by one
untimed run.

    /work/venv/bin/python bench/cli_speed.py --baseline-src /tmp/base/src [--runs 7] [--no-bytecode]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

SUMMARY_END = "To trust a file in Chrome/Firefox"


def _env(src: Path | None, bytecode: bool = True) -> dict[str, str]:
    """The commands' environment. ``bytecode``: as an installed lancert runs (pip compiles every module
    at install), i.e. without PYTHONDONTWRITEBYTECODE, which this machine's sessions set: with it, every
    timed process compiled lancert's own modules from source again (the untimed first runs write the
    caches beside each side's sources, so both sides are timed alike)."""
    env = {**os.environ, "COLUMNS": "200"}
    if bytecode:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    if src is not None:
        env["PYTHONPATH"] = str(src)
    return env


def _run(args: list[str], env: dict[str, str], marker: str | None = None) -> tuple[float, float]:
    """(seconds to the line holding ``marker``, or to exit without one; seconds to exit)."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "lancert", *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    seen = None
    for line in proc.stdout:
        if seen is None and marker is not None and marker in line:
            seen = time.perf_counter() - start
    code = proc.wait()
    total = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"lancert {' '.join(args)} exited {code}")
    return (seen if seen is not None else total), total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline-src", type=Path, required=True)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--no-bytecode", action="store_true",
                        help="keep PYTHONDONTWRITEBYTECODE if set (every process compiles lancert again)")
    options = parser.parse_args()
    bytecode = not options.no_bytecode
    sides = {"baseline": _env(options.baseline_src, bytecode), "new": _env(None, bytecode)}
    print(f"bytecode caches: {'written and used' if bytecode else 'as the environment says'}"
          f" (PYTHONDONTWRITEBYTECODE={os.environ.get('PYTHONDONTWRITEBYTECODE', '')!r} here)")
    work = Path(tempfile.mkdtemp(prefix="lancert-cli-speed-"))

    def db_add(side: str) -> list[str]:
        return ["service", "db", "add", "--uuid", str(uuid.uuid4()), "--code", "M-12345-XYZ",
                "--data-dir", str(work / side / "service")]

    def up(side: str) -> list[str]:
        return ["up", "--check", "--data-dir", str(work / side / "up")]

    cases: list[tuple[str, Callable[[str], list[str]], str | None]] = [
        ("lancert --help", lambda _side: ["--help"], None),
        ("service db add (one row)", db_add, None),
        ("up --check, warm: to summary", up, SUMMARY_END),
    ]
    for side, env in sides.items():  # untimed: makes the registry and up's state once per side
        _run(db_add(side), env)
        _run(up(side), env)
    print(f"{'command':34} {'baseline s':>10} {'new s':>8} {'new/baseline':>12}"
          f"   (medians of {options.runs})")
    for name, args, marker in cases:
        times: dict[str, list[tuple[float, float]]] = {"baseline": [], "new": []}
        for _ in range(options.runs):
            for side, env in sides.items():
                times[side].append(_run(args(side), env, marker))
        rows = [(name, 0)] + ([(name.replace("to summary", "to exit"), 1)] if marker else [])
        for label, index in rows:
            base = [t[index] for t in times["baseline"]]
            new = [t[index] for t in times["new"]]
            ratio = statistics.median(n / b for n, b in zip(new, base, strict=True))
            print(f"{label:34} {statistics.median(base):10.2f} {statistics.median(new):8.2f} {ratio:12.2f}")


if __name__ == "__main__":
    main()
