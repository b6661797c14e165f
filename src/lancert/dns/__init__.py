"""The authoritative DNS server of the managed zone (dnslib), over UDP and TCP.

It answers ``<a-b-c-d>.<label>.<zone>`` with A a.b.c.d and the dashed IPv6 form with AAAA, so a box's
certificate for ``*.<label>.<zone>`` names whatever LAN address DHCP gave it. The apex has SOA and NS;
``_acme-challenge.<label>.<zone>`` TXT records come from a lookup (the service's database); any other
name under the zone is NXDOMAIN and names outside it are REFUSED (this is no resolver).
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from dnslib import AAAA, NS, QTYPE, RCODE, RR, SOA, TXT, A, DNSLabel, DNSRecord
from dnslib.server import DNSLogger, DNSServer

from lancert.dns.names import address_from_label, dashed_address, device_hostname

log = logging.getLogger("lancert.dns")

TxtLookup = Callable[[str], Sequence[str]]
ANSWER_TTL = 300
NEGATIVE_TTL = 60
ACME_CHALLENGE = "_acme-challenge"
_BOX_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


def _no_txt(_name: str) -> Sequence[str]:
    return ()


class _QuietLogger(DNSLogger):
    """dnslib prints every query by default; keep only decoding errors, at debug level."""

    def __init__(self) -> None:
        super().__init__(log="-request,-reply,-truncated,-error", prefix=False)

    def log_error(self, handler: object, e: object) -> None:
        log.debug("undecodable DNS packet: %s", e)


class ZoneResolver:
    """dnslib resolver for one zone; ``resolve`` never raises (SERVFAIL on an internal error)."""

    def __init__(self, zone: str, *, txt_lookup: TxtLookup = _no_txt, ns_address: str = "127.0.0.1") -> None:
        self.zone = zone.lower().rstrip(".")
        self.apex = DNSLabel(self.zone)
        self.txt_lookup = txt_lookup
        self.ns_name = f"ns.{self.zone}"
        self.ns_address = ipaddress.ip_address(ns_address)

    def _soa(self) -> RR:
        return RR(
            self.zone,
            QTYPE.SOA,
            ttl=NEGATIVE_TTL,
            rdata=SOA(self.ns_name, f"hostmaster.{self.zone}", (1, 3600, 600, 86400, NEGATIVE_TTL)),
        )

    def resolve(self, request: DNSRecord, handler: object) -> DNSRecord:
        reply = request.reply(ra=0, aa=1)
        try:
            self._answer(request, reply)
        except Exception:
            log.exception("DNS lookup failed")
            reply = request.reply(ra=0, aa=0)
            reply.header.rcode = RCODE.SERVFAIL
        return reply

    def _answer(self, request: DNSRecord, reply: DNSRecord) -> None:
        qname: DNSLabel = request.q.qname
        qtype = request.q.qtype
        if not qname.matchSuffix(self.apex):
            reply.header.aa = 0
            reply.header.rcode = RCODE.REFUSED
            return
        name = str(qname).rstrip(".").lower()
        relative = name[: -len(self.zone)].rstrip(".")
        labels = relative.split(".") if relative else []
        records = self._records(labels, name)
        if records is None:
            reply.header.rcode = RCODE.NXDOMAIN
            reply.add_auth(self._soa())
            return
        matching = [rr for rr in records if qtype in (rr.rtype, QTYPE.ANY)]
        for rr in matching:
            reply.add_answer(rr)
        if not matching:  # the name exists, not with this type: NOERROR/NODATA
            reply.add_auth(self._soa())

    def _records(self, labels: list[str], name: str) -> list[RR] | None:
        """Every record of ``name`` (``labels`` below the apex); None if the name does not exist."""
        if not labels:
            return [self._soa(), RR(self.zone, QTYPE.NS, ttl=ANSWER_TTL, rdata=NS(self.ns_name))]
        if labels == ["ns"]:
            rtype, rdata = (QTYPE.A, A) if self.ns_address.version == 4 else (QTYPE.AAAA, AAAA)
            return [RR(name, rtype, ttl=ANSWER_TTL, rdata=rdata(str(self.ns_address)))]
        if not _BOX_LABEL.match(labels[-1]):
            return None
        if len(labels) == 1:  # <label>.<zone>: an empty non-terminal (RFC 8020: NODATA, not NXDOMAIN)
            return []
        if len(labels) == 2 and labels[0] == ACME_CHALLENGE:
            values = list(self.txt_lookup(name))
            if not values:
                return None
            return [RR(name, QTYPE.TXT, ttl=NEGATIVE_TTL, rdata=TXT(v)) for v in values]
        if len(labels) == 2:
            address = address_from_label(labels[0])
            if address is None:
                return None
            if address.version == 4:
                return [RR(name, QTYPE.A, ttl=ANSWER_TTL, rdata=A(str(address)))]
            return [RR(name, QTYPE.AAAA, ttl=ANSWER_TTL, rdata=AAAA(str(address)))]
        return None


@dataclass
class DNSService:
    """A UDP and a TCP dnslib server on one address and port, served from background threads."""

    resolver: ZoneResolver
    host: str = "127.0.0.1"
    port: int = 8053

    def __post_init__(self) -> None:
        logger = _QuietLogger()
        self.udp = DNSServer(self.resolver, address=self.host, port=self.port, logger=logger)
        # Port 0: the UDP socket picks one, TCP takes the same number.
        self.port = self.udp.server.server_address[1]
        self.tcp = DNSServer(self.resolver, address=self.host, port=self.port, tcp=True, logger=logger)

    def start(self) -> None:
        self.udp.start_thread()
        self.tcp.start_thread()

    def stop(self) -> None:
        for server in (self.udp, self.tcp):
            server.stop()
            server.server.server_close()


__all__ = [
    "DNSService",
    "TxtLookup",
    "ZoneResolver",
    "address_from_label",
    "dashed_address",
    "device_hostname",
]
