"""``lancert up``: the README's main command starts every device, checks each padlock, and says so."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from lancert.pos import PosClient

pytestmark = [pytest.mark.slow, pytest.mark.machine_lock("up")]  # subprocesses; one up at a time

LANCERT = [sys.executable, "-m", "lancert"]
PRINTER_IP = "127.0.0.25"  # where up runs its printer (docs/up.md)


def _up(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LANCERT, "up", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "COLUMNS": "200"})


def _pos_serial(data_dir: Path) -> str:
    """The serial of the demo POS's client certificate as stored on disk (what it presents)."""
    cert = x509.load_pem_x509_certificate((data_dir / "pos" / "cert.pem").read_bytes())
    return format(cert.serial_number, "x")


def _assert_terminal(device: dict[str, object], data_dir: Path, *, paired_now: bool) -> None:
    assert device["padlock"] is True, device["detail"]
    assert device["detail"] == "mTLS GET /api/v1/status answered posId demo-pos"
    assert re.fullmatch(r"https://127\.0\.0\.1:\d+/", str(device["url"]))
    assert device["trust_file"] == str(data_dir / "terminal" / "ca" / "root.pem")
    assert device["pos_id"] == "demo-pos" and device["pos_dir"] == str(data_dir / "pos")
    assert device["client_cert_serial"] == _pos_serial(data_dir)
    how = "paired on this run" if paired_now else "reused from an earlier run"
    assert device["pairing"] == f"posId demo-pos, {how}; POS files in {data_dir / 'pos'}"
    # The POS trusts exactly the terminal root that up names as the file to trust.
    root = (data_dir / "terminal" / "ca" / "root.pem").read_bytes()
    assert (data_dir / "pos" / "ca.pem").read_bytes() == root
    assert json.loads((data_dir / "pos" / "pos.json").read_text())["terminal"] == device["url"]


