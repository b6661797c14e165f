"""The real Pebble (Debian ``pebble``) as a public ACME CA for the tests, shared by every test directory
that needs an upstream CA (tests/service, tests/acme), and a relay in front of it for the faults Pebble
cannot make itself. Pebble's DNS-01 validation goes to the DNS port it is given with ``-dnsserver``.

Pebble serves ACME over HTTPS with a certificate from a throw-away test CA made here (the service trusts
it with ``--acme-ca-bundle``). Pebble runs with ``PEBBLE_VA_NOSLEEP=1`` (no random 0-15 s sleep before
validating), ``PEBBLE_AUTHZREUSE=0`` (orders are validated through lancert's DNS, not served from an
earlier valid authorization) and ``PEBBLE_WFE_NONCEREJECT=0`` (no random badNonce: the acme library
retries one, two in a row would make a test flaky). Validation is never forced valid. At
``PEBBLE_AUTHZREUSE=0`` Pebble 2.4 still reuses a valid authorization in one new order of a hundred (its
test is ``rand.Intn(100) > percent``, false when the draw is 0): a test whose premise is "the renewal must
ask for the TXT record" checks :attr:`AcmeRelay.reused_authorizations`.
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

import httpx

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

    ``new_orders`` counts the newOrder requests that reached the relay (upstream orders attempted);
    ``reused_authorizations`` the authorizations Pebble put in a new order that an earlier one had.
    """

    def __init__(self, pebble: Pebble) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.pebble = pebble
        self.rate_limit: int | None = None
        self.caa_identities: list[str] = []
        self.renewal_window: tuple[str, str] | None = None
        self.new_orders = 0
        self.reused_authorizations = 0
        self._authorizations: set[str] = set()
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
                if self.path.startswith("/order-plz") and answer.status_code == 201:
                    authorizations = set(json.loads(content).get("authorizations", []))
                    relay.reused_authorizations += len(authorizations & relay._authorizations)
                    relay._authorizations |= authorizations
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
