"""``trust install --store system --system-root DIR``: a relative DIR works like an absolute one, and a
failed install changes nothing in the layout. The real ``update-ca-certificates`` runs on a fake root."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lancert.pki import CertificateAuthority, pem

pytestmark = pytest.mark.slow  # starts a server or subprocess (tests/conftest.py)

LANCERT = [sys.executable, "-m", "lancert"]


def _debian_layout(root: Path, *, with_certs_dir: bool = True) -> None:
    for d in ("usr/share/ca-certificates/mozilla", "usr/local/share/ca-certificates"):
        (root / d).mkdir(parents=True)
    if with_certs_dir:
        (root / "etc/ssl/certs").mkdir(parents=True)
    distro = CertificateAuthority.create_root("Distribution Root").certificate
    (root / "usr/share/ca-certificates/mozilla/Distribution_Root.crt").write_bytes(pem(distro))
    (root / "etc").mkdir(exist_ok=True)
    (root / "etc/ca-certificates.conf").write_text("mozilla/Distribution_Root.crt\n")


def _snapshot(root: Path) -> dict[str, bytes | str]:
    return {str(p.relative_to(root)): (str(p.readlink()) if p.is_symlink() else p.read_bytes())
            for p in sorted(root.rglob("*")) if p.is_file() or p.is_symlink()}


@pytest.fixture(scope="module")
def device_cert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("printer")
    subprocess.run([*LANCERT, "device", "create", "--ip", "192.168.1.25", "--dir", str(directory)],
                   check=True, capture_output=True)
    return directory / "cert.pem"


def test_a_relative_system_root_works_like_an_absolute_one(tmp_path: Path, device_cert: Path) -> None:
    _debian_layout(tmp_path / "layouts" / "root")
    work = tmp_path / "work"
    work.mkdir()
    args = ["--store", "system", "--system-root", "../layouts/root"]
    result = subprocess.run([*LANCERT, "trust", "install", str(device_cert), *args], cwd=work,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    listed = subprocess.run([*LANCERT, "trust", "list", str(device_cert), *args], cwd=work,
                            capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0 and listed.stdout.startswith("trusted "), listed.stdout + listed.stderr


def test_a_failed_install_changes_nothing_and_says_so_once(tmp_path: Path, device_cert: Path) -> None:
    root = tmp_path / "root"
    _debian_layout(root, with_certs_dir=False)  # update-ca-certificates cds into etc/ssl/certs
    before = _snapshot(root)
    result = subprocess.run([*LANCERT, "trust", "install", str(device_cert), "--store", "system",
                             "--system-root", str(root)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.startswith("lancert: update-ca-certificates failed: ")
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert _snapshot(root) == before
