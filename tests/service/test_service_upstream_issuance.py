"""Public trust through an upstream ACME CA: the real Pebble validates DNS-01 by asking lancert's own
DNS (``-dnsserver`` = the service's DNS port), through the native and the compatible flow; a box then
serves the Pebble chain and headless Chromium, trusting only Pebble's root (standing for a browser's
built-in public roots, without lancert's root), loads the box's page without a certificate error; the
compatible pair, served as a field box's nginx serves it, verifies against Pebble's root."""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import dns.rcode
import pytest
from cryptography import x509
from service_testlib import CODE, ZONE, Registry, ServiceProcess, make_csr
from upstream_testlib import (
    PEBBLE,
    Pebble,
    certs_json,
    challenge_rcode_once_settled,
    compatible_until_issued,
    native_call,
    upstream_service,
)

from capabilities import required_for_module
from chromium import load
from lancert.loopback import free_port
from lancert.pki import load_certificates, load_private_key_pem, public_key_matches
from lancert.up.printer import serve_page
from lancert.up.stack import Child

pytestmark = pytest.mark.slow  # starts a server or subprocess (tests/conftest.py)

_capability = required_for_module(PEBBLE is not None, "Debian package 'pebble' is not installed")


@pytest.fixture(scope="module")
def pebble(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pebble]:
    dns_port = free_port()
    ca = Pebble(tmp_path_factory.mktemp("pebble"), dns_port).start()
    yield ca
    ca.stop()


