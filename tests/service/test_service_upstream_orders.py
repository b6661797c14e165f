"""The order desk with slow issuance (the internal CA wrapped by the test-only entry point
slow_issuer_service.py to take 4.5 s per certificate): the compatible call answers within 5 s (field boxes
of the middle generation give up at 5 s), the order goes on in the background, the next request gets
its result, concurrent requests share one order, and a box keeps getting its still-valid pair while the
renewal runs."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from service_testlib import Registry, ServiceProcess, make_csr, write_config
from upstream_testlib import certs_json, compatible_call, compatible_result, native_call

from lancert.pki import load_certificates

pytestmark = pytest.mark.slow  # starts a server or subprocess (tests/conftest.py)

SLOW = 4.5  # seconds per certificate, over the 3.5 s the compatible call waits
FIELD_BOX_TIMEOUT = 5.0


@pytest.fixture(scope="module")
def slow_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    data_dir = tmp_path_factory.mktemp("slow") / "data"
    config = write_config(
        data_dir.parent / "slow.toml", failures_per_ip=100_000, failures_per_database=100_000
    )
    # 100 s with the CA's 60 s of backdating: valid for 40 s more, renewal due after 6.7 s.
    args = [
        "--config",
        str(config),
        "--dns-port",
        "0",
        "--cert-lifetime",
        "100s",
        "--slow-issuance",
        str(SLOW),
    ]
    process = ServiceProcess(data_dir, args, entry=Path(__file__).parent / "slow_issuer_service.py").start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def registry(slow_service: ServiceProcess) -> Registry:
    return Registry(slow_service.data_dir)


def timed_call(service: ServiceProcess, uuid: str) -> tuple[float, dict[str, str]]:
    start = time.monotonic()
    result = compatible_result(compatible_call(service, uuid, timeout=FIELD_BOX_TIMEOUT))
    return time.monotonic() - start, result


def wait_for_certificate(service: ServiceProcess, uuid: str, unlike: str | None = None) -> dict[str, str]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        elapsed, result = timed_call(service, uuid)
        assert elapsed < FIELD_BOX_TIMEOUT
        if "x509_pem" in result and result["x509_pem"] != unlike:
            return result
        time.sleep(0.5)
    raise AssertionError("the background order never delivered")


def test_slow_order_answers_pending_within_five_seconds_then_delivers(
    slow_service: ServiceProcess, registry: Registry
) -> None:
    uuid = registry.add()
    elapsed, first = timed_call(slow_service, uuid)
    assert elapsed < FIELD_BOX_TIMEOUT
    assert first["reason"] == "issuance_pending" and "ask again" in first["error"]
    result = wait_for_certificate(slow_service, uuid)
    assert load_certificates(result["x509_pem"].encode())
    assert timed_call(slow_service, uuid)[1] == result  # cached: no second order
    label = result["subject_cn"].split(".")[1]
    assert [row["orders"] for row in certs_json(slow_service.data_dir) if row["box_label"] == label] == [1]


def test_concurrent_compatible_requests_share_one_order(
    slow_service: ServiceProcess, registry: Registry
) -> None:
    uuid = registry.add()
    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(lambda _: timed_call(slow_service, uuid), range(10)))
    assert all(elapsed < FIELD_BOX_TIMEOUT for elapsed, _ in answers)
    assert {result["reason"] for _, result in answers} == {"issuance_pending"}
    result = wait_for_certificate(slow_service, uuid)
    label = result["subject_cn"].split(".")[1]
    assert [row["orders"] for row in certs_json(slow_service.data_dir) if row["box_label"] == label] == [1]


def test_box_keeps_getting_its_valid_pair_while_the_renewal_runs(
    slow_service: ServiceProcess, registry: Registry
) -> None:
    uuid = registry.add()
    old = wait_for_certificate(slow_service, uuid)
    leaf = load_certificates(old["x509_pem"].encode())[0]
    renew_after = leaf.not_valid_before_utc + (leaf.not_valid_after_utc - leaf.not_valid_before_utc) * 2 / 3
    time.sleep(max(0.0, (renew_after - leaf.not_valid_before_utc).total_seconds() - 60 + 0.5))
    # Renewal due, the new order takes 4.5 s: the box gets the old, still valid pair within 5 s ...
    elapsed, during = timed_call(slow_service, uuid)
    assert elapsed < FIELD_BOX_TIMEOUT and during == old
    # ... and the new pair once the background order ends.
    new = wait_for_certificate(slow_service, uuid, unlike=old["x509_pem"])
    assert new["private_key_pem"] != old["private_key_pem"]


def test_identical_native_requests_share_one_order(slow_service: ServiceProcess, registry: Registry) -> None:
    """A box that asks again while its order runs (same key) gets the same certificate from one order,
    within lancert's box agent's 10 s (the native call waits up to 8 s; issuance takes 4.5 s here)."""
    uuid = registry.add()
    csr = make_csr()
    with ThreadPoolExecutor(3) as pool:
        responses = list(pool.map(lambda _: native_call(slow_service, uuid, "counter", csr), range(3)))
    assert [r.status_code for r in responses] == [200] * 3
    assert len({r.json()["certificate_chain_pem"] for r in responses}) == 1
    label = responses[0].json()["box_label"]
    assert [row["orders"] for row in certs_json(slow_service.data_dir) if row["box_label"] == label] == [1]
