"""The embedded server's shortcut for address queries (``A <a-b-c-d>.<label>.<zone>``, read and written
without parsing the whole query) answers exactly what the general path answers, byte for byte, with the
same rate-limit key and cacheability: for every name class near it, letter case, EDNS variants, header
bits, challenges published below the name (fresh and stale snapshots), a zone whose names approach the
255-octet limit, and 20,000 random mutations of such queries. In process: no server is started."""

from __future__ import annotations

import random
import struct
import time

import dns.flags
import dns.message
import dns.rdatatype
import dns.rrset
import pytest
from dns_testlib import ZONE

from lancert.dns import ZoneAnswers, ZoneSpec

BOX = "k7m2q9xd4a1b"
LONG_ZONE = ".".join(["z" * 60] * 3) + ".example.net"  # 195 octets: a long first label passes 255

FIRST_LABELS = [
    "10-1-2-3", "0-0-0-0", "255-255-255-255", "192-168-001-1", "01-2-3-4", "300-1-1-1", "1-2-3",
    "1-2-3-4-5", "1--2-3", "-1-2-3", "1-2-3-", "a-b-c-d", "1-2-3-4a", "fd00--1", "ns", "www",
    "_acme-challenge", "１-2-3-4", "10-0-0-9", "9" * 20, "1-2-3-" + "4" * 57,
]
BOX_LABELS = [BOX, BOX.upper(), "a", "-abc", "abc-", "under_score", "x" * 63, "ns", "_acme-challenge"]


def _zone(name: str = ZONE) -> ZoneAnswers:
    zone = ZoneAnswers(ZoneSpec(name, caa_issuers=("ca.example.org",)))
    zone.set_txt({f"_acme-challenge.10-0-0-9.{BOX}.{name}": ["digest"]}, time.monotonic())
    return zone


def _queries(zone_name: str) -> list[bytes]:
    rng = random.Random(19)
    packets = []
    for first in FIRST_LABELS:
        for box in BOX_LABELS:
            name = f"{first}.{box}.{zone_name}"
            if len(name) > 253:  # more than 255 octets on the wire: dnspython cannot write it (below)
                continue
            for rdtype in ("A", "AAAA", "TXT", "ANY"):
                for edns in (-1, 0, 1):
                    query = dns.message.make_query(name, rdtype, use_edns=edns,
                                                   want_dnssec=rng.random() < 0.5)
                    query.flags = rng.choice([0, dns.flags.RD, dns.flags.CD | dns.flags.RD,
                                              dns.flags.AD, dns.flags.TC | dns.flags.RD])
                    packets.append(query.to_wire())
    # Names with a random letter case, EDNS options (NSID), payloads below 512, extra records.
    base = dns.message.make_query(f"10-1-2-3.{BOX}.{zone_name}", "A", use_edns=0)
    packets.append(_flip_case(base.to_wire(), rng))
    with_option = dns.message.make_query(f"10-1-2-3.{BOX}.{zone_name}", "A", use_edns=0,
                                         options=[dns.edns.GenericOption(dns.edns.NSID, b"")])
    packets.append(with_option.to_wire())
    small = dns.message.make_query(f"10-1-2-3.{BOX}.{zone_name}", "A", use_edns=0, payload=100)
    packets.append(small.to_wire())
    extra = dns.message.make_query(f"10-1-2-3.{BOX}.{zone_name}", "A")
    extra.answer.append(dns.rrset.from_text(f"x.{zone_name}.", 60, "IN", "A", "10.0.0.1"))
    packets.append(extra.to_wire())
    # Names of 254 to 258 octets (the limit is 255), written by hand.
    tail = b"".join(bytes([len(label)]) + label.encode() for label in f"{BOX[:3]}.{zone_name}".split("."))
    for size in range(254, 259):
        first = b"1-2-3-" + b"4" * max(1, size - len(tail) - 2 - 6)
        if len(first) < 64:
            name = bytes([len(first)]) + first + tail + b"\x00"
            packets.append(struct.pack("!6H", 7, 0x0100, 1, 0, 0, 0) + name + b"\x00\x01\x00\x01")
    return packets


def _flip_case(packet: bytes, rng: random.Random) -> bytes:
    return bytes(b ^ 0x20 if 97 <= b <= 122 and rng.random() < 0.5 else b for b in packet)


def _mutations(packets: list[bytes], count: int) -> list[bytes]:
    rng = random.Random(20261202)
    out = []
    for _ in range(count):
        packet = bytearray(rng.choice(packets))
        for _ in range(rng.randint(1, 3)):
            action = rng.random()
            if action < 0.6 and len(packet) > 12:
                packet[rng.randrange(2, len(packet))] = rng.randrange(256)
            elif action < 0.8 and packet:
                del packet[rng.randrange(len(packet)):]
            else:
                packet += bytes(rng.randrange(256) for _ in range(rng.randint(1, 4)))
        out.append(bytes(packet))
    return out


def _compare(zone: ZoneAnswers, packets: list[bytes]) -> int:
    """Asserts that both paths agree on every packet; returns how many the shortcut answered."""
    shortcut = 0
    for packet in packets:
        for udp in (True, False):
            assert zone.answer(packet, udp) == zone.answer_parsed(packet, udp), (packet, udp)
        if len(packet) >= 12 and zone._address_answer(packet, 0, packet[2] << 8 | packet[3]) is not None:
            shortcut += 1
    return shortcut


@pytest.mark.parametrize("zone_name", [ZONE, ZONE.upper(), LONG_ZONE])
def test_the_address_shortcut_answers_as_the_general_path(zone_name: str) -> None:
    zone = _zone(zone_name.lower())
    packets = _queries(zone_name)
    assert _compare(zone, packets) >= 30  # taken (3 addresses x 5 box labels x 2 EDNS), not only declined
    mutated = _mutations(packets, 20_000 if zone_name == ZONE else 2_000)
    _compare(zone, mutated)


def test_the_shortcut_answers_as_the_general_path_with_a_stale_snapshot() -> None:
    """A challenge published below an address name makes its answer follow the TXT snapshot: SERVFAIL
    once the snapshot is stale, by both paths; other address names keep their answer."""
    zone = _zone()
    zone.txt_read_at = time.monotonic() - 60
    packets = [dns.message.make_query(f"{first}.{BOX}.{ZONE}", "A").to_wire()
               for first in ("10-0-0-9", "10-0-0-8")]
    _compare(zone, packets)
    stale = dns.message.from_wire(zone.answer(packets[0])[0])
    assert stale.rcode() == dns.rcode.SERVFAIL
    fresh = dns.message.from_wire(zone.answer(packets[1])[0])
    assert [rr.to_text() for rrset in fresh.answer for rr in rrset] == ["10.0.0.8"]
