"""Issue 9, DNS part of the fuzzing suite: 10,000 random, truncated and malicious packets (compression
loops, huge counts, bad EDNS, responses, odd opcodes, long names) against ``lancert dns run`` with two
workers leave both workers alive and answering, and nothing but at most a summary line in the log.
Every reply the zone writes to them is a well-formed DNS response with the query's ID."""

from __future__ import annotations

import random
import socket
import struct
import time

import dns.message
import pytest
from dns_testlib import (
    ZONE,
    CliDNS,
    answers,
    ask,
    read_frame,
    rss_kib,
    tcp_frame,
    wire_query,
    worker_pids,
)

from lancert.dns import RateLimit, ZoneAnswers, ZoneSpec
from lancert.dns.ratelimit import ResponseRateLimiter
from lancert.dns.server import Worker

PACKETS = 10_000
SEED = 20261130


def _header(rng: random.Random, qd: int = 1, an: int = 0, ns: int = 0, ar: int = 0) -> bytes:
    return struct.pack("!6H", rng.randrange(65536), 0x0100, qd, an, ns, ar)


def _question(name: bytes = b"\x0210\x03box\x04shop\x07example\x03net\x00", qtype: int = 1) -> bytes:
    return name + struct.pack("!HH", qtype, 1)


def _opt(owner: bytes = b"\x00", payload: int = 1232, ttl: int = 0, rdata: bytes = b"",
         rdlength: int | None = None) -> bytes:
    length = len(rdata) if rdlength is None else rdlength
    return owner + struct.pack("!HHIH", 41, payload, ttl, length) + rdata


def hostile_packets(rng: random.Random) -> list[bytes]:
    valid = [wire_query(f"10-0-0-{i}.box.{ZONE}", t, use_edns=e)
             for i in range(4) for t in ("A", "AAAA", "TXT", "ANY") for e in (False, 0)]
    packets: list[bytes] = []
    for _ in range(1500):  # random bytes
        packets.append(rng.randbytes(rng.randrange(0, 600)))
    for query in valid:  # every truncation of valid queries
        packets.extend(query[:cut] for cut in range(len(query)))
    for _ in range(2000):  # bit flips
        query = bytearray(rng.choice(valid))
        for _ in range(rng.randrange(1, 6)):
            query[rng.randrange(len(query))] ^= 1 << rng.randrange(8)
        packets.append(bytes(query))
    for _ in range(1000):  # compression: self pointers, forward pointers, long backward chains, header
        kind = rng.randrange(4)
        if kind == 0:
            name = b"\xc0\x0c"
        elif kind == 1:
            name = b"\x01a\xc0" + bytes([rng.randrange(14, 255)])
        elif kind == 2:
            name = b"\x01a\x00" + b"".join(struct.pack("!H", 0xC000 | (12 + 2 * i)) for i in range(100))
        else:
            name = b"\xc0" + bytes([rng.randrange(0, 12)])
        packets.append(_header(rng, qd=rng.choice([1, 2, 100])) + _question(name))
    for _ in range(1000):  # huge counts
        packets.append(_header(rng, *(rng.choice([0, 1, 2, 255, 65535]) for _ in range(4))) + _question())
    for _ in range(1500):  # bad EDNS
        kind = rng.randrange(7)
        opt = [
            _opt(owner=b"\x01x\x00"),
            _opt(rdata=b"\x00\x0a\x00\x08abc", rdlength=7),
            _opt(rdlength=200),
            _opt(ttl=rng.randrange(1, 256) << 16),
            _opt() + _opt(),
            _opt(payload=rng.choice([0, 1, 511, 65535]), ttl=0x8000),
            _opt(rdata=rng.randbytes(rng.randrange(0, 40))),
        ][kind]
        ar = 2 if kind == 4 else 1
        packets.append(_header(rng, ar=ar) + _question() + opt)
    for _ in range(1000):  # responses (QR=1), with and without records
        query = rng.choice(valid)
        packets.append(query[:2] + struct.pack("!H", 0x8000 | rng.randrange(0x8000)) + query[4:])
    for _ in range(800):  # every opcode, random Z/AD/CD/RCODE bits
        query = rng.choice(valid)
        flags = (rng.randrange(16) << 11) | rng.randrange(0x0800)
        packets.append(query[:2] + struct.pack("!H", flags) + query[4:])
    while len(packets) < PACKETS:  # long names, bad label types, odd classes
        kind = rng.randrange(3)
        if kind == 0:
            name = b"".join(b"\x3f" + b"x" * 63 for _ in range(rng.randrange(4, 9))) + b"\x00"
        elif kind == 1:
            name = bytes([rng.choice([0x40, 0x41, 0x80, 0xBF])]) + b"abc\x00"
        else:
            name = b"\x0210\x03box\x04shop\x07example\x03net\x00"
        packets.append(_header(rng) + name + struct.pack("!HH", rng.randrange(65536), rng.randrange(65536)))
    return packets[:PACKETS]


