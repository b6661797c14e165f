"""Helpers of the upstream-issuer tests: the real Pebble (Debian ``pebble``) as the public ACME CA, its
DNS-01 validation sent to lancert's DNS port with ``-dnsserver``, and a lancert service issuing through it.

Pebble and its fault-injecting relay live in ``tests/pebble_server.py`` (shared with tests/acme) and are
re-exported here.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from service_testlib import CODE, ServiceProcess

from pebble_server import NINETY_DAYS, PEBBLE, AcmeRelay, Pebble, write_https_identity

__all__ = ["NINETY_DAYS", "PEBBLE", "AcmeRelay", "Pebble", "write_https_identity"]

# README, "TXT visibility": a change to the challenge table is in every DNS answer given 2 s after its
# commit (each worker reads the table every 0.5 s), not at once; a removed record may be served until then.
TXT_VISIBLE_WITHIN = 2.0
# README, field boxes: the most impatient generation gives up after 5 s; the compatible call answers
# within that, with the certificate or with "issuance_pending" while the order goes on.
FIELD_BOX_TIMEOUT = 5.0
BOX_RETRY_PAUSE = 0.5  # between a box's calls while its certificate is pending (as test_field_boxes)


def upstream_service(
    data_dir: Path,
    directory: str,
    ca_bundle: Path,
    *,
    dns_port: int,
    extra: list[str] | None = None,
    config: str = "",
    env: dict[str, str] | None = None,
) -> ServiceProcess:
    """A service issuing through the ACME CA at ``directory``, its DNS on ``dns_port``."""
    config_file = data_dir.parent / f"{data_dir.name}.toml"
    config_file.write_text(
        'zone = "iot.lancert.test"\n'
        + config
        + "\n[rate_limit]\nfailures_per_ip = 100000\nfailures_per_database = 100000\n"
    )
    args = [
        "--config",
        str(config_file),
        "--dns-port",
        str(dns_port),
        "--issuer",
        "acme",
        "--acme-directory",
        directory,
        "--acme-ca-bundle",
        str(ca_bundle),
        *(extra or []),
    ]
    return ServiceProcess(data_dir, args, env=env).start()


def compatible_call(
    service: ServiceProcess, uuid: str, code: str = CODE, timeout: float = 30
) -> httpx.Response:
    with httpx.Client(base_url=service.url, timeout=timeout) as client:
        return client.post(
            "/odoo-enterprise/iot/x509", json={"params": {"db_uuid": uuid, "enterprise_code": code}}
        )


def compatible_result(response: httpx.Response) -> dict[str, Any]:
    """The certificate of a 200 answer, or the refusal as ``{"error": message, "reason", ...}``: a
    refusal is non-2xx with the error object beside a null ``result`` (lancert.service.compatible); its
    reason is the error's ``reason``, or its code where it has none (``issuance_pending``)."""
    body = response.json()
    if response.status_code == 200:
        return body["result"]
    assert body["result"] is None and response.status_code in (403, 424, 429), response.text
    error = dict(body["error"])
    return {**error, "error": error.pop("message"), "reason": error.get("reason", error["code"])}


def native_call(
    service: ServiceProcess, uuid: str, box_id: str, csr: str, code: str = CODE
) -> httpx.Response:
    with httpx.Client(base_url=service.url, timeout=30) as client:
        return client.post(
            "/api/v1/certificates",
            json={"db_uuid": uuid, "enterprise_code": code, "box_id": box_id, "csr": csr},
        )


@dataclass
class Delivery:
    """The compatible calls of one box until it got its certificate: ``result`` the last answer's,
    ``pending`` the refusals before it, ``seconds`` how long each call took."""

    result: dict[str, str]
    pending: list[dict[str, str]]
    seconds: list[float]


