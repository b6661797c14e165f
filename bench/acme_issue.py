"""ACME issuance throughput and server CPU per certificate: lancert's ACME server vs Pebble, same run.

Both servers run on 127.0.0.1 as subprocesses; ``bench/acme_load.py`` drives the full flow (a new
account per client thread, then order, authorization, finalize, download) at 1, 4 and 16 concurrent
clients, against Pebble then lancert at each concurrency. Pebble (Debian's) keeps everything in memory,
with ``PEBBLE_VA_ALWAYS_VALID=1`` (challenges pass without being fetched) and ``PEBBLE_VA_NOSLEEP=1``;
lancert runs ``service run --acme-port`` with SQLite (WAL) in a temporary data dir, EAB required (the
generator sends it), authorizations valid at creation. Server CPU per certificate: user+system time of
the server process (``/proc/<pid>/stat``) over the run, divided by the certificates issued. Memory:
RSS after the start, then the peak under the load alone (the start's peak is reset first, see
:func:`reset_peak`). Each lancert runs from its bytecode caches, as installed (``bench/installed.py``).
lancert's process is the whole ``service run``: the native API, the DNS and the ACME port share it, so
its imports (FastAPI, SQLAlchemy, cryptography) count whichever port is loaded. The
generator runs in a private mount namespace (``unshare --mount``, root) whose /etc/hosts names
``acme.<zone>``: lancert's endpoint is named under its zone, never by an address.

    sudo /work/venv/bin/python bench/acme_issue.py [--n 200] [--concurrency 1 4 16] [--baseline-src DIR]

``--baseline-src``: an older checkout's ``src`` (``git archive <commit> src | tar -x -C /tmp/base``) is
run as a third server, ``lancert-base`` (its own data dir, the same generator), after lancert at each
concurrency: before and after in the same run as Pebble.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ZONE = "iot.lancert.test"
TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    sys.path.insert(0, str(HERE.parent / "src"))
    from lancert.loopback import free_port as pick

    return pick()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime (fields 14 and 15 of stat)


def wait_for_port(port: int, timeout: float = 30) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def start_pebble(work: Path) -> tuple[subprocess.Popen[bytes], str, Path]:
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", str(work / "pebble-key.pem"), "-out", str(work / "pebble-cert.pem"),
                    "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    port = free_port()
    config = {"pebble": {
        "listenAddress": f"127.0.0.1:{port}", "managementListenAddress": f"127.0.0.1:{free_port()}",
        "certificate": str(work / "pebble-cert.pem"), "privateKey": str(work / "pebble-key.pem"),
        "httpPort": free_port(), "tlsPort": free_port(), "ocspResponderURL": "",
        "externalAccountBindingRequired": False}}
    (work / "pebble.json").write_text(json.dumps(config))
    env = {**os.environ, "PEBBLE_VA_ALWAYS_VALID": "1", "PEBBLE_VA_NOSLEEP": "1",
           "PEBBLE_WFE_NONCEREJECT": "0", "PEBBLE_AUTHZREUSE": "0"}
    proc = subprocess.Popen(["pebble", "-config", str(work / "pebble.json"), "-dnsserver", "127.0.0.1:1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    wait_for_port(port)
    return proc, f"https://127.0.0.1:{port}/dir", work / "pebble-cert.pem"


def start_lancert(work: Path, src: Path | None = None,
                  name: str = "lancert") -> tuple[subprocess.Popen[str], str, Path, dict[str, str], str]:
    data = work / name
    from installed import installed_env

    env = installed_env(src)
    proc = subprocess.Popen([sys.executable, "-m", "lancert", "service", "run", "--data-dir", str(data),
                             "--port", "0", "--dns-port", "0", "--acme-port", "0", "--zone", ZONE],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    directory = ""
    for line in proc.stdout:  # type: ignore[union-attr]
        if "acme directory" in line:
            directory = line.split("acme directory ", 1)[1].split()[0]
        if "listening on http://" in line:
            break
    from lancert.service.acmeserver.eab import EabKeys
    from lancert.service.authority import box_label
    from lancert.service.database import Database
    from lancert.service.issuer import load_service_identity
    from lancert.service.registry import Registry

    database = Database(f"sqlite:///{data / 'service.db'}")
    Registry(database).add("bench-db", "bench-code")
    eab = EabKeys(database).create("bench-db")
    identity = load_service_identity(database)
    database.dispose()
    assert identity is not None
    label = box_label(identity.label_secret, "bench-db", None)
    root = work / f"{name}-root.pem"
    from lancert.pki import pem

    root.write_bytes(pem([identity.ca.root]))
    hosts = work / f"{name}-hosts"
    hosts.write_text(f"127.0.0.1 localhost acme.{ZONE}\n")
    return proc, directory, root, {"kid": eab.kid, "hmac": eab.hmac_key}, f"h{{i}}.{label}.{ZONE}", hosts


def load(directory: str, bundle: Path, n: int, concurrency: int, template: str, eab: dict[str, str] | None,
         hosts: Path | None) -> dict[str, str]:
    command = [sys.executable, str(HERE / "acme_load.py"), "--directory", directory,
               "--ca-bundle", str(bundle), "--n", str(n), "--concurrency", str(concurrency),
               "--domain-template", template, "--max-seconds", "120"]
    if eab:
        command += ["--eab-kid", eab["kid"], "--eab-hmac", eab["hmac"]]
    if hosts is not None:
        command = ["unshare", "--mount", "--", "sh", "-c", f'mount --bind "{hosts}" /etc/hosts && exec "$@"',
                   "sh", *command]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip()
    return dict(part.split("=", 1) for part in out.split())


def floor_cpu_ms(pid: int, directory: str, bundle: Path, count: int = 500) -> float:
    """Server CPU per ``GET`` of the directory over one keep-alive HTTPS connection: what HTTP, TLS and
    the framework cost before any ACME work (a certificate takes 6 such requests with the generator)."""
    import ssl

    import httpx

    url = httpx.URL(directory)
    with httpx.Client(verify=ssl.create_default_context(cafile=str(bundle))) as client:
        def get() -> None:
            client.get(url.copy_with(host="127.0.0.1"), headers={"Host": f"{url.host}:{url.port}"},
                       extensions={"sni_hostname": url.host}).raise_for_status()
        for _ in range(20):
            get()
        before = cpu_seconds(pid)
        for _ in range(count):
            get()
        return (cpu_seconds(pid) - before) * 1000 / count


def memory_mib(pid: int, field: str) -> int:
    """``VmRSS`` (now) or ``VmHWM`` (the peak since the start, or since :func:`reset_peak`), in MiB."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(ln.split()[1] for ln in status.splitlines() if ln.startswith(field))) // 1024


