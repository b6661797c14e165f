"""``lancert dns powerdns`` drives the real Debian ``pdns_server`` (the lua2 backend over lancert's SQLite
or PostgreSQL database) on loopback: for every name class it answers as the embedded server does, a TXT
record added through the service is served within the documented delay, by two nodes on one PostgreSQL
too, and a 10-second flood of uncached IPv6-style names leaves it answering (issue 19)."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import stat
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import pytest
from dns_testlib import CA, ZONE, PowerDNS, RunningDNS, answers, ask, printed_command, start_dns

from capabilities import require, required_for_module
from lancert.loopback import free_port
from lancert.service.database import Database
from lancert.service.dnsrecords import add_txt_record, remove_txt_records, wait_until_visible
from lancert_cli import lancert
from postgres_server import MISSING, PG_BIN, running_postgres

pytestmark = pytest.mark.slow  # starts a server or subprocess (tests/conftest.py)

_capability = required_for_module(
    shutil.which("pdns_server") is not None, "pdns_server is not installed (Debian package pdns-server)")


@pytest.fixture(scope="module", params=["gsqlite3", "gpgsql"])
def servers(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[PowerDNS, RunningDNS]]:
    """PowerDNS as ``lancert dns powerdns`` configures it and the embedded server, on one database:
    the service's SQLite file (gsqlite3) or a PostgreSQL (gpgsql)."""
    with contextlib.ExitStack() as stack:
        root = tmp_path_factory.mktemp("powerdns")
        data_dir, config_dir, port = root / "data", root / "pdns", free_port()
        if request.param == "gpgsql":
            require(PG_BIN is not None, MISSING)
            url = stack.enter_context(running_postgres())
            source = ["--db", url]
        else:
            url, source = None, ["--data-dir", str(data_dir)]
        embedded = start_dns(data_dir, url=url, workers=1)  # migrates the service database
        stack.callback(embedded.stop)
        yield from _powerdns(config_dir, port, source, embedded)


def _powerdns(
    config_dir: Path, port: int, source: list[str], embedded: RunningDNS
) -> Iterator[tuple[PowerDNS, RunningDNS]]:
    lancert("dns", "powerdns", "--out", str(config_dir), *source, "--zone", ZONE, "--port", str(port),
            "--caa-issuer", CA)
    assert (config_dir / "pdns.conf").stat().st_mode & 0o777 == 0o600
    powerdns = PowerDNS(config_dir, port)
    try:
        yield powerdns, embedded
    finally:
        powerdns.stop()


def test_the_printed_command_keeps_powerdns_control_socket_in_the_config_dir(
    servers: tuple[PowerDNS, RunningDNS]
) -> None:
    """Run as ``pdns.conf`` says (no ``--socket-dir`` added), PowerDNS keeps its control socket beside
    its configuration, where ``pdns_control --config-dir`` finds it (issue 24 point 10: before, following
    the printed command wrote into /run/pdns, or failed where that directory does not exist)."""
    config_dir = servers[0].config_dir
    assert printed_command(config_dir) == ["pdns_server", f"--config-dir={config_dir.resolve()}"]
    assert stat.S_ISSOCK((config_dir / "pdns.controlsocket").stat().st_mode)
    control = subprocess.run(["pdns_control", f"--config-dir={config_dir}", "ping"], capture_output=True,
                             text=True, timeout=30, check=False)
    assert (control.returncode, control.stdout.strip()) == (0, "PONG"), control.stderr


def _summary(reply: dns.message.Message) -> tuple[object, ...]:
    """What a resolver takes from an answer; PowerDNS's additional section (glue) is left out."""
    def texts(section: list[object]) -> list[str]:
        return sorted(line.lower() for rrset in section for line in rrset.to_text().splitlines())  # type: ignore[attr-defined]

    return (dns.rcode.to_text(reply.rcode()), bool(reply.flags & dns.flags.AA), texts(reply.answer),
            texts(reply.authority))


