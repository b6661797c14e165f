"""Every error code of the box, provoked by its real cause, then fixed: OK after a homepage reload."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from box_harness import CODE, Service, lancert, wait_for

from lancert.box.codes import EXPLANATIONS, ErrorCode
from lancert.loopback import free_port

pytestmark = pytest.mark.slow  # starts a server or subprocess (tests/conftest.py)


def _assert_shows(page: str, code: ErrorCode, label: str | None = None) -> None:
    """The homepage names the code, what it means and the fix."""
    assert (label or str(code)) in page
    explanation = EXPLANATIONS[code]
    assert explanation.meaning.replace("'", "&#39;") in page
    assert explanation.fix.replace("'", "&#39;")[:60] in page


def _status(box) -> tuple[str, list[str]]:  # type: ignore[no-untyped-def]
    state = box.state()
    return state["status"], [p["code"] for p in state["problems"]]


def test_no_service_configured_then_settings_form_fixes_it(make_box, service: Service) -> None:
    uuid = service.add_db()
    box = make_box("--db-uuid", uuid, "--enterprise-code", CODE)
    assert _status(box) == ("ERR_IOT_HTTPS_CHECK_NO_SERVER", ["ERR_IOT_HTTPS_CHECK_NO_SERVER"])
    page = box.reload()
    assert page.status_code == 200
    _assert_shows(page.text, ErrorCode.CHECK_NO_SERVER)
    saved = box.set_service_url(service.url)
    assert saved.status_code == 303
    assert box.reload().status_code == 302  # valid certificate: plain HTTP now sends browsers to HTTPS
    assert _status(box) == ("OK", [])


def test_missing_credentials(make_box, service: Service) -> None:
    uuid = service.add_db()
    box = make_box("--server", service.url)
    assert _status(box)[0] == "ERR_IOT_HTTPS_LOAD_NO_CREDENTIAL"
    page = box.reload().text
    _assert_shows(page, ErrorCode.LOAD_NO_CREDENTIAL)
    assert "database UUID and enterprise code" in page
    assert box.post_settings(db_uuid=uuid).status_code == 303
    assert _status(box)[0] == "ERR_IOT_HTTPS_LOAD_NO_CREDENTIAL"  # the code is still missing
    assert box.post_settings(enterprise_code=CODE).status_code == 303
    assert box.reload().status_code == 302
    assert _status(box) == ("OK", [])


def test_ineligible_database_then_iot_line_added(make_box, service: Service) -> None:
    uuid = service.add_db("--no-iot-line")
    box = make_box("--server", service.url, "--db-uuid", uuid, "--enterprise-code", CODE)
    assert _status(box)[0] == "ERR_IOT_HTTPS_LOAD_REQUEST_NO_RESULT"
    page = box.reload().text
    _assert_shows(page, ErrorCode.LOAD_REQUEST_NO_RESULT)
    assert "no_iot_box_line" in page
    service.set_db(uuid, "--iot-line")
    # "Check now" retries at once (a reload this soon after the last request would not); the box's own
    # timer may get there first, and then the plain-HTTP POST is refused (403): the box is OK either way.
    assert box.check_now() in (303, 403)
    assert _status(box) == ("OK", [])
    assert box.reload().status_code == 302
    assert _status(box) == ("OK", [])


def test_wrong_enterprise_code_is_not_eligible(make_box, service: Service) -> None:
    uuid = service.add_db()
    box = make_box("--server", service.url, "--db-uuid", uuid, "--enterprise-code", "wrong code")
    assert _status(box)[0] == "ERR_IOT_HTTPS_LOAD_REQUEST_NO_RESULT"
    assert "unknown_database_or_code" in box.reload().text


class _Stub(BaseHTTPRequestHandler):
    """A web server that is not the certificate service: it answers every POST with one status."""

    answer = 404

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        body = b"<html>not here</html>"
        self.send_response(self.answer)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(params=[404, 500])
def stub(request: pytest.FixtureRequest) -> Iterator[tuple[str, int]]:
    handler = type("StubHandler", (_Stub,), {"answer": request.param})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", request.param
    server.shutdown()
    server.server_close()


def test_unexpected_http_status_then_right_url(make_box, service: Service, stub: tuple[str, int]) -> None:
    url, status = stub
    uuid = service.add_db()
    box = make_box("--server", url, "--db-uuid", uuid, "--enterprise-code", CODE)
    label = f"ERR_IOT_HTTPS_LOAD_REQUEST_STATUS {status}"
    assert _status(box) == (label, [label])
    _assert_shows(box.reload().text, ErrorCode.LOAD_REQUEST_STATUS, label)
    assert box.set_service_url(service.url).status_code == 303
    assert _status(box) == ("OK", [])


def test_service_stopped_then_started_and_renewal_failure_keeps_serving(make_box, tmp_path: Path) -> None:
    svc = Service(tmp_path / "svc").start()
    try:
        uuid = svc.add_db()
        args = ("--server", svc.url, "--db-uuid", uuid, "--enterprise-code", CODE)
        serving = make_box(*args, name="serving")
        assert _status(serving) == ("OK", [])
        root = svc.root
        first_leaf = serving.https(root)[2]
        svc.stop()

        fresh = make_box(*args, name="fresh")
        assert _status(fresh)[0] == "ERR_IOT_HTTPS_LOAD_REQUEST_EXCEPTION"
        _assert_shows(fresh.reload().text, ErrorCode.LOAD_REQUEST_EXCEPTION)

        # The serving box reaches its renewal time (its timer fires) while the service is down.
        assert wait_for(lambda: serving.state()["problems"], timeout=60)
        time.sleep(3)  # the timer backs off (5 s, 10 s, ...) instead of retrying at once
        outcomes = [e["outcome"] for e in serving.state()["events"]]
        assert outcomes.count("ERR_IOT_HTTPS_LOAD_REQUEST_EXCEPTION") == 1
        status, page, leaf = serving.https(root)
        assert status == 200 and leaf == first_leaf
        assert serving.state()["status"] == "OK"
        assert "ERR_IOT_HTTPS_LOAD_REQUEST_EXCEPTION" in page
        assert "keeps serving its current certificate" in page

        svc.start()  # same port, same CA
        assert fresh.check_now() in (303, 403)  # 403: its timer was first, and it is OK already
        assert _status(fresh) == ("OK", [])
        assert serving.check_now(root) == 303  # "Check now" retries the renewal at once
        assert serving.state()["problems"] == []
        assert serving.https(root)[2] != first_leaf
    finally:
        svc.stop()


def test_corrupted_certificate_file(make_box, service: Service, tmp_path: Path) -> None:
    uuid = service.add_db()
    box = make_box("--server", service.url, "--db-uuid", uuid, "--enterprise-code", CODE)
    old = box.state()["fingerprint"]
    box.stop()
    cert = box.state_dir / "cert.pem"
    cert.write_text(cert.read_text()[:200])  # truncated, as after a failing SD card
    # Restarted with the service unreachable: the box can neither read nor replace its certificate.
    box.args = ["--server", f"http://127.0.0.1:{free_port()}"]
    box.start()
    status, codes = _status(box)
    assert status == "ERR_IOT_HTTPS_CHECK_CERT_READ_EXCEPTION"
    assert codes == ["ERR_IOT_HTTPS_CHECK_CERT_READ_EXCEPTION", "ERR_IOT_HTTPS_LOAD_REQUEST_EXCEPTION"]
    _assert_shows(box.reload().text, ErrorCode.CHECK_CERT_READ_EXCEPTION)
    assert box.set_service_url(service.url).status_code == 303
    assert _status(box) == ("OK", [])
    assert box.state()["fingerprint"] != old
    events = box.state()["events"]
    assert any(e["outcome"] == "ERR_IOT_HTTPS_CHECK_CERT_READ_EXCEPTION" for e in events)


def test_status_command_reports_code_and_exits_1(make_box) -> None:
    box = make_box()
    result = lancert("box", "status", "--state-dir", str(box.state_dir), "--json", check=False)
    assert result.returncode == 1
    import json

    report = json.loads(result.stdout)
    assert report["status"] == report["error_code"] == "ERR_IOT_HTTPS_CHECK_NO_SERVER"
    text = lancert("box", "status", "--state-dir", str(box.state_dir), check=False).stdout
    assert EXPLANATIONS[ErrorCode.CHECK_NO_SERVER].fix in text