def reset_peak(pid: int) -> None:
    """Start ``VmHWM`` again from the current RSS (proc(5), ``clear_refs``: 5), so the peak reported is
    the one under the load, not the start's (a first start runs the migrations: Alembic and Mako)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--baseline-src", type=Path, help="an older lancert's src, run as lancert-base")
    args = parser.parse_args()
    sys.path.insert(0, str(HERE.parent / "src"))
    with tempfile.TemporaryDirectory(prefix="acme-bench-") as tmp:
        work = Path(tmp)
        pebble, pebble_dir, pebble_ca = start_pebble(work)
        lancerts = [("lancert", *start_lancert(work))]
        if args.baseline_src:
            base = start_lancert(work, args.baseline_src.resolve(), "lancert-base")
            lancerts.append(("lancert-base", *base))
        servers = [("pebble", pebble, pebble_dir, pebble_ca)] + [(n, p, d, r) for n, p, d, r, *_ in lancerts]
        started = {name: (memory_mib(proc.pid, "VmRSS"), memory_mib(proc.pid, "VmHWM"))
                   for name, proc, _, _ in servers}
        for _, proc, _, _ in servers:
            reset_peak(proc.pid)
        print("| clients | server | certs | certs/s | p50 ms | p95 ms | server CPU ms/cert |")
        print("|--:|---|--:|--:|--:|--:|--:|")
        try:
            for concurrency in args.concurrency:
                runs = [("pebble", pebble.pid, pebble_dir, pebble_ca, "h{i}.example.test", None, None)]
                runs += [(name, proc.pid, directory, root, template, eab, hosts)
                         for name, proc, directory, root, eab, template, hosts in lancerts]
                for name, pid, directory, bundle, domains, binding, hosts in runs:
                    before = cpu_seconds(pid)
                    result = load(directory, bundle, args.n, concurrency, domains, binding, hosts)
                    cpu = (cpu_seconds(pid) - before) * 1000 / int(result["certs"])
                    print(f"| {concurrency} | {name} | {result['certs']} | {result['rate'].rstrip('/s')} | "
                          f"{result['p50'].rstrip('ms')} | {result['p95'].rstrip('ms')} | {cpu:.1f} |",
                          flush=True)
            print("server CPU per GET of the directory (HTTPS keep-alive): " + ", ".join(
                f"{name} {floor_cpu_ms(proc.pid, directory, bundle):.2f} ms"
                for name, proc, directory, bundle in servers))
            for name, proc, _, _ in servers:
                rss, start_peak = started[name]
                print(f"{name} RSS: after start {rss} MiB (peak during the start {start_peak} MiB), "
                      f"peak under the load {memory_mib(proc.pid, 'VmHWM')} MiB, "
                      f"after it {memory_mib(proc.pid, 'VmRSS')} MiB")
        finally:
            for _, proc, _, _ in servers:
                proc.terminate()
                proc.wait(10)


if __name__ == "__main__":
    main()
