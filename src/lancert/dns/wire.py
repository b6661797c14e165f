"""DNS messages as bytes: the query's header and question read straight from the packet, the answer
written straight into bytes (RFC 1035 §4, EDNS(0) of RFC 6891).

Why not dnslib for every packet: parsing a whole ``DNSRecord`` and packing a reply costs about 250 µs in
dnslib, which is what held the zone's DNS at ~1,000 queries/s. Almost every query is a plain one (one
uncompressed question, maybe an OPT record), and every answer the zone gives has the question's name as
owner, so it is written as a compression pointer to the question (offset 12): the client's letter case
(0x20 randomisation, which resolvers check) comes back as sent. Anything this parser does not know is
handed to dnslib by :mod:`lancert.dns.zone` (``Unusual``), and anything dnslib cannot read is FORMERR.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

HEADER = struct.Struct("!6H")
TYPE_CLASS = struct.Struct("!HH")
RR_FIXED = struct.Struct("!HHIH")  # type, class, ttl, rdlength (after the owner name)
OPT_RR = struct.Struct("!HHIH")

QR = 0x8000
AA = 0x0400
TC = 0x0200
RD = 0x0100
CD = 0x0010
OPCODE_SHIFT = 11

NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5
BADVERS = 16  # an extended RCODE: 1 in the OPT record's upper byte, 0 in the header

CLASS_IN = 1
TYPE_A, TYPE_NS, TYPE_SOA, TYPE_TXT, TYPE_AAAA, TYPE_OPT, TYPE_CAA, TYPE_ANY = 1, 2, 6, 16, 28, 41, 257, 255

MAX_NAME = 255  # RFC 1035 §2.3.4: a name in wire form, length octets and the root included
PLAIN_UDP = 512  # a query without EDNS gets at most this much (RFC 1035 §4.2.1)
# What the server offers and the most it sends over UDP, whatever a client asks for: 1232 is the DNS
# Flag Day 2020 value (no IP fragmentation on any common path; fragments are what spoofers exploit).
EDNS_PAYLOAD = 1232
TCP_LIMIT = 65535


class Malformed(Exception):
    """The packet is not a query anyone could mean: answer FORMERR (or stay silent if no header)."""


class Unusual(Exception):
    """A legal message this parser does not read (compression in the question, other sections):
    :mod:`lancert.dns.zone` hands it to dnslib."""


@dataclass(slots=True)
class Query:
    """What an answer needs from a query.

    ``qname`` is the name's wire form as the client wrote it (the answer repeats it), ``lname`` the same
    lower-cased (for lookups), ``starts`` the offsets of its labels inside ``qname``.
    """

    id: int
    flags: int
    qname: bytes
    lname: bytes
    starts: tuple[int, ...]
    qtype: int
    qclass: int
    edns_payload: int | None = None  # None: no OPT record
    edns_version: int = 0
    edns_do: bool = False


def header_of(packet: bytes) -> tuple[int, int] | None:
    """ID and flags, or None when the packet is too short to be answered at all."""
    if len(packet) < 12:
        return None
    return packet[0] << 8 | packet[1], packet[2] << 8 | packet[3]


def read_name(packet: bytes, pos: int) -> tuple[bytes, tuple[int, ...], int]:
    """An uncompressed name at ``pos``: (its wire form, its label offsets, the position after it)."""
    start = pos
    starts: list[int] = []
    end = len(packet)
    while True:
        if pos >= end:
            raise Malformed("name runs past the end of the packet")
        length = packet[pos]
        if length == 0:
            pos += 1
            break
        if length & 0xC0:
            if length & 0xC0 == 0xC0:
                raise Unusual("compressed name")
            raise Malformed("unknown label type")
        starts.append(pos - start)
        pos += 1 + length
        if pos - start >= MAX_NAME:
            raise Malformed("name longer than 255 octets")
    if pos > end:
        raise Malformed("name runs past the end of the packet")
    return packet[start:pos], tuple(starts), pos


def parse_query(packet: bytes) -> Query:
    """A query's fields; ``Malformed`` or ``Unusual`` otherwise. The caller has already dropped
    responses (QR=1) and answered other opcodes NOTIMP, from the header alone."""
    ident, flags, qdcount, ancount, nscount, arcount = HEADER.unpack_from(packet)
    if qdcount != 1:
        raise Malformed(f"{qdcount} questions")
    if ancount or nscount or arcount > 1:
        raise Unusual("records besides the question")
    qname, starts, pos = read_name(packet, 12)
    if pos + 4 > len(packet):
        raise Malformed("question cut short")
    qtype, qclass = TYPE_CLASS.unpack_from(packet, pos)
    pos += 4
    query = Query(ident, flags, qname, qname.lower(), starts, qtype, qclass)
    if arcount:
        pos = read_opt(packet, pos, query)
    if pos != len(packet):
        raise Malformed("bytes after the last record")
    return query


def read_opt(packet: bytes, pos: int, query: Query) -> int:
    """The one additional record of a plain query, which must be EDNS(0)'s OPT with the root as owner."""
    if pos >= len(packet):
        raise Malformed("additional record missing")
    if packet[pos] != 0:
        raise Unusual("additional record is not an OPT with the root name")
    if pos + 11 > len(packet):
        raise Malformed("OPT record cut short")
    rtype, payload, ttl, rdlength = OPT_RR.unpack_from(packet, pos + 1)
    if rtype != TYPE_OPT:
        raise Unusual("additional record is not OPT")
    end = pos + 11 + rdlength
    if end > len(packet):
        raise Malformed("OPT data runs past the end of the packet")
    option = pos + 11
    while option < end:  # options are only checked for shape: none changes an answer of this zone
        if option + 4 > end:
            raise Malformed("EDNS option cut short")
        option += 4 + (packet[option + 2] << 8 | packet[option + 3])
        if option > end:
            raise Malformed("EDNS option runs past its record")
    query.edns_payload = max(payload, PLAIN_UDP)
    query.edns_version = (ttl >> 16) & 0xFF
    query.edns_do = bool(ttl & 0x8000)
    return end


