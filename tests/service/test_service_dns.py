"""DNS answers of every kind, over UDP and TCP (dnspython), from the DNS inside ``service run`` and
from ``lancert dns run`` on its own."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest
from service_testlib import ZONE, ServiceProcess

from lancert.dns import address_from_label, dashed_address
from lancert.loopback import free_port
from lancert.service.database import Database
from lancert.service.dnsrecords import add_txt_record, wait_until_visible

pytestmark = pytest.mark.slow  # starts a server or subprocess (tests/conftest.py)


def ask(port: int, name: str, rdtype: str, transport: str) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype)
    send = dns.query.udp if transport == "udp" else dns.query.tcp
    return send(query, "127.0.0.1", port=port, timeout=5)


def answers(reply: dns.message.Message) -> list[str]:
    return sorted(rdata.to_text() for rrset in reply.answer for rdata in rrset)


TRANSPORTS = ["udp", "tcp"]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_dashed_ipv4_name_answers_a(service: ServiceProcess, transport: str) -> None:
    reply = ask(service.dns_port, f"192-168-1-25.k7m2q9xd4a1b.{ZONE}", "A", transport)
    assert reply.rcode() == dns.rcode.NOERROR
    assert reply.flags & dns.flags.AA
    assert answers(reply) == ["192.168.1.25"]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_dashed_ipv6_name_answers_aaaa(service: ServiceProcess, transport: str) -> None:
    reply = ask(service.dns_port, f"fd00--1.k7m2q9xd4a1b.{ZONE}", "AAAA", transport)
    assert answers(reply) == ["fd00::1"]
    reply = ask(service.dns_port, f"2001-db8-0-0-0-0-0-42.abc.{ZONE}", "AAAA", transport)
    assert answers(reply) == ["2001:db8::42"]


def test_name_lookup_is_case_insensitive(service: ServiceProcess) -> None:
    assert answers(ask(service.dns_port, f"10-0-0-1.ABC.{ZONE.upper()}", "A", "udp")) == ["10.0.0.1"]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_ipv4_name_has_no_aaaa(service: ServiceProcess, transport: str) -> None:
    reply = ask(service.dns_port, f"10-0-0-1.abc.{ZONE}", "AAAA", transport)
    assert reply.rcode() == dns.rcode.NOERROR and reply.answer == []
    assert reply.authority[0].rdtype == dns.rdatatype.SOA


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_apex_answers_soa_and_ns(service: ServiceProcess, transport: str) -> None:
    soa = ask(service.dns_port, ZONE, "SOA", transport)
    assert soa.rcode() == dns.rcode.NOERROR and soa.flags & dns.flags.AA
    assert answers(soa)[0].startswith(f"ns.{ZONE}. hostmaster.{ZONE}.")
    assert answers(ask(service.dns_port, ZONE, "NS", transport)) == [f"ns.{ZONE}."]
    assert answers(ask(service.dns_port, f"ns.{ZONE}", "A", transport)) == ["127.0.0.1"]


@pytest.mark.parametrize(
    "name",
    [
        f"under_score.{ZONE}",
        f"www.x.y.{ZONE}",
        f"300-1-1-1.abc.{ZONE}",
        f"1-2-3.abc.{ZONE}",
        f"a.1-2-3-4.abc.{ZONE}",
        f"_acme-challenge.nothing.{ZONE}",
    ],
)
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_unknown_names_under_the_zone_are_nxdomain(
    service: ServiceProcess, name: str, transport: str
) -> None:
    reply = ask(service.dns_port, name, "A" if "acme" not in name else "TXT", transport)
    assert reply.rcode() == dns.rcode.NXDOMAIN
    assert reply.authority[0].rdtype == dns.rdatatype.SOA


def test_box_label_alone_is_an_empty_non_terminal(service: ServiceProcess) -> None:
    """``<label>.<zone>`` has names below it, so it exists without records (RFC 8020: NXDOMAIN would tell
    resolvers that nothing below it exists either)."""
    reply = ask(service.dns_port, f"k7m2q9xd4a1b.{ZONE}", "A", "udp")
    assert reply.rcode() == dns.rcode.NOERROR and reply.answer == []


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_names_outside_the_zone_are_refused(service: ServiceProcess, transport: str) -> None:
    for name in ("example.com", f"x{ZONE}", "lancert.test"):
        reply = ask(service.dns_port, name, "A", transport)
        assert reply.rcode() == dns.rcode.REFUSED
        assert reply.answer == []


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_acme_challenge_txt_comes_from_the_service_database(service: ServiceProcess, transport: str) -> None:
    name = f"_acme-challenge.txt{transport}.{ZONE}"
    database = Database(f"sqlite:///{service.data_dir / 'service.db'}")
    add_txt_record(database, name, "token-one")
    add_txt_record(database, name, "token-two")
    database.dispose()
    wait_until_visible()
    reply = ask(service.dns_port, name, "TXT", transport)
    assert reply.rcode() == dns.rcode.NOERROR
    assert answers(reply) == ['"token-one"', '"token-two"']


def test_dashed_names_round_trip() -> None:
    for ip in ("192.168.1.25", "fd00::1", "2001:db8::42", "::1"):
        assert str(address_from_label(dashed_address(ip))) == ip
    assert address_from_label("01-2-3-4") is None and address_from_label("k7m2q9xd4a1b") is None


@pytest.fixture(scope="module")
def standalone_dns() -> Iterator[int]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "lancert", "dns", "run", "--zone", "shop.example.net", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    assert "serving shop.example.net" in line, line + (
        process.stderr.read() if process.poll() is not None else ""
    )
    yield port
    process.terminate()
    process.wait(10)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_standalone_dns_server_answers_its_zone(standalone_dns: int, transport: str) -> None:
    assert answers(ask(standalone_dns, "172-16-0-9.box.shop.example.net", "A", transport)) == ["172.16.0.9"]
    assert ask(standalone_dns, f"1-2-3-4.box.{ZONE}", "A", transport).rcode() == dns.rcode.REFUSED


def test_the_default_dns_response_rate_limit_is_on(service: ServiceProcess) -> None:
    """The service's DNS is an amplifier for spoofed sources unless identical answers are limited by
    default: 50 per second to one /24 (docs/dns.md, ``dns_rate_limit = 50``; 0 would be off). The fixture's
    service sets no DNS limit. 300 identical queries from one socket within a fraction of a second get at
    most 50 full answers per second window (two windows if the burst straddles a second), the rest dropped
    or truncated (TC=1, the slip that sends a real resolver to TCP)."""
    import socket

    wire = dns.message.make_query(f"192-168-1-25.k7m2q9xd4a1b.{ZONE}", "A").to_wire()
    full = truncated = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect(("127.0.0.1", service.dns_port))  # one source port: one worker counts them all
        for _ in range(300):
            sock.send(wire)
        sock.settimeout(1.0)
        try:
            while True:
                reply = dns.message.from_wire(sock.recv(4096))
                if reply.flags & dns.flags.TC:
                    truncated += 1
                else:
                    full += 1
        except TimeoutError:
            pass
    assert 1 <= full <= 2 * 50, (full, truncated)
    assert truncated >= 1, (full, truncated)  # slip: some answers over the limit go out truncated
