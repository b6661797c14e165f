"""A stopped database answers 503 with Retry-After and one log line per request, never a traceback or a
detail, on the service's port and on its ACME port; the service recovers as soon as it is back (issue 24
point 5: before, 500 and about 4 tracebacks per request). The PostgreSQL server of a running
``lancert service run --db URL --acme-port 0`` is stopped under it, then started again."""

from __future__ import annotations

import re

import httpx
import pytest
from acme_harness import ERROR, ZONE, AcmeClient, AcmeService
from service_testlib import CODE, PostgresServer, make_csr

pytestmark = pytest.mark.slow  # starts a server or subprocess (tests/conftest.py)

UNAVAILABLE = {"error": {"code": "service_unavailable", "message": "the database is unavailable; try again "
                         "shortly"}}
RETRY_AFTER = "5"  # seconds: the service is back as soon as its database is


def test_a_stopped_database_is_a_503_with_retry_after_and_one_log_line_and_the_service_recovers(
    postgres: PostgresServer, tmp_path
) -> None:
    url = postgres.create_database("lancert_database_down")
    service = AcmeService(tmp_path / "service", db=url).start()
    try:
        assert service.child is not None
        ready = next(ln for ln in service.child.lines if "listening on http://" in ln)
        http = "http://" + ready.split("listening on http://", 1)[1].split()[0].rstrip("/")
        uuid = service.database()
        eab = service.eab(uuid)
        acme = AcmeClient(service)
        assert acme.new_account(eab).status_code == 201
        label = service.label_of(eab)
        body = {"db_uuid": uuid, "enterprise_code": "wrong", "box_id": "box", "csr": make_csr()}

        def post(path: str, json: dict) -> httpx.Response:
            # A new connection each time: stopping PostgreSQL takes longer than the service keeps an idle
            # keep-alive connection, and a request sent on one it just closed is reset, not answered.
            return httpx.post(http + path, json=json, timeout=60)

        assert post("/api/v1/certificates", body).status_code == 403  # the database answers: wrong code
        postgres.stop()
        try:
            lost = post("/api/v1/certificates", body)
            compatible = post("/odoo-enterprise/iot/x509",
                              {"params": {"db_uuid": uuid, "enterprise_code": CODE}})
            acme_lost = acme.new_order([f"web.{label}.{ZONE}"])
        finally:
            postgres.start()
        again = post("/api/v1/certificates", body)
        acme_again = acme.new_order([f"web.{label}.{ZONE}"])
    finally:
        log = service.stop()

    assert (lost.status_code, lost.json()) == (503, UNAVAILABLE)
    # The compatible call's error carries the JSON-RPC envelope and a null result (service.compatible).
    assert (compatible.status_code, compatible.json()) == (
        503, {"jsonrpc": "2.0", "id": None, "result": None, **UNAVAILABLE})
    assert acme_lost.status_code == 503, acme_lost.text
    assert acme_lost.json()["type"] == ERROR + "serverInternal"
    assert acme_lost.headers.get("replay-nonce")
    for response in (lost, compatible, acme_lost):
        assert response.headers["retry-after"] == RETRY_AFTER
        assert not re.search(r"Traceback|psycopg|OperationalError|127\.0\.0\.1|5432|postgres", response.text)
    # Pre-ping replaces the dead pooled connections: the first requests after the restart are served.
    assert again.status_code == 403, again.text
    assert acme_again.status_code == 201, acme_again.text
    # The operator, not the client, gets the reason: one line per failed request, no traceback.
    assert "Traceback" not in log and "internal error" not in log, log[-3000:]
    assert log.count("database unavailable on POST /api/v1/certificates") == 1, log[-3000:]
    assert log.count("database unavailable on POST /odoo-enterprise/iot/x509") == 1
    assert log.count("database unavailable on POST /acme/new-order") == 1
