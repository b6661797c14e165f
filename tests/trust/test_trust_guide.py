"""``lancert trust guide``: per platform, the file it wants (read back by openssl/plistlib) and the steps."""

from __future__ import annotations

import json
import plistlib
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from trust_helpers import run_lancert

from lancert.pki import read_certificate
from lancert.pki.formats import der


def openssl_der(path: Path, inform: str) -> bytes:
    return subprocess.run(["openssl", "x509", "-inform", inform, "-in", str(path), "-outform", "DER"],
                          capture_output=True, check=True).stdout


def guide(cert: Path, os_name: str, out_dir: Path) -> dict[str, object]:
    result = run_lancert("trust", "guide", cert, "--os", os_name, "-o", out_dir, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def cert_der(device_dir: Path) -> bytes:
    return der(read_certificate(device_dir / "cert.pem"))


@pytest.mark.parametrize(
    ("os_name", "name", "inform", "needles"),
    [
        ("windows", "cert.crt", "PEM", ["certutil -addstore -user -f Root cert.crt",
                                        "certutil -addstore -f Root",
                                        "Trusted Root Certification Authorities"]),
        ("macos", "cert.cer", "DER", ["sudo security add-trusted-cert -d -r trustRoot "
                                      "-k /Library/Keychains/System.keychain cert.cer"]),
        ("linux", "cert.pem", "PEM", ["/usr/local/share/ca-certificates/cert.crt", "update-ca-certificates",
                                      "/etc/pki/ca-trust/source/anchors/", "-t \"CP,,\""]),
        ("android", "cert.cer", "DER", ["Install a certificate → CA certificate"]),
    ],
)
@pytest.mark.slow
def test_each_platform_gets_its_file_and_commands(
    device_dir: Path, cert_der: bytes, tmp_path: Path,
    os_name: str, name: str, inform: str, needles: list[str],
) -> None:
    g = guide(device_dir / "cert.pem", os_name, tmp_path)
    assert g["file"] == str(tmp_path / name)
    assert openssl_der(tmp_path / name, inform) == cert_der
    text = "\n".join(g["steps"])  # type: ignore[arg-type]
    for needle in needles:
        assert needle in text


def test_windows_file_is_the_browser_export_with_crlf(device_dir: Path, tmp_path: Path) -> None:
    guide(device_dir / "cert.pem", "windows", tmp_path)
    data = (tmp_path / "cert.crt").read_bytes()
    assert data.startswith(b"-----BEGIN CERTIFICATE-----\r\n") and data.count(b"\n") == data.count(b"\r\n")


def test_ios_gets_a_root_payload_profile_and_the_trust_settings_step(
    device_dir: Path, cert_der: bytes, tmp_path: Path
) -> None:
    g = guide(device_dir / "cert.pem", "ios", tmp_path)
    profile = plistlib.loads((tmp_path / "cert.mobileconfig").read_bytes())
    assert profile["PayloadType"] == "Configuration"
    [payload] = profile["PayloadContent"]
    assert payload["PayloadType"] == "com.apple.security.root" and payload["PayloadContent"] == cert_der
    assert any("Settings → General → About → Certificate Trust Settings" in s for s in g["steps"])  # type: ignore[union-attr]


def test_warnings_for_android_and_long_lived_certificates_on_apple(tmp_path: Path) -> None:
    three_years = tmp_path / "dev3"
    created = run_lancert("device", "create", "--ip", "192.168.1.26", "--years", "3", "--dir", three_years)
    assert created.returncode == 0
    mac = guide(three_years / "cert.pem", "macos", tmp_path / "out")
    assert any("825 days" in w for w in mac["warnings"])  # type: ignore[union-attr]
    android = guide(three_years / "cert.pem", "android", tmp_path / "out")
    assert any("CA:FALSE" in w for w in android["warnings"])  # type: ignore[union-attr]
    windows = guide(three_years / "cert.pem", "windows", tmp_path / "out")
    assert windows["warnings"] == []


def test_default_output_is_beside_the_input_and_never_overwrites_it(device_dir: Path, tmp_path: Path) -> None:
    source = tmp_path / "printer.pem"
    source.write_bytes((device_dir / "cert.pem").read_bytes() + b"\n")
    result = run_lancert("trust", "guide", source, "--os", "linux")
    assert result.returncode == 0, result.stderr
    assert source.read_bytes().endswith(b"\n\n")
    written = x509.load_pem_x509_certificate((tmp_path / "printer.linux.pem").read_bytes())
    assert written == read_certificate(source)
    assert "linux: wrote" in result.stdout and "1. Debian/Ubuntu" in result.stdout


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "no such file"), (b"garbage", "not a valid certificate"),
     (b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n", "not a valid certificate")],
)
def test_bad_input_is_one_line_and_writes_nothing(
    tmp_path: Path, content: bytes | None, message: str
) -> None:
    source = tmp_path / "in.crt"
    if content is not None:
        source.write_bytes(content)
    out = tmp_path / "out"
    result = run_lancert("trust", "guide", source, "--os", "ios", "-o", out)
    assert result.returncode != 0 and result.stderr.count("\n") == 1 and message in result.stderr
    assert not out.exists()
