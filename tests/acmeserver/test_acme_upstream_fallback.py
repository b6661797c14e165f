"""Where three features meet: lancert's ACME server (issue 18 point 1: every front through one issuance
step, ``--issuer acme``), several upstream CAs in order (issue 23 point 1) and ``/metrics`` (issue 23
point 5). Each feature's own tests cover it alone: the ACME server's upstream tests run one Pebble, the
fallback tests reach the service through the box fronts, the metrics tests issue from the internal CA.

Here an unmodified certbot orders from lancert's ACME port while the first of two real Pebbles
(``[[upstream]]`` tables of the config file) is stopped: the second CA issues, ``service certs`` says the
first was skipped as unreachable, and ``/metrics`` on the service's HTTP port counts the certificate
under the ACME front (not native, not compatible).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from acme_harness import ZONE, AcmeService
from cryptography import x509
from prometheus_client.parser import text_string_to_metric_families

from capabilities import require, required_for_module
from lancert.loopback import free_port
from lancert_cli import lancert
from pebble_server import PEBBLE, AcmeRelay, Pebble

pytestmark = pytest.mark.slow
_capability = required_for_module(PEBBLE is not None, "needs Debian's pebble (the upstream ACME CA)")


@dataclass
class TwoUpstreams:
    service: AcmeService
    first: Pebble
    second: Pebble
    first_relay: AcmeRelay
    second_relay: AcmeRelay

    @property
    def http_url(self) -> str:
        """The service's HTTP port (where /metrics is), from its ready line."""
        assert self.service.child is not None
        line = next(ln for ln in self.service.child.lines if "listening on http://" in ln)
        return line.strip().rsplit(" ", 1)[-1]


@pytest.fixture(scope="module")
def upstreams(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoUpstreams]:
    base = tmp_path_factory.mktemp("acme-two-upstreams")
    dns_port = free_port()
    first = Pebble(base / "first", dns_port).start()
    second = Pebble(base / "second", dns_port).start()
    first_relay, second_relay = AcmeRelay(first), AcmeRelay(second)
    config = base / "service.toml"
    config.write_text(
        f'zone = "{ZONE}"\nissuer = "acme"\n'
        f'[[upstream]]\ndirectory = "{first_relay.directory}"\nca_bundle = "{first.ca_bundle}"\n'
        f'[[upstream]]\ndirectory = "{second_relay.directory}"\nca_bundle = "{second.ca_bundle}"\n'
        "[orders]\nretry_backoff = 1.0\nupstream_down_backoff = 1.0\n"
        "[rate_limit]\nfailures_per_ip = 100000\nfailures_per_database = 100000\n"
    )
    service = AcmeService(base / "service", extra=["--config", str(config), "--dns-port", str(dns_port),
                                                   "--dns-workers", "1"])
    try:
        service.start()
        yield TwoUpstreams(service, first, second, first_relay, second_relay)
    finally:
        log = service.stop()
        for relay in (first_relay, second_relay):
            relay.stop()
        for pebble in (first, second):
            pebble.stop()
    assert "Traceback" not in log, log


def _issued(metrics_text: str) -> dict[str, float]:
    """lancert_certificates_issued_total by front, parsed by prometheus-client's own parser."""
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name == "lancert_certificates_issued_total":
                counts[sample.labels["front"]] = sample.value
    return counts


def test_certbot_through_lancert_gets_the_second_cas_certificate_when_the_first_is_stopped(
    upstreams: TwoUpstreams, tmp_path: Path
) -> None:
    require(shutil.which("certbot") is not None, "certbot is not installed (Debian package certbot)")
    service = upstreams.service
    with httpx.Client(base_url=upstreams.http_url, timeout=30) as http:
        before = _issued(http.get("/metrics").text)
    upstreams.first.stop()  # the relay now closes every connection, as a dead CA's address would
    uuid = service.database()
    eab = service.eab(uuid)
    label = service.label_of(eab)
    names = [f"*.{label}.{ZONE}", f"web.{label}.{ZONE}"]
    second_orders = upstreams.second_relay.new_orders
    service.certbot_certonly(eab, names, tmp_path, timeout=240)

    # The chain is the second Pebble's: leaf by its intermediate, intermediate by its root.
    chain = x509.load_pem_x509_certificates((tmp_path / "config/live/shop/fullchain.pem").read_bytes())
    leaf, intermediate = chain[0], chain[1]
    root = x509.load_pem_x509_certificate(upstreams.second.root_pem().encode())
    leaf.verify_directly_issued_by(intermediate)
    intermediate.verify_directly_issued_by(root)
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(san.get_values_for_type(x509.DNSName)) == sorted(names)
    assert upstreams.second_relay.new_orders == second_orders + 1, "one upstream order for one client order"

    # service certs: the second CA issued, the first was skipped as unreachable.
    rows = [r for r in json.loads(lancert("service", "certs", "--json", "--data-dir",
                                          str(service.data_dir)).stdout) if r["db_uuid"] == uuid]
    assert len(rows) == 1, rows
    assert rows[0]["issuer"] == upstreams.second_relay.directory, rows
    skipped = rows[0]["skipped"]
    assert isinstance(skipped, list) and len(skipped) == 1, skipped
    assert skipped[0].startswith(upstreams.first_relay.directory) and "upstream_unreachable" in skipped[0]

    # /metrics: one more certificate under the ACME front, none under the box fronts.
    with httpx.Client(base_url=upstreams.http_url, timeout=30) as http:
        after = _issued(http.get("/metrics").text)
    assert after.get("acme", 0) == before.get("acme", 0) + 1, (before, after)
    for front in ("native", "compatible"):
        assert after.get(front, 0) == before.get(front, 0), (front, before, after)
