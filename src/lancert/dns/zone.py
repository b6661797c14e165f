"""What the zone answers, decided from the query's name alone, written as bytes.

The zone holds: SOA and NS at the apex (plus CAA naming the upstream CAs the service is told to use),
``ns.<zone>`` A/AAAA, ``<ip-with-dashes>.<label>.<zone>`` A or AAAA with the address the name spells,
``<label>.<zone>`` as an empty non-terminal (it has names below it: NODATA, RFC 8020), and
``_acme-challenge.<label>.<zone>`` and ``_acme-challenge.<host>.<label>.<zone>`` TXT from a snapshot of
the service's table (the DNS-01 names of ``*.<label>.<zone>`` and of ``<host>.<label>.<zone>``, which an
ACME client of the service may order through it from an upstream CA; ``<host>.<label>.<zone>`` is then
an empty non-terminal while its challenge is published). Every other name under
the apex is NXDOMAIN with the SOA in the authority section (RFC 2308); names outside it are REFUSED
(this server is no resolver, RA is never set); ANY gets one RRset, never all (RFC 8482: no expansion
for amplifiers).
"""

from __future__ import annotations

import ipaddress
import logging
import re
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from lancert.dns import TXT_MAX_STALENESS, wire
from lancert.dns.names import address_from_label
from lancert.dns.wire import Malformed, Query, Unusual

log = logging.getLogger("lancert.dns")

