"""``lancert up``: the README's main command starts every device, checks each padlock, and says so."""

from __future__ import annotations

import json
import os
import re
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import httpx
import pytest

LANCERT = [sys.executable, "-m", "lancert"]


def _up(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LANCERT, "up", *args], capture_output=True, text=True, timeout=timeout)


def test_up_check_shows_padlock_for_every_device_and_keeps_them_across_runs(tmp_path: Path) -> None:
    result = _up("--check", "--json", "--data-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    devices = {d["device"]: d for d in json.loads(result.stdout)}
    printer = devices["receipt printer (self-signed)"]
    assert printer["padlock"] is True
    assert printer["url"].startswith("https://127.0.0.1:")
    assert printer["trust_file"] == str(tmp_path / "printer" / "cert.pem")
    box = devices["IoT box (provisioned)"]
    assert box["padlock"] is True, box["detail"]
    assert re.fullmatch(r"https://127-0-0-1\.[a-z0-9]+\.iot\.lancert\.test:\d+/", box["url"])
    assert box["trust_file"] == str(tmp_path / "service-root.pem")
    state = json.loads((tmp_path / "box" / "state.json").read_text())
    assert state["status"] == "OK" and box["url"] == state["https_url"]

    first = (tmp_path / "printer" / "cert.pem").read_bytes()
    database = (tmp_path / "demo-database.json").read_text()
    box_cert = (tmp_path / "box" / "cert.pem").read_bytes()
    assert (tmp_path / "demo-database.json").stat().st_mode & 0o777 == 0o600
    again = _up("--check", "--data-dir", str(tmp_path))
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.count("padlock:  yes") == 2
    assert (tmp_path / "printer" / "cert.pem").read_bytes() == first
    assert (tmp_path / "demo-database.json").read_text() == database
    assert (tmp_path / "box" / "cert.pem").read_bytes() == box_cert  # still valid: not renewed


def test_up_check_exits_1_and_names_the_reason_when_a_device_has_no_padlock(tmp_path: Path) -> None:
    # A printer certificate made for another address, served at 127.0.0.1: a browser refuses it.
    create = [*LANCERT, "device", "create", "--ip", "127.0.0.2", "--dir", str(tmp_path / "printer")]
    made = subprocess.run(create, capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    result = _up("--check", "--data-dir", str(tmp_path))
    assert result.returncode == 1
    assert "padlock:  NO" in result.stdout
    assert "not the IP address 127.0.0.1" in result.stdout


def test_up_serves_until_interrupted(tmp_path: Path) -> None:
    proc = subprocess.Popen([*LANCERT, "up", "--data-dir", str(tmp_path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "COLUMNS": "200"})
    try:
        lines: list[str] = []
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            line = proc.stdout.readline()  # type: ignore[union-attr]
            assert line, f"up exited early: {proc.stderr.read()}"  # type: ignore[union-attr]
            lines.append(line)
            if line.startswith("running"):
                break
        url = next(line.split()[1] for line in lines if line.strip().startswith("URL:"))
        context = ssl.create_default_context(cafile=str(tmp_path / "printer" / "cert.pem"))
        with urllib.request.urlopen(url, context=context, timeout=10) as response:
            assert b"ePOS printer" in response.read()
        box_http = next(line.rsplit(" ", 1)[1].strip() for line in lines if "homepage also on" in line)
        box_url = next(line.split()[1] for line in lines if "iot.lancert.test" in line and "URL:" in line)
        redirect = httpx.get(box_http, follow_redirects=False, trust_env=False, timeout=10)
        assert redirect.status_code == 302 and redirect.headers["location"] == box_url
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        with pytest.raises(httpx.ConnectError):  # the box process was stopped with up
            httpx.get(box_http, trust_env=False, timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
