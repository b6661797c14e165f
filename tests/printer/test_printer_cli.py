"""``lancert printer run`` as a user starts it: HTTP fresh from the box, HTTPS with a certificate in DIR."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from printer_helpers import envelope

from lancert.pki import read_certificates
from lancert.trust.fetch import Target, served_chain
from lancert_cli import lancert

pytestmark = pytest.mark.slow  # starts a server or subprocess (tests/conftest.py)


def _start(directory: Path, *args: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-m", "lancert", "printer", "run", "--dir", str(directory),
                             "--port", "0", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("lancert printer: "), proc.stderr.read() if proc.stderr else line
    return proc, line.split()[2]


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    assert proc.wait(15) == 0


def test_without_a_certificate_it_serves_http_and_prints(tmp_path: Path) -> None:
    proc, url = _start(tmp_path / "p")
    try:
        assert url.startswith("http://127.0.0.1:")
        answer = httpx.post(url + "cgi-bin/epos/service.cgi?devid=local_printer&timeout=10000",
                            content=envelope("<text>cli</text>"), timeout=10)
        assert b'success="true"' in answer.content
        assert (tmp_path / "p" / "receipts" / "000001.json").exists()
    finally:
        _stop(proc)


def test_with_the_certificate_of_device_create_it_serves_https(tmp_path: Path) -> None:
    lancert("device", "create", "--ip", "192.168.1.25", "--dir", str(tmp_path / "p"))
    proc, url = _start(tmp_path / "p", "--ip", "192.168.1.25")
    try:
        assert url.startswith("https://127.0.0.1:")
        port = int(url.rsplit(":", 1)[1].strip("/"))
        chain = served_chain(Target("192.168.1.25", port, "127.0.0.1"), timeout=5)
        assert chain == read_certificates(tmp_path / "p" / "cert.pem")
    finally:
        _stop(proc)


@pytest.mark.parametrize("origin", ["pos.example.com", "https://pos.example.com/page"])
def test_a_bad_allow_origin_is_one_line(tmp_path: Path, origin: str) -> None:
    result = lancert("printer", "run", "--dir", str(tmp_path), "--allow-origin", origin, check=False)
    assert result.returncode == 2
    assert result.stderr.startswith("lancert: --allow-origin") and len(result.stderr.splitlines()) == 1
