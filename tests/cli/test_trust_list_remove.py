"""``trust list`` says when each certificate expires; ``trust remove`` takes the label or fingerprint
that ``list`` prints; lancert's own roots get a nickname without the doubled 'lancert lancert'."""

from __future__ import annotations

import json
import os
import pwd
import socket
from pathlib import Path

import pytest

from lancert_cli import lancert

# Who makes the roots here: issue 20 names a root after its maker (mkcert's "user@host").
MAKER = f"{pwd.getpwuid(os.getuid()).pw_name}@{socket.gethostname()}"

pytestmark = pytest.mark.slow  # starts a server or subprocess (tests/conftest.py)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    work = tmp_path_factory.mktemp("certs")
    lancert("device", "create", "--ip", "192.168.1.25", "--dir", str(work / "printer"))
    lancert("ca", "init", "--dir", str(work / "ca"))
    return work / "printer" / "cert.pem", work / "ca" / "root.pem"


@pytest.fixture
def nss(tmp_path: Path, certs: tuple[Path, Path]) -> tuple[Path, Path, Path]:
    return tmp_path / "nssdb", *certs


def _listed(nssdb: Path) -> list[dict[str, str]]:
    return json.loads(lancert("trust", "list", "--store", "nss", "--nssdb", str(nssdb), "--json").stdout)


def test_list_shows_expiry_and_fingerprint(nss: tuple[Path, Path, Path]) -> None:
    nssdb, printer, _ = nss
    lancert("trust", "install", str(printer), "--store", "nss", "--nssdb", str(nssdb))
    shown = json.loads(lancert("cert", "show", str(printer), "--json").stdout)
    text = lancert("trust", "list", "--store", "nss", "--nssdb", str(nssdb)).stdout
    assert f"expires {shown['not_after'][:10]} (valid)  SHA-256 {shown['sha256_fingerprint']}" in text
    assert _listed(nssdb)[0]["not_after"] == shown["not_after"]


@pytest.mark.parametrize("by", ["label", "fingerprint", "short-fingerprint"])
def test_remove_takes_what_list_prints(nss: tuple[Path, Path, Path], by: str) -> None:
    nssdb, printer, root = nss
    for cert in (printer, root):
        lancert("trust", "install", str(cert), "--store", "nss", "--nssdb", str(nssdb))
    entry = next(e for e in _listed(nssdb) if e["subject"] == "CN=192.168.1.25")
    what = {"label": entry["label"], "fingerprint": entry["sha256_fingerprint"],
            "short-fingerprint": entry["sha256_fingerprint"].replace(":", "")[:8].lower()}[by]
    result = lancert("trust", "remove", what, "--store", "nss", "--nssdb", str(nssdb))
    assert result.stdout.startswith("removed from NSS database")
    assert [e["subject"] for e in _listed(nssdb)] == [f"CN=lancert Root CA ({MAKER}),OU={MAKER},O=lancert"]


def test_remove_of_an_unknown_name_says_where_it_looked(nss: tuple[Path, Path, Path]) -> None:
    nssdb, printer, _ = nss
    lancert("trust", "install", str(printer), "--store", "nss", "--nssdb", str(nssdb))
    result = lancert("trust", "remove", "no-such-label", "--store", "nss", "--nssdb", str(nssdb), check=False)
    assert result.returncode == 1
    assert result.stderr.startswith("lancert: no-such-label: no such file, and no label or SHA-256 "
                                    "fingerprint")
    assert len(_listed(nssdb)) == 1


def test_a_lancert_root_gets_its_name_once_in_the_nickname(nss: tuple[Path, Path, Path]) -> None:
    nssdb, _, root = nss
    lancert("trust", "install", str(root), "--store", "nss", "--nssdb", str(nssdb))
    fingerprint = json.loads(lancert("cert", "show", str(root), "--json").stdout)["sha256_fingerprint"]
    short = fingerprint.replace(":", "")[:8].lower()
    assert [e["label"] for e in _listed(nssdb)] == [f"lancert Root CA ({MAKER}) {short}"]
