"""Hostile input at the box: settings that must not take it down, DNS rebinding, forged proxy headers,
and pages that other sites can make a browser load (issue 9, points 6-9)."""

from __future__ import annotations

import json

import pytest
from box_harness import CODE

from lancert_cli import lancert

# Each of these passed the settings form once and then made every homepage load answer 500 and
# `box run` exit after a traceback (OverflowError / httpx.InvalidURL).
BROKEN_URLS = [
    "http://127.0.0.1:99999/",
    "http://127.0.0.1:abc/",
    "http://127.0.0.1:1:2/",
    "http://127.0.0.1:-1/",
    "http://[::1",
]


def test_settings_form_refuses_every_malformed_service_url(make_box) -> None:
    box = make_box()
    before = (box.state_dir / "settings.json").read_bytes()
    for url in BROKEN_URLS:
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