BOX = "k7m2q9xd4a1b"
# One name of each class the zone knows (issue 19 point 3), with the types a resolver or a CA asks.
QUERIES = [
    # valid IPv4 dashed labels, any letter case; the other type of an address name (NODATA)
    (f"192-168-1-25.{BOX}.{ZONE}", "A"),
    (f"192-168-1-25.{BOX}.{ZONE}", "AAAA"),
    (f"10-0-0-1.ABC.{ZONE.upper()}", "A"),
    (f"0-0-0-0.a.{ZONE}", "A"),
    (f"255-255-255-255.{BOX}.{ZONE}", "A"),
    # invalid IPv4 dashed labels: out of range, leading zero, empty octet, five groups
    (f"300-1-1-1.{BOX}.{ZONE}", "A"),
    (f"01-2-3-4.{BOX}.{ZONE}", "A"),
    (f"1-2-3-04.{BOX}.{ZONE}", "A"),
    (f"1--2-3.{BOX}.{ZONE}", "A"),
    (f"1-2-3-4-5.{BOX}.{ZONE}", "AAAA"),
    # valid IPv6 dashed labels, compressed or not, upper case; the other type (NODATA)
    (f"fd00--1.{BOX}.{ZONE}", "AAAA"),
    (f"FD00--1.{BOX.upper()}.{ZONE}", "AAAA"),
    (f"fd00--1.{BOX}.{ZONE}", "A"),
    (f"2001-db8-0-0-0-0-0-42.abc.{ZONE}", "AAAA"),
    (f"1-2-3-4-5-6-7-8.abc.{ZONE}", "AAAA"),
    (f"--.abc.{ZONE}", "AAAA"),
    (f"fe80--1-2.abc.{ZONE}", "ANY"),
    # invalid IPv6 dashed labels: too few dashes, two '::', a group of 5 digits, 9 groups, not hex
    (f"1-2-3.{BOX}.{ZONE}", "AAAA"),
    (f"fd00--1--2.{BOX}.{ZONE}", "AAAA"),
    (f"fd000--1.{BOX}.{ZONE}", "AAAA"),
    (f"1-2-3-4-5-6-7-8-9.{BOX}.{ZONE}", "AAAA"),
    (f"1-2-3-4-5-6-7-8--.{BOX}.{ZONE}", "AAAA"),
    (f"fd00--g.{BOX}.{ZONE}", "AAAA"),
    (f"cafe.{BOX}.{ZONE}", "AAAA"),
    # the label alone (an empty non-terminal), a bad label, ns.<zone>
    (f"{BOX}.{ZONE}", "A"),
    (f"{BOX}.{ZONE}", "CAA"),
    (f"a.{ZONE}", "TXT"),
    (f"-abc.{ZONE}", "A"),
    (f"under_score.{ZONE}", "A"),
    (f"10-0-0-1.bad_label.{ZONE}", "A"),
    (f"ns.{ZONE}", "A"),
    (f"ns.{ZONE}", "AAAA"),
    # other names under the zone
    (f"www.abc.{ZONE}", "A"),
    (f"www.x.y.{ZONE}", "A"),
    (f"*.abc.{ZONE}", "A"),
    # _acme-challenge names without records: of a box, of one host of a box, of a bad label
    (f"_acme-challenge.nothing.{ZONE}", "TXT"),
    (f"_acme-challenge.web.{BOX}.{ZONE}", "TXT"),
    (f"_acme-challenge.{ZONE}", "TXT"),
    # the apex
    (ZONE, "SOA"),
    (ZONE, "NS"),
    (ZONE, "CAA"),
    (ZONE, "A"),
    (ZONE, "TXT"),
    # outside the zone
    ("example.com", "A"),
    (f"x{ZONE}", "A"),
    (ZONE.split(".", 1)[1], "SOA"),
]


