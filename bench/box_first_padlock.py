"""The IoT box: time from ``lancert box run`` to its first padlocked HTTPS response, and new TLS
handshakes per second on its HTTPS port against nginx serving the same certificate, in the same run.

First padlock: a service (``lancert service run``, SQLite, internal CA) runs on 127.0.0.1; a box that
has been provisioned once (so its label, hence its name, is known) is started again from a state
directory holding only its ``box_id`` and settings: no certificate. The clock starts just before
``Popen`` and stops at the first ``GET /`` answered 200 over a TLS connection verified against the
service's root for the name ``127-0-0-1.<label>.<zone>`` (connections go to 127.0.0.1). Also reported:
the time to the box's "ready" line, and the start-up of the ``lancert`` CLI alone
(``import lancert.commands.main``)
so the box's own share is visible. Target: under 1 s.

Handshakes: ``openssl s_time -new`` (a new full handshake per connection, no resumption, no request)
for ``--seconds`` against the box's HTTPS port and against nginx (Debian, one worker: the box is one
process) serving the box's own cert.pem/key.pem on another 127.0.0.1 port; rounds alternate.

    /work/venv/bin/python bench/box_first_padlock.py [--runs 7] [--rounds 3] [--seconds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from lancert.loopback import free_port
from lancert.up.stack import Child

sys.path.insert(0, str(Path(__file__).resolve().parent))
from installed import installed_env  # a module beside this script

LANCERT = [sys.executable, "-m", "lancert"]
INSTALLED = installed_env()  # every lancert process here runs from bytecode caches, as installed
CODE = "bench enterprise code"


def start(args: list[str], marker: str, log: Path) -> tuple[Child, str]:
    """A lancert process started the way ``up`` starts it, and its ready line."""
    child = Child.start(f"lancert {args[0]}", args, log, env=INSTALLED)
    return child, child.wait_for(marker)


def stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def padlocked_get(hostname: str, port: int, context: ssl.SSLContext) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as raw, \
                context.wrap_socket(raw, server_hostname=hostname) as tls:
            tls.sendall(f"GET / HTTP/1.1\r\nHost: {hostname}:{port}\r\nConnection: close\r\n\r\n".encode())
            return tls.recv(64).startswith(b"HTTP/1.1 200")
    except (OSError, ssl.SSLError):
        return False


def first_padlock(
    work: Path, service_url: str, uuid: str, root: Path, runs: int
) -> tuple[list[float], list[float], list[float], list[float]]:
    seed = work / "seed-box"
    https_port, http_port = free_port(), free_port()
    box_args = ["box", "run", "--state-dir", str(seed), "--server", service_url, "--db-uuid", uuid,
                "--enterprise-code", CODE, "--lan-ip", "127.0.0.1", "--http-port", str(http_port),
                "--https-port", str(https_port)]
    start(box_args, "lancert box:", work / "seed-box.log")[0].stop()
    state = json.loads((seed / "state.json").read_text())
    hostname = state["hostname"]
    context = ssl.create_default_context(cafile=str(root))
    padlock_times: list[float] = []
    ready_times: list[float] = []
    startup_times: list[float] = []
    work_times: list[float] = []
    for i in range(runs):
        run_dir = work / f"run-{i}"
        run_dir.mkdir()
        (run_dir / "state.json").write_text(json.dumps({"box_id": state["box_id"]}))
        shutil.copy2(seed / "settings.json", run_dir / "settings.json")
        args = [a if a != str(seed) else str(run_dir) for a in box_args]
        t0 = time.perf_counter()
        proc = subprocess.Popen([*LANCERT, *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                text=True, env=INSTALLED)
        while not padlocked_get(hostname, https_port, context):
            if proc.poll() is not None:
                raise RuntimeError("box exited")
            time.sleep(0.005)
        padlock_times.append(time.perf_counter() - t0)
        assert proc.stdout is not None
        proc.stdout.readline()  # ready line: printed once both ports answer, just before or after the GET
        ready_times.append(time.perf_counter() - t0)
        stop(proc)
        startup_times.extend(cli_startup(1))  # interleaved: the shared machine's load hits both alike
        work_times.append(box_work(run_dir / "box.log"))
    return padlock_times, ready_times, startup_times, work_times


def box_work(log: Path) -> float:
    """From the box's first log line (its start check) to "serving HTTPS": key, CSR, request, files, TLS."""
    stamps = []
    for line in log.read_text().splitlines():
        if "check (start)" in line or "serving HTTPS" in line:
            stamps.append(datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f"))
    return (stamps[-1] - stamps[0]).total_seconds()


def cli_startup(runs: int) -> list[float]:
    """Wall time of ``python -c 'import lancert.commands.main'``: interpreter and CLI imports, before any
    box work."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import lancert.commands.main"], capture_output=True,
                       check=True, env=INSTALLED)
        times.append(time.perf_counter() - t0)
    return times


def s_time(port: int, seconds: int) -> float:
    command = ["openssl", "s_time", "-connect", f"127.0.0.1:{port}", "-new", "-time", str(seconds)]
    out = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 30).stdout
    match = re.search(r"(\d+) connections in ([\d.]+)s; ([\d.]+) connections/user sec", out)
    if not match:
        raise RuntimeError(f"openssl s_time: unexpected output: {out[-300:]}")
    return int(match.group(1)) / seconds


def rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(ln.split()[1] for ln in status.splitlines() if ln.startswith("VmRSS"))) / 1024


def box_requests(port: int, root: Path, count: int) -> None:
    """``count`` HTTPS GETs of the box's page on one keep-alive connection (the root verifies the chain;
    the name is the box's, not 127.0.0.1's, so only the hostname check is off)."""
    import httpx

    context = ssl.create_default_context(cafile=str(root))
    context.check_hostname = False
    with httpx.Client(verify=context, timeout=30) as client:
        for _ in range(count):
            client.get(f"https://127.0.0.1:{port}/")


def nginx(work: Path, cert: Path, key: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    prefix = work / "nginx"
    prefix.mkdir()
    conf = prefix / "nginx.conf"
    conf.write_text(f"""
