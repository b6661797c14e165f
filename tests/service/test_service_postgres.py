"""Two service instances on one real PostgreSQL (Debian's server, started by the test) behave as one:
one CA between them, unique serials under concurrent load, every issued certificate recorded."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from service_testlib import CODE, PostgresServer, ServiceProcess, make_csr
from sqlalchemy import text
from upstream_testlib import PEBBLE, Pebble, upstream_service

from capabilities import require
from lancert.loopback import free_port
from lancert.pki import load_certificates
from lancert.service.database import Database
from lancert.service.registry import Registry

pytestmark = pytest.mark.slow  # starts a server or subprocess (tests/conftest.py)

REQUESTS, CLIENTS = 200, 16


@pytest.fixture(scope="module")
def postgres_url(postgres: PostgresServer) -> str:
    return postgres.url


@pytest.fixture(scope="module")
def two_instances(
    postgres_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[ServiceProcess]]:
    """Started at the same moment, with different data directories, on an empty database."""
    instances = [
        ServiceProcess(tmp_path_factory.mktemp(f"pg-instance-{i}"), ["--db", postgres_url, "--dns-port", "0"])
        for i in range(2)
    ]
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda p: p.start(timeout=60), instances))
    yield instances
    for instance in instances:
        instance.stop()


def test_instances_share_one_ca(two_instances: list[ServiceProcess], postgres_url: str) -> None:
    roots = {httpx.get(f"{p.url}/api/v1/root").text for p in two_instances}
    assert len(roots) == 1
    made_ca = [p for p in two_instances if (p.data_dir / "ca" / "root-key.pem").exists()]
    assert len(made_ca) == 1, "exactly one instance made the CA; the other loaded it from PostgreSQL"
    database = Database(postgres_url)
    with database.engine.connect() as conn:
        names = sorted(conn.execute(text("SELECT name FROM service_state")).scalars())
    database.dispose()
    assert names == ["ca_intermediate_key_pem", "ca_intermediate_pem", "ca_root_pem", "label_secret", "zone"]


def test_concurrent_load_on_two_instances_gives_unique_recorded_serials(
    two_instances: list[ServiceProcess], postgres_url: str
) -> None:
    database = Database(postgres_url)
    Registry(database).add("pg-db", CODE)
    csrs = [make_csr() for _ in range(REQUESTS)]
    clients = [httpx.Client(base_url=p.url, timeout=60) for p in two_instances]

    def issue(i: int) -> tuple[int, dict]:
        response = clients[i % 2].post(
            "/api/v1/certificates",
            json={"db_uuid": "pg-db", "enterprise_code": CODE, "box_id": f"box-{i % 20}", "csr": csrs[i]},
        )
        return response.status_code, response.json()

    try:
        with ThreadPoolExecutor(CLIENTS) as pool:
            results = list(pool.map(issue, range(REQUESTS)))
    finally:
        for client in clients:
            client.close()
    assert [status for status, _ in results] == [200] * REQUESTS, [b for s, b in results if s != 200][:3]
    serials = [
        format(load_certificates(body["certificate_chain_pem"].encode())[0].serial_number, "x")
        for _, body in results
    ]
    assert len(set(serials)) == REQUESTS
    with database.engine.connect() as conn:
        recorded = dict(
            conn.execute(
                text("SELECT serial, box_label FROM issued_certificates WHERE db_uuid = 'pg-db'")
            ).all()
        )
    database.dispose()
    assert set(recorded) == set(serials)
    # The same box gets the same label whichever instance it reaches.
    labels: dict[int, set[str]] = {}
    for i, (_, body) in enumerate(results):
        labels.setdefault(i % 20, set()).add(body["box_label"])
        assert recorded[serials[i]] == body["box_label"]
    assert all(len(v) == 1 for v in labels.values())
    assert len({next(iter(v)) for v in labels.values()}) == 20


def test_two_upstream_instances_place_one_order_for_twenty_concurrent_compatible_calls(
    postgres_url: str, tmp_path: Path
) -> None:
    require(PEBBLE is not None, "Debian package 'pebble' is not installed")
    """Two instances issuing through the real Pebble share one PostgreSQL database: 20 concurrent
    compatible calls for one database, spread over both, cause exactly one upstream order (the
    certificate_orders row is the cross-instance lock) and get 20 identical answers."""
    admin = Database(postgres_url)
    with admin.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("CREATE DATABASE upstream"))
    admin.dispose()
    url = postgres_url.rsplit("/", 1)[0] + "/upstream"
    pebble = Pebble(tmp_path / "pebble", free_port()).start()
    # The wait is long here on purpose: this test is about one order, test_service_upstream_orders
    # about the deadline.
    orders = "[orders]\ncompatible_deadline = 60.0\n"
    instances: list[ServiceProcess] = []
    try:
        with ThreadPoolExecutor(2) as pool:
            instances = list(
                pool.map(
                    lambda i: upstream_service(
                        tmp_path / f"instance-{i}",
                        pebble.directory,
                        pebble.ca_bundle,
                        dns_port=pebble.dns_port if i == 0 else 0,
                        config=orders,
                        extra=["--db", url],
                    ),
                    range(2),
                )
            )
        database = Database(url)
        Registry(database).add("pg-upstream", CODE)
        before = pebble.log_text().count("POST /order-plz")

        def call(i: int) -> dict:
            with httpx.Client(base_url=instances[i % 2].url, timeout=90) as client:
                body = {"params": {"db_uuid": "pg-upstream", "enterprise_code": CODE}}
                return client.post("/odoo-enterprise/iot/x509", json=body).json()["result"]

        with ThreadPoolExecutor(20) as pool:
            answers = list(pool.map(call, range(20)))
        assert "x509_pem" in answers[0], answers[0]
        assert all(answer == answers[0] for answer in answers)
        assert "Pebble Intermediate CA" in (
            load_certificates(answers[0]["x509_pem"].encode())[0].issuer.rfc4514_string()
        )
        assert pebble.log_text().count("POST /order-plz") - before == 1
        with database.engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM issued_certificates")).scalar() == 1
            assert conn.execute(text("SELECT orders FROM certificate_orders")).scalars().all() == [1]
        database.dispose()
    finally:
        for instance in instances:
            instance.stop()
        pebble.stop()
