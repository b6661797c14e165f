"""``/metrics`` (issue 23 point 5): the service's counters in Prometheus' text format, scraped by a real
Prometheus (Debian ``prometheus``, on loopback, with its own configuration and storage in a temporary
directory), which is then asked for the issued-certificates counter through its HTTP query API.

Also: refusals by front and reason, DNS answers by rcode, the soonest expiry, and no label holding a
database UUID, a box label or an enterprise code.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dns.message
import dns.query
import httpx
import pytest
from service_testlib import CODE, ZONE, Registry, ServiceProcess, make_csr

from capabilities import required_for_module
from lancert.box.files import BoxState
from lancert.box.metrics import render as box_metrics
from lancert.loopback import free_port

PROMETHEUS = shutil.which("prometheus")
_capability = required_for_module(PROMETHEUS is not None, "Debian package 'prometheus' is not installed")


def _value(text: str, metric: str, **labels: str) -> float | None:
    """The sample of ``metric`` with exactly ``labels`` in a text exposition, or None."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(metric):
            continue
        name, _, rest = line.partition("{") if "{" in line.split(" ")[0] else (line.split(" ")[0], "", "")
        if name != metric:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', rest.partition("}")[0])) if rest else {}
        if found == labels:
            return float(line.rsplit(" ", 1)[1])
    return None


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    base = tmp_path_factory.mktemp("metrics")
    config = base / "service.toml"
    config.write_text(
        f'zone = "{ZONE}"\n[rate_limit]\nfailures_per_ip = 1000\nfailures_per_database = 1000\n'
    )
    process = ServiceProcess(base / "data", ["--config", str(config), "--dns-port", str(free_port())]).start()
    try:
        yield process
    finally:
        process.stop()


@pytest.mark.slow
def test_metrics_count_issued_and_refused_by_front_and_dns_by_rcode(service: ServiceProcess) -> None:
    registry = Registry(service.data_dir)
    uuid = registry.add()
    with service.client() as client:
        before = client.get("/metrics").text
        ok = client.post("/api/v1/certificates", json={
            "db_uuid": uuid, "enterprise_code": CODE, "box_id": "kitchen", "csr": make_csr()})
        assert ok.status_code == 200, ok.text
        wrong = client.post("/api/v1/certificates", json={
            "db_uuid": uuid, "enterprise_code": "not the code", "box_id": "kitchen", "csr": make_csr()})
        assert wrong.status_code == 403
        compatible = client.post(
            "/odoo-enterprise/iot/x509", json={"params": {"db_uuid": uuid, "enterprise_code": CODE}}
        )
        assert compatible.status_code == 200 and "x509_pem" in compatible.json()["result"]
        label = ok.json()["box_label"]
        for name in (f"x.{label}.{ZONE}", f"nothing.{ZONE}"):
            dns.query.udp(dns.message.make_query(name, "A"), "127.0.0.1", port=service.dns_port, timeout=5)
        time.sleep(0.2)
        response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    text = response.text

    def grew(metric: str, **labels: str) -> float:
        return (_value(text, metric, **labels) or 0) - (_value(before, metric, **labels) or 0)

    assert grew("lancert_certificates_issued_total", front="native") == 1
    assert grew("lancert_certificates_issued_total", front="compatible") == 1
    refused = [
        (dict(re.findall(r'(\w+)="([^"]*)"', line)), line) for line in text.splitlines()
        if line.startswith("lancert_certificates_refused_total{")
    ]
    assert any(labels.get("front") == "native" for labels, _ in refused), refused
    assert (_value(text, "lancert_dns_queries_total", rcode="NOERROR") or 0) >= 1
    assert (_value(text, "lancert_dns_queries_total", rcode="NXDOMAIN") or 0) >= 1
    soonest = _value(text, "lancert_certificate_soonest_expiry_days")
    assert soonest is not None and 89 < soonest <= 90  # the internal CA's 90 days
    assert _value(text, "lancert_upstream_queue_length") == 0
    # Nothing an operator does not already see in 'service certs', and no secret: no database UUID,
    # no box label, no enterprise code in any label.
    for secret in (uuid, label, CODE, "not the code"):
        assert secret not in text


