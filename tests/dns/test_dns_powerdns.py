"""``lancert dns powerdns`` drives the real Debian ``pdns_server`` (gsqlite3 over lancert's database,
LUA records) on loopback: for a table of queries it answers as the embedded server does, and a TXT record
added through the service is served within the documented delay."""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import dns.flags
import dns.message
import dns.rcode
import pytest
from dns_testlib import CA, ZONE, PowerDNS, RunningDNS, ask, start_dns

from capabilities import require, required_for_module
from lancert.loopback import free_port
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


def _summary(reply: dns.message.Message) -> tuple[object, ...]:
    """What a resolver takes from an answer; PowerDNS's additional section (glue) is left out."""
    def texts(section: list[object]) -> list[str]:
        return sorted(line.lower() for rrset in section for line in rrset.to_text().splitlines())  # type: ignore[attr-defined]

    return (dns.rcode.to_text(reply.rcode()), bool(reply.flags & dns.flags.AA), texts(reply.answer),
            texts(reply.authority))


QUERIES = [
    (f"192-168-1-25.k7m2q9xd4a1b.{ZONE}", "A"),
    (f"192-168-1-25.k7m2q9xd4a1b.{ZONE}", "AAAA"),
    (f"10-0-0-1.ABC.{ZONE.upper()}", "A"),
    (f"fd00--1.k7m2q9xd4a1b.{ZONE}", "AAAA"),
    (f"fd00--1.k7m2q9xd4a1b.{ZONE}", "A"),
    (f"2001-db8-0-0-0-0-0-42.abc.{ZONE}", "AAAA"),
    (f"300-1-1-1.k7m2q9xd4a1b.{ZONE}", "A"),
    (f"01-2-3-4.k7m2q9xd4a1b.{ZONE}", "A"),
    (f"cafe.k7m2q9xd4a1b.{ZONE}", "AAAA"),
    (f"k7m2q9xd4a1b.{ZONE}", "A"),
    (f"k7m2q9xd4a1b.{ZONE}", "CAA"),
    (f"www.abc.{ZONE}", "A"),
    (f"www.x.y.{ZONE}", "A"),
    (f"under_score.{ZONE}", "A"),
    (f"_acme-challenge.nothing.{ZONE}", "TXT"),
    (ZONE, "SOA"),
    (ZONE, "NS"),
    (ZONE, "CAA"),
    (ZONE, "A"),
    (f"ns.{ZONE}", "A"),
    ("example.com", "A"),
    (f"x{ZONE}", "A"),
]


@pytest.mark.parametrize(("name", "rdtype"), QUERIES)
def test_powerdns_answers_as_the_embedded_server(
    servers: tuple[PowerDNS, RunningDNS], name: str, rdtype: str
) -> None:
    powerdns, embedded = servers
    assert _summary(ask(powerdns.port, name, rdtype)) == _summary(ask(embedded.port, name, rdtype))


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
