"""Helpers of the DNS tests: the embedded server started as the service starts it (worker processes on
a free port of 127.0.0.1, TXT records read from a migrated SQLite database), and raw exchanges.

A uniquely named module, not ``conftest``: ``from conftest import`` would get whichever one was first.
"""

from __future__ import annotations

import os
import shlex
import socket
import struct
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode

from lancert.dns import DNSService, RateLimit, ServerSpec, ZoneSpec
from lancert.service.database import Database
from lancert.service.dnsrecords import txt_source
from lancert.up.stack import Child

ZONE = "shop.example.net"
CA = "ca.example.org"


@dataclass
class RunningDNS:
    service: DNSService
    database: Database
    url: str

    @property
    def port(self) -> int:
        return self.service.port

    def stop(self) -> None:
        self.service.stop()
        self.database.dispose()


def start_dns(
    data_dir: Path, *, url: str | None = None, workers: int = 2, rate: int = 0, **spec: object
) -> RunningDNS:
    """The zone's workers reading TXT from ``url`` (default: the SQLite database of ``data_dir``)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    url = url or f"sqlite:///{data_dir / 'service.db'}"
    database = Database(url)
    database.migrate()
    server = DNSService(
        ServerSpec(
            ZoneSpec(ZONE, caa_issuers=(CA,)),
            txt_source=txt_source(url),
            rate_limit=RateLimit(responses_per_second=rate),
            **spec,  # type: ignore[arg-type]
        ),
        0,
        workers=workers,
    )
    server.start()
    return RunningDNS(server, database, url)


def ask(
    port: int, name: str, rdtype: str = "A", transport: str = "udp", **make: object
) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype, **make)  # type: ignore[arg-type]
    if transport == "udp":
        return dns.query.udp(query, "127.0.0.1", port=port, timeout=5, ignore_trailing=True)
    return dns.query.tcp(query, "127.0.0.1", port=port, timeout=5)


def answers(reply: dns.message.Message) -> list[str]:
    return sorted(rdata.to_text() for rrset in reply.answer for rdata in rrset)


def printed_command(config_dir: Path) -> list[str]:
    """The command the ``pdns.conf`` of ``lancert dns powerdns`` tells its reader to run, word for word
    (its ``#   pdns_server ...`` line): what a user copies, so the tests run nothing more."""
    for line in (config_dir / "pdns.conf").read_text().splitlines():
        if line.startswith("#") and line.lstrip("# ").startswith("pdns_server "):
            return shlex.split(line.lstrip("# "))
    raise AssertionError(f"{config_dir / 'pdns.conf'} prints no pdns_server command")


class PowerDNS:
    """The command ``pdns.conf`` prints (``pdns_server --config-dir=DIR``) on loopback, waited for until
    it answers the zone's SOA."""

    def __init__(self, config_dir: Path, port: int) -> None:
        self.config_dir, self.port = config_dir, port
        self.log = (config_dir / "pdns.log").open("w")
        self.proc = subprocess.Popen(printed_command(config_dir), stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            try:
                if ask(port, ZONE, "SOA").rcode() == dns.rcode.NOERROR:
                    return
            except (dns.exception.Timeout, OSError):
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"pdns_server did not answer: {(config_dir / 'pdns.log').read_text()}")
            time.sleep(0.2)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def wire_query(name: str, rdtype: str = "A", **make: object) -> bytes:
    return dns.message.make_query(name, rdtype, **make).to_wire()  # type: ignore[arg-type]


def udp_exchange(port: int, packet: bytes, timeout: float = 2.0, source: str = "127.0.0.1") -> bytes | None:
    """Send one datagram, return the first reply or None if none came within ``timeout``."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        sock.settimeout(timeout)
        sock.sendto(packet, ("127.0.0.1", port))
        try:
            return sock.recv(65535)
        except TimeoutError:
            return None


def tcp_frame(packet: bytes) -> bytes:
    return struct.pack("!H", len(packet)) + packet


def read_frame(sock: socket.socket) -> bytes | None:
    """One length-prefixed message, or None when the server closed the connection."""
    head = _read_exactly(sock, 2)
    if head is None:
        return None
    return _read_exactly(sock, struct.unpack("!H", head)[0])


def _read_exactly(sock: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def rcode_of(reply: bytes) -> int:
    return reply[3] & 0x0F


def flags_of(reply: bytes) -> int:
    return reply[2] << 8 | reply[3]


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc (what a loop burns shows here)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS line")


def threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no Threads line")


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in os.listdir(f"/proc/{pid}/task"):
        text = Path(f"/proc/{pid}/task/{task}/children").read_text().split()
        found.extend(int(c) for c in text)
    return found


def worker_pids(parent: int) -> list[int]:
    """The DNS worker processes of ``parent`` (its multiprocessing resource tracker left out)."""
    return sorted(
        pid for pid in children(parent) if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    )


@dataclass
class CliDNS:
    child: Child
    port: int
    workers: list[int]

    def log(self) -> str:
        return self.child.log_text()


def spoofed_udp(source: tuple[str, int], destination: tuple[str, int], payload: bytes) -> None:
    """Send a UDP datagram with a forged source (raw IPv4 socket: root or CAP_NET_RAW)."""
    udp_len = 8 + len(payload)
    ip_header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + udp_len, 0, 0, 64, socket.IPPROTO_UDP, 0,
        socket.inet_aton(source[0]), socket.inet_aton(destination[0]),
    )
    udp_header = struct.pack("!HHHH", source[1], destination[1], udp_len, 0)  # checksum 0: none (IPv4)
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW) as raw:
        raw.sendto(ip_header + udp_header + payload, (destination[0], 0))


def can_spoof() -> bool:
    try:
        socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW).close()
    except PermissionError:
        return False
    return True


def fixed_txt(records: Mapping[str, Sequence[str]], away_flag: str) -> dict[str, list[str]]:
    """A TXT snapshot reader for tests of staleness: the database is "away" while ``away_flag`` exists."""
    if os.path.exists(away_flag):
        raise OSError("database away")
    return {name: list(values) for name, values in records.items()}