daemon off; worker_processes 1; pid {prefix}/nginx.pid; error_log {prefix}/error.log;
events {{ worker_connections 1024; }}
http {{
  access_log off; client_body_temp_path {prefix}/body; proxy_temp_path {prefix}/proxy;
  fastcgi_temp_path {prefix}/fastcgi; uwsgi_temp_path {prefix}/uwsgi; scgi_temp_path {prefix}/scgi;
  server {{ listen 127.0.0.1:{port} ssl; ssl_certificate {cert}; ssl_certificate_key {key};
           ssl_protocols TLSv1.2 TLSv1.3; location / {{ return 200 "ok"; }} }}
}}
""")
    proc = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(prefix)], stderr=subprocess.DEVNULL)
    for _ in range(100):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc, port
        time.sleep(0.05)
    raise RuntimeError("nginx did not start")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lancert-bench-box-") as tmp:
        work = Path(tmp)
        data = work / "service"
        uuid = "bench-db"
        subprocess.run([*LANCERT, "service", "db", "add", "--uuid", uuid, "--code", CODE,
                        "--data-dir", str(data)], check=True, capture_output=True)
        service, line = start(["service", "run", "--data-dir", str(data), "--port", "0", "--dns-port", "0"],
                              "listening on http://", work / "service.log")
        url = line.strip().rsplit(" ", 1)[-1]
        root = work / "root.pem"
        root.write_text(subprocess.run([*LANCERT, "service", "root", "--data-dir", str(data)], check=True,
                                       capture_output=True, text=True).stdout)
        try:
            padlock, ready, startup, own = first_padlock(work, url, uuid, root, opts.runs)
            box_dir = work / "run-0"
            https_port = free_port()
            box, _ = start(["box", "run", "--state-dir", str(box_dir), "--lan-ip", "127.0.0.1",
                            "--http-port", "0", "--https-port", str(https_port)], "lancert box:",
                           work / "box.log")
            rss_start = rss_mib(box.proc.pid)
            box_requests(https_port, root, 1000)
            rss_after = rss_mib(box.proc.pid)
            web, nginx_port = nginx(work, box_dir / "cert.pem", box_dir / "key.pem")
            box_rates, nginx_rates = [], []
            try:
                for _ in range(opts.rounds):
                    box_rates.append(s_time(https_port, opts.seconds))
                    nginx_rates.append(s_time(nginx_port, opts.seconds))
            finally:
                box.stop()
                web.terminate()
                web.wait(10)
        finally:
            service.stop()
    print(f"machine: nproc={os.cpu_count()} {platform.machine()} Python {platform.python_version()} "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"first padlock after `lancert box run`: median {statistics.median(padlock):.3f} s "
          f"(min {min(padlock):.3f}, max {max(padlock):.3f}, {len(padlock)} runs); "
          f"ready line median {statistics.median(ready):.3f} s")
    print("of which CLI start-up (`import lancert.commands.main`): "
          f"median {statistics.median(startup):.3f} s; "
          f"box work (log: start check to serving HTTPS): median {statistics.median(own):.3f} s")
    print(f"box agent RSS: {rss_start:.1f} MiB after start, {rss_after:.1f} MiB after 1,000 HTTPS requests")
    b, n = statistics.median(box_rates), statistics.median(nginx_rates)
    print(f"new TLS handshakes/s (openssl s_time -new, {opts.seconds} s x {opts.rounds} rounds, medians): "
          f"box {b:.0f}/s, nginx {n:.0f}/s, box/nginx = {b / n:.2f}")


if __name__ == "__main__":
    main()
