"""Helpers of the upstream-issuer tests: the real Pebble (Debian ``pebble``) as the public ACME CA, its
DNS-01 validation sent to lancert's DNS port with ``-dnsserver``, and a lancert service issuing through it.

Pebble serves ACME over HTTPS with a certificate from a throw-away test CA made here (the service trusts
it with ``--acme-ca-bundle``). Pebble runs with ``PEBBLE_VA_NOSLEEP=1`` (no random 0-15 s sleep before
validating), ``PEBBLE_AUTHZREUSE=0`` (every order is really validated through lancert's DNS, never
served from an earlier valid authorization) and ``PEBBLE_WFE_NONCEREJECT=0`` (no random badNonce: the
acme library retries one, two in a row would make a test flaky). Validation is never forced valid.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import ssl
import subprocess
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from service_testlib import CODE, ServiceProcess

from lancert.loopback import free_port
from lancert.pki import (
    TLS_SERVER,
    CertificateAuthority,
    SubjectNames,
    generate_private_key,
    pem,
    private_key_pem,
)

PEBBLE = shutil.which("pebble")
NINETY_DAYS = 90 * 86400
# README, "TXT visibility": a change to the challenge table is in every DNS answer given 2 s after its
# commit (each worker reads the table every 0.5 s), not at once; a removed record may be served until then.
TXT_VISIBLE_WITHIN = 2.0
# README, field boxes: the most impatient generation gives up after 5 s; the compatible call answers
# within that, with the certificate or with "issuance_pending" while the order goes on.
FIELD_BOX_TIMEOUT = 5.0
BOX_RETRY_PAUSE = 0.5  # between a box's calls while its certificate is pending (as test_field_boxes)


def write_https_identity(directory: Path) -> Path:
    """A test CA and a certificate for 127.0.0.1/localhost signed by it; returns the CA file."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = CertificateAuthority.create_root("lancert tests: upstream CA https")
    key = generate_private_key()
    leaf = ca.issue(
        key.public_key(),
        TLS_SERVER,
        names=SubjectNames.parse(dns=["localhost"], ips=["127.0.0.1"]),
        validity=timedelta(days=2),
    )
    (directory / "https-ca.pem").write_bytes(pem([ca.root]))
    (directory / "https-cert.pem").write_bytes(pem([leaf]))
    (directory / "https-key.pem").write_bytes(private_key_pem(key))
    return directory / "https-ca.pem"


