"""Certificates per second through the service's native API vs a bare PKI-core signing loop, and DNS
queries per second of the zone server vs a plain dnslib server, all in the same run.

Service: the real ``lancert service run`` (SQLite in WAL mode, a temporary data dir) as a subprocess on
127.0.0.1; clients are threads with one keep-alive httpx client each, every request with its own CSR
(made beforehand) for one of 64 boxes of one registered database. Ceiling: ``issue_for_csr`` of the PKI
core in a loop in this process, for the same CSRs (signature check of the CSR included, as the service
does it). p50/p95 are per-request wall times at each concurrency. A second baseline, GET /healthz at the
same concurrency, is the HTTP floor on this machine (client and server share its cores). The clients
run in this process, the service in its own, on the same cores: so CPU seconds per request of both
processes are printed too (``/proc/<pid>/stat`` for the service, ``time.process_time`` here), and the
ceiling's CPU per certificate over the service's ("ceiling CPU / service CPU") says what share of the
ceiling the service would reach if its clients cost it nothing; the service's CPU per GET /healthz
is the part of that which HTTP and the framework take before any work. The wall-clock rate stays the headline
figure. RSS is the service's VmRSS after start (no request yet), after 1,000 native requests (4 clients,
which are also the warm-up) and, with VmHWM (peak), after the runs.

DNS: dnsperf (Debian package) if installed, else a Python client loop (dnspython over UDP, one thread),
against the service's DNS and against a plain dnslib server answering one fixed A record.

    /work/venv/bin/python bench/service_issue.py [--requests 300] [--rounds 3] [--dns-seconds 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from cryptography.hazmat.primitives import serialization

from lancert.loopback import free_port
from lancert.pki import (
    TLS_SERVER,
    CertificateAuthority,
    SubjectNames,
    create_csr,
    generate_private_key,
    load_csr,
)
from lancert.service.database import Database
from lancert.service.registry import Registry
from lancert.up.stack import Child

sys.path.insert(0, str(Path(__file__).resolve().parent))
from installed import installed_env  # a module beside this script

CODE = "bench-code"
ZONE = "iot.lancert.test"


def start_service(data_dir: Path, dns_port: int) -> tuple[Child, str]:
    service = Child.start("the service", ["service", "run", "--data-dir", str(data_dir), "--port", "0",
                                          "--dns-port", str(dns_port)], data_dir.parent / "service.log",
                          env=installed_env())
    return service, service.wait_for("listening on http://").strip().rsplit(" ", 1)[-1]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def service_run(
    url: str, csrs: list[str], concurrency: int, *, floor: bool = False, pid: int | None = None
) -> tuple[float, list[float], float, float]:
    """Rate, latencies, and CPU seconds per request of the service process (``pid``) and of this
    (client) process: both share the machine's cores, so wall-clock rates include the client's cost.

    ``floor``: GET /healthz instead, the same number of times: what HTTP alone (client, uvicorn,
    FastAPI's thread hop) costs on this machine, with no credentials, signing or SQL."""
    clients = [httpx.Client(base_url=url, timeout=60) for _ in range(concurrency)]
    local = threading.local()
    counter = iter(range(len(clients)))
    lock = threading.Lock()

    def client() -> httpx.Client:
        if not hasattr(local, "client"):
            with lock:
                local.client = clients[next(counter)]
        return local.client

    def one(i: int) -> float:
        start = time.perf_counter()
        if floor:
            client().get("/healthz").raise_for_status()
            return time.perf_counter() - start
        response = client().post(
            "/api/v1/certificates",
            json={"db_uuid": "bench-db", "enterprise_code": CODE, "box_id": f"box-{i % 64}", "csr": csrs[i]},
        )
        if response.status_code != 200:
            raise SystemExit(f"request failed: {response.status_code} {response.text}")
        return time.perf_counter() - start

    server_cpu = cpu_seconds(pid) if pid else 0.0
    client_cpu = time.process_time()
    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        latencies = list(pool.map(one, range(len(csrs))))
    elapsed = time.perf_counter() - start
    client_cpu = time.process_time() - client_cpu
    server_cpu = cpu_seconds(pid) - server_cpu if pid else 0.0
    for c in clients:
        c.close()
    return len(csrs) / elapsed, latencies, server_cpu / len(csrs), client_cpu / len(csrs)


def ceiling_run(ca: CertificateAuthority, csrs: list[str]) -> tuple[float, float]:
    """Certificates per second (wall) and CPU seconds per certificate of the bare signing loop."""
    names = SubjectNames.parse(dns=[f"*.box.{ZONE}"])
    cpu = time.process_time()
    start = time.perf_counter()
    for pem in csrs:
        ca.issue_for_csr(
            load_csr(pem), TLS_SERVER, names=names, validity=__import__("datetime").timedelta(days=90)
        )
    elapsed = time.perf_counter() - start
    return len(csrs) / elapsed, (time.process_time() - cpu) / len(csrs)


def rss_kib(pid: int) -> tuple[int, int]:
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line
    )
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