def test_up_check_shows_padlock_for_every_device_and_keeps_them_across_runs(tmp_path: Path) -> None:
    result = _up("--check", "--json", "--data-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    devices = {d["device"]: d for d in json.loads(result.stdout)}
    printer = devices["receipt printer (self-signed)"]
    assert printer["padlock"] is True
    # Its own address, on 443 as a real Epson printer (as root), where Odoo's POS reaches a printer entered
    # by its IP alone: no port in the URL.
    assert printer["url"] == ("https://127.0.0.25/" if os.geteuid() == 0 else printer["url"])
    assert printer["url"].startswith("https://127.0.0.25")
    assert printer["trust_file"] == str(tmp_path / "printer" / "cert.pem")
    epos = "cgi-bin/epos/service.cgi?devid=local_printer&timeout=10000"
    assert printer["epos_url"] == printer["url"] + epos
    pos_page = devices["POS demo page (shop CA)"]  # the browser POS that prints on the printer
    assert pos_page["padlock"] is True and pos_page["prints_to"] == printer["epos_url"]
    assert pos_page["trust_file"] == str(tmp_path / "shop-ca" / "root.pem")
    box = devices["IoT box (provisioned)"]
    assert box["padlock"] is True, box["detail"]
    assert re.fullmatch(r"https://127-0-0-1\.[a-z0-9]+\.iot\.lancert\.test:\d+/", box["url"])
    assert box["trust_file"] == str(tmp_path / "service-root.pem")
    state = json.loads((tmp_path / "box" / "state.json").read_text())
    assert state["status"] == "OK" and box["url"] == state["https_url"]
    _assert_terminal(devices["payment terminal (paired mTLS)"], tmp_path, paired_now=True)
    serial = _pos_serial(tmp_path)
    terminal_root = (tmp_path / "terminal" / "ca" / "root.pem").read_bytes()

    first = (tmp_path / "printer" / "cert.pem").read_bytes()
    database = (tmp_path / "demo-database.json").read_text()
    box_cert = (tmp_path / "box" / "cert.pem").read_bytes()
    assert (tmp_path / "demo-database.json").stat().st_mode & 0o777 == 0o600
    again = _up("--check", "--data-dir", str(tmp_path))
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.count("padlock:  yes") == 4
    assert (tmp_path / "printer" / "cert.pem").read_bytes() == first
    assert (tmp_path / "demo-database.json").read_text() == database
    assert (tmp_path / "box" / "cert.pem").read_bytes() == box_cert  # still valid: not renewed
    # Pairing is once per POS: the second run reuses the terminal's CA and the POS's certificate.
    block = again.stdout.split("payment terminal (paired mTLS)\n", 1)[1]
    assert "  pairing:  posId demo-pos, reused from an earlier run" in block
    assert f"  POS cert: serial {serial}\n" in block
    assert "  padlock:  yes (mTLS GET /api/v1/status answered posId demo-pos)" in block
    assert _pos_serial(tmp_path) == serial
    assert (tmp_path / "terminal" / "ca" / "root.pem").read_bytes() == terminal_root

    # The terminal's state wiped (new CA, no registry): the stored certificate fails, so up pairs again.
    shutil.rmtree(tmp_path / "terminal")
    fresh = _up("--check", "--json", "--data-dir", str(tmp_path))
    assert fresh.returncode == 0, fresh.stderr
    terminal = next(d for d in json.loads(fresh.stdout) if d["device"] == "payment terminal (paired mTLS)")
    _assert_terminal(terminal, tmp_path, paired_now=True)
    assert terminal["client_cert_serial"] != serial


def test_up_check_exits_1_and_names_the_reason_when_a_device_has_no_padlock(tmp_path: Path) -> None:
    # A printer certificate for the printer's own address that no browser accepts for a server: its
    # extended key usage is clientAuth only. (One for another address would not do: up makes its printer's
    # certificate again when the printer's address changed.)
    printer = tmp_path / "printer"
    printer.mkdir()
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, PRINTER_IP)])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(PRINTER_IP))]), False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)
        .sign(key, hashes.SHA256())
    )
    (printer / "cert.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    (printer / "key.pem").write_bytes(key_pem)
    (printer / "key.pem").chmod(0o600)
    result = _up("--check", "--data-dir", str(tmp_path))
    assert result.returncode == 1, result.stdout
    assert "padlock:  NO" in result.stdout
    assert "a TLS server certificate needs serverAuth" in result.stdout


def test_up_serves_until_interrupted(tmp_path: Path) -> None:
    # PYTHONFAULTHANDLER: should up not stop in time, SIGABRT makes it print where each thread is.
    proc = subprocess.Popen([*LANCERT, "up", "--data-dir", str(tmp_path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "COLUMNS": "200", "PYTHONFAULTHANDLER": "1"})
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
        # The demo POS, as a POS application would use it, calls the running terminal over mutual TLS.
        block = lines[lines.index("payment terminal (paired mTLS)\n"):]
        terminal_url = next(line.split()[1] for line in block if line.strip().startswith("URL:"))
        with PosClient(tmp_path / "pos") as pos:
            assert pos.terminal_url == terminal_url
            assert pos.status()["posId"] == "demo-pos"
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)
            _, stderr = proc.communicate(timeout=30)
            logs = {p.name: p.read_text()[-2000:] for p in (tmp_path / "logs").glob("*.log")}
            pytest.fail(f"up did not stop within 30 s of Ctrl-C; its threads:\n{stderr}\nlogs: {logs}")
        assert proc.returncode == 0
        with pytest.raises(httpx.ConnectError):  # the box process was stopped with up
            httpx.get(box_http, trust_env=False, timeout=5)
        with pytest.raises(httpx.ConnectError):  # and so was the terminal
            root = ssl.create_default_context(cafile=str(tmp_path / "terminal" / "ca" / "root.pem"))
            httpx.get(terminal_url, verify=root, trust_env=False, timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
