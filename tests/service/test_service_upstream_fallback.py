"""Two upstream CAs in order (issue 23 point 1), both real Pebbles: the first is stopped, then fails
DNS-01 (restarted with its ``-dnsserver`` at a loopback port where nothing listens), then answers
``rateLimited``; each time the second issues, the box gets a valid chain from it, ``service certs`` says
which CA issued and why the first was skipped, and nothing is lost when the first comes back (the
earlier pairs are still handed out without a new order, and the first CA issues again).

Each Pebble sits behind an :class:`~upstream_testlib.AcmeRelay` (it counts the new orders that reach the
CA, answers ``rateLimited`` on demand, and lists a CAA identity in the directory, which Pebble does not).
The CAs come from ``[[upstream]]`` tables of the config file, each with its own CA bundle (each Pebble
has its own HTTPS test CA). A CA found down is passed over for 1 s here (``upstream_down_backoff``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import dns.message
import dns.query
import dns.rdatatype
import pytest
from cryptography import x509
from service_testlib import CODE, ZONE, Registry, ServiceProcess, make_csr
from upstream_testlib import (
    PEBBLE,
    AcmeRelay,
    Pebble,
    certs_json,
    compatible_until_issued,
    native_call,
)

from capabilities import required_for_module
from lancert.loopback import free_port
from lancert.pki import load_certificates

pytestmark = pytest.mark.slow
_capability = required_for_module(PEBBLE is not None, "Debian package 'pebble' is not installed")


@dataclass
class TwoCAs:
    first: Pebble
    second: Pebble
    first_relay: AcmeRelay
    second_relay: AcmeRelay
    service: ServiceProcess
    registry: Registry
    service_dns: int

    def row(self, uuid: str) -> dict[str, object]:
        return next(r for r in certs_json(self.service.data_dir) if r["db_uuid"] == uuid)


@pytest.fixture(scope="module")
def cas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoCAs]:
    base = tmp_path_factory.mktemp("fallback")
    service_dns = free_port()
    first = Pebble(base / "first", service_dns).start()
    second = Pebble(base / "second", service_dns).start()
    first_relay, second_relay = AcmeRelay(first), AcmeRelay(second)
    first_relay.caa_identities = ["first-ca.lancert.test"]
    second_relay.caa_identities = ["second-ca.lancert.test"]
    data_dir = base / "data"
    config = base / "service.toml"
    config.write_text(
        f'zone = "{ZONE}"\nissuer = "acme"\n'
        f'[[upstream]]\ndirectory = "{first_relay.directory}"\nca_bundle = "{first.ca_bundle}"\n'
        f'[[upstream]]\ndirectory = "{second_relay.directory}"\nca_bundle = "{second.ca_bundle}"\n'
        "[orders]\nretry_backoff = 1.0\nupstream_down_backoff = 1.0\n"
        "[rate_limit]\nfailures_per_ip = 100000\nfailures_per_database = 100000\n"
    )
    service = ServiceProcess(data_dir, ["--config", str(config), "--dns-port", str(service_dns)]).start()
    registry = Registry(data_dir)
    try:
        yield TwoCAs(first, second, first_relay, second_relay, service, registry, service_dns)
    finally:
        service.stop()
        for relay in (first_relay, second_relay):
            relay.stop()
        for pebble in (first, second):
            pebble.stop()


def _chain_from(chain: list[x509.Certificate], pebble: Pebble) -> None:
    """A valid chain from this Pebble: leaf signed by the intermediate, intermediate by its root."""
    assert len(chain) >= 2
    leaf, intermediate = chain[0], chain[1]
    root = load_certificates(pebble.root_pem().encode())[0]
    for child, parent in ((leaf, intermediate), (intermediate, root)):
        assert child.issuer == parent.subject
        child.verify_directly_issued_by(parent)  # raises if the signature does not verify


def _issue(cas: TwoCAs) -> tuple[str, list[x509.Certificate], str]:
    uuid = cas.registry.add()
    delivery = compatible_until_issued(cas.service, uuid, give_up=90)
    return uuid, load_certificates(delivery.result["x509_pem"].encode()), delivery.result["x509_pem"]


def test_caa_at_the_apex_names_every_configured_ca(cas: TwoCAs) -> None:
    answer = dns.query.udp(
        dns.message.make_query(ZONE, "CAA"), "127.0.0.1", port=cas.service_dns, timeout=5
    )
    values = sorted(
        r.value.decode() for rrset in answer.answer for r in rrset if r.rdtype == dns.rdatatype.CAA
    )
    assert values == ["first-ca.lancert.test", "second-ca.lancert.test"]


def test_the_first_ca_issues_while_it_is_up(cas: TwoCAs) -> None:
    second_before = cas.second_relay.new_orders
    uuid, chain, _pem = _issue(cas)
    _chain_from(chain, cas.first)
    row = cas.row(uuid)
    assert row["issuer"] == cas.first_relay.directory and row["skipped"] == []
    assert cas.second_relay.new_orders == second_before


def test_first_ca_down_stopped_then_failing_dns01_then_rate_limiting_the_second_issues(
    cas: TwoCAs,
) -> None:
    kept: list[tuple[str, str]] = []

    def second_issues(expected_skip: str) -> None:
        before = cas.second_relay.new_orders
        uuid, chain, pem = _issue(cas)
        _chain_from(chain, cas.second)
        row = cas.row(uuid)
        assert row["issuer"] == cas.second_relay.directory, row
        skipped = row["skipped"]
        assert isinstance(skipped, list) and len(skipped) == 1
        assert skipped[0].startswith(cas.first_relay.directory) and expected_skip in skipped[0], skipped
        assert cas.second_relay.new_orders == before + 1
        kept.append((uuid, pem))

    # 1. The first CA stopped: the relay closes the connection as a dead CA's would.
    cas.first.stop()
    second_issues("upstream_unreachable")
    # The native API too: one answer within the box's wait, with the second CA's chain.
    uuid = cas.registry.add()
    label = native_call(cas.service, uuid, "kitchen", make_csr()).json()["error"]["box_label"]
    response = native_call(cas.service, uuid, "kitchen", make_csr([f"*.{label}.{ZONE}"]))
    assert response.status_code == 200, response.text
    _chain_from(load_certificates(response.json()["certificate_chain_pem"].encode()), cas.second)

    # 2. Back, but validating through a DNS server that is not there: DNS-01 fails at the first.
    time.sleep(1.2)  # the service passes the first over for 1 s after finding it down
    cas.first.dns_port = free_port()
    cas.first.start()
    second_issues("validation_failed")

    # 3. Validating through lancert's DNS again, but answering rateLimited (Retry-After 2 s).
    cas.first.stop()
    cas.first.dns_port = cas.service_dns
    cas.first.start()
    cas.first_relay.rate_limit = 2
    try:
        time.sleep(1.2)
        second_issues("rateLimited")
    finally:
        cas.first_relay.rate_limit = None

    # 4. The first is fine again: nothing was lost. Every earlier pair is still handed out as it was,
    # without a new order anywhere, and the first CA issues the next certificate.
    orders = (cas.first_relay.new_orders, cas.second_relay.new_orders)
    for uuid, pem in kept:
        again = compatible_until_issued(cas.service, uuid, give_up=10)
        assert again.result["x509_pem"] == pem and not again.pending
    assert (cas.first_relay.new_orders, cas.second_relay.new_orders) == orders
    time.sleep(2.5)  # past the rateLimited answer's Retry-After
    uuid, chain, _pem = _issue(cas)
    _chain_from(chain, cas.first)
    assert cas.row(uuid)["issuer"] == cas.first_relay.directory


def test_a_request_beyond_the_limits_is_pending_with_its_turn_and_never_ordered(cas: TwoCAs) -> None:
    """One CA granting 1 new order per 3 hours (the raised-limit setting, lowered): the second database
    waits, answered issuance_pending with a Retry-After of about 3 hours, and the CA never sees its order."""
    base = cas.service.data_dir.parent
    data_dir = base / "limited"
    config = base / "limited.toml"
    config.write_text(
        f'zone = "{ZONE}"\nissuer = "acme"\n'
        f'[[upstream]]\ndirectory = "{cas.second_relay.directory}"\nca_bundle = "{cas.second.ca_bundle}"\n'
        "new_orders_per_3h = 1\n"
        "[rate_limit]\nfailures_per_ip = 100000\nfailures_per_database = 100000\n"
    )
    service = ServiceProcess(data_dir, ["--config", str(config), "--dns-port", str(cas.service_dns)])
    cas.service.stop()  # the limited service answers the CA's DNS-01 queries on the same port
    service.start()
    try:
        registry = Registry(data_dir)
        first = compatible_until_issued(service, registry.add(), give_up=90)
        assert "x509_pem" in first.result
        orders = cas.second_relay.new_orders
        uuid = registry.add()
        with service.client() as client:
            response = client.post(
                "/odoo-enterprise/iot/x509", json={"params": {"db_uuid": uuid, "enterprise_code": CODE}}
            )
        assert response.status_code == 429 and response.json()["result"] is None, response.text
        error = response.json()["error"]
        assert error["code"] == "issuance_pending", error
        retry_after = int(response.headers["Retry-After"])
        assert 3 * 3600 - 120 <= retry_after <= 3 * 3600 and error["retry_after"] == retry_after
        assert "new-orders limit" in error["message"] and "0 ahead" in error["message"]
        assert cas.second_relay.new_orders == orders  # nothing spent on an order the CA would refuse
    finally:
        service.stop()
        cas.service.start()
