"""The box's settings form with hostile values (issue 9): every answer a clear 4xx or the redirect of a
saved form, never a 5xx; afterwards the box still serves its page, its settings file still loads, and its
log holds no traceback.

The box has an enterprise code stored, so a changed service URL waits for confirmation and is never
contacted; the only URLs that can become active point at 127.0.0.1 (a closed port, or 80; no traffic leaves
loopback, and no DNS name is ever looked up).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from fuzz_harness import Component
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lancert.loopback import free_port
from lancert_cli import lancert

pytestmark = pytest.mark.slow  # starts a server or subprocess (tests/conftest.py)

CLOSED_PORT = free_port()
HOSTILE_URLS = [
    "http://127.0.0.1:99999/", "http://127.0.0.1:abc/", "http://127.0.0.1:1:2/", "http://127.0.0.1:-1/",
    "http://[::1", "http://[::1]:0/", "javascript:alert(1)", "file:///etc/passwd", "http://user:pw@127.0.0.1/",
    "http://127.0.0.1/?q=1", "http://127.0.0.1/#x", "http://127.0.0.1:65536/", "http:///nohost",
    "http://127.0.0.1\x00.evil/", "http://127.0.0.1/\r\nX-Injected: 1", "HTTP://127.0.0.1:" + "9" * 300,
    " http://127.0.0.1/ ", "http://%00/", "http://127.0.0.1:" + str(CLOSED_PORT) + "/" + "a" * 300,
]
TEXT = st.text(st.characters(codec="utf-8"), max_size=300)
SERVER_URL = st.one_of(
    st.sampled_from(HOSTILE_URLS),
    TEXT.filter(lambda s: "://" not in s),
    st.builds(lambda port, path: f"http://127.0.0.1:{port}/{path}",
              st.sampled_from([CLOSED_PORT, 0, -1, 65536, 99999]), TEXT),
)
FORM = st.fixed_dictionaries({}, optional={
    "server_url": SERVER_URL,
    "db_uuid": TEXT,
    "enterprise_code": st.one_of(TEXT, st.just("x" * 5000)),
    "log_level": st.one_of(st.sampled_from(["DEBUG", "INFO", "LOUD", "", "debug"]), TEXT),
    "confirm_server_url": SERVER_URL,
})


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Component]:
    base = tmp_path_factory.mktemp("fuzz-box-settings")
    component = Component.start("box", [
        "box", "run", "--state-dir", str(base / "box"), "--db-uuid", "fuzz-db", "--enterprise-code",
        "fuzz enterprise code", "--http-port", "0", "--https-port", "0", "--lan-ip", "127.0.0.1",
    ], base)
    port = int(component.wait_for("lancert box:").split()[2].rstrip("/").rsplit(":", 1)[1])
    component.info = {"http": port, "state_dir": str(base / "box")}
    yield component
    component.stop()


STATUSES: Counter[int] = Counter()


def _client(box: Component) -> httpx.Client:
    port = box.info["http"]
    return httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30, trust_env=False,
                        headers={"Origin": f"http://127.0.0.1:{port}"})


@given(form=FORM)
@settings(max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_hostile_form_values_get_a_4xx_or_are_saved(box: Component, form: dict[str, str]) -> None:
    with _client(box) as client:
        answer = client.post("/settings", data=form)
    STATUSES[answer.status_code] += 1
    assert answer.status_code in (303, 400, 413), (form, answer.status_code, answer.text[:200])


@given(body=st.binary(max_size=10_000), content_type=st.sampled_from([
    "application/x-www-form-urlencoded", "multipart/form-data", "text/plain", "application/json", ""]))
@settings(max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_hostile_form_bodies_get_a_4xx_or_are_saved(box: Component, body: bytes, content_type: str) -> None:
    with _client(box) as client:
        answer = client.post("/settings", content=body, headers={"Content-Type": content_type})
    STATUSES[answer.status_code] += 1
    assert answer.status_code in (303, 400, 413), (body[:100], answer.status_code, answer.text[:200])


def test_the_box_is_healthy_after_the_hostile_forms(box: Component) -> None:
    assert sum(STATUSES.values()) >= 100, STATUSES
    with _client(box) as client:
        assert client.get("/").status_code == 200
        for _ in range(3):
            oversized = client.post("/settings", content=b"a=" + b"x" * 100_000,
                                    headers={"Content-Type": "application/x-www-form-urlencoded"})
            assert oversized.status_code == 413
    settings_file = json.loads((Path(str(box.info["state_dir"])) / "settings.json").read_text())
    assert settings_file["enterprise_code"]  # never emptied by a form
    # With a code in the same form a URL is active at once: only a loopback one may have passed.
    assert not settings_file["server_url"] or urlsplit(settings_file["server_url"]).hostname == "127.0.0.1"
    status = lancert("box", "status", "--state-dir", str(box.info["state_dir"]), "--json", check=False)
    assert status.returncode in (0, 1) and json.loads(status.stdout)["status"]
    assert "Traceback" not in box.log()
    print(f"\nbox settings fuzzing: {sum(STATUSES.values())} forms, "
          f"statuses {dict(sorted(STATUSES.items()))}")
