"""The zone's DNS in queries per second, with dnsperf: the embedded server (1 worker and one per core),
a bare dnslib loop, PowerDNS fed by lancert (``lancert dns powerdns``: the lua2 backend over the
service's SQLite) and PowerDNS serving the same names from a plain zone file (bind backend), in the same
run; PowerDNS fed by lancert once more with AAAA queries for as many IPv6 names (the IPv6 path).

Every server gets the same query file (A queries for N distinct ``<ip>.<label>.<zone>`` names), the same
dnsperf command, one after the other (never two at once), in rounds that rotate the order; figures are
medians over rounds. Both PowerDNS run one receiver thread per core, each answering itself
(``distributor-threads=1``, as ``lancert dns powerdns`` writes it); the plain zone keeps PowerDNS's
default caches (20 s packet cache, 60 s query cache), lancert's has no packet cache (TXT freshness)
and a 60 s query cache. CPU: user+system seconds of the server's processes (all threads, all worker
processes) from /proc over the run, per 1,000 answered queries. dnsperf shares the machine's cores with
the server, so qps is what one machine does with its load generator on it.

    nice -n 10 .venv/bin/python bench/dns_qps.py [--names 100000 1000000] [--seconds 10] [--rounds 2]
                                                 [--clients 32]
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
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lancert.loopback import free_port
from lancert.up.stack import Child

ZONE = "bench.example.net"


def names(count: int) -> list[str]:
    """``count`` distinct IPv4 names (unique up to 64 million: 10.a.b.c with b, c < 250)."""
    return [f"10-{i // 62500 % 256}-{i // 250 % 250}-{i % 250}.box{i % 97:03d}.{ZONE}" for i in range(count)]


def ipv6_names(count: int) -> list[str]:
    """``count`` distinct IPv6 names, compressed as lancert writes them (``fd00--1-2``)."""
    return [f"fd00--{i >> 16:x}-{i & 0xFFFF:x}.box{i % 97:03d}.{ZONE}" for i in range(count)]


def descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                todo.extend(int(c) for c in Path(f"/proc/{current}/task/{task}/children").read_text().split())
        except OSError:
            pass
    return found


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def bare_dnslib(port: int) -> None:
    """recvfrom, dnslib parse, one A answer, dnslib pack, sendto: the floor of answering with dnslib."""
    import socket

    from dnslib import QTYPE, RR, A, DNSRecord

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", port))
    while True:
        data, source = sock.recvfrom(4096)
        try:
            request = DNSRecord.parse(data)
            reply = request.reply()
            reply.add_answer(RR(request.q.qname, QTYPE.A, ttl=300, rdata=A("10.0.0.1")))
            sock.sendto(reply.pack(), source)
        except Exception:  # noqa: S112 - a bench floor: undecodable packets are simply not answered
            continue


@dataclass
class Server:
    name: str
    start: Callable[[Path, int], subprocess.Popen[str] | Child]
    queries: str = "queries.txt"  # the query file in the work directory
    probe: str = "A"  # the type of the query that says the server answers


def _pid(handle: subprocess.Popen[str] | Child) -> int:
    return handle.proc.pid if isinstance(handle, Child) else handle.pid


def _stop(handle: subprocess.Popen[str] | Child) -> None:
    if isinstance(handle, Child):
        handle.stop()
        return
    handle.terminate()
    try:
        handle.wait(10)
    except subprocess.TimeoutExpired:
        handle.kill()
        handle.wait()


def embedded(workers: int) -> Callable[[Path, int], Child]:
    def start(work: Path, port: int) -> Child:
        child = Child.start(f"dns run ({workers})", ["dns", "run", "--zone", ZONE, "--port", str(port),
                                                     "--workers", str(workers), "--rate-limit", "0",
                                                     "--data-dir", str(work / "data")], work / "dns.log")
        child.wait_for("lancert dns: serving", 60)
        return child

    return start


def bare(work: Path, port: int) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, __file__, "--bare-dnslib", str(port)], text=True)


def powerdns_lancert(work: Path, port: int) -> subprocess.Popen[str]:
    conf = work / f"pdns-lancert-{port}"
    subprocess.run([sys.executable, "-m", "lancert", "dns", "powerdns", "--out", str(conf), "--data-dir",
                    str(work / "data"), "--zone", ZONE, "--port", str(port)], check=True, capture_output=True)
    return subprocess.Popen(["pdns_server", f"--config-dir={conf}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)


def powerdns_plain(query_names: list[str]) -> Callable[[Path, int], subprocess.Popen[str]]:
    def start(work: Path, port: int) -> subprocess.Popen[str]:
        conf = work / f"pdns-plain-{port}"
        conf.mkdir()
        records = "".join(f"{n}. 300 IN A {n.split('.')[0].replace('-', '.')}\n" for n in query_names)
        (conf / "zone").write_text(
            f"{ZONE}. 60 IN SOA ns.{ZONE}. hostmaster.{ZONE}. 1 3600 600 86400 60\n"
            f"{ZONE}. 300 IN NS ns.{ZONE}.\nns.{ZONE}. 300 IN A 127.0.0.1\n{records}"
        )
        (conf / "named.conf").write_text(f'zone "{ZONE}" {{ type master; file "{conf / "zone"}"; }};\n')
        (conf / "pdns.conf").write_text(
            f"launch=bind\nbind-config={conf / 'named.conf'}\nlocal-address=127.0.0.1\nlocal-port={port}\n"
            "daemon=no\nguardian=no\nwrite-pid=no\nsecurity-poll-suffix=\nresolver=no\nreuseport=yes\n"
            f"receiver-threads={os.cpu_count() or 1}\ndistributor-threads=1\n"
        )
        return subprocess.Popen(["pdns_server", f"--config-dir={conf}", f"--socket-dir={conf}"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)

    return start


def wait_answering(port: int, name: str, rdtype: str = "A", timeout: float = 300) -> None:
    """Until ``name`` has an answer (a plain zone of a million records takes a while to load)."""
    import dns.message
    import dns.query

    deadline = time.monotonic() + timeout
    while True:
        try:
            reply = dns.query.udp(dns.message.make_query(name, rdtype), "127.0.0.1", port=port, timeout=1)
            if reply.answer:
                return
        except Exception:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.2)


def dnsperf(port: int, query_file: Path, seconds: int, clients: int) -> tuple[float, int, float]:
    out = subprocess.run(
        ["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", str(query_file), "-l", str(seconds),
         "-c", str(clients), "-q", "100"],
        capture_output=True, text=True, check=True,
    ).stdout
    fields = {k.strip(): v.strip() for k, v in (ln.split(":", 1) for ln in out.splitlines() if ":" in ln)}
    completed = int(fields["Queries completed"].split()[0])
    lost = float(fields["Queries lost"].split("(")[1].rstrip("%)"))
    return float(fields["Queries per second"]), completed, lost


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--names", type=int, nargs="+", default=[100000, 1000000],
                        help="one table per count: few names (caches hit) and many (caches miss)")
    parser.add_argument("--seconds", type=int, default=10)
    # dnsperf's sockets (source ports). PowerDNS's receiver threads each have their own socket
    # (SO_REUSEPORT) and the kernel picks one by a hash of the source address and port: with 4 sockets
    # on 2 threads one thread got 3 of them in some runs (CPU 3.80 s against 1.49 s in 4 s, 39,913
    # q/s; an even split gave 57,555), so the figure said which ports dnsperf drew. 32 sockets split
    # close to evenly, as a resolver's random source ports do; the embedded server's workers share one
    # socket and see no difference.
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--bare-dnslib", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_dnslib:
        bare_dnslib(args.bare_dnslib)
        return
    if not shutil.which("dnsperf") or not shutil.which("pdns_server"):
        raise SystemExit("needs dnsperf and pdns_server (Debian packages dnsperf, pdns-server, "
                         "pdns-backend-sqlite3, pdns-backend-bind)")
    for count in args.names:
        run_table(count, args)


def run_table(count: int, args: argparse.Namespace) -> None:
    cores = os.cpu_count() or 1
    query_names = names(count)
    servers = [
        Server("embedded, 1 worker", embedded(1)),
        Server(f"embedded, {cores} workers", embedded(cores)),
        Server("bare dnslib loop", bare),
        Server("PowerDNS fed by lancert (lua2)", powerdns_lancert),
        Server("PowerDNS fed by lancert (lua2), AAAA for IPv6 names", powerdns_lancert, "queries6.txt",
               "AAAA"),
        Server("PowerDNS, plain zone (bind)", powerdns_plain(query_names)),
    ]
    results: dict[str, list[tuple[float, float, float]]] = {s.name: [] for s in servers}
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="lancert-dns-bench-") as tmp:
        work = Path(tmp)
        query_file = work / "queries.txt"
        query_file.write_text("".join(f"{n} A\n" for n in query_names))
        (work / "queries6.txt").write_text("".join(f"{n} AAAA\n" for n in ipv6_names(count)))
        from lancert.service.database import Database

        (work / "data").mkdir()
        Database(f"sqlite:///{work / 'data' / 'service.db'}").migrate()
        for round_index in range(args.rounds):
            order = servers[round_index % len(servers):] + servers[: round_index % len(servers)]
            for server in order:
                port = free_port()
                handle = server.start(work, port)
                try:
                    first = (work / server.queries).read_text().split(None, 1)[0]
                    wait_answering(port, first, server.probe)
                    pids = descendants(_pid(handle))
                    before = cpu_seconds(pids)
                    qps, completed, lost = dnsperf(port, work / server.queries, args.seconds, args.clients)
                    cpu = cpu_seconds(pids) - before
                finally:
                    _stop(handle)
                results[server.name].append((qps, cpu / completed * 1000 * 1000, lost))
                print(f"{count} names, round {round_index + 1}: {server.name}: {qps:,.0f} q/s, "
                      f"{cpu / completed * 1e6:.1f} ms CPU per 1,000 queries, lost {lost}%", flush=True)
    print(f"\nmachine: nproc={cores}, {platform.machine()}, Python {platform.python_version()}, "
          f"load average {load_start:.1f} at start, {os.getloadavg()[0]:.1f} at end; "
          f"dnsperf -c {args.clients} -q 100 -l {args.seconds}, {count} distinct names, "
          f"{args.rounds} rounds (medians)\n")
    powerdns_qps = statistics.median(r[0] for r in results["PowerDNS, plain zone (bind)"])
    print("| server | q/s | CPU ms per 1,000 queries | q/s of PowerDNS (plain zone) |")
    print("|---|--:|--:|--:|")
    for server in servers:
        qps = statistics.median(r[0] for r in results[server.name])
        cpu = statistics.median(r[1] for r in results[server.name])
        print(f"| {server.name} | {qps:,.0f} | {cpu:.1f} | {qps / powerdns_qps:.0%} |")
    print(flush=True)


if __name__ == "__main__":
    main()
