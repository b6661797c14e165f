"""The first requests a just-started service gets, many at once and of every kind, each get the answer
the API documents: a service answers the calls of a box and of ``lancert up`` from its ready line on, and
the rest of its API (``/openapi.json``, ``/docs``, ``/healthz``, ``/metrics``, the compatible call, every
404 and 405) is there as well, however the service arranges its start (issue 21)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from service_testlib import ServiceProcess

pytestmark = pytest.mark.slow  # starts a service process


def _ask(url: str, method: str, path: str, **kwargs: object) -> httpx.Response:
    with httpx.Client(base_url=url, timeout=30, trust_env=False) as client:
        return client.request(method, path, **kwargs)  # type: ignore[arg-type]


def test_every_kind_of_first_request_at_once_gets_its_answer(tmp_path: Path) -> None:
    service = ServiceProcess(tmp_path / "service", ["--dns-port", "0"]).start()
    try:
        asks: list[tuple[str, str, dict[str, object]]] = [
            ("GET", "/api/v1/root", {}),
            ("GET", "/openapi.json", {}),
            ("GET", "/healthz", {}),
            ("HEAD", "/api/v1/root", {}),
            ("POST", "/api/v1/root", {}),
            ("GET", "/no/such/path", {}),
            ("POST", "/api/v1/certificates", {"content": b"{not json", "headers": {
                "Content-Type": "application/json"}}),
            ("POST", "/api/v1/certificates", {"json": {"db_uuid": "x"}}),
            ("GET", "/docs", {}),
            ("GET", "/metrics", {}),
        ] * 2
        with ThreadPoolExecutor(len(asks)) as pool:
            answers = list(pool.map(lambda ask: _ask(service.url, ask[0], ask[1], **ask[2]), asks))
        for (method, path, _), answer in zip(asks, answers, strict=True):
            if (method, path) == ("GET", "/api/v1/root"):
                assert answer.status_code == 200, answer.text
                assert answer.headers["content-type"] == "application/x-pem-file"
                assert answer.text.startswith("-----BEGIN CERTIFICATE-----")
            elif path == "/openapi.json":
                paths = answer.json()["paths"]
                assert {"/api/v1/certificates", "/api/v1/root", "/healthz"} <= set(paths)
            elif path == "/healthz":
                assert answer.json() == {"status": "ok"}
            elif path == "/api/v1/root":  # HEAD and POST: the route allows GET only (RFC 9110: Allow)
                assert answer.status_code == 405, answer.text
                assert answer.headers["allow"] == "GET"
            elif path == "/no/such/path":
                assert answer.status_code == 404
                assert answer.json()["error"]["code"] == "not_found"
            elif path == "/api/v1/certificates":
                assert answer.status_code == 400, answer.text
                assert answer.json()["error"]["code"] == "invalid_request"
            elif path == "/docs":
                assert answer.status_code == 200 and "text/html" in answer.headers["content-type"]
            else:
                assert answer.status_code == 200 and "lancert" in answer.text
    finally:
        stderr = service.stop()
    assert "Traceback" not in stderr
