"""A real failure behind a handler answers 500 JSON, never a traceback or a detail: the PostgreSQL server
of a running ``lancert service run --db URL`` is stopped under it, then started again."""

from __future__ import annotations

import re

import httpx
import pytest
from service_testlib import CODE, PostgresServer, ServiceProcess, make_csr

from lancert.service.database import Database
from lancert.service.registry import Registry

pytestmark = pytest.mark.slow  # starts a server or subprocess (tests/conftest.py)

INTERNAL_ERROR = {"error": {"code": "internal_error", "message": "internal error"}}


def test_a_lost_database_is_a_json_500_without_details_and_the_service_recovers(
    postgres: PostgresServer, tmp_path
) -> None:
    url = postgres.create_database("lancert_internal_error")
    service = ServiceProcess(tmp_path / "service", ["--db", url, "--dns-port", "0"]).start(timeout=60)
    try:
        database = Database(url)
        Registry(database).add("pg-lost-db", CODE)
        database.dispose()
        body = {"db_uuid": "pg-lost-db", "enterprise_code": CODE, "box_id": "box", "csr": make_csr()}

        def post(path: str, json: dict) -> httpx.Response:
            # A new connection each time: stopping PostgreSQL takes longer than the service keeps an idle
            # keep-alive connection, and a request sent on one it just closed is reset, not answered.
            return httpx.post(service.url + path, json=json, timeout=60)

        assert post("/api/v1/certificates", body).status_code == 200
        postgres.stop()
        try:
            lost = post("/api/v1/certificates", body)
            compatible = post(
                "/odoo-enterprise/iot/x509", {"params": {"db_uuid": "pg-lost-db", "enterprise_code": CODE}}
            )
        finally:
            postgres.start()
        again = post("/api/v1/certificates", body)
    finally:
        log = service.stop()

    # The compatible call's error carries the JSON-RPC envelope and a null result (service.compatible).
    assert (compatible.status_code, compatible.json()) == (
        500, {"jsonrpc": "2.0", "id": None, "result": None, **INTERNAL_ERROR}
    )
    for response in (lost, compatible):
        assert response.status_code == 500
        assert response.headers["content-type"] == "application/json"
        assert not re.search(r"Traceback|psycopg|OperationalError|127\.0\.0\.1|5432|postgres", response.text)
    # Pre-ping replaces the dead pooled connections: the first request after the restart is served.
    assert again.status_code == 200, again.text
    # The operator, not the client, gets the reason: one line per failed request in the service's log.
    assert "internal error on POST /api/v1/certificates" in log
