"""schemathesis over the certificate service's OpenAPI: every operation the live service publishes, with
valid and invalid input (issue 9). CI runs a bounded number of examples per operation and mode (25, or
``LANCERT_FUZZ_EXAMPLES``); the README gives the command for a long run.

Each answer: no 5xx, no traceback; afterwards the service is healthy, its log holds no traceback and its
memory stayed bounded. (schemathesis' pytest plugin, ``from_fixture``, fails to collect under pytest 9,
so the operations' strategies are driven with Hypothesis directly.)
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

import httpx
import pytest
import schemathesis
from fuzz_harness import start_service
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

pytestmark = pytest.mark.slow  # starts a server or subprocess (tests/conftest.py)

EXAMPLES = int(os.environ.get("LANCERT_FUZZ_EXAMPLES", "25"))


def _fuzz(operation: Any, mode: GenerationMode, base_url: str, statuses: Counter[int],
          sent: Counter[str]) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def call(case: schemathesis.Case) -> None:
        response = case.call(base_url=base_url, timeout=30)
        statuses[response.status_code] += 1
        sent[operation.label] += 1
        assert response.status_code < 500, (operation.label, mode, response.status_code, response.text[:300])
        assert "Traceback" not in response.text and 'File "' not in response.text

    try:
        call()
    except Unsatisfiable:
        assert mode is GenerationMode.NEGATIVE  # an operation without inputs has no invalid input


def test_no_operation_answers_5xx_or_a_traceback(tmp_path_factory: pytest.TempPathFactory) -> None:
    service, _ = start_service(tmp_path_factory.mktemp("fuzz-service-api"), rate_limits=False)
    try:
        base_url = f"http://127.0.0.1:{service.info['http']}"
        rss_before = service.rss_kib()
        schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
        operations = [result.ok() for result in schema.get_all_operations()]
        statuses: Counter[int] = Counter()
        sent: Counter[str] = Counter()
        for operation in operations:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                _fuzz(operation, mode, base_url, statuses, sent)
        labels = {op.label for op in operations}
        assert {"GET /healthz", "POST /api/v1/certificates", "POST /odoo-enterprise/iot/x509"} <= labels
        assert set(sent) == labels  # every operation was called
        assert httpx.get(f"{base_url}/healthz", timeout=5, trust_env=False).status_code == 200
        assert "Traceback" not in service.log()
        grown_mib = (service.rss_kib() - rss_before) / 1024
        assert grown_mib < 64
        print(f"\nservice fuzzing: {sum(statuses.values())} requests over {len(labels)} operations, "
              f"statuses {dict(sorted(statuses.items()))}, RSS +{grown_mib:.1f} MiB")
    finally:
        service.stop()