@pytest.mark.parametrize(("name", "rdtype"), QUERIES)
def test_powerdns_answers_as_the_embedded_server(
    servers: tuple[PowerDNS, RunningDNS], name: str, rdtype: str
) -> None:
    powerdns, embedded = servers
    # ANY over UDP: PowerDNS answers TC=1 (any-to-tcp), the embedded server one RRset; over TCP, the same.
    transport = "tcp" if rdtype == "ANY" else "udp"
    assert _summary(ask(powerdns.port, name, rdtype, transport)) == _summary(
        ask(embedded.port, name, rdtype, transport))


def test_txt_added_through_the_service_is_served_by_powerdns_within_the_bound(
    servers: tuple[PowerDNS, RunningDNS],
) -> None:
    powerdns, embedded = servers
    name = f"_acme-challenge.k7m2q9xd4a1b.{ZONE}"
    assert ask(powerdns.port, name, "TXT").rcode() == dns.rcode.NXDOMAIN  # now in PowerDNS's caches
    added = time.monotonic()
    add_txt_record(embedded.database, name, "challenge-digest")
    wait_until_visible(added)
    assert time.monotonic() - added < 2.5  # the documented bound: 2 s
    for port in (powerdns.port, embedded.port):
        reply = ask(port, name, "TXT")
        assert [r.to_text() for r in reply.answer[0]] == ['"challenge-digest"']
    assert _summary(ask(powerdns.port, name, "TXT")) == _summary(ask(embedded.port, name, "TXT"))
    remove_txt_records(embedded.database, name)
    wait_until_visible()
    assert ask(powerdns.port, name, "TXT").rcode() == dns.rcode.NXDOMAIN


# The specification's bound (README, docs/dns.md): a TXT record committed at time t is in every answer
# given after t + 2 s, by every server of the zone.
TXT_BOUND = 2.0


def test_a_challenge_answered_nxdomain_just_before_its_txt_is_written_is_served_within_2_s(
    servers: tuple[PowerDNS, RunningDNS],
) -> None:
    """A CA (or a resolver) asks a challenge name before its TXT exists, so PowerDNS's answer "no such
    name" is computed, maybe cached; then the service commits the TXT. Every answer given 2 s after the
    commit must carry it, wherever in the life of that first answer the commit falls: each trial asks
    the name at 0.05 s into a wall-clock second (PowerDNS counts cache lifetimes in whole seconds of
    that clock), commits the TXT at a different point of the next 2 s, and polls until it is served.
    Just before each commit, other challenge names are asked from several source ports (a CA validating
    other boxes meanwhile, reaching every receiver thread), so each thread has just re-read the table.
    With PowerDNS's packet cache at 1 s (the configuration before this test), the negative answer was
    kept to the end of the next second, answered once more from a snapshot read just before the commit
    and cached again: served 2.06-2.37 s after the commit for the last three offsets."""
    powerdns, embedded = servers
    offsets = [0.1, 0.45, 0.8, 1.15, 1.5, 1.65, 1.8, 1.95]  # the commit, seconds after that second began
    late: list[tuple[float, float]] = []
    for trial, offset in enumerate(offsets):
        name = f"_acme-challenge.fresh{trial}.{BOX}.{ZONE}"
        time.sleep(1.05 - time.time() % 1)  # 0.05 s into the next wall-clock second
        second = int(time.time())
        assert ask(powerdns.port, name, "TXT").rcode() == dns.rcode.NXDOMAIN
        time.sleep(max(0.0, second + offset - 0.08 - time.time()))
        for other in range(8):  # fresh names, fresh sockets: computed by whichever thread gets them
            ask(powerdns.port, f"_acme-challenge.other{trial}x{other}.{BOX}.{ZONE}", "TXT")
        time.sleep(max(0.0, second + offset - time.time()))
        add_txt_record(embedded.database, name, f"digest-{trial}")
        committed = time.monotonic()  # the commit is done: the bound runs from before this
        try:
            while True:
                reply = ask(powerdns.port, name, "TXT")
                waited = time.monotonic() - committed
                if answers(reply) == [f'"digest-{trial}"']:
                    break
                if waited > TXT_BOUND + 3:
                    raise AssertionError(f"{name}: not served within {waited:.2f} s of its commit")
                time.sleep(0.01)
        finally:
            remove_txt_records(embedded.database, name)
        if waited > TXT_BOUND:
            late.append((offset, round(waited, 3)))
    assert not late, f"(commit offset, first served after) beyond {TXT_BOUND} s: {late}"


