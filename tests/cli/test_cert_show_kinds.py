"""``cert show`` on what users actually hold: a CA root, a file of several certificates, a .p12."""

from __future__ import annotations

import json
import os
import pwd
import socket
from pathlib import Path

import pytest

from lancert_cli import lancert

pytestmark = pytest.mark.slow  # starts a server or subprocess (tests/conftest.py)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("show")
    lancert("ca", "init", "--dir", str(work / "ca"))
    lancert("device", "create", "--ip", "192.168.1.25", "--dir", str(work / "printer"))
    (work / "chain.pem").write_bytes((work / "printer" / "cert.pem").read_bytes()
                                     + (work / "ca" / "root.pem").read_bytes())
    lancert("cert", "export", str(work / "printer" / "cert.pem"), "--format", "p12", "--key",
            str(work / "printer" / "key.pem"), "-o", str(work / "printer.p12"),
            env={**os.environ, "LANCERT_P12_PASSWORD": "s3cret"})
    return work


def _row(output: str, label: str) -> str:
    return next(line for line in output.splitlines() if line.startswith(label)).split(None, 1)[1]


def test_a_ca_root_without_names_is_not_said_to_be_rejected(files: Path) -> None:
    out = lancert("cert", "show", str(files / "ca" / "root.pem")).stdout
    assert _row(out, "Names") == "(none; a CA certificate needs none)"
    assert "reject" not in out


def test_every_certificate_of_a_file_is_shown_and_counted(files: Path) -> None:
    out = lancert("cert", "show", str(files / "chain.pem")).stdout
    assert out.startswith("Certificate 1 of 2\nSubject ")
    assert "\n\nCertificate 2 of 2\nSubject      CN=lancert Root CA" in out
    data = json.loads(lancert("cert", "show", str(files / "chain.pem"), "--json").stdout)
    assert data["subject"] == "CN=192.168.1.25"
    maker = f"{pwd.getpwuid(os.getuid()).pw_name}@{socket.gethostname()}"  # issue 20: user@host
    assert [o["subject"] for o in data["others"]] == [f"CN=lancert Root CA ({maker}),OU={maker},O=lancert"]


def test_a_p12_is_recognised_and_read_with_its_password(files: Path) -> None:
    p12 = files / "printer.p12"
    refused = lancert("cert", "show", str(p12), check=False, env={**os.environ, "LANCERT_P12_PASSWORD": ""})
    assert refused.returncode == 1
    assert refused.stderr == (f"lancert: {p12}: PKCS#12 (.p12) bundle protected by a password: give it with "
                              "--password (or LANCERT_P12_PASSWORD)\n")
    shown = lancert("cert", "show", str(p12), "--password", "s3cret", "--json").stdout
    printer = lancert("cert", "show", str(files / "printer" / "cert.pem"), "--json").stdout
    assert json.loads(shown) == json.loads(printer)
