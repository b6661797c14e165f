"""A native order that outlives the box's wait must not become a second upstream order when the box asks
again (issue 23 point 2): Let's Encrypt allows 5 certificates per exact name set per week, and a box
retrying every few minutes with a new key each time would spend that in an hour.

The service's issuer takes 10 s per certificate here (slow_issuer_service.py), over the native call's
8 s wait: the first request is answered "pending", the order goes on; asked again with the same key, the
service hands out that order's certificate, without a second order. The box agent keeps the key of its
unanswered request for the next one (``request-key.pem``, 0600) until a certificate for it arrives.
"""

from __future__ import annotations

import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from service_testlib import Registry, ServiceProcess, make_csr, write_config
from upstream_testlib import certs_json, native_call

from lancert.pki import generate_private_key, load_certificates

pytestmark = pytest.mark.slow

SLOW = 10.0  # seconds per certificate: over the native call's 8 s
NATIVE_WAIT = 8.0


@pytest.fixture(scope="module")
def slow_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    data_dir = tmp_path_factory.mktemp("retry") / "data"
    config = write_config(
        data_dir.parent / "slow.toml", failures_per_ip=100_000, failures_per_database=100_000
    )
    args = ["--config", str(config), "--dns-port", "0", "--slow-issuance", str(SLOW)]
    process = ServiceProcess(data_dir, args, entry=Path(__file__).parent / "slow_issuer_service.py").start()
    yield process
    process.stop()


def test_the_retry_with_the_same_key_gets_the_first_orders_certificate(
    slow_service: ServiceProcess,
) -> None:
    uuid = Registry(slow_service.data_dir).add()
    key = generate_private_key()
    csr = make_csr(key=key)
    started = time.monotonic()
    first = native_call(slow_service, uuid, "kitchen", csr)
    assert first.status_code == 429 and first.json()["error"]["code"] == "issuance_pending", first.text
    assert NATIVE_WAIT - 0.5 <= time.monotonic() - started < SLOW
    label = first.json()["error"].get("box_label") or next(
        r["box_label"] for r in certs_json(slow_service.data_dir) if r["db_uuid"] == uuid
    )
    time.sleep(max(0.0, started + SLOW + 1.0 - time.monotonic()))  # the order has ended meanwhile
    asked = time.monotonic()
    again = native_call(slow_service, uuid, "kitchen", csr)
    assert again.status_code == 200, again.text
    assert time.monotonic() - asked < SLOW / 2  # handed out, not ordered again
    leaf = load_certificates(again.json()["certificate_chain_pem"].encode())[0]
    spki = leaf.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    assert spki == key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    rows = [r for r in certs_json(slow_service.data_dir) if r["box_label"] == label]
    assert [r["orders"] for r in rows] == [1]


def test_the_box_agent_asks_again_with_the_key_of_its_unanswered_request(tmp_path: Path) -> None:
    from lancert.box.agent import CertificateKeeper

    keeper = CertificateKeeper(tmp_path, lan_ip="127.0.0.1")
    first = keeper._request_key()
    second = keeper._request_key()
    numbers = lambda k: k.public_key().public_numbers()  # noqa: E731
    assert numbers(first) == numbers(second)
    path = tmp_path / "request-key.pem"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.unlink()  # what a certificate for it arriving does
    assert numbers(keeper._request_key()) != numbers(first)