def plain_dnslib_server(port: int) -> None:
    """A dnslib server that answers every query with one fixed A record: the floor of dnslib itself."""
    from dnslib import QTYPE, RR, A
    from dnslib.server import DNSLogger, DNSServer

    class Fixed:
        def resolve(self, request, handler):  # type: ignore[no-untyped-def]
            reply = request.reply()
            reply.add_answer(RR(request.q.qname, QTYPE.A, ttl=300, rdata=A("192.168.1.25")))
            return reply

    DNSServer(
        Fixed(), address="127.0.0.1", port=port, logger=DNSLogger("-request,-reply,-truncated,-error")
    ).start()


def dns_qps(port: int, seconds: float, names: list[str]) -> tuple[float, str]:
    if shutil.which("dnsperf"):
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as fh:
            fh.write("".join(f"{n} A\n" for n in names))
        out = subprocess.run(
            [
                "dnsperf",
                "-s",
                "127.0.0.1",
                "-p",
                str(port),
                "-d",
                fh.name,
                "-l",
                str(seconds),
                "-c",
                "1",
                "-q",
                "20",
            ],
            capture_output=True,
            text=True,
        ).stdout
        os.unlink(fh.name)
        for line in out.splitlines():
            if "Queries per second" in line:
                return float(line.split(":")[1]), "dnsperf"
        raise SystemExit(out)
    import dns.message
    import dns.query

    count, deadline = 0, time.perf_counter() + seconds
    start = time.perf_counter()
    while time.perf_counter() < deadline:
        dns.query.udp(
            dns.message.make_query(names[count % len(names)], "A"), "127.0.0.1", port=port, timeout=2
        )
        count += 1
    return count / (time.perf_counter() - start), "dnspython loop"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dns-seconds", type=float, default=5)
    parser.add_argument("--plain-dns-server", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain_dns_server:
        plain_dnslib_server(args.plain_dns_server)
        return

    print(
        f"# {platform.machine()} nproc={os.cpu_count()} load={os.getloadavg()[0]:.1f} "
        f"Python {platform.python_version()}"
    )
    workdir = Path(tempfile.mkdtemp(prefix="lancert-bench-"))
    dns_port = free_port()
    service, url = start_service(workdir / "data", dns_port)
    try:
        database = Database(f"sqlite:///{workdir / 'data' / 'service.db'}")
        Registry(database).add("bench-db", CODE)
        database.dispose()
        keys = [generate_private_key() for _ in range(64)]
        csrs = [
            create_csr(keys[i % 64], SubjectNames()).public_bytes(serialization.Encoding.PEM).decode()
            for i in range(args.requests)
        ]
        rss, _ = rss_kib(service.proc.pid)
        print(f"service RSS after start: {rss / 1024:.1f} MiB")
        service_run(url, (csrs * (1000 // len(csrs) + 1))[:1000], 4)  # also the warm-up
        # The floor's warm-up: the service builds its FastAPI app (every route but the native call and
        # the root) on the first request that needs it, ~0.4 s of CPU that the first floor round would
        # otherwise count as GET /healthz's own.
        service_run(url, csrs, 4, floor=True)
        rss, peak = rss_kib(service.proc.pid)
        print(f"service RSS after 1,000 requests: {rss / 1024:.1f} MiB (peak {peak / 1024:.1f} MiB)")
        ca = CertificateAuthority.create_root("bench").create_intermediate("bench intermediate")
        results: dict[str, list[float]] = {}
        latencies: dict[int, list[float]] = {1: [], 4: [], 16: []}
        for _ in range(args.rounds):
            rate, cpu = ceiling_run(ca, csrs)
            results.setdefault("ceiling", []).append(rate)
            results.setdefault("ceiling_cpu", []).append(cpu)
            for c in (1, 4, 16):
                rate, lat, server_cpu, client_cpu = service_run(url, csrs, c, pid=service.proc.pid)
                results.setdefault(f"c{c}", []).append(rate)
                results.setdefault(f"server_cpu{c}", []).append(server_cpu)
                results.setdefault(f"client_cpu{c}", []).append(client_cpu)
                latencies[c] += lat
                floor, _lat, floor_cpu, _client = service_run(url, csrs, c, floor=True, pid=service.proc.pid)
                results.setdefault(f"floor{c}", []).append(floor)
                results.setdefault(f"floor_cpu{c}", []).append(floor_cpu)
        ceiling = statistics.median(results["ceiling"])
        ceiling_cpu = statistics.median(results["ceiling_cpu"])
        print(
            f"PKI-core ceiling (issue_for_csr loop, 1 thread): {ceiling:8.1f} cert/s, "
            f"{1000 * ceiling_cpu:.2f} ms CPU per certificate"
        )
        print(
            "| clients | cert/s | % of ceiling | p50 ms | p95 ms | GET /healthz req/s | cert/s vs healthz "
            "| service CPU ms/cert | service CPU ms/healthz | client CPU ms/req | ceiling CPU / service CPU |"
        )
        print("|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
        for c in (1, 4, 16):
            rate = statistics.median(results[f"c{c}"])
            floor = statistics.median(results[f"floor{c}"])
            server_cpu = statistics.median(results[f"server_cpu{c}"])
            client_cpu = statistics.median(results[f"client_cpu{c}"])
            floor_cpu = statistics.median(results[f"floor_cpu{c}"])
            print(
                f"| {c} | {rate:.1f} | {100 * rate / ceiling:.1f}% "
                f"| {1000 * percentile(latencies[c], 0.5):.1f} "
                f"| {1000 * percentile(latencies[c], 0.95):.1f} | {floor:.1f} | {100 * rate / floor:.0f}% "
                f"| {1000 * server_cpu:.2f} | {1000 * floor_cpu:.2f} | {1000 * client_cpu:.2f} "
                f"| {100 * ceiling_cpu / server_cpu:.0f}% |"
            )
        rss, peak = rss_kib(service.proc.pid)
        print(f"service RSS after runs: {rss / 1024:.1f} MiB (peak {peak / 1024:.1f} MiB)")

        names = [f"{i % 250 + 1}-{i % 7}-1-25.k7m2q9xd4a1b.{ZONE}" for i in range(1000)]
        plain_port = free_port()
        plain = subprocess.Popen([sys.executable, __file__, "--plain-dns-server", str(plain_port)])
        time.sleep(1.0)
        try:
            zone_qps, tool = dns_qps(dns_port, args.dns_seconds, names)
            plain_qps, _ = dns_qps(plain_port, args.dns_seconds, names)
        finally:
            plain.terminate()
            plain.wait()
        print(
            f"DNS ({tool}, UDP, A queries): zone server {zone_qps:.0f} q/s, plain dnslib {plain_qps:.0f} q/s "
            f"({100 * zone_qps / plain_qps:.0f}%)"
        )
    finally:
        service.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
