"""Two service instances on one real PostgreSQL (Debian's server, started by the test) behave as one:
one CA between them, unique serials under concurrent load, every issued certificate recorded."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from service_testlib import CODE, ServiceProcess, make_csr
from sqlalchemy import text

import postgres_server
from lancert.pki import load_certificates
from lancert.service.database import Database
from lancert.service.registry import Registry

PG_BIN = postgres_server.PG_BIN
postgres_url = postgres_server.postgres_url  # the module-scoped fixture, shared with tests/acme
pytestmark = pytest.mark.skipif(
    PG_BIN is None,
    reason="PostgreSQL server binaries (Debian package "
    "'postgresql') are not installed: /usr/lib/postgresql/*/bin/initdb missing",
)

REQUESTS, CLIENTS = 200, 16


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
