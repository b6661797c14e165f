"""Helpers of the ACME server tests: the real ``lancert service run --acme-port 0`` as a subprocess
(:class:`service_process.ServiceProcess`), a small JWS client (josepy, httpx) for the protocol tests, and
a way to run unmodified ACME clients.

The service's root is name-constrained to the zone and excludes IP addresses, so the endpoint is
``acme.<zone>`` and never 127.0.0.1. The Python client connects to 127.0.0.1 and sends that name as
Host and TLS server name; real clients (certbot, lego, Caddy...) run inside a private mount namespace
(``unshare --mount``) whose /etc/hosts maps the name to 127.0.0.1, so nothing on the machine changes.
"""

from __future__ import annotations

import json
import os
import secrets
import ssl
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import josepy as jose
from acme import jws as acme_jws
from acme import messages
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from lancert.pki import SubjectNames, create_csr, generate_private_key, verify_server_chain
from lancert.up.stack import Child
from lancert_cli import lancert
from service_process import ServiceProcess

ZONE = "iot.lancert.test"
ACME_HOST = f"acme.{ZONE}"
ERROR = "urn:ietf:params:acme:error:"


@dataclass
class AcmeService:
    data_dir: Path
    db: str | None = None  # SQLAlchemy URL (default: SQLite in the data dir)
    extra: list[str] = field(default_factory=list)  # more options of `service run`
    child: Child | None = None
    port: int = 0
    root_pem: Path = Path()
    hosts: Path = Path()
    counter: int = 0

    @property
    def db_url(self) -> str:
        return self.db or f"sqlite:///{self.data_dir / 'service.db'}"

    @property
    def directory_url(self) -> str:
        return f"https://{ACME_HOST}:{self.port}/acme/directory"

    def start(self) -> AcmeService:
        process = ServiceProcess(self.data_dir, ["--dns-port", "0", "--acme-port", "0", "--zone", ZONE,
                                                 *(["--db", self.db] if self.db else []), *self.extra])
        process.start(timeout=60)
        self.child, self.port = process.child, process.acme_port
        assert self.port, "the service printed no acme directory line"
        self.root_pem = process.root_pem(self.db)
        self.hosts = self.data_dir.parent / f"{self.data_dir.name}-hosts"
        self.hosts.write_text(f"127.0.0.1 localhost {ACME_HOST}\n::1 localhost\n")
        return self

    def stop(self) -> str:
        if self.child is None:
            return ""
        self.child.stop()
        return self.child.log_text()

    def database(self, **options: Any) -> str:
        """A newly registered database (production, in progress, IoT line unless told otherwise)."""
        from lancert.service.database import Database
        from lancert.service.registry import DatabaseKind, Registry, SubscriptionStatus

        self.counter += 1
        uuid = f"acme-db-{os.getpid()}-{self.counter}-{secrets.token_hex(3)}"
        database = Database(self.db_url)
        try:
            Registry(database).add(
                uuid, "code-" + secrets.token_hex(8),
                kind=DatabaseKind(options.get("kind", "production")),
                subscription=SubscriptionStatus(options.get("subscription", "in_progress")),
                iot_box_line=options.get("iot_box_line", True),
            )
        finally:
            database.dispose()
        return uuid

    def eab(self, uuid: str, *, cli: bool = False) -> dict[str, Any]:
        """What ``lancert service acme-eab --uuid U --json`` prints: kid, hmac_key, the database's names.

        Through the Python API unless ``cli`` (a CLI start costs seconds on a loaded machine; the
        command itself is tested once)."""
        if cli:
            return json.loads(lancert("service", "acme-eab", "--uuid", uuid, "--json",
                                      "--data-dir", str(self.data_dir)).stdout)
        from lancert.service.acmeserver.eab import EabKeys
        from lancert.service.authority import box_label
        from lancert.service.database import Database
        from lancert.service.issuer import load_service_identity

        database = Database(self.db_url)
        try:
            pair = EabKeys(database).create(uuid).as_json()
            identity = load_service_identity(database)
        finally:
            database.dispose()
        assert identity is not None
        label = box_label(identity.label_secret, uuid, None)
        return {**pair, "names": [f"*.{label}.{ZONE}", f"<ip-with-dashes>.{label}.{ZONE}"]}

    def label_of(self, eab: dict[str, Any]) -> str:
        return eab["names"][0].split(".")[1]

    def set_database(self, uuid: str, *options: str) -> None:
        lancert("service", "db", "set", "--uuid", uuid, *options, "--data-dir", str(self.data_dir))

    def in_namespace(self, command: list[str], binds: dict[Path, str] | None = None) -> list[str]:
        """``command`` run with /etc/hosts mapping acme.<zone> to 127.0.0.1 (and ``binds``: file ->
        path it replaces) in a private mount namespace: root in CI, a user namespace elsewhere."""
        userns = [] if os.geteuid() == 0 else ["--user", "--map-root-user"]
        mounts = {self.hosts: "/etc/hosts", **(binds or {})}
        script = " && ".join(f'mount --bind "{src}" "{dst}"' for src, dst in mounts.items())
        return ["unshare", *userns, "--mount", "--", "sh", "-c", f'{script} && exec "$@"', "sh", *command]

    def certbot_certonly(
        self, eab: dict[str, str], names: list[str], workdir: Path, *, timeout: float = 180
    ) -> subprocess.CompletedProcess[str]:
        """Unmodified certbot ``certonly`` for ``names`` (certificate name ``shop``) with an EAB pair, its
        directories under ``workdir``. The authorizations at lancert are valid at creation (EAB binds the
        account to its database), so the manual hook never runs. The HMAC key goes as ``--eab-hmac-key=KEY``:
        a base64url key may start with ``-``, which certbot's argument parser would take for an option."""
        dirs = ["--config-dir", str(workdir / "config"), "--work-dir", str(workdir / "work"),
                "--logs-dir", str(workdir / "logs")]
        return self.run_client(
            ["certbot", "certonly", "--server", self.directory_url, "--non-interactive", *dirs,
             "--agree-tos", "--no-eff-email", "-m", "it@example.org", "--eab-kid", eab["kid"],
             f"--eab-hmac-key={eab['hmac_key']}", "--manual", "--manual-auth-hook", "/bin/false",
             "--preferred-challenges", "dns", "--cert-name", "shop", *(a for n in names for a in ("-d", n))],
            env={"REQUESTS_CA_BUNDLE": str(self.root_pem)}, timeout=timeout)

    def run_client(
        self, command: list[str], *, env: dict[str, str] | None = None, binds: dict[Path, str] | None = None,
        check: bool = True, timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        """Run an unmodified ACME client as a user would, output captured; with ``check``, a non-zero
        exit fails the test with the client's output."""
        result = subprocess.run(self.in_namespace(command, binds), capture_output=True, text=True,
                                timeout=timeout, env={**os.environ, **(env or {})})
        if check:
            output = result.stdout + result.stderr
            assert result.returncode == 0, f"{command[0]} ({result.returncode}):\n{output}"
        return result

    def used_nonce_rows(self) -> int:
        """Rows of acme_used_nonces: what requests wrote to spend their nonces."""
        from lancert.service.database import Database

        database = Database(self.db_url)
        try:
            with database.engine.connect() as connection:
                return connection.exec_driver_sql("SELECT count(*) FROM acme_used_nonces").scalar_one()
        finally:
            database.dispose()

    def revoked(self, certificate_pem: str) -> bool:
        """Whether the service recorded the revocation of this certificate (PEM, leaf first)."""
        from lancert.service.database import Database

        serial = format(x509.load_pem_x509_certificate(certificate_pem.encode()).serial_number, "x")
        database = Database(self.db_url)
        try:
            with database.engine.connect() as connection:
                row = connection.exec_driver_sql(
                    "SELECT revoked_at FROM acme_certificates WHERE serial = ?", (serial,)).first()
        finally:
            database.dispose()
        assert row is not None, "the service did not issue this certificate"
        return row[0] is not None


def es256_key() -> jose.JWK:
    return jose.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))


