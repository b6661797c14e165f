"""Hostile input at the box: settings that must not take it down, DNS rebinding, forged proxy headers,
and pages that other sites can make a browser load (issue 9, points 6-9)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from box_harness import CODE, Service

from lancert.box.files import InvalidServiceURL, check_service_url
from lancert_cli import lancert

pytestmark = pytest.mark.slow  # starts a server or subprocess (tests/conftest.py)

# Each of these passed the settings form once and then made every homepage load answer 500 and
# `box run` exit after a traceback (OverflowError / httpx.InvalidURL).
BROKEN_URLS = [
    "http://127.0.0.1:99999/",
    "http://127.0.0.1:abc/",
    "http://127.0.0.1:1:2/",
    "http://127.0.0.1:-1/",
    "http://[::1",
]


# Hosts both URL parsers take that name no host: the box handed ``%00`` to the resolver (fuzzing found
# ``http://%00/`` saved as the active service URL).
NO_HOST_URLS = ["http://%00/", "http://ex%41mple.lan/", "https://a..b/", "http://-box.lan:8069/"]


@pytest.mark.parametrize("url", NO_HOST_URLS)
def test_a_service_url_whose_host_is_no_host_name_is_refused(url: str) -> None:
    with pytest.raises(InvalidServiceURL, match="host"):
        check_service_url(url)


@pytest.mark.parametrize("url", ["http://127.0.0.1/", "http://[::1]:8069/", "https://iot-1.shop_lan.example./",
                                 "https://bücher.example:8443/odoo/"])
def test_host_names_and_addresses_still_pass(url: str) -> None:
    assert check_service_url(url) == url


def test_settings_form_refuses_every_malformed_service_url(make_box) -> None:
    box = make_box()
    before = (box.state_dir / "settings.json").read_bytes()
    for url in [*BROKEN_URLS, *NO_HOST_URLS]:
        answer = box.post_settings(server_url=url)
        assert answer.status_code == 400, (url, answer.status_code, answer.text)
        assert "service URL" in answer.text
    assert (box.state_dir / "settings.json").read_bytes() == before
    assert box.reload().status_code == 200


@pytest.mark.parametrize("url", [BROKEN_URLS[0], BROKEN_URLS[4]])
def test_a_broken_saved_url_leaves_the_box_serving_its_page_with_an_error_code(make_box, url: str) -> None:
    box = make_box(start=False)
    box.state_dir.mkdir(parents=True)
    (box.state_dir / "settings.json").write_text(json.dumps(
        {"server_url": url, "db_uuid": "some-db", "enterprise_code": CODE}))
    box.start()
    assert box.state()["status"] == "ERR_IOT_HTTPS_CHECK_NO_SERVER"
    for _ in range(3):
        page = box.reload()
        assert page.status_code == 200
        assert "ERR_IOT_HTTPS_CHECK_NO_SERVER" in page.text
        assert "the saved service URL is not usable" in page.text
    assert "Traceback" not in box.child.log_path.read_text()


def test_box_run_refuses_a_malformed_server_option_in_one_line(tmp_path) -> None:
    result = lancert("box", "run", "--state-dir", str(tmp_path / "box"), "--server", "http://127.0.0.1:99999/",
                     check=False)
    assert result.returncode != 0
    assert result.stderr.startswith("lancert: ") and result.stderr.count("\n") == 1, result.stderr
    assert "port" in result.stderr.lower()


class _Recorder(BaseHTTPRequestHandler):
    """A server that is not the certificate service: it keeps every body POSTed to it."""

    bodies: list[bytes]

    def do_POST(self) -> None:
        self.bodies.append(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[tuple[str, list[bytes]]]:
    bodies: list[bytes] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("Recorder", (_Recorder,), {"bodies": bodies}))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", bodies
    server.shutdown()
    server.server_close()


def test_a_rebound_host_name_is_refused_even_with_a_matching_origin(make_box, recorder) -> None:
    url, bodies = recorder
    box = make_box("--db-uuid", "rebind-db", "--enterprise-code", CODE)
    rebound = f"evil.example:{box.http_port}"  # the attacker's name, now resolving to the box
    with box.http() as client:
        page = client.get("/", headers={"Host": rebound})
        assert page.status_code == 400
        assert "rebind-db" not in page.text
        posted = client.post("/settings", data={"server_url": url, "confirm_server_url": url},
                             headers={"Host": rebound, "Origin": f"http://{rebound}"})
        assert posted.status_code == 400
        assert client.get("/status.json", headers={"Host": rebound}).status_code == 400
    assert url not in (box.state_dir / "settings.json").read_text()
    assert box.reload().status_code == 200  # its own address still works
    assert bodies == []


def test_a_changed_service_url_gets_the_code_only_after_confirmation(make_box, recorder) -> None:
    url, bodies = recorder
    box = make_box("--db-uuid", "confirm-db", "--enterprise-code", CODE)
    assert box.post_settings(server_url=url).status_code == 303
    page = box.reload().text
    assert 'id="pending-server-url"' in page and url in page
    assert json.loads((box.state_dir / "settings.json").read_text())["server_url"] == ""
    assert bodies == []  # neither the save's check nor the reload sent anything there
    assert box.post_settings(confirm_server_url="http://127.0.0.1:9/").status_code == 400
    assert box.post_settings(confirm_server_url=url).status_code == 303
    assert bodies and json.loads(bodies[0])["enterprise_code"] == CODE  # (the timer may have retried)
    assert "ERR_IOT_HTTPS_LOAD_REQUEST_STATUS 404" in box.reload().text
    assert httpx.get(f"http://127.0.0.1:{box.http_port}/", trust_env=False).status_code == 200


def test_forwarded_proto_from_loopback_does_not_stop_the_https_redirect(make_box, service: Service) -> None:
    uuid = service.add_db()
    box = make_box("--server", service.url, "--db-uuid", uuid, "--enterprise-code", CODE)
    assert box.state()["status"] == "OK"
    with box.http() as client:
        forged = client.get("/", headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "192.0.2.9"})
    assert forged.status_code == 302
    assert forged.headers["location"] == box.state()["https_url"]


def test_fifty_homepage_loads_send_one_certificate_request(make_box, recorder) -> None:
    """Before: each load of a box without a certificate sent a request with a new key (50 loads, 50
    requests). Now at most one every 10 s, and never two at once."""
    url, bodies = recorder
    box = make_box("--server", url, "--db-uuid", "flood-db", "--enterprise-code", CODE)
    assert len(bodies) == 1  # the check at start
    started = time.monotonic()
    with ThreadPoolExecutor(10) as pool:
        statuses = list(pool.map(lambda _: box.reload().status_code, range(50)))
    assert statuses == [200] * 50
    if time.monotonic() - started < 10:
        # The start's request, and at most one retry of the box's own timer (it backs off 5 s, then 10 s).
        assert len(bodies) <= 2, len(bodies)
    before = len(bodies)
    assert box.check_now() == 303  # the user's explicit retry goes out at once
    assert len(bodies) > before


def test_pages_another_site_makes_the_browser_load_do_no_work(make_box, recorder) -> None:
    url, _ = recorder
    box = make_box("--server", url, "--db-uuid", "xsite-db", "--enterprise-code", CODE)
    assert box.state()["last_check_reason"] == "start"
    with box.http() as client:
        page = client.get("/", headers={"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"})
        assert page.status_code == 200
        assert client.get("/diagnose").status_code == 405
        assert client.post("/diagnose").status_code == 403
        assert client.post("/check", headers={"Origin": "http://evil.example"}).status_code == 403
    assert box.state()["last_check_reason"] in ("start", "timer")  # the box's own timer may retry (5 s)
    assert box.state().get("dns", {}) == {}