ANSWER_TTL = 300
TXT_TTL = 60
NEGATIVE_TTL = 60  # SOA minimum: how long resolvers may cache NXDOMAIN/NODATA (RFC 2308)
SOA_TIMERS = (1, 3600, 600, 86400, NEGATIVE_TTL)  # serial, refresh, retry, expire, minimum
ACME_CHALLENGE = b"_acme-challenge"
ACME_CHALLENGE_WIRE = bytes([len(ACME_CHALLENGE)]) + ACME_CHALLENGE  # the label, as it prefixes a name
# Workers read the TXT table every TXT_REFRESH_INTERVAL and answer from a snapshot at most
# TXT_MAX_STALENESS old (lancert.dns says why); the difference is the margin for the read itself.
TXT_REFRESH_INTERVAL = 0.5
CACHE_ENTRIES = 16384  # answers kept by query bytes; the cache is emptied when full or when TXT changes
_BOX_LABEL = re.compile(rb"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


@dataclass(frozen=True)
class ZoneSpec:
    """What the zone serves besides its computed names; picklable, it is sent to worker processes.

    ``caa_issuers``: CAA ``issue`` values at the apex (e.g. ``letsencrypt.org``), which CAs find by
    climbing from ``<label>.<zone>`` (RFC 8659 §3); empty = no CAA record (any CA may issue).
    """

    zone: str
    ns_address: str = "127.0.0.1"
    caa_issuers: tuple[str, ...] = ()


class MalformedCounter:
    """Counts unreadable packets (and internal errors) and logs one line a minute at most: a flood of
    junk must not become a flood of log lines (1,000 bad queries once made 1.6 MB of tracebacks)."""

    def __init__(self, every: float = 60.0) -> None:
        self.every = every
        self.count = 0
        self.last_log = -every
        self.lock = threading.Lock()

    def note(self, reason: str) -> None:
        with self.lock:
            self.count += 1
            now = time.monotonic()
            if now - self.last_log >= self.every:
                log.warning("%d malformed DNS packet(s) answered FORMERR or dropped (last: %s)",
                            self.count, reason)
                self.count = 0
                self.last_log = now


# (reply or None to stay silent, rate-limit key, may the reply be cached by query bytes)
Answer = tuple[bytes | None, object, bool]
_NX_KEY = ("nx",)
_ERROR_KEY = ("error",)
# The address shortcut (ZoneAnswers._address_answer): header counts, the question's type and class, the
# OPT record's type, the A record as written after the question, the server's OPT records.
_ONE_QUESTION = b"\x00\x01\x00\x00\x00\x00\x00\x00"
_ONE_QUESTION_AND_OPT = b"\x00\x01\x00\x00\x00\x00\x00\x01"
_A_IN = wire.TYPE_CLASS.pack(wire.TYPE_A, wire.CLASS_IN)
_ROOT_OPT = b"\x00" + wire.TYPE_OPT.to_bytes(2, "big")  # the root's name, then the OPT type
_A_HEAD = wire.rr(wire.TYPE_A, ANSWER_TTL, b"\x00" * 4)[:-4]
_OPT_PLAIN = b"\x00" + wire.OPT_RR.pack(wire.TYPE_OPT, wire.EDNS_PAYLOAD, 0, 0)
_OPT_DO = b"\x00" + wire.OPT_RR.pack(wire.TYPE_OPT, wire.EDNS_PAYLOAD, 0x8000, 0)
# The decimal forms inet_pton accepts for an octet (0 to 255, no leading zero), each to its value.
_OCTETS = {str(octet).encode(): octet for octet in range(256)}
# A reply's flags and counts after its ID, by the query's RD bit (4), CD bit (2) and OPT record (1).
_HEADS = tuple(
    wire.HEADER.pack(0, wire.QR | wire.AA | (wire.RD if index & 4 else 0) | (wire.CD if index & 2 else 0),
                     1, 1, 0, index & 1)[2:]
    for index in range(8)
)


def address_key(reply: bytes) -> tuple[bytes, int]:
    """The rate-limit key of a reply of :meth:`ZoneAnswers.address_reply`: its name lower-cased and
    type A, as the general path counts a positive answer. The name ends where the question's type and
    class, the A record (16 octets) and the OPT record (11, when the reply has one) begin."""
    end = len(reply) - 20 - (11 if reply[11] else 0)
    return reply[12:end].lower(), wire.TYPE_A


class ZoneAnswers:
    """Answers one zone's queries from their bytes; ``answer`` never raises."""

    def __init__(self, spec: ZoneSpec, *, txt_max_staleness: float = TXT_MAX_STALENESS) -> None:
        self.spec = spec
        self.zone = spec.zone.lower().rstrip(".")
        self.zone_wire = wire.encode_name(self.zone)
        self.zone_a_in = self.zone_wire + _A_IN  # how an address question ends
        self.txt_max_staleness = txt_max_staleness
        self.txt: dict[bytes, tuple[bytes, ...]] = {}
        self.txt_read_at = float("-inf")  # monotonic time the snapshot's read began
        self.cache: dict[bytes, tuple[bytes, object]] = {}
        self.malformed = MalformedCounter()
        ns_name = wire.encode_name(f"ns.{self.zone}")
        self.soa_rdata = (
            ns_name
            + wire.encode_name(f"hostmaster.{self.zone}")
            + b"".join(t.to_bytes(4, "big") for t in SOA_TIMERS)
        )
        self.ns_rdata = ns_name
        address = ipaddress.ip_address(spec.ns_address)
        self.ns_type = wire.TYPE_A if address.version == 4 else wire.TYPE_AAAA
        self.ns_address = address.packed
        self.caa = tuple(wire.caa_rdata("issue", issuer) for issuer in spec.caa_issuers)

    # -- TXT snapshot ---------------------------------------------------------------------------------

    def set_txt(self, records: Mapping[str, Sequence[str]], read_at: float) -> None:
        """Install a snapshot of the TXT table (names lower-case, no trailing dot) read from ``read_at``."""
        snapshot: dict[bytes, tuple[bytes, ...]] = {}
        for name, values in records.items():
            try:
                key = wire.encode_name(name.lower())
            except (UnicodeEncodeError, ValueError):
                continue
            snapshot[key] = tuple(wire.character_strings(v) for v in values)
        if snapshot != self.txt:
            self.txt = snapshot
            self.cache.clear()
        self.txt_read_at = read_at

    # -- answering ------------------------------------------------------------------------------------

    def answer(self, packet: bytes, udp: bool = True) -> Answer:
        """The reply to ``packet``: over UDP at most the client's EDNS buffer (512 without EDNS, never
        over ``wire.EDNS_PAYLOAD``), over TCP up to 65535 bytes."""
        reply = self.address_reply(packet)
        if reply is not None:
            return reply, address_key(reply), True
        return self.answer_parsed(packet, udp)

    def answer_parsed(self, packet: bytes, udp: bool = True) -> Answer:
        """:meth:`answer` without its shortcut for address queries: what the shortcut must equal, byte
        for byte (tests/dns/test_dns_shortcut.py compares the two)."""
        header = wire.header_of(packet)
        if header is None:
            self.malformed.note("shorter than a DNS header")
            return None, _ERROR_KEY, False
        ident, flags = header
        if flags & wire.QR:  # a response: answering it is how two servers loop on each other
            return None, _ERROR_KEY, False
        if (flags >> wire.OPCODE_SHIFT) & 0xF:  # NOTIFY, UPDATE, IQUERY...: not served here
            return wire.header_only(ident, flags, wire.NOTIMP), _ERROR_KEY, False
        return self._parsed_answer(packet, ident, flags, udp)

    def _address_answer(self, packet: bytes, ident: int = 0, flags: int = 0) -> Answer | None:
        """:meth:`address_reply` as an :data:`Answer` (with its rate-limit key, cacheable), or None
        where the shortcut declines. ``ident`` and ``flags`` are not used: the shortcut reads both from
        the packet (they remain for callers written against the earlier signature)."""
        reply = self.address_reply(packet)
        return None if reply is None else (reply, address_key(reply), True)

    def address_reply(self, packet: bytes) -> bytes | None:
        """The A answer to the query ``A <a-b-c-d>.<label>.<zone>`` IN, read and written without
        building a :class:`~lancert.dns.wire.Query`, or None for anything else (the general path then
        answers, and decides what to do with responses, other opcodes, junk).

        Why: almost every query a zone of a million boxes gets is this one, each for a name no cache
        holds (a resolver asks each name once per TTL), and the general path spent about 8 µs of Python
        on it, as much as the two system calls that receive and send it. The checks are the general
        path's, in its order: a query (QR=0) of opcode 0, one question and at most one OPT record (EDNS
        version 0, no options: others go the general way), the question's labels within the packet, the
        zone as the name's tail at a label boundary, class IN, a box label, no challenge published below
        the name (its answer then follows the TXT snapshot), four decimal octets as inet_pton reads
        them (0 to 255, no leading zero). The answer can never exceed 512 octets (a name of at most 255
        octets, one A record, one OPT record), so no size limit applies, over UDP or TCP.

        Cost (under dnsperf every Python operation here is paid once per query): the reply is joined
        from slices of the query and constants in one ``bytes.join`` (a chain of ``+`` made a new
        object per piece), the octets are looked up in a table of the 256 decimal forms instead of
        ``replace``/``decode``/``inet_pton``, the header's flags and counts are a precomputed 10-byte
        piece chosen by the query's RD and CD bits and EDNS, and the lower-cased name is made only when
        the TXT snapshot has entries to look up: 1.2-1.5 µs per answer against 3.3-5.2 µs for the
        previous version (same machine, 100,000 distinct queries in process)."""
        counts = packet[4:12]
        if counts == _ONE_QUESTION:
            opt = 0
        elif counts == _ONE_QUESTION_AND_OPT:
            opt = 1
        else:
            return None
        size = len(packet)
        # A query (QR=0) of opcode 0 (standard), and room for a header and the shortest question.
        if packet[2] & 0xF8 or size < 17:
            return None
        first_len = packet[12]
        second = 13 + first_len  # the box label's length octet
        if not 0 < first_len < 64 or second >= size:
            return None
        second_len = packet[second]
        zone_at = second + 1 + second_len
        zone_wire = self.zone_wire
        end = zone_at + len(zone_wire)  # after the name: type and class
        if not 0 < second_len < 64 or end + 4 > size or end - 12 > wire.MAX_NAME:
            return None
        tail = packet[zone_at : end + 4]  # the zone's name, type and class
        if tail != self.zone_a_in and tail.lower() != self.zone_a_in:
            return None
        if opt:  # the OPT record, owned by the root, EDNS version 0, no options: exactly 11 octets
            if size != end + 15 or packet[end + 4 : end + 7] != _ROOT_OPT or packet[end + 10]:
                return None
            if packet[end + 12 : end + 15] != b"\x00\x00\x00":
                return None  # options (their shape is checked by the general path) or version > 0
            opt_record = _OPT_DO if packet[end + 11] & 0x80 else _OPT_PLAIN
        elif size != end + 4:
            return None
        else:
            opt_record = b""
        parts = packet[13:second].split(b"-")
        if len(parts) != 4:
            return None
        try:
            packed = bytes(map(_OCTETS.__getitem__, parts))
        except KeyError:
            return None
        if not _BOX_LABEL.match(packet[second + 1 : zone_at].lower()):
            return None
        if self.txt and ACME_CHALLENGE_WIRE + packet[12:end].lower() in self.txt:
            return None
        # QR, AA, RD and CD as the query's, the counts: one question, one answer, the OPT if asked.
        head = _HEADS[(packet[2] & 1) << 2 | (packet[3] & 0x10) >> 3 | opt]
        return b"".join((packet[:2], head, packet[12 : end + 4], _A_HEAD, packed, opt_record))

    def _parsed_answer(self, packet: bytes, ident: int, flags: int, udp: bool) -> Answer:
        try:
            try:
                query = wire.parse_query(packet)
            except Unusual:
                query = _parse_with_dnslib(packet)
        except Malformed as exc:
            self.malformed.note(str(exc))
            return wire.header_only(ident, flags, wire.FORMERR), _ERROR_KEY, False
        try:
            return self._answer(query, wire.udp_limit(query) if udp else wire.TCP_LIMIT)
        except Exception as exc:  # a defect must cost one SERVFAIL, never the worker nor a log flood
            self.malformed.note(f"internal error {type(exc).__name__}")
            log.debug("DNS answer failed", exc_info=True)
            return wire.header_only(ident, flags, wire.SERVFAIL), _ERROR_KEY, False

    def _answer(self, query: Query, limit: int) -> Answer:
        if query.edns_version != 0:  # RFC 6891 §6.1.3: we speak EDNS version 0 only
            return self._reply(query, wire.BADVERS, False, (), False, limit), _ERROR_KEY, False
        lname = query.lname
        cut = len(lname) - len(self.zone_wire)
        if (
            query.qclass != wire.CLASS_IN
            or cut < 0
            or not lname.endswith(self.zone_wire)
            or cut not in query.starts
        ):
            return self._reply(query, wire.REFUSED, False, (), False, limit), _ERROR_KEY, True
        if query.qtype in (251, 252):  # IXFR, AXFR: zone transfers are not offered
            return self._reply(query, wire.REFUSED, False, (), False, limit), _ERROR_KEY, True
        starts = query.starts
        depth = starts.index(cut)
        labels = [lname[starts[i] + 1 : starts[i + 1]] for i in range(depth)]
        # Answers about challenge names come from the TXT snapshot: never from a stale one, never cached
        # by query bytes (the cache could outlive the snapshot's bound when the database is away).
        is_txt = labels[:1] == [ACME_CHALLENGE] or (
            len(labels) == 2 and ACME_CHALLENGE_WIRE + lname in self.txt
        )
        if is_txt and self._txt_stale():
            return self._reply(query, wire.SERVFAIL, False, (), False, limit), _ERROR_KEY, False
        records = self._records(labels, lname)
        if records is None:
            # A challenge name without records does not exist (nothing lies below it, so NXDOMAIN, not
            # the NODATA of an empty non-terminal: RFC 8020). That answer depends on the TXT snapshot,
            # so it is never kept by query bytes: one computed from the old snapshot while the refresh
            # thread swaps in a new one and empties the cache would be stored after the emptying,
            # hiding a record just added until the table next changes.
            return self._reply(query, wire.NXDOMAIN, True, (), True, limit), _NX_KEY, not is_txt
        qtype = query.qtype
        if qtype == wire.TYPE_ANY:
            answers = records[:1]  # RFC 8482: one RRset, never the whole node
        else:
            answers = tuple(rr for rr in records if rr[0] == qtype)
        if answers:
            rrsets = [answers[0][0]] if qtype == wire.TYPE_ANY else [qtype]
            rrs = tuple(wire.rr(t, ttl, rdata) for t, ttl, rdata in answers if t in rrsets)
            key: object = (lname, qtype)
        else:
            rrs = ()
            key = _NX_KEY
        return self._reply(query, wire.NOERROR, True, rrs, not rrs, limit), key, not is_txt

    def _txt_stale(self) -> bool:
        return time.monotonic() - self.txt_read_at > self.txt_max_staleness

    def _records(self, labels: list[bytes], lname: bytes) -> tuple[tuple[int, int, bytes], ...] | None:
        """Every record of the name ``lname`` (``labels`` below the apex, both lower-case), or None if
        it does not exist."""
        if not labels:
            apex: list[tuple[int, int, bytes]] = [
                (wire.TYPE_SOA, NEGATIVE_TTL, self.soa_rdata),
                (wire.TYPE_NS, ANSWER_TTL, self.ns_rdata),
            ]
            apex.extend((wire.TYPE_CAA, ANSWER_TTL, rdata) for rdata in self.caa)
            return tuple(apex)
        if len(labels) == 1:
            if labels[0] == b"ns":
                return ((self.ns_type, ANSWER_TTL, self.ns_address),)
            # <label>.<zone>: an empty non-terminal, since IP names exist below any box label
            return () if _BOX_LABEL.match(labels[0]) else None
        if len(labels) == 3 and labels[0] == ACME_CHALLENGE and _BOX_LABEL.match(labels[2]):
            # _acme-challenge.<host>.<label>.<zone>: the DNS-01 name of one host of the box's subdomain
            values = self.txt.get(lname)
            return tuple((wire.TYPE_TXT, TXT_TTL, v) for v in values) if values else None
        if len(labels) != 2 or not _BOX_LABEL.match(labels[1]):
            return None
        if labels[0] == ACME_CHALLENGE:
            values = self.txt.get(lname)
            return tuple((wire.TYPE_TXT, TXT_TTL, v) for v in values) if values else None
        first = labels[0]
        if first.count(b"-") == 3 and first.replace(b"-", b"").isdigit():
            # IPv4, the common case: inet_pton is strict as ipaddress is (four decimal octets of at most
            # 255, no leading zeros) and ten times faster.
            try:
                packed = socket.inet_pton(socket.AF_INET, first.replace(b"-", b".").decode())
            except OSError:
                return self._challenge_parent(lname)
            return ((wire.TYPE_A, ANSWER_TTL, packed),)
        address = address_from_label(first.decode("latin-1"))
        if address is None:
            return self._challenge_parent(lname)
        return ((wire.TYPE_A if address.version == 4 else wire.TYPE_AAAA, ANSWER_TTL, address.packed),)

    def _challenge_parent(self, lname: bytes) -> tuple[()] | None:
        """``<host>.<label>.<zone>`` that is no address: an empty non-terminal while its challenge is
        published, else nothing. (An address name keeps its A/AAAA with a challenge below it: the name
        exists either way, and PowerDNS as configured by lancert answers the same.)"""
        return () if ACME_CHALLENGE_WIRE + lname in self.txt else None

    def _reply(
        self,
        query: Query,
        rcode: int,
        authoritative: bool,
        answers: Sequence[bytes],
        with_soa: bool,
        limit: int,
    ) -> bytes:
        opt = wire.opt_record(query, rcode)
        authority = b""
        if with_soa:  # owner = the apex, a pointer to where the zone's name begins inside the question
            apex = 12 + len(query.lname) - len(self.zone_wire)
            authority = wire.rr(wire.TYPE_SOA, NEGATIVE_TTL, self.soa_rdata, 0xC000 | apex)
        flags = wire.response_flags(query.flags, rcode, authoritative)
        question = query.qname + wire.TYPE_CLASS.pack(query.qtype, query.qclass)
        body = b"".join(answers)
        message = (
            wire.HEADER.pack(query.id, flags, 1, len(answers), 1 if authority else 0, 1 if opt else 0)
            + question
            + body
            + authority
            + opt
        )
        if len(message) <= limit:
            return message
        # Does not fit: TC=1, the question and OPT only; the client asks again over TCP (RFC 7766).
        return wire.HEADER.pack(query.id, flags | wire.TC, 1, 0, 0, 1 if opt else 0) + question + opt


def _parse_with_dnslib(packet: bytes) -> Query:
    """The unusual query (a compressed question, extra records such as TSIG or several OPTs), read by
    dnslib, which rejects forward and self pointers; its errors are FORMERR.

    dnslib is imported here, by a worker's first such query: the service's own process, which holds the
    zone's spec to start the workers, never parses a packet and does not load it."""
    from dnslib import QTYPE, DNSRecord

    try:
        record = DNSRecord.parse(packet)
    except Exception as exc:  # dnslib raises DNSError, BufferError, DNSLabelError, ValueError...
        raise Malformed(f"dnslib: {type(exc).__name__}") from None
    if len(record.questions) != 1:
        raise Malformed(f"{len(record.questions)} questions")
    question = record.questions[0]
    labels = question.qname.label
    qname = b"".join(bytes([len(label)]) + label for label in labels) + b"\x00"
    if len(qname) > wire.MAX_NAME or any(not 0 < len(label) < 64 for label in labels):
        raise Malformed("name longer than 255 octets")
    starts, pos = [], 0
    for label in labels:
        starts.append(pos)
        pos += 1 + len(label)
    query = Query(
        record.header.id,
        packet[2] << 8 | packet[3],
        qname,
        qname.lower(),
        tuple(starts),
        question.qtype,
        question.qclass,
    )
    opts = [rr for rr in record.ar if rr.rtype == QTYPE.OPT]
    if len(opts) > 1:
        raise Malformed("several OPT records")
    if opts:
        opt = opts[0]
        if opt.rname.label:
            raise Malformed("OPT record not owned by the root")
        query.edns_payload = max(opt.rclass, wire.PLAIN_UDP)
        query.edns_version = (opt.ttl >> 16) & 0xFF
        query.edns_do = bool(opt.ttl & 0x8000)
    return query
