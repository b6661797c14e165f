"""``cert export -o OUT``: a mistyped directory creates nothing, an existing file is kept unless --force."""

from __future__ import annotations

from pathlib import Path

import pytest

from lancert_cli import lancert

pytestmark = pytest.mark.slow  # starts a server or subprocess (tests/conftest.py)


@pytest.fixture(scope="module")
def printer_cert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("printer")
    lancert("device", "create", "--ip", "192.168.1.25", "--dir", str(directory))
    return directory / "cert.pem"


def test_export_into_a_missing_directory_is_refused_and_creates_nothing(printer_cert: Path,
                                                                         tmp_path: Path) -> None:
    out = tmp_path / "nonexistent" / "dir" / "x.der"
    result = lancert("cert", "export", str(printer_cert), "--format", "der", "-o", str(out), check=False)
    assert result.returncode == 1
    assert result.stderr == (f"lancert: {tmp_path / 'nonexistent' / 'dir'}: no such directory "
                             "(create it first, or choose another -o)\n")
    assert not (tmp_path / "nonexistent").exists()


def test_export_over_an_existing_file_is_refused_unless_forced(printer_cert: Path, tmp_path: Path) -> None:
    out = tmp_path / "printer.crt"
    out.write_text("keep me")
    refused = lancert("cert", "export", str(printer_cert), "--format", "crt", "-o", str(out), check=False)
    assert refused.returncode == 1
    assert refused.stderr == f"lancert: {out} already exists; use --force to replace it\n"
    assert out.read_text() == "keep me"
    lancert("cert", "export", str(printer_cert), "--format", "crt", "-o", str(out), "--force")
    assert out.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----\r\n")