def compatible_until_issued(service: ServiceProcess, uuid: str, give_up: float = 60.0) -> Delivery:
    """The compatible call made again and again as a field box makes it while its certificate is being
    ordered: a first order through an ACME CA may outlast the call's deadline (the DNS-01 record alone is
    waited on for 2 s before the CA is asked), and the box then gets ``issuance_pending`` and the
    certificate on a later call. Every call must be answered within a field box's 5 s, and every answer
    before the certificate must be that "pending" refusal: any other refusal fails the test at once."""
    pending: list[dict[str, str]] = []
    seconds: list[float] = []
    stop = time.monotonic() + give_up
    while True:
        start = time.monotonic()
        response = compatible_call(service, uuid, timeout=FIELD_BOX_TIMEOUT)
        seconds.append(time.monotonic() - start)
        assert seconds[-1] < FIELD_BOX_TIMEOUT, seconds
        result = compatible_result(response)
        if "x509_pem" in result:
            return Delivery(result, pending, seconds)
        assert result.get("reason") == "issuance_pending", (result, pending)
        assert time.monotonic() < stop, f"still pending after {give_up:.0f} s: {pending[-3:]}"
        pending.append(result)
        time.sleep(BOX_RETRY_PAUSE)


def challenge_rcode_once_settled(dns_port: int, name: str, committed_by: float) -> int:
    """The rcode of a TXT query for ``name``, asked until it is NXDOMAIN or the 2 s visibility bound
    has passed since ``committed_by`` (a ``time.monotonic()`` taken after the change was committed):
    the answer is NXDOMAIN at once if the change already shows, else that of a query sent after the
    bound, which every worker must answer from the changed table."""
    import dns.message
    import dns.query
    import dns.rcode

    while True:
        sent = time.monotonic()
        query = dns.message.make_query(name, "TXT")
        rcode = dns.query.udp(query, "127.0.0.1", port=dns_port, timeout=5).rcode()
        if rcode == dns.rcode.NXDOMAIN or sent > committed_by + TXT_VISIBLE_WITHIN:
            return rcode
        time.sleep(0.1)


def certs_json(data_dir: Path) -> list[dict[str, object]]:
    from lancert_cli import lancert

    return json.loads(lancert("service", "certs", "--json", "--data-dir", str(data_dir)).stdout)


class DnsRelay:
    """A DNS forwarder between Pebble and lancert's DNS that can withhold the ``_acme-challenge`` TXT
    answers (NXDOMAIN instead): the fault "the CA cannot see the TXT record". Everything else is
    forwarded unchanged to the service's DNS port."""

    def __init__(self, target_port: int) -> None:
        from dnslib import QTYPE, RCODE
        from dnslib.proxy import ProxyResolver
        from dnslib.server import DNSLogger, DNSServer

        relay = self
        self.withhold = False
        self.target_port = target_port
        # Each TXT question seen: (time.time(), name, withheld). What a failing test shows of the CA's view.
        self.txt_queries: list[tuple[float, str, bool]] = []

        class Resolver(ProxyResolver):
            def resolve(self, request, handler):  # type: ignore[no-untyped-def]
                if request.q.qtype == QTYPE.TXT:
                    relay.txt_queries.append((time.time(), str(request.q.qname), relay.withhold))
                if relay.withhold and request.q.qtype == QTYPE.TXT:
                    reply = request.reply()
                    reply.header.rcode = RCODE.NXDOMAIN
                    return reply
                self.port = relay.target_port
                return super().resolve(request, handler)

        quiet = DNSLogger(log="-request,-reply,-truncated,-error,-recv,-send,-data", prefix=False)
        # One number for UDP and TCP: the UDP port the kernel gave may be taken for TCP (by a listener or
        # a connection of another test running at the same time), then both are picked again.
        for attempt in range(20):
            self.udp = DNSServer(
                Resolver("127.0.0.1", target_port, timeout=5), address="127.0.0.1", port=0, logger=quiet
            )
            self.port = self.udp.server.server_address[1]
            try:
                self.tcp = DNSServer(
                    Resolver("127.0.0.1", target_port, timeout=5),
                    address="127.0.0.1",
                    port=self.port,
                    tcp=True,
                    logger=quiet,
                )
                break
            except OSError:
                self.udp.server.server_close()
                if attempt == 19:
                    raise
        self.udp.start_thread()
        self.tcp.start_thread()

    def stop(self) -> None:
        for server in (self.udp, self.tcp):
            server.stop()
            server.server.server_close()


