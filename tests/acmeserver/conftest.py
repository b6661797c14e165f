"""One lancert service with its ACME endpoint for all ACME tests (starting one costs seconds)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from acme_harness import AcmeClient, AcmeService


@pytest.fixture(scope="session")
def acme_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AcmeService]:
    service = AcmeService(tmp_path_factory.mktemp("acme") / "service").start()
    yield service
    log = service.stop()
    assert "Traceback" not in log, log


@pytest.fixture
def client(acme_service: AcmeService) -> AcmeClient:
    """A client with an account of a new eligible database; ``client.label`` is that database's label."""
    eab = acme_service.eab(acme_service.database())
    client = AcmeClient(acme_service)
    assert client.new_account(eab).status_code == 201
    client.label = acme_service.label_of(eab)  # type: ignore[attr-defined]
    return client
