"""``box run``'s ready line shows the name that works and how to reach it from this machine; a name
whose address the box does not listen on is said out loud."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lancert.up.stack import Child
from lancert_cli import lancert
from service_process import ServiceProcess

pytestmark = pytest.mark.slow  # starts a server or subprocess (tests/conftest.py)


def test_ready_line_shows_the_working_name_and_its_url_passes_check(tmp_path: Path) -> None:
    data = tmp_path / "service"
    lancert("service", "db", "add", "--uuid", "shop-db", "--code", "c0de-1", "--data-dir", str(data))
    service = ServiceProcess(data, ["--dns-port", "0"], log_path=tmp_path / "service.log")
    box = None
    try:
        url = service.start(timeout=60).url
        root = service.root_pem()
        box = Child.start("box", ["box", "run", "--state-dir", str(tmp_path / "box"), "--server", url,
                                  "--db-uuid", "shop-db", "--enterprise-code", "c0de-1", "--http-port", "0",
                                  "--https-port", "0"], tmp_path / "box.log")
        line = box.wait_for("lancert box:", 60)
        match = re.fullmatch(
            r"lancert box: http://127\.0\.0\.1:(\d+)/ (https://(127-0-0-1\.[a-z2-7]{12}\.iot\.lancert\.test)"
            r":(\d+)/) status OK \(the name resolves through the zone's DNS; from this machine: "
            r"curl --resolve (\S+) (\S+)\)", line)
        assert match, line
        https_url, name, port = match.group(2), match.group(3), match.group(4)
        assert match.group(5) == f"{name}:{port}:127.0.0.1" and match.group(6) == https_url
        verdict = lancert("check", https_url, "--ca", str(root), "--resolve", match.group(5), check=False)
        assert verdict.returncode == 0, verdict.stdout + verdict.stderr
    finally:
        if box is not None:
            box.stop()
        service.stop()


def test_a_name_address_the_box_does_not_listen_on_is_explained(tmp_path: Path) -> None:
    box = Child.start("box", ["box", "run", "--state-dir", str(tmp_path / "box"), "--lan-ip", "192.168.1.25",
                              "--http-port", "0", "--https-port", "0"], tmp_path / "box.log")
    try:
        line = box.wait_for("lancert box:", 60)
    finally:
        box.stop()
    assert "status ERR_IOT_HTTPS_CHECK_NO_SERVER (no certificate yet" in line
    assert ("lancert: warning: the box's name carries 192.168.1.25 but it listens on 127.0.0.1 only, so "
            "devices that resolve the name cannot reach it; give --host 192.168.1.25 (or 0.0.0.0), or drop "
            "--lan-ip") in box.log_text()
