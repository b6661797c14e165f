"""lancert's ACME server in front of a public CA (``--issuer acme``; the real Pebble upstream, its DNS-01
validation sent to lancert's DNS with ``-dnsserver``), on SQLite and on PostgreSQL.

The contract (issue 18, point 1): a client's order goes through the service's one issuance step (order
desk, issuer, record, log line), never waiting on the upstream CA inside a database write transaction;
finalize answers ``processing`` with Retry-After while the upstream order runs, and the client polls;
every name ordered upstream is provable there (``web.<label>.<zone>`` as well as the wildcard); ACME
issuance and refusals are logged as the native API's are; the per-name back-off of the order desk
applies to ACME orders too.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from acme_harness import ZONE, AcmeClient, AcmeService, problem
from cryptography import x509

import postgres_server
from capabilities import require, required_for_module
from lancert.loopback import free_port
from lancert.pki import SubjectNames, create_csr, generate_private_key, verify_server_chain
from pebble_server import PEBBLE, AcmeRelay, Pebble

pytestmark = pytest.mark.slow
_capability = required_for_module(PEBBLE is not None, "needs Debian's pebble (the upstream ACME CA)")
postgres_url = postgres_server.postgres_url  # the module-scoped fixture, shared with tests/service

# RFC 8555 7.4 / the issue: a finalize whose certificate is not there yet is answered "processing"; the
# upstream order here is held, so it cannot be there within this bound.
ANSWERED_WITHIN = 3.0  # seconds: any ACME request while an upstream order is in flight
RATE_LIMIT_RETRY_AFTER = 40  # seconds, what the relay's rateLimited answer says


@dataclass
class Upstream:
    service: AcmeService
    pebble: Pebble
    relay: AcmeRelay

    def log(self) -> str:
        assert self.service.child is not None
        return self.service.child.log_text()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def upstream(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstream]:
    db = None
    if request.param == "postgresql":
        require(postgres_server.PG_BIN is not None, postgres_server.MISSING)
        db = request.getfixturevalue("postgres_url")
    root = tmp_path_factory.mktemp(f"acme-upstream-{request.param}")
    dns_port = free_port()
    pebble = Pebble(root / "pebble", dns_port).start()
    relay = AcmeRelay(pebble)
    service = AcmeService(root / "service", db=db, extra=[
        "--dns-port", str(dns_port), "--dns-workers", "1", "--issuer", "acme",
        "--acme-directory", relay.directory, "--acme-ca-bundle", str(pebble.ca_bundle)])
    try:
        service.start()
        yield Upstream(service, pebble, relay)
    finally:
        log = service.stop()
        relay.stop()
        pebble.stop()
    assert "Traceback" not in log, log
    assert "database is locked" not in log, log


def issued_by_pebble(upstream: Upstream, chain_pem: str, names: list[str]) -> x509.Certificate:
    """The chain is Pebble's (leaf + intermediate), verifies to Pebble's root for every name."""
    certs = x509.load_pem_x509_certificates(chain_pem.encode())
    root = x509.load_pem_x509_certificate(upstream.pebble.root_pem().encode())
    leaf = certs[0]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(san.get_values_for_type(x509.DNSName)) == sorted(names)
    for name in names:
        host = name.replace("*", "192-168-1-25")
        assert verify_server_chain(leaf, anchors=[root], host=host, intermediates=certs[1:])[0] == leaf
    return leaf


def test_certbot_gets_a_certificate_from_the_upstream_ca_for_a_host_and_the_wildcard(
    upstream: Upstream, tmp_path: Path
) -> None:
    require(shutil.which("certbot") is not None, "certbot is not installed (Debian package certbot)")
    service = upstream.service
    uuid = service.database()
    eab = service.eab(uuid)
    label = service.label_of(eab)
    names = [f"*.{label}.{ZONE}", f"web.{label}.{ZONE}"]
    orders_before = upstream.relay.new_orders
    # The authorizations at lancert are valid at creation (EAB binds the account to its database), so
    # no hook may run; the upstream CA's DNS-01 is lancert's business.
    service.certbot_certonly(eab, names, tmp_path, timeout=180)
    chain = (tmp_path / "config" / "live" / "shop" / "fullchain.pem").read_text()
    leaf = issued_by_pebble(upstream, chain, names)
    assert upstream.relay.new_orders == orders_before + 1, "one upstream order for one client order"
    serial = format(leaf.serial_number, "x")
    issued = [ln for ln in upstream.log().splitlines() if f"serial {serial}" in ln]
    assert len(issued) == 1, upstream.log()[-3000:]
    assert f"for database {uuid}" in issued[0] and "acme call from 127.0.0.1" in issued[0], issued
    assert all(name in issued[0].split(" for database ")[0] for name in names), issued


def test_finalize_answers_processing_while_the_upstream_order_runs_and_nothing_waits_for_it(
    upstream: Upstream,
) -> None:
    service = upstream.service
    client, waiting = AcmeClient(service), AcmeClient(service)
    eab = service.eab(service.database())
    assert client.new_account(eab).status_code == 201
    other = service.eab(service.database())
    assert waiting.new_account(other).status_code == 201
    names = [f"web.{service.label_of(eab)}.{ZONE}"]
    order = client.new_order(names)
    assert order.status_code == 201, order.text
    upstream.relay.hold()  # the upstream CA's challenge answer waits: the order cannot end
    try:
        start = time.monotonic()
        finalized = client.finalize(order.json(), create_csr(generate_private_key(),
                                                             SubjectNames.parse(dns=names)))
        assert time.monotonic() - start < ANSWERED_WITHIN
        assert finalized.status_code == 200, finalized.text
        assert finalized.json()["status"] == "processing"
        assert int(finalized.headers["retry-after"]) >= 1
        assert upstream.relay.held.wait(30), "the upstream order never reached its challenge"
        # While the upstream order is in flight: other requests (writes too) are answered at once.
        start = time.monotonic()
        assert waiting.new_order([f"web.{service.label_of(other)}.{ZONE}"]).status_code == 201
        polled = client.post(order.headers["location"])
        assert time.monotonic() - start < ANSWERED_WITHIN
        assert polled.json()["status"] == "processing" and int(polled.headers["retry-after"]) >= 1
    finally:
        upstream.relay.release()
    deadline = time.monotonic() + 60
    body = polled.json()
    while body["status"] == "processing" and time.monotonic() < deadline:
        time.sleep(0.5)
        body = client.post(order.headers["location"]).json()
    assert body["status"] == "valid", body
    chain = client.post(body["certificate"])
    assert chain.status_code == 200
    issued_by_pebble(upstream, chain.text, names)


def test_the_per_name_back_off_applies_to_acme_orders_and_refusals_are_logged(upstream: Upstream) -> None:
    service = upstream.service
    client = AcmeClient(service)
    uuid = service.database()
    eab = service.eab(uuid)
    assert client.new_account(eab).status_code == 201
    names = [f"web.{service.label_of(eab)}.{ZONE}"]
    upstream.relay.rate_limit = RATE_LIMIT_RETRY_AFTER
    try:
        first = client.new_order(names)
        refused = client.finalize(first.json(), create_csr(generate_private_key(),
                                                           SubjectNames.parse(dns=names)))
        problem(refused, "rateLimited")
        assert int(refused.headers["retry-after"]) >= RATE_LIMIT_RETRY_AFTER
        assert client.post(first.headers["location"]).json()["status"] == "invalid"
        attempted = upstream.relay.new_orders
        # The same name again at once: the desk's back-off answers, the upstream CA is not asked.
        second = client.new_order(names)
        again = client.finalize(second.json(), create_csr(generate_private_key(),
                                                          SubjectNames.parse(dns=names)))
        problem(again, "rateLimited")
        assert int(again.headers["retry-after"]) >= RATE_LIMIT_RETRY_AFTER - 5
        assert upstream.relay.new_orders == attempted
    finally:
        upstream.relay.rate_limit = None
    finalize_path = f"/acme/order/{second.headers['location'].rsplit('/', 1)[1]}/finalize"
    lines = [ln for ln in upstream.log().splitlines() if f"refused {finalize_path} " in ln]
    assert len(lines) == 1, upstream.log()[-3000:]
    assert f"from 127.0.0.1 for database {uuid}: rateLimited" in lines[0], lines


def test_two_instances_order_one_name_upstream_one_at_a_time(upstream: Upstream) -> None:
    """Two instances on one database, one ACME account: finalizes of the same label's names at both
    instances at once make one upstream order at a time (the order desk's lock on the label, across
    instances); the second starts once the first ended, and both orders become valid."""
    first = upstream.service
    second = AcmeService(first.data_dir.parent / "second", db=first.db_url, extra=[
        "--issuer", "acme", "--acme-directory", upstream.relay.directory,
        "--acme-ca-bundle", str(upstream.pebble.ca_bundle)]).start()
    try:
        client = AcmeClient(first)
        eab = first.eab(first.database())
        assert client.new_account(eab).status_code == 201
        label = first.label_of(eab)
        orders = []
        for host in ("one", "two"):
            order = client.new_order([f"{host}.{label}.{ZONE}"])
            assert order.status_code == 201, order.text
            orders.append(order)
        before = upstream.relay.new_orders
        upstream.relay.hold()
        try:
            client.backends = [first.port]
            names = [f"one.{label}.{ZONE}"]
            one = client.finalize(orders[0].json(), create_csr(generate_private_key(),
                                                               SubjectNames.parse(dns=names)))
            assert one.json()["status"] == "processing", one.text
            assert upstream.relay.held.wait(30)
            client.backends = [second.port]
            names = [f"two.{label}.{ZONE}"]
            two = client.finalize(orders[1].json(), create_csr(generate_private_key(),
                                                               SubjectNames.parse(dns=names)))
            assert two.json()["status"] == "processing", two.text
            time.sleep(2)  # the second instance's desk sees the label's order held by the first
            assert upstream.relay.new_orders == before + 1
        finally:
            upstream.relay.release()
        client.backends = []
        deadline = time.monotonic() + 90
        states = ["processing", "processing"]
        while "processing" in states and time.monotonic() < deadline:
            time.sleep(0.5)
            states = [client.post(o.headers["location"]).json()["status"] for o in orders]
        assert states == ["valid", "valid"]
        assert upstream.relay.new_orders == before + 2
    finally:
        log = second.stop()
    assert "Traceback" not in log, log
