"""What resolvers and CAs rely on, checked with dnspython against the embedded server (two workers):
AA, NXDOMAIN vs NODATA with the SOA, case, EDNS(0), truncation and TCP, REFUSED, no recursion, no
amplification, CAA, and TXT records from the database within the documented delay."""

from __future__ import annotations

import functools
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest
from dns_testlib import (
    CA,
    ZONE,
    RunningDNS,
    answers,
    ask,
    fixed_txt,
    udp_exchange,
    wire_query,
)

from lancert.dns import DNSService, RateLimit, ServerSpec, ZoneSpec
from lancert.service.dnsrecords import add_txt_record, remove_txt_records, wait_until_visible

pytestmark = pytest.mark.slow  # starts a server or subprocess (tests/conftest.py)

TRANSPORTS = ["udp", "tcp"]
NAME = f"10-1-2-3.k7m2q9xd4a1b.{ZONE}"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_answers_are_authoritative_and_never_recursive(zone_dns: RunningDNS, transport: str) -> None:
    reply = ask(zone_dns.port, NAME, "A", transport)
    assert answers(reply) == ["10.1.2.3"]
    assert reply.flags & dns.flags.AA
    assert not reply.flags & dns.flags.RA
    assert reply.flags & dns.flags.RD  # copied from the query (dnspython sets it)
    assert reply.answer[0].ttl == 300


def test_ipv6_names_answer_aaaa(zone_dns: RunningDNS) -> None:
    assert answers(ask(zone_dns.port, f"fd00--1.abc.{ZONE}", "AAAA")) == ["fd00::1"]
    assert answers(ask(zone_dns.port, f"2001-db8-0-0-0-0-0-42.abc.{ZONE}", "AAAA")) == ["2001:db8::42"]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_nodata_has_noerror_and_the_soa(zone_dns: RunningDNS, transport: str) -> None:
    for name, rdtype in ((NAME, "AAAA"), (NAME, "TXT"), (f"k7m2q9xd4a1b.{ZONE}", "A"), (ZONE, "A")):
        reply = ask(zone_dns.port, name, rdtype, transport)
        assert reply.rcode() == dns.rcode.NOERROR, (name, rdtype)
        assert reply.answer == [] and reply.flags & dns.flags.AA
        assert [rrset.rdtype for rrset in reply.authority] == [dns.rdatatype.SOA]
        assert reply.authority[0].name.to_text() == f"{ZONE}."
        assert reply.authority[0].ttl == 60


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_nxdomain_has_the_soa(zone_dns: RunningDNS, transport: str) -> None:
    for name in (f"www.x.y.{ZONE}", f"a.b.c.{ZONE}", f"-bad-.{ZONE}", f"300-1-1-1.abc.{ZONE}",
                 f"1-2-3.abc.{ZONE}",
                 f"_acme-challenge.none.{ZONE}", f"under_score.{ZONE}"):
        reply = ask(zone_dns.port, name, "A", transport)
        assert reply.rcode() == dns.rcode.NXDOMAIN, name
        assert reply.flags & dns.flags.AA
        assert [rrset.rdtype for rrset in reply.authority] == [dns.rdatatype.SOA]
        assert reply.authority[0].to_text().endswith(
            f"IN SOA ns.{ZONE}. hostmaster.{ZONE}. 1 3600 600 86400 60"
        )


def test_matching_ignores_case_and_keeps_the_askers_case(zone_dns: RunningDNS) -> None:
    """Resolvers randomise the case of their questions (0x20) and drop answers that do not repeat it."""
    mixed = "10-1-2-3.K7m2Q9xD4a1B.sHoP.ExAmPlE.NeT."
    reply = ask(zone_dns.port, mixed, "A")
    assert answers(reply) == ["10.1.2.3"]
    assert reply.question[0].name.to_text() == mixed
    assert reply.answer[0].name.to_text() == mixed
    nx = ask(zone_dns.port, f"A.B.C.{ZONE.upper()}", "A")
    assert nx.rcode() == dns.rcode.NXDOMAIN and nx.authority[0].name.to_text() == f"{ZONE.upper()}."


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_apex_has_soa_ns_and_caa(zone_dns: RunningDNS, transport: str) -> None:
    soa = ask(zone_dns.port, ZONE, "SOA", transport)
    assert answers(soa) == [f"ns.{ZONE}. hostmaster.{ZONE}. 1 3600 600 86400 60"]
    assert answers(ask(zone_dns.port, ZONE, "NS", transport)) == [f"ns.{ZONE}."]
    assert answers(ask(zone_dns.port, f"ns.{ZONE}", "A", transport)) == ["127.0.0.1"]
    assert answers(ask(zone_dns.port, ZONE, "CAA", transport)) == [f'0 issue "{CA}"']
    # CAs climb from the certificate's names (RFC 8659 §3): below the apex there is no CAA of its own.
    below = ask(zone_dns.port, f"k7m2q9xd4a1b.{ZONE}", "CAA", transport)
    assert below.rcode() == dns.rcode.NOERROR and below.answer == []