def rs256_key(bits: int = 2048) -> jose.JWK:
    return jose.JWKRSA(key=rsa.generate_private_key(public_exponent=65537, key_size=bits))


@dataclass
class AcmeClient:
    """Just enough of an ACME client to send every request the tests need, right or wrong."""

    service: AcmeService
    key: jose.JWK = field(default_factory=es256_key)
    alg: Any = jose.ES256
    kid: str | None = None
    http: httpx.Client | None = None  # default: HTTPS to the service, trusting its root
    directory: dict[str, Any] = field(init=False)
    last_nonce: str | None = None
    backends: list[int] = field(default_factory=list)  # ports to spread requests over (a load balancer)
    sent: int = 0

    def __post_init__(self) -> None:
        if self.http is None:
            self.http = httpx.Client(verify=ssl.create_default_context(cafile=str(self.service.root_pem)),
                                     timeout=30)
        self.directory = self.get(self.service.directory_url).json()

    def send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """To 127.0.0.1, with acme.<zone>:port as Host and TLS name (what the certificate names)."""
        target = httpx.URL(url)
        headers = {"Host": target.netloc.decode(), **kwargs.pop("headers", {})}
        connect = target.copy_with(host="127.0.0.1")
        if self.backends:
            connect = connect.copy_with(port=self.backends[self.sent % len(self.backends)])
        self.sent += 1
        assert self.http is not None
        response = self.http.request(method, connect, headers=headers,
                                     extensions={"sni_hostname": target.host}, **kwargs)
        if "replay-nonce" in response.headers:
            self.last_nonce = response.headers["replay-nonce"]
        return response

    def get(self, url: str) -> httpx.Response:
        return self.send("GET", url)

    def nonce(self) -> str:
        return self.send("HEAD", self.directory["newNonce"]).headers["replay-nonce"]

    def jws(self, url: str, payload: Any, *, key: jose.JWK | None = None, alg: Any = None,
            kid: str | None = None, use_jwk: bool = False, nonce: str | None = None) -> dict[str, Any]:
        if payload is None or isinstance(payload, bytes):
            body = payload or b""
        else:
            body = json.dumps(payload).encode()
        signed = acme_jws.JWS.sign(
            body, key=key or self.key, alg=alg or self.alg,
            nonce=jose.b64decode(nonce or self.nonce()), url=url,
            kid=None if use_jwk else (kid or self.kid),
        )
        return signed.to_partial_json()

    def post(self, url: str, payload: Any = None, **options: Any) -> httpx.Response:
        """POST a JWS (``payload=None`` is POST-as-GET); ``options`` go to :meth:`jws`."""
        body = json.dumps(self.jws(url, payload, **options))
        return self.send("POST", url, content=body, headers={"Content-Type": "application/jose+json"})

    def eab_binding(self, eab: dict[str, Any], *, key: jose.JWK | None = None) -> dict[str, Any]:
        return messages.ExternalAccountBinding.from_data(
            account_public_key=(key or self.key).public_key(), kid=eab["kid"], hmac_key=eab["hmac_key"],
            directory=self.directory)  # type: ignore[arg-type]

    def new_account(self, eab: dict[str, Any] | None, **fields: Any) -> httpx.Response:
        payload = {"termsOfServiceAgreed": True, **fields}
        if eab is not None:
            payload["externalAccountBinding"] = self.eab_binding(eab)
        response = self.post(self.directory["newAccount"], payload, use_jwk=True)
        if response.status_code in (200, 201):
            self.kid = response.headers["location"]
        return response

    def new_order(self, names: list[str]) -> httpx.Response:
        identifiers = [{"type": "dns", "value": n} for n in names]
        return self.post(self.directory["newOrder"], {"identifiers": identifiers})

    def finalize(self, order: dict[str, Any], csr: x509.CertificateSigningRequest) -> httpx.Response:
        der = csr.public_bytes(serialization.Encoding.DER)
        return self.post(order["finalize"], {"csr": jose.b64encode(der).decode()})

    def obtain(self, names: list[str]) -> tuple[Any, str, dict[str, Any]]:
        """(private key, PEM chain, final order) for ``names``, through every step a client takes."""
        order = self.new_order(names)
        assert order.status_code == 201, order.text
        key = generate_private_key()
        done = self.finalize(order.json(), create_csr(key, SubjectNames.parse(dns=names)))
        assert done.status_code == 200, done.text
        body = done.json()
        for _ in range(100):
            if body["status"] == "valid":
                break
            time.sleep(0.05)
            body = self.post(order.headers["location"]).json()
        chain = self.post(body["certificate"])
        assert chain.status_code == 200 and chain.headers["content-type"].startswith(
            "application/pem-certificate-chain"), chain.text
        return key, chain.text, body


