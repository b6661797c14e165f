"""One lancert service with its ACME endpoint for all ACME tests (starting one costs seconds)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from acme_harness import AcmeService


@pytest.fixture(scope="session")
def acme_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AcmeService]:
    service = AcmeService(tmp_path_factory.mktemp("acme") / "service").start()
    yield service
    log = service.stop()
    assert "Traceback" not in log, log
