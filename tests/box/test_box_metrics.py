"""The box's own ``/metrics`` on its HTTP port (issue 23 point 5): days its certificate has left, whether
it serves a valid one, the code of its current problem; over plain HTTP even once HTTPS works (the
homepage then redirects), and without its database or enterprise code in it."""

from __future__ import annotations

import re

import pytest
from box_harness import CODE, Service

pytestmark = pytest.mark.slow  # starts a server or subprocess (tests/conftest.py)


def _sample(text: str, name: str) -> float:
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert match, text
    return float(match[1])


def test_box_metrics_on_its_http_port(make_box, service: Service) -> None:
    uuid = service.add_db()
    box = make_box("--server", service.url, "--db-uuid", uuid, "--enterprise-code", CODE)
    assert box.state()["status"] == "OK"
    with box.http() as client:
        assert client.get("/", follow_redirects=False).status_code == 302  # HTTPS works: the page moved
        response = client.get("/metrics", follow_redirects=False)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    text = response.text
    days = _sample(text, "lancert_box_certificate_days_left")
    assert 0 < days <= 1  # the harness's service issues short-lived certificates
    assert _sample(text, "lancert_box_certificate_valid") == 1
    assert "lancert_box_last_error{" not in text  # no problem, no code
    for secret in (uuid, CODE):
        assert secret not in text