@pytest.mark.slow
def test_a_real_prometheus_scrapes_the_issued_certificates_counter(
    service: ServiceProcess, tmp_path: Path
) -> None:
    assert PROMETHEUS is not None
    registry = Registry(service.data_dir)
    uuid = registry.add()
    with service.client() as client:
        response = client.post("/api/v1/certificates", json={
            "db_uuid": uuid, "enterprise_code": CODE, "box_id": "hall", "csr": make_csr()})
        assert response.status_code == 200
        expected = _value(client.get("/metrics").text, "lancert_certificates_issued_total", front="native")
    assert expected is not None and expected >= 1
    target = service.url.removeprefix("http://")
    (tmp_path / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        f"scrape_configs:\n  - job_name: lancert\n    static_configs:\n      - targets: ['{target}']\n"
    )
    port = free_port()
    log = (tmp_path / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [PROMETHEUS, f"--config.file={tmp_path / 'prometheus.yml'}",
         f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
         "--storage.tsdb.retention.time=1h"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    log.close()
    try:
        deadline = time.monotonic() + 60
        value = None
        while time.monotonic() < deadline and value != expected:
            assert proc.poll() is None, (tmp_path / "prometheus.log").read_text()[-2000:]
            try:
                answer = httpx.get(
                    f"http://127.0.0.1:{port}/api/v1/query",
                    params={"query": 'lancert_certificates_issued_total{front="native",job="lancert"}'},
                    timeout=5,
                ).json()
                results = answer.get("data", {}).get("result", [])
                value = float(results[0]["value"][1]) if results else None
            except (httpx.HTTPError, ValueError):
                value = None
            time.sleep(0.5)
        assert value == expected, (tmp_path / "prometheus.log").read_text()[-2000:]
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_the_box_metrics_say_days_left_and_the_current_error_code() -> None:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    state = BoxState(not_after=(now + timedelta(days=12, hours=12)).isoformat(), status="OK",
                     last_check=now.isoformat())
    text = box_metrics(state, now).decode()
    assert _value(text, "lancert_box_certificate_days_left") == 12.5
    assert _value(text, "lancert_box_certificate_valid") == 1
    failing = BoxState(status="ERR_IOT_HTTPS_LOAD_REQUEST_STATUS",
                       problems=[{"code": "ERR_IOT_HTTPS_LOAD_REQUEST_STATUS", "detail": "424"}])
    text = box_metrics(failing, now).decode()
    assert _value(text, "lancert_box_certificate_valid") == 0
    assert _value(text, "lancert_box_last_error", code="ERR_IOT_HTTPS_LOAD_REQUEST_STATUS") == 1
    odd = BoxState(problems=[{"code": "anything a file could hold"}])
    assert _value(box_metrics(odd, now).decode(), "lancert_box_last_error", code="other") == 1


def test_upstream_orders_and_their_seconds_are_a_counter_and_a_histogram(tmp_path: Path) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from lancert.service import metrics
    from lancert.service.config import ServiceConfig
    from lancert.service.database import open_database

    ca = "https://histogram.ca.test/directory"  # the counters are process-wide: a CA of this test's own
    for seconds, outcome in ((0.2, "issued"), (2.0, "issued"), (2.5, "rateLimited"), (500.0, "a b")):
        metrics.upstream_order(ca, outcome, seconds)
    database = open_database(ServiceConfig(data_dir=tmp_path))
    try:
        text = metrics.MetricsEndpoint(database).render().decode()
    finally:
        database.dispose()
    samples = [s for family in text_string_to_metric_families(text) for s in family.samples
               if s.labels.get("ca") == ca]
    orders = {s.labels["outcome"]: s.value for s in samples if s.name == "lancert_upstream_orders_total"}
    assert orders == {"issued": 2, "rateLimited": 1, "other": 1}  # 'a b' is no plain word
    buckets = {float(s.labels["le"]): s.value for s in samples
               if s.name == "lancert_upstream_order_seconds_bucket"}
    # Cumulative, and 'le' means less than or equal: the order of exactly 2 s is in the 2 s bucket.
    assert buckets[0.5] == 1 and buckets[1] == 1 and buckets[2] == 2 and buckets[3] == 3
    assert buckets[120] == 3 and buckets[float("inf")] == 4
    assert list(buckets.values()) == sorted(buckets.values())
    by_name = {s.name: s.value for s in samples if s.name.startswith("lancert_upstream_order_seconds_")}
    assert by_name["lancert_upstream_order_seconds_count"] == 4
    assert by_name["lancert_upstream_order_seconds_sum"] == pytest.approx(504.7)
    limited = [s.value for s in samples if s.name == "lancert_upstream_rate_limited_total"]
    assert limited == [1]


@pytest.mark.slow  # a fresh interpreter: this one has loaded all of these already
def test_a_built_service_loads_prometheus_client_at_first_scrape_and_no_dns(tmp_path: Path) -> None:
    # Issue 21, memory: a service counts every certificate but few are scraped, so a built service that
    # counted has not loaded the exposition library until its first scrape; and one without DNS
    # (--dns-port 0, as the ACME bench runs it) has not loaded the DNS server, its zone or dnslib. Nor
    # does the DNS server's module load dnslib in the process that only starts the workers.
    code = f"""
import sys
from pathlib import Path
from lancert.service import metrics
from lancert.service.config import ServiceConfig
from lancert.service.server import build_service
service = build_service(ServiceConfig(data_dir=Path({str(tmp_path / 'data')!r}), zone="iot.example.test"))
metrics.issued("native")
metrics.upstream_order("https://ca.test/directory", "issued", 1.0)
heavy = ("prometheus_client", "lancert.dns.server", "lancert.dns.zone", "dnslib")
print([m for m in heavy if m in sys.modules])
text = service.app.metrics.render().decode()
print("prometheus_client" in sys.modules, 'lancert_certificates_issued_total{{front="native"}} 1.0' in text)
import lancert.dns.server
print("dnslib" in sys.modules)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines() == ["[]", "True True", "False"]