def name(client: AcmeClient, host: str = "web") -> str:
    """``host`` under the label of the ``client`` fixture's database."""
    return f"{host}.{client.label}.{ZONE}"  # type: ignore[attr-defined]


def problem(response: httpx.Response, code: str) -> dict[str, Any]:
    """The response is an RFC 7807 problem of RFC 8555 type ``code`` (and carries a fresh nonce)."""
    assert response.headers.get("content-type", "").startswith("application/problem+json"), response.text
    body = response.json()
    assert body["type"] == ERROR + code, body
    assert response.headers.get("replay-nonce"), "every error answer carries a fresh nonce"
    return body


def assert_lint_clean(chain_pem: str, root_pem: Path, names: list[str]) -> x509.Certificate:
    """The checks the project's certificate tests apply to every leaf (tests/service, tests/pki):
    TLS-server profile, SAN exactly the names, CN among them, a 90-day validity at most 398, a
    positive serial of at least 64 bits, AKI = the issuer's SKI, and a chain that verifies to the root
    for a name it covers (cryptography's verifier, which enforces RFC 5280 and the name constraints)."""
    certs = x509.load_pem_x509_certificates(chain_pem.encode())
    leaf, intermediate = certs[0], certs[1]
    root = x509.load_pem_x509_certificate(root_pem.read_bytes())
    assert len(certs) == 2, "leaf + intermediate, never the root"
    bc = leaf.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca is False
    ku = leaf.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and not ku.value.key_cert_sign and not ku.value.crl_sign
    assert list(leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(san.get_values_for_type(x509.DNSName)) == sorted(names)
    assert san.get_values_for_type(x509.IPAddress) == []
    cns = [a.value for a in leaf.subject]
    assert all(cn in names for cn in cns)
    assert leaf.serial_number > 0 and leaf.serial_number.bit_length() >= 64
    lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    assert lifetime.days <= 398
    ski = intermediate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    assert leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier == ski
    host = names[0].replace("*", "192-168-1-25")
    assert verify_server_chain(leaf, anchors=[root], host=host, intermediates=[intermediate])[0] == leaf
    return leaf
