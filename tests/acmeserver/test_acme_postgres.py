"""Two service instances on one real PostgreSQL serve one ACME client as one server: a nonce minted by
one is accepted (once) by the other, and an account, order and certificate made through one are known
to the other. The client's requests alternate between the instances under one name, as behind a
load balancer."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from acme_harness import ZONE, AcmeClient, AcmeService, assert_lint_clean, problem

import postgres_server
from capabilities import required_for_module

pytestmark = pytest.mark.slow  # starts a server or subprocess (tests/conftest.py)

postgres_url = postgres_server.postgres_url  # the module-scoped fixture, shared with tests/service
_capability = required_for_module(postgres_server.PG_BIN is not None, postgres_server.MISSING)


@pytest.fixture(scope="module")
def instances(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[AcmeService]]:
    pair = [AcmeService(tmp_path_factory.mktemp("acme-pg") / f"instance{i}", db=postgres_url) for i in (0, 1)]
    with ThreadPoolExecutor(2) as pool:  # started together on an empty database
        list(pool.map(lambda s: s.start(), pair))
    yield pair
    for service in pair:
        assert "Traceback" not in service.stop()


def test_two_instances_on_one_postgresql_serve_one_client(instances: list[AcmeService]) -> None:
    first, second = instances
    client = AcmeClient(first)
    client.backends = [first.port, second.port]  # every request goes to the other instance
    eab = first.eab(first.database())
    assert client.new_account(eab).status_code == 201
    names = [f"*.{first.label_of(eab)}.{ZONE}"]
    _, chain, _ = client.obtain(names)
    assert_lint_clean(chain, first.root_pem, names)
    assert client.post(client.post(client.kid).json()["orders"]).status_code == 200

    nonce = client.nonce()  # minted by one instance...
    assert client.post(client.kid, nonce=nonce).status_code == 200  # ...used at the other
    replay = client.post(client.kid, nonce=nonce)  # ...and replayed at the first
    problem(replay, "badNonce")