def test_no_caa_record_without_issuers(tmp_path: Path) -> None:
    server = DNSService(ServerSpec(ZoneSpec(ZONE)), 0, workers=1)
    server.start()
    try:
        reply = ask(server.port, ZONE, "CAA")
        assert reply.rcode() == dns.rcode.NOERROR and reply.answer == []
    finally:
        server.stop()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_other_zones_are_refused(zone_dns: RunningDNS, transport: str) -> None:
    for name in ("example.com", f"x{ZONE}", "example.net", "."):
        reply = ask(zone_dns.port, name, "A", transport)
        assert reply.rcode() == dns.rcode.REFUSED, name
        assert reply.answer == [] and reply.authority == []
        assert not reply.flags & dns.flags.AA and not reply.flags & dns.flags.RA


def test_edns_opt_is_echoed_and_absent_when_not_asked(zone_dns: RunningDNS) -> None:
    with_edns = ask(zone_dns.port, NAME, "A", use_edns=0, payload=4096, want_dnssec=True)
    assert with_edns.edns == 0 and with_edns.payload == 1232  # what we accept, not what was offered
    assert with_edns.ednsflags & dns.flags.DO  # DO copied (RFC 3225)
    without = ask(zone_dns.port, NAME, "A", use_edns=False)
    assert without.edns == -1 and answers(without) == ["10.1.2.3"]


def test_unknown_edns_version_is_badvers(zone_dns: RunningDNS) -> None:
    reply = ask(zone_dns.port, NAME, "A", use_edns=1)
    assert reply.rcode() == dns.rcode.BADVERS and reply.answer == []
    assert reply.edns == 0


@pytest.fixture(scope="module")
def big_txt(zone_dns: RunningDNS) -> Iterator[str]:
    """Four 150-character values: about 700 bytes of answer, between 512 and 1232."""
    name = f"_acme-challenge.bigtxt.{ZONE}"
    for i in range(4):
        add_txt_record(zone_dns.database, name, f"{i}" * 150)
    wait_until_visible()
    yield name
    remove_txt_records(zone_dns.database, name)


def test_edns_buffer_size_is_honoured(zone_dns: RunningDNS, big_txt: str) -> None:
    fits = wire_query(big_txt, "TXT", use_edns=0, payload=1232)
    reply = dns.message.from_wire(udp_exchange(zone_dns.port, fits) or b"")
    assert not reply.flags & dns.flags.TC and len(answers(reply)) == 4
    for small in (wire_query(big_txt, "TXT", use_edns=0, payload=512), wire_query(big_txt, "TXT")):
        raw = udp_exchange(zone_dns.port, small)
        assert raw is not None and len(raw) <= 512
        truncated = dns.message.from_wire(raw)
        assert truncated.flags & dns.flags.TC and truncated.answer == []


def test_truncated_answer_is_whole_over_tcp(zone_dns: RunningDNS) -> None:
    name = f"_acme-challenge.hugetxt.{ZONE}"
    for i in range(12):  # about 2,300 bytes: over any UDP limit the server accepts
        add_txt_record(zone_dns.database, name, chr(ord("a") + i) * 180)
    wait_until_visible()
    try:
        udp = ask(zone_dns.port, name, "TXT", "udp", use_edns=0, payload=4096)
        assert udp.flags & dns.flags.TC and udp.answer == []
        tcp = ask(zone_dns.port, name, "TXT", "tcp", use_edns=0, payload=4096)
        assert not tcp.flags & dns.flags.TC and len(answers(tcp)) == 12
    finally:
        remove_txt_records(zone_dns.database, name)


def test_no_amplification(zone_dns: RunningDNS) -> None:
    """No UDP answer more than 4 times its query (public amplifiers reach 30-50x), ANY never expanded."""
    for name, rdtype in ((NAME, "A"), (ZONE, "ANY"), (ZONE, "SOA"), (f"nx.{ZONE}", "A"), (NAME, "ANY"),
                         (ZONE, "NS"), (ZONE, "CAA"), ("example.com", "ANY")):
        for use_edns in (False, 0):
            query = wire_query(name, rdtype, use_edns=use_edns)
            raw = udp_exchange(zone_dns.port, query)
            assert raw is not None and len(raw) <= 4 * len(query), (name, rdtype, len(raw), len(query))
    apex_any = ask(zone_dns.port, ZONE, "ANY")
    assert len(apex_any.answer) == 1 and apex_any.answer[0].rdtype == dns.rdatatype.SOA


def test_txt_added_through_the_service_is_served_by_every_worker_within_the_bound(
    zone_dns: RunningDNS,
) -> None:
    name = f"_acme-challenge.fresh.{ZONE}"
    assert ask(zone_dns.port, name, "TXT").rcode() == dns.rcode.NXDOMAIN
    added = time.monotonic()
    add_txt_record(zone_dns.database, name, "token-value")
    wait_until_visible(added)
    assert time.monotonic() - added <= 2.5  # the documented bound: 2 s
    # 40 source ports: the kernel spreads them over both workers (all on one: odds 2^-39)
    for _ in range(40):
        assert answers(ask(zone_dns.port, name, "TXT")) == ['"token-value"']
    remove_txt_records(zone_dns.database, name)
    wait_until_visible()
    for _ in range(40):
        assert ask(zone_dns.port, name, "TXT").rcode() == dns.rcode.NXDOMAIN