def test_challenges_of_one_host_answer_as_the_embedded_server(servers: tuple[PowerDNS, RunningDNS]) -> None:
    """DNS-01 for ``web.<label>.<zone>`` and for an address name: the TXT, the host name as an empty
    non-terminal while its challenge is published, the address name still its address."""
    powerdns, embedded = servers
    published = [f"_acme-challenge.web.{BOX}.{ZONE}", f"_acme-challenge.10-0-0-9.{BOX}.{ZONE}"]
    for name in published:
        add_txt_record(embedded.database, name, "digest-" + name.split(".")[1])
    wait_until_visible()
    try:
        for name, rdtype in [(published[0], "TXT"), (published[1], "TXT"), (published[0], "A"),
                             (f"web.{BOX}.{ZONE}", "A"), (f"web.{BOX}.{ZONE}", "TXT"),
                             (f"10-0-0-9.{BOX}.{ZONE}", "A"), (f"other.{BOX}.{ZONE}", "A")]:
            reply = ask(powerdns.port, name, rdtype)
            assert _summary(reply) == _summary(ask(embedded.port, name, rdtype)), name
        assert answers(ask(powerdns.port, published[0], "TXT")) == ['"digest-web"']
    finally:
        for name in published:
            remove_txt_records(embedded.database, name)
        wait_until_visible()
    assert ask(powerdns.port, f"web.{BOX}.{ZONE}", "A").rcode() == dns.rcode.NXDOMAIN


def _pdns_children(guardian: int) -> list[int]:
    return [int(c) for t in Path(f"/proc/{guardian}/task").iterdir()
            for c in (t / "children").read_text().split()]


def test_a_flood_of_uncached_ipv6_names_does_not_take_powerdns_down(
    servers: tuple[PowerDNS, RunningDNS],
) -> None:
    """10 s of made-up IPv6-style names (never twice the same: no cache helps), as fast as one loopback
    sender goes, bounded at 300,000 datagrams; the issue's 4 s at 4,500/s made pdns_server exit for good.
    Afterwards the same server process answers a normal query at once."""
    powerdns, _ = servers
    before = _pdns_children(powerdns.proc.pid)
    rng = random.Random(19)
    tail = b"".join(bytes([len(label)]) + label.encode() for label in f"{BOX}.{ZONE}".split("."))
    packets = []
    for index in range(300_000):  # made before the clock starts: the sender only sends
        groups = [f"{rng.getrandbits(16):x}" for _ in range(rng.randint(3, 8))]
        label = "-".join(groups).replace("-", "--", index % 2).encode()  # half compressed, some invalid
        packets.append(struct.pack("!6H", index & 0xFFFF, 0, 1, 0, 0, 0) + bytes([len(label)]) + label
                       + tail + b"\x00\x00\x1c\x00\x01")
    sent = 0
    deadline = time.monotonic() + 10
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        target = ("127.0.0.1", powerdns.port)
        while time.monotonic() < deadline and sent < len(packets):
            try:
                sock.sendto(packets[sent], target)
                sent += 1
            except BlockingIOError:
                time.sleep(0.0005)
            if sent % 64 == 0:
                with contextlib.suppress(BlockingIOError, ConnectionRefusedError):
                    while sock.recv(4096):
                        pass
    assert sent > 45_000  # the flood: 4 s at 4,500/s
    # The backlogs drain, with a resolver's retries (a query that arrived on a full queue was shed). Each
    # receiver thread has its own queue and the kernel picks one per source port: in a full CI run on 2
    # cores beside a second test process, one name was answered and the next, on the other thread, not
    # within 5 s. So each of two new names gets up to 20 s of 2 s tries; a pdns_server that exited never
    # answers, however long the wait.
    for host in ("fd00--1", "fd00--2"):
        for _ in range(10):
            with contextlib.suppress(dns.exception.Timeout):
                query = dns.message.make_query(f"{host}.{BOX}.{ZONE}", "AAAA")
                answer = dns.query.udp(query, "127.0.0.1", port=powerdns.port, timeout=2)
                assert answers(answer) == [host.replace("--", "::")]
                break
        else:
            raise AssertionError(f"{host}: no answer within 20 s of the flood's end")
    assert powerdns.proc.poll() is None and _pdns_children(powerdns.proc.pid) == before  # never restarted