def test_every_reply_to_hostile_packets_is_well_formed() -> None:
    zone = ZoneAnswers(ZoneSpec(ZONE, caa_issuers=("ca.example.org",)))
    zone.set_txt({f"_acme-challenge.box.{ZONE}": ["v"]}, time.monotonic() + 3600)
    replied = 0
    for packet in hostile_packets(random.Random(SEED)):
        for udp in (True, False):
            reply = zone.answer(packet, udp=udp)[0]
            if reply is None:
                continue
            replied += 1
            message = dns.message.from_wire(reply, ignore_trailing=False)
            assert message.id == int.from_bytes(packet[:2], "big") and message.flags & 0x8000
            assert not udp or len(reply) <= 1232
    assert replied > PACKETS  # most packets (over both transports) get an answer: FORMERR at least


@pytest.mark.slow
def test_hostile_packets_leave_every_worker_alive_and_answering(cli_dns: CliDNS) -> None:
    packets = hostile_packets(random.Random(SEED + 1))
    rss_before = {pid: rss_kib(pid) for pid in cli_dns.workers}
    senders = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(16)]
    try:
        for i, packet in enumerate(packets):
            sender = senders[i % len(senders)]
            sender.sendto(packet, ("127.0.0.1", cli_dns.port))
            if i % 200 == 199:
                time.sleep(0.01)  # let the workers keep up: the test is robustness, not a flood
    finally:
        for sender in senders:
            sender.close()
    rng = random.Random(SEED + 2)
    for _ in range(30):  # the same kinds of packets over TCP, 20 to a connection
        with socket.create_connection(("127.0.0.1", cli_dns.port), timeout=5) as sock:
            sock.sendall(b"".join(tcp_frame(p) for p in rng.sample(packets, 20) if p))
            sock.settimeout(0.3)
            try:
                while read_frame(sock) is not None:
                    pass
            except (TimeoutError, ConnectionError):
                pass
    assert worker_pids(cli_dns.child.proc.pid) == cli_dns.workers  # none died and was replaced
    for pid, before in rss_before.items():  # memory bounded: the answer cache holds 16,384 at most
        assert rss_kib(pid) - before < 32 * 1024, f"worker {pid} grew {rss_kib(pid) - before} KiB"
    for _ in range(50):  # fresh source ports: spread over both workers
        assert answers(ask(cli_dns.port, f"10-9-8-7.box.{ZONE}", "A")) == ["10.9.8.7"]
    assert answers(ask(cli_dns.port, f"10-9-8-7.box.{ZONE}", "A", "tcp")) == ["10.9.8.7"]
    log = cli_dns.log()
    assert "Traceback" not in log and len(log.splitlines()) <= 2 * len(cli_dns.workers), log[:2000]


def test_rate_limited_replies_to_hostile_packets_are_well_formed() -> None:
    """Over the rate limit every reply is "slipped" (TC=1, question only): for every shape of reply,
    FORMERR and NOTIMP without a question included, the slipped form is a well-formed response."""
    zone = ZoneAnswers(ZoneSpec(ZONE))
    limiter = ResponseRateLimiter(RateLimit(responses_per_second=1, slip=1))
    slipped = 0
    for packet in hostile_packets(random.Random(SEED + 3)):
        reply = Worker._reply(packet, ("192.0.2.1", 5353), {}, zone.answer, limiter)
        if reply is None:
            continue
        message = dns.message.from_wire(reply)
        assert message.id == int.from_bytes(packet[:2], "big")
        if message.flags & 0x0200:
            slipped += 1
            assert message.answer == [] and message.authority == []
            assert len(reply) <= 12 + 255 + 4 + 11  # header, the longest question, OPT
    assert slipped > PACKETS // 2
