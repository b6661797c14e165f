"""``lancert service run`` alone, to its ready line: wall time, CPU of the process at that line, and its
RSS there; a baseline lancert (an older checkout's ``src``) started the same way in the same call, in
turn (baseline, new, baseline, new ...), medians of ``--runs`` starts each (one untimed start per side
first makes its data directory and bytecode caches).

The service as ``lancert up`` starts it (the critical path of ``up``, bench/README.md, issue 21): SQLite in
a data directory kept between starts, one DNS worker on ``--dns-port``, the ACME port on port 0. CPU is
``utime + stime`` of the service's own process from ``/proc/<pid>/stat`` (the DNS worker is a child
process and not counted; its start shows in the wall time when the service waits for it).

    .venv/bin/python bench/service_start.py --baseline-src /tmp/base/src [--runs 7] [--dns-port 15355]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def start_once(env: dict[str, str], data_dir: Path, dns_port: int) -> tuple[float, float, float]:
    """(seconds to the ready line, CPU seconds of the process then, VmRSS MiB then)."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "lancert", "service", "run", "--data-dir", str(data_dir), "--host",
         "127.0.0.1", "--port", "0", "--dns-port", str(dns_port), "--dns-workers", "1", "--acme-port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    assert proc.stdout is not None
    for line in proc.stdout:
        if "listening on" in line:
            break
    else:
        raise SystemExit(f"the service exited ({proc.wait()}) before its ready line")
    wall = time.perf_counter() - started
    stat = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(stat[11]) + int(stat[12])) / TICKS
    status = Path(f"/proc/{proc.pid}/status").read_text().splitlines()
    rss = next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024
    proc.terminate()
    proc.wait()
    return wall, cpu, rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline-src", type=Path, required=True)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--dns-port", type=int, default=15355)
    options = parser.parse_args()
    base_env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    sides = {"baseline": {**base_env, "PYTHONPATH": str(options.baseline_src)}, "new": base_env}
    work = Path(tempfile.mkdtemp(prefix="lancert-service-start-"))
    try:
        for side, env in sides.items():
            start_once(env, work / side, options.dns_port)
        figures: dict[str, list[tuple[float, float, float]]] = {side: [] for side in sides}
        for _ in range(options.runs):
            for side, env in sides.items():
                figures[side].append(start_once(env, work / side, options.dns_port))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{'service run, to its ready line':34} {'baseline':>9} {'new':>9}   (medians of {options.runs})")
    for index, (label, unit) in enumerate((("wall", "s"), ("CPU of the process", "s"), ("RSS", "MiB"))):
        base = statistics.median(f[index] for f in figures["baseline"])
        new = statistics.median(f[index] for f in figures["new"])
        print(f"{label + ' (' + unit + ')':34} {base:9.2f} {new:9.2f}")


if __name__ == "__main__":
    main()