def test_the_challenge_of_a_host_of_a_box_subdomain_is_served(zone_dns: RunningDNS) -> None:
    """An ACME client of the service may order web.<label>.<zone> through it from a public CA, which then
    asks for _acme-challenge.web.<label>.<zone> (RFC 8555 8.4): that TXT is served as the wildcard's is,
    and web.<label>.<zone> exists (NODATA, not NXDOMAIN: RFC 8020) while a name lies below it."""
    host = f"web.k7m2q9xd4a1b.{ZONE}"
    name = f"_acme-challenge.{host}"
    assert ask(zone_dns.port, name, "TXT").rcode() == dns.rcode.NXDOMAIN
    assert ask(zone_dns.port, host, "A").rcode() == dns.rcode.NXDOMAIN
    add_txt_record(zone_dns.database, name, "host-token")
    wait_until_visible()
    try:
        for _ in range(20):  # both workers
            assert answers(ask(zone_dns.port, name, "TXT")) == ['"host-token"']
            empty = ask(zone_dns.port, host, "A")
            assert empty.rcode() == dns.rcode.NOERROR and empty.answer == []
    finally:
        remove_txt_records(zone_dns.database, name)
    wait_until_visible()
    assert ask(zone_dns.port, name, "TXT").rcode() == dns.rcode.NXDOMAIN
    assert ask(zone_dns.port, host, "A").rcode() == dns.rcode.NXDOMAIN
    # Deeper names stay outside the zone's data.
    assert ask(zone_dns.port, f"_acme-challenge.a.{host}", "TXT").rcode() == dns.rcode.NXDOMAIN


def test_txt_from_a_stale_snapshot_is_servfail_not_old_data(tmp_path: Path) -> None:
    """If the database cannot be read, TXT answers stop after the bound rather than serve old values
    (a CA would otherwise validate a challenge already withdrawn, or the issuer's wait would lie)."""
    name = f"_acme-challenge.box.{ZONE}"
    absent = f"_acme-challenge.other.{ZONE}"  # no record: its NXDOMAIN comes from the snapshot too
    flag = tmp_path / "database-away"
    reader = functools.partial(fixed_txt, {name: ["v1"]}, str(flag))
    server = DNSService(ServerSpec(ZoneSpec(ZONE), txt_source=functools.partial(functools.partial, reader)),
                        0, workers=1)
    server.start()
    try:
        absent = f"_acme-challenge.other.{ZONE}"
        assert answers(ask(server.port, name, "TXT")) == ['"v1"']
        assert ask(server.port, absent, "TXT").rcode() == dns.rcode.NXDOMAIN
        flag.touch()
        deadline = time.monotonic() + 2.0 + 1.0
        while ask(server.port, name, "TXT").rcode() != dns.rcode.SERVFAIL:
            assert time.monotonic() < deadline, "TXT still answered from a snapshot older than 2 s"
            time.sleep(0.1)
        # The same query bytes as before: an answer kept from the fresh snapshot must not be replayed.
        assert ask(server.port, absent, "TXT").rcode() == dns.rcode.SERVFAIL
        assert answers(ask(server.port, NAME, "A")) == ["10.1.2.3"]  # the rest of the zone is unaffected
        flag.unlink()
        time.sleep(1.0)
        assert answers(ask(server.port, name, "TXT")) == ['"v1"']
    finally:
        server.stop()


def test_rate_limit_per_source_prefix(tmp_path: Path) -> None:
    """Over the limit of identical answers to one /24, one in two goes out truncated (TC=1, so a real
    resolver retries over TCP) and the rest are dropped; another /24 is not affected."""
    server = DNSService(ServerSpec(ZoneSpec(ZONE), rate_limit=RateLimit(responses_per_second=5, slip=2)),
                        0, workers=1)
    server.start()
    try:
        query = wire_query(NAME, "A")
        full = truncated = 0
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            sock.settimeout(0.5)
            for _ in range(30):
                sock.sendto(query, ("127.0.0.1", server.port))
            try:
                while True:
                    reply = dns.message.from_wire(sock.recv(4096))
                    if reply.flags & dns.flags.TC:
                        assert reply.answer == []
                        truncated += 1
                    else:
                        full += 1
            except TimeoutError:
                pass
        assert full <= 5 * 2  # at most two one-second windows in the burst
        assert truncated >= 5 and full + truncated < 30
        other = dns.message.from_wire(udp_exchange(server.port, query, source="127.0.1.1") or b"")
        assert answers(other) == ["10.1.2.3"]
        assert answers(ask(server.port, NAME, "A", "tcp")) == ["10.1.2.3"]  # TCP is never limited
    finally:
        server.stop()