def test_the_guardian_restarts_a_killed_pdns_server(servers: tuple[PowerDNS, RunningDNS]) -> None:
    powerdns, _ = servers
    (child,) = _pdns_children(powerdns.proc.pid)
    os.kill(child, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while True:
        with contextlib.suppress(dns.exception.Timeout, OSError):
            if answers(ask(powerdns.port, f"10-0-0-1.{BOX}.{ZONE}")) == ["10.0.0.1"]:
                break
        assert time.monotonic() < deadline, "no answer within 20 s of killing pdns_server"
        time.sleep(0.2)
    assert _pdns_children(powerdns.proc.pid) != [child]


def test_two_powerdns_on_one_postgresql_serve_a_new_txt_within_2_s(
    tmp_path: Path,
) -> None:
    """Two PowerDNS nodes configured by ``lancert dns powerdns`` over one PostgreSQL: a TXT record the
    service writes is in both nodes' answers within 2 s (the documented bound), each node having just
    answered NXDOMAIN for the name (so it sat in their caches)."""
    require(PG_BIN is not None, MISSING)
    name = f"_acme-challenge.{BOX}.{ZONE}"
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(running_postgres())
        database = Database(url)
        database.migrate()
        stack.callback(database.dispose)
        nodes = []
        for node in ("a", "b"):
            port = free_port()
            lancert("dns", "powerdns", "--out", str(tmp_path / node), "--db", url, "--zone", ZONE,
                    "--port", str(port))
            nodes.append(PowerDNS(tmp_path / node, port))
            stack.callback(nodes[-1].stop)
        for node in nodes:
            assert ask(node.port, name, "TXT").rcode() == dns.rcode.NXDOMAIN
        value = "written-by-the-service"
        add_txt_record(database, name, value)
        added = time.monotonic()
        seen: dict[int, float] = {}
        while len(seen) < 2 and time.monotonic() - added < 5:
            for node in nodes:
                if node.port not in seen and answers(ask(node.port, name, "TXT")) == [f'"{value}"']:
                    seen[node.port] = time.monotonic() - added
            time.sleep(0.02)
        assert sorted(seen) == sorted(node.port for node in nodes), f"served by {seen} only"
        assert max(seen.values()) <= 2.0, seen
def test_the_challenge_of_a_host_of_a_box_subdomain_is_served_by_powerdns(
    servers: tuple[PowerDNS, RunningDNS],
) -> None:
    """_acme-challenge.web.<label>.<zone>: the DNS-01 name of a host an ACME client ordered through the
    service from an upstream CA; PowerDNS serves it as the embedded server does."""
    powerdns, embedded = servers
    name = f"_acme-challenge.web.k7m2q9xd4a1b.{ZONE}"
    add_txt_record(embedded.database, name, "host-digest")
    wait_until_visible()
    try:
        for port in (powerdns.port, embedded.port):
            reply = ask(port, name, "TXT")
            assert [r.to_text() for r in reply.answer[0]] == ['"host-digest"']
        assert _summary(ask(powerdns.port, name, "TXT")) == _summary(ask(embedded.port, name, "TXT"))
    finally:
        remove_txt_records(embedded.database, name)