def udp_limit(query: Query) -> int:
    """The most this answer may take over UDP: the client's EDNS buffer, capped at ``EDNS_PAYLOAD``."""
    return PLAIN_UDP if query.edns_payload is None else min(query.edns_payload, EDNS_PAYLOAD)


def opt_record(query: Query, extended_rcode: int = 0) -> bytes:
    """The server's OPT record, present exactly when the query had one (RFC 6891 §6.1.1)."""
    if query.edns_payload is None:
        return b""
    ttl = (extended_rcode >> 4) << 24 | (0x8000 if query.edns_do else 0)
    return b"\x00" + OPT_RR.pack(TYPE_OPT, EDNS_PAYLOAD, ttl, 0)


def response_flags(query_flags: int, rcode: int, authoritative: bool) -> int:
    """QR set, the opcode, RD and CD copied (RFC 1035 §4.1.1, RFC 4035 §3.2.2), the RCODE our own:
    never the query's RCODE, AA, TC, RA, Z or AD bits."""
    flags = QR | (query_flags & (0xF << OPCODE_SHIFT | RD | CD)) | (rcode & 0xF)
    return flags | AA if authoritative else flags


def header_only(ident: int, query_flags: int, rcode: int) -> bytes:
    """A bare answer (no sections): FORMERR for what cannot be read, NOTIMP for other opcodes."""
    return HEADER.pack(ident, response_flags(query_flags, rcode, False), 0, 0, 0, 0)


def rr(type_: int, ttl: int, rdata: bytes, owner: int = 0xC00C) -> bytes:
    """One resource record whose owner is a compression pointer (default: the question's name)."""
    return owner.to_bytes(2, "big") + RR_FIXED.pack(type_, CLASS_IN, ttl, len(rdata)) + rdata


def encode_name(name: str) -> bytes:
    """``iot.example.net`` -> its uncompressed wire form (labels already checked by the caller)."""
    labels = [label for label in name.rstrip(".").split(".") if label]
    return b"".join(bytes([len(raw)]) + raw for raw in (label.encode("ascii") for label in labels)) + b"\x00"


def character_strings(value: str) -> bytes:
    """TXT RDATA: the value as <character-string>s of at most 255 octets each (RFC 1035 §3.3.14)."""
    raw = value.encode("utf-8")
    chunks = [raw[i : i + 255] for i in range(0, len(raw), 255)] or [b""]
    return b"".join(bytes([len(chunk)]) + chunk for chunk in chunks)


def caa_rdata(tag: str, value: str, flags: int = 0) -> bytes:
    """CAA RDATA (RFC 8659 §4.1): flags, tag length, tag, value."""
    raw_tag = tag.encode("ascii")
    return bytes([flags, len(raw_tag)]) + raw_tag + value.encode("ascii")