@dataclass
class Pebble:
    """A Pebble process on loopback: ACME at ``directory``, its roots at the management port."""

    workdir: Path
    dns_port: int
    eab_keys: dict[str, str] | None = None
    validity: int = NINETY_DAYS
    port: int = 0
    management_port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    ca_bundle: Path = field(default=Path())

    @property
    def directory(self) -> str:
        return f"https://127.0.0.1:{self.port}/dir"

    def start(self) -> Pebble:
        assert PEBBLE is not None
        # Made once: a restarted Pebble keeps its HTTPS identity (the relay and the service trust it).
        existing = self.workdir / "https-ca.pem"
        self.ca_bundle = existing if existing.exists() else write_https_identity(self.workdir)
        self.port = self.port or free_port()
        self.management_port = self.management_port or free_port()
        config = {
            "pebble": {
                "listenAddress": f"127.0.0.1:{self.port}",
                "managementListenAddress": f"127.0.0.1:{self.management_port}",
                "certificate": str(self.workdir / "https-cert.pem"),
                "privateKey": str(self.workdir / "https-key.pem"),
                # Ports Pebble would connect to for http-01/tls-alpn-01: unused with dns-01.
                "httpPort": free_port(),
                "tlsPort": free_port(),
                "ocspResponderURL": "",
                "externalAccountBindingRequired": self.eab_keys is not None,
                "externalAccountMACKeys": self.eab_keys or {},
                "certificateValidityPeriod": self.validity,  # default: Let's Encrypt's 90 days
            }
        }
        config_file = self.workdir / "pebble-config.json"
        config_file.write_text(json.dumps(config))
        env = {
            **os.environ,
            "PEBBLE_VA_NOSLEEP": "1",
            "PEBBLE_AUTHZREUSE": "0",
            "PEBBLE_WFE_NONCEREJECT": "0",
        }
        log = (self.workdir / "pebble.log").open("ab")
        self.proc = subprocess.Popen(
            [PEBBLE, "-config", str(config_file), "-dnsserver", f"127.0.0.1:{self.dns_port}"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                httpx.get(self.directory, verify=self.tls(), timeout=2).raise_for_status()
                return self
            except httpx.HTTPError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.1)
        raise RuntimeError(f"pebble did not start: {self.log_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_bundle))

    def log_text(self) -> str:
        return (self.workdir / "pebble.log").read_text(errors="replace")

    def root_pem(self) -> str:
        """Pebble's root, regenerated at every start (management port, /roots/0)."""
        response = httpx.get(f"https://127.0.0.1:{self.management_port}/roots/0", verify=self.tls())
        response.raise_for_status()
        return response.text


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

        class Resolver(ProxyResolver):
            def resolve(self, request, handler):  # type: ignore[no-untyped-def]
                if relay.withhold and request.q.qtype == QTYPE.TXT:
                    reply = request.reply()
                    reply.header.rcode = RCODE.NXDOMAIN
                    return reply
                self.port = relay.target_port
                return super().resolve(request, handler)

        quiet = DNSLogger(log="-request,-reply,-truncated,-error,-recv,-send,-data", prefix=False)
        self.udp = DNSServer(
            Resolver("127.0.0.1", target_port, timeout=5), address="127.0.0.1", port=0, logger=quiet
        )
        self.port = self.udp.server.server_address[1]
        self.tcp = DNSServer(
            Resolver("127.0.0.1", target_port, timeout=5),
            address="127.0.0.1",
            port=self.port,
            tcp=True,
            logger=quiet,
        )
        self.udp.start_thread()
        self.tcp.start_thread()

    def stop(self) -> None:
        for server in (self.udp, self.tcp):
            server.stop()
            server.server.server_close()


class AcmeRelay:
    """An HTTPS reverse proxy in front of Pebble's ACME port that rewrites Pebble's URLs to its own and
    can inject the faults Pebble cannot make by itself:

    - ``rate_limit = N``: newOrder answers 429 ``urn:ietf:params:acme:error:rateLimited`` with
      ``Retry-After: N`` (what Let's Encrypt answers; Pebble enforces no rate limits);
    - ``hold``: a challenge answer (POST to a challenge URL) waits until ``release()``, so a test can stop
      Pebble or the service in the middle of an order;
    - Pebble gone: the connection is closed without an answer, as a dead CA's would be;
    - ``caa_identities``: listed in the directory's ``meta.caaIdentities`` (Pebble lists none);
    - ``renewal_window = (start, end)``: the directory offers ``renewalInfo`` (ACME Renewal Information,
      RFC 9773, which Pebble 2.4 lacks) and every certificate's suggested window is this one.

    ``new_orders`` counts the newOrder requests that reached the relay (upstream orders attempted).
    """

    def __init__(self, pebble: Pebble) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.pebble = pebble
        self.rate_limit: int | None = None
        self.caa_identities: list[str] = []
        self.renewal_window: tuple[str, str] | None = None
        self.new_orders = 0
        self.held = threading.Event()
        self._release = threading.Event()
        self._release.set()
        relay = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args: object) -> None:
                pass

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0") or 0))
                ours, theirs = f"127.0.0.1:{relay.port}", f"127.0.0.1:{relay.pebble.port}"
                if self.command == "POST" and self.path.startswith("/order-plz"):
                    relay.new_orders += 1
                    if relay.rate_limit is not None:
                        self._rate_limited(relay.rate_limit)
                        return
                if self.command == "GET" and self.path.startswith("/renewal-info/") and relay.renewal_window:
                    start, end = relay.renewal_window
                    self._answer(200, {"suggestedWindow": {"start": start, "end": end}}, "application/json")
                    return
                if self.command == "POST" and self.path.startswith("/chalZ/"):
                    relay.held.set()
                    relay._release.wait(60)
                # Pebble checks each JWS "url" against the Host it was asked at: keep the relay's.
                headers = {k: v for k, v in self.headers.items() if k.lower() != "content-length"}
                try:
                    with httpx.Client(verify=relay.pebble.tls(), timeout=30) as client:
                        answer = client.request(
                            self.command, f"https://{theirs}{self.path}", content=body, headers=headers
                        )
                except httpx.HTTPError:
                    self.close_connection = True  # the CA is gone: no answer at all
                    self.connection.shutdown(2)
                    return
                content = answer.content.replace(theirs.encode(), ours.encode())
                if self.path == "/dir":  # what Let's Encrypt's directory has and Pebble 2.4's lacks
                    directory = json.loads(content)
                    directory.setdefault("meta", {})["caaIdentities"] = relay.caa_identities
                    if relay.renewal_window is not None:
                        directory["renewalInfo"] = f"https://{ours}/renewal-info"
                    content = json.dumps(directory).encode()
                self.send_response(answer.status_code)
                for name, value in answer.headers.items():
                    if name.lower() in (
                        "content-length",
                        "transfer-encoding",
                        "connection",
                        "content-encoding",
                    ):
                        continue
                    self.send_header(name, value.replace(theirs, ours))
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            def _answer(self, status: int, body: object, content_type: str) -> None:
                content = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            def _rate_limited(self, seconds: int) -> None:
                nonce = httpx.head(
                    f"https://127.0.0.1:{relay.pebble.port}/nonce-plz", verify=relay.pebble.tls()
                )
                problem = json.dumps(
                    {
                        "type": "urn:ietf:params:acme:error:rateLimited",
                        "detail": "too many certificates already issued for this registered domain",
                        "status": 429,
                    }
                ).encode()
                self.send_response(429)
                self.send_header("Content-Type", "application/problem+json")
                self.send_header("Retry-After", str(seconds))
                self.send_header("Replay-Nonce", nonce.headers.get("Replay-Nonce", ""))
                self.send_header("Content-Length", str(len(problem)))
                self.end_headers()
                self.wfile.write(problem)

            do_GET = do_POST = do_HEAD = _forward

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(pebble.workdir / "https-cert.pem", pebble.workdir / "https-key.pem")
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def directory(self) -> str:
        return f"https://127.0.0.1:{self.port}/dir"

    def hold(self) -> None:
        self.held.clear()
        self._release.clear()

    def release(self) -> None:
        self._release.set()

    def stop(self) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()