@pytest.fixture(scope="module")
def service(pebble: Pebble, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    data_dir = tmp_path_factory.mktemp("upstream") / "data"
    process = upstream_service(
        data_dir,
        pebble.directory,
        pebble.ca_bundle,
        dns_port=pebble.dns_port,
        extra=["--acme-contact", "ops@example.net"],
    )
    yield process
    process.stop()


@pytest.fixture(scope="module")
def registry(service: ServiceProcess) -> Registry:
    return Registry(service.data_dir)


@pytest.fixture(scope="module")
def pebble_nssdb(pebble: Pebble, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A HOME whose NSS database trusts Pebble's root and nothing of lancert's."""
    home = tmp_path_factory.mktemp("chromium-home")
    nssdb = home / ".pki" / "nssdb"
    nssdb.mkdir(parents=True)
    root = home / "pebble-root.pem"
    root.write_text(pebble.root_pem())
    subprocess.run(["certutil", "-N", "-d", f"sql:{nssdb}", "--empty-password"], check=True)
    subprocess.run(
        ["certutil", "-A", "-d", f"sql:{nssdb}", "-n", "pebble root", "-t", "C,,", "-i", str(root)],
        check=True,
    )
    return home


def _issuer_is_pebble(chain: list[x509.Certificate]) -> None:
    assert len(chain) >= 2
    assert "Pebble Intermediate CA" in chain[0].issuer.rfc4514_string()
    assert chain[0].issuer == chain[1].subject


def test_native_csr_without_the_name_is_told_which_name_to_ask_for(
    service: ServiceProcess, registry: Registry
) -> None:
    uuid = registry.add()
    response = native_call(service, uuid, "kitchen", make_csr())
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_csr"
    assert error["hostname_pattern"] == f"*.{error['box_label']}.{ZONE}" and error["zone"] == ZONE


def test_native_issues_through_pebble_by_dns01_on_lancerts_dns(
    service: ServiceProcess, registry: Registry, pebble: Pebble
) -> None:
    uuid = registry.add()
    label = native_call(service, uuid, "kitchen", make_csr()).json()["error"]["box_label"]
    response = native_call(service, uuid, "kitchen", make_csr([f"*.{label}.{ZONE}"]))
    answered = time.monotonic()  # the order removed its TXT record before this answer
    assert response.status_code == 200, response.text
    body = response.json()
    chain = load_certificates(body["certificate_chain_pem"].encode())
    _issuer_is_pebble(chain)
    san = chain[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [f"*.{label}.{ZONE}"]
    # 90 days, as configured in Pebble (Let's Encrypt's lifetime). Without ARI (issue 23, renewal
    # spread) the renewal falls at a random moment between two thirds and three quarters of it.
    lifetime = chain[0].not_valid_after_utc - chain[0].not_valid_before_utc
    assert abs(lifetime.total_seconds() - 90 * 86400) <= 1
    renew_after = datetime.fromisoformat(body["renew_after"].replace("Z", "+00:00"))
    start = chain[0].not_valid_before_utc
    assert start + lifetime * 2 / 3 - timedelta(seconds=1) <= renew_after <= start + lifetime * 3 / 4
    # Pebble validated by asking lancert's DNS (test_service_upstream_faults withholds the answer and
    # the order fails); the record is gone once the order ended, in every answer within the 2 s that
    # the DNS workers take to see a change of the table. Without records the challenge name does not
    # exist (NXDOMAIN: nothing lies below it, unlike the box label itself, RFC 8020).
    name = f"_acme-challenge.{label}.{ZONE}"
    assert challenge_rcode_once_settled(service.dns_port, name, answered) == dns.rcode.NXDOMAIN


def test_compatible_call_issues_through_pebble_once_per_database(
    service: ServiceProcess, registry: Registry
) -> None:
    uuid = registry.add()
    # A box calls again while its first certificate is still being ordered (issuance_pending).
    first = compatible_until_issued(service, uuid).result
    assert set(first) == {"subject_cn", "x509_pem", "private_key_pem"}, first
    chain = load_certificates(first["x509_pem"].encode())
    _issuer_is_pebble(chain)
    assert public_key_matches(load_private_key_pem(first["private_key_pem"].encode()), chain[0].public_key())
    # Every box of the database gets this same pair until its renewal time: no second upstream order.
    again = compatible_until_issued(service, uuid)
    assert again.result == first and again.pending == []
    label = first["subject_cn"].split(".")[1]
    rows = [row for row in certs_json(service.data_dir) if row["box_label"] == label]
    assert len(rows) == 1
    row = rows[0]
    assert row["db_uuid"] == uuid and row["style"] == "compatible" and row["orders"] == 1
    assert row["issuer"].endswith("/dir") and row["last_error"] is None
    assert row["not_after"].startswith(chain[0].not_valid_after_utc.date().isoformat())


def test_service_certs_prints_a_line_per_label(service: ServiceProcess, registry: Registry) -> None:
    uuid = registry.add()
    compatible_until_issued(service, uuid)
    out = subprocess.run(
        [sys.executable, "-m", "lancert", "service", "certs", "--data-dir", str(service.data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    line = next(line for line in out.splitlines() if line.startswith(uuid))
    assert "(compatible): https://127.0.0.1:" in line and "not after 20" in line and "renewal due 20" in line


def test_chromium_trusting_only_pebbles_root_loads_the_box(
    service: ServiceProcess, registry: Registry, pebble_nssdb: Path, tmp_path: Path
) -> None:
    uuid = registry.add()
    dns = f"127.0.0.1:{service.dns_port}"
    args = [
        "box",
        "run",
        "--state-dir",
        str(tmp_path / "box"),
        "--lan-ip",
        "127.0.0.1",
        "--http-port",
        "0",
        "--https-port",
        "0",
        "--server",
        service.url,
        "--db-uuid",
        uuid,
        "--enterprise-code",
        CODE,
        "--resolver",
        dns,
        "--zone-dns",
        dns,
    ]
    box = Child.start("the box", args, tmp_path / "box.log")
    try:
        ready = box.wait_for("lancert box:", 60)
        https_port = int(ready.split()[3].rstrip("/").rsplit(":", 1)[1])
        state = json.loads((tmp_path / "box" / "state.json").read_text())
        assert state["status"] == "OK", state
        hostname = state["hostname"]
        assert hostname.startswith("127-0-0-1.") and hostname.endswith(f".{ZONE}")
        url = f"https://{hostname}:{https_port}/"
        page = load(url, home=pebble_nssdb, resolve={hostname: "127.0.0.1"}, marker='id="status">OK<')
        assert page.ok, page.detail
        # Without Pebble's root the same page is refused: the padlock came from Pebble's root alone.
        bare = tmp_path / "bare-home"
        (bare / ".pki" / "nssdb").mkdir(parents=True)
        subprocess.run(
            ["certutil", "-N", "-d", f"sql:{bare / '.pki' / 'nssdb'}", "--empty-password"], check=True
        )
        refused = load(url, home=bare, resolve={hostname: "127.0.0.1"})
        assert not refused.ok and "ERR_CERT_AUTHORITY_INVALID" in refused.detail
    finally:
        box.stop()


def test_the_compatible_pair_served_as_nginx_would_verifies_against_pebbles_root(
    service: ServiceProcess, registry: Registry, pebble: Pebble, tmp_path: Path
) -> None:
    result = compatible_until_issued(service, registry.add()).result
    (tmp_path / "chain.pem").write_text(result["x509_pem"])
    (tmp_path / "key.pem").write_text(result["private_key_pem"])
    (tmp_path / "root.pem").write_text(pebble.root_pem())
    host = "192-168-1-25." + result["subject_cn"][2:]
    server = serve_page(
        tmp_path / "chain.pem", tmp_path / "key.pem", b"<p>compatible box</p>", host="127.0.0.1"
    )
    try:
        context = ssl.create_default_context(cafile=str(tmp_path / "root.pem"))
        with (
            socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw,
            context.wrap_socket(raw, server_hostname=host) as tls,
        ):
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
    finally:
        server.stop()


def test_no_root_to_import_when_a_public_ca_issues(service: ServiceProcess) -> None:
    with service.client() as client:
        response = client.get("/api/v1/root")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
