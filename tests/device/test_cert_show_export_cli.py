"""``lancert cert show`` and ``cert export``: facts users compare, and files that other tools read back."""

from __future__ import annotations

import json
import os
import plistlib
import shutil
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from device_cli_helpers import assert_one_line_failure, lancert, openssl, snapshot

from capabilities import require
from lancert.device.certificate import create_device_certificate
from lancert.pki import fingerprint_sha256, read_certificates

pytestmark = pytest.mark.slow  # starts a server or subprocess (tests/conftest.py)


@pytest.fixture(scope="module")
def device_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("printer")
    result = lancert(
        "device", "create", "--ip", "192.168.1.25", "--dns", "printer.local", "--dir", directory, "--force"
    )
    assert result.returncode == 0, result.stderr
    return directory


def _cert(device_dir: Path) -> x509.Certificate:
    return read_certificates(device_dir / "cert.pem")[0]


def test_show_json_gives_every_field(device_dir: Path) -> None:
    result = lancert("cert", "show", device_dir / "cert.pem", "--json")
    assert result.returncode == 0, result.stderr
    facts = json.loads(result.stdout)
    cert = _cert(device_dir)
    assert facts["subject"] == facts["issuer"] == "CN=192.168.1.25"
    assert facts["names"] == ["printer.local", "192.168.1.25"]
    assert facts["days_left"] == 365
    assert facts["status"] == "valid"
    assert facts["self_signed"] is True and facts["is_ca"] is False
    assert facts["key_type"] == "ECDSA P-256"
    assert facts["sha256_fingerprint"] == fingerprint_sha256(cert)
    assert int(facts["serial"], 16) == cert.serial_number
    assert facts["not_after"] == cert.not_valid_after_utc.isoformat()


def test_show_text_has_one_labelled_line_per_fact(device_dir: Path) -> None:
    result = lancert("cert", "show", device_dir / "cert.pem")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == [
        "Subject",
        "Names",
        "Issuer",
        "Valid",
        "Valid",
        "Days",
        "Key",
        "SHA-256",
        "Serial",
        "CA",
    ]
    assert "Days left    365 (valid)" in lines
    assert "Issuer       CN=192.168.1.25  (self-signed)" in lines
    assert f"SHA-256      {fingerprint_sha256(_cert(device_dir))}" in lines


@pytest.mark.parametrize(("fmt", "inform"), [("crt", "PEM"), ("pem", "PEM"), ("der", "DER")])
def test_export_is_read_by_openssl_x509(device_dir: Path, tmp_path: Path, fmt: str, inform: str) -> None:
    out = tmp_path / f"printer.{fmt}"
    result = lancert("cert", "export", device_dir / "cert.pem", "--format", fmt, "-o", out)
    assert result.returncode == 0, result.stderr
    text = openssl("x509", "-inform", inform, "-in", out, "-noout", "-text", "-fingerprint", "-sha256")
    assert text.returncode == 0, text.stderr
    assert "IP Address:192.168.1.25" in text.stdout and "DNS:printer.local" in text.stdout
    assert "CA:FALSE" in text.stdout and "TLS Web Server Authentication" in text.stdout
    assert f"Fingerprint={fingerprint_sha256(_cert(device_dir))}" in text.stdout
    data = out.read_bytes()
    if fmt == "crt":
        assert data.count(b"\r\n") == data.count(b"\n") > 0
    if fmt == "der":
        assert data == _cert(device_dir).public_bytes(serialization.Encoding.DER)


def test_export_p12_with_key_opens_only_with_the_password(device_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "printer.p12"
    result = lancert(
        "cert",
        "export",
        device_dir / "cert.pem",
        "--format",
        "p12",
        "-o",
        out,
        "--key",
        device_dir / "key.pem",
        "--password",
        "correct horse",
    )
    assert result.returncode == 0, result.stderr
    assert oct(out.stat().st_mode & 0o777) == "0o600"  # it holds the private key
    ok = openssl("pkcs12", "-info", "-in", out, "-passin", "pass:correct horse", "-nodes")
    assert ok.returncode == 0, ok.stderr
    assert "subject=CN = 192.168.1.25" in ok.stdout and "BEGIN PRIVATE KEY" in ok.stdout
    assert "PBES2, PBKDF2, AES-256-CBC" in ok.stderr
    bad = openssl("pkcs12", "-info", "-in", out, "-passin", "pass:wrong", "-nodes")
    assert bad.returncode != 0
    assert "BEGIN" not in bad.stdout


def test_export_p12_certificate_only_from_the_environment_password(device_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "cert-only.p12"
    result = lancert(
        "cert",
        "export",
        device_dir / "cert.pem",
        "--format",
        "p12",
        "-o",
        out,
        env={**os.environ, "LANCERT_P12_PASSWORD": "from-env"},
    )
    assert result.returncode == 0, result.stderr
    info = openssl("pkcs12", "-info", "-in", out, "-passin", "pass:from-env", "-nokeys")
    assert info.returncode == 0, info.stderr
    assert "BEGIN CERTIFICATE" in info.stdout and "Shrouded Keybag" not in info.stderr


def test_export_mobileconfig_is_a_plist_with_the_der_certificate(device_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "printer.mobileconfig"
    assert (
        lancert("cert", "export", device_dir / "cert.pem", "--format", "mobileconfig", "-o", out).returncode
        == 0
    )
    profile = plistlib.loads(out.read_bytes())
    (payload,) = profile["PayloadContent"]
    assert payload["PayloadType"] == "com.apple.security.root"
    assert payload["PayloadContent"] == _cert(device_dir).public_bytes(serialization.Encoding.DER)
    assert profile["PayloadType"] == "Configuration"


def _bad_inputs(tmp_path: Path, device_dir: Path) -> dict[str, Path]:
    pem = (device_dir / "cert.pem").read_bytes()
    garbage = tmp_path / "garbage.pem"
    garbage.write_bytes(b"hello, I am not a certificate\n")
    truncated = tmp_path / "truncated.pem"
    truncated.write_bytes(pem[: len(pem) // 2])
    no_end = tmp_path / "no-end.pem"
    no_end.write_bytes(pem.replace(b"-----END CERTIFICATE-----\n", b""))
    empty = tmp_path / "empty.pem"
    empty.write_bytes(b"")
    return {
        "garbage": garbage,
        "truncated": truncated,
        "no-end": no_end,
        "empty": empty,
        "missing": tmp_path / "missing.pem",
        "directory": tmp_path,
    }


@pytest.mark.parametrize(
    ("case", "fragment"),
    [
        ("garbage", "not a valid certificate"),
        ("truncated", "not a valid certificate"),
        ("no-end", "not a valid certificate"),
        ("empty", "file is empty"),
        ("missing", "no such file"),
        ("directory", "is a directory"),
    ],
)
def test_bad_files_are_one_line_errors_for_show_and_export_and_nothing_is_written(
    device_dir: Path, tmp_path: Path, case: str, fragment: str
) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    path = _bad_inputs(inputs, device_dir)[case]
    assert_one_line_failure(lancert("cert", "show", path), fragment, str(path))
    out_dir = tmp_path / "out"
    result = lancert("cert", "export", path, "--format", "der", "-o", out_dir / "x.der")
    assert_one_line_failure(result, fragment)
    assert not out_dir.exists()


def test_unreadable_file_is_a_one_line_permission_error(device_dir: Path, tmp_path: Path) -> None:
    require(shutil.which("setpriv") is not None, "needs util-linux setpriv to drop root's override")
    # chmod 000 does not stop root, and the tests run as root: drop CAP_DAC_OVERRIDE and
    # CAP_DAC_READ_SEARCH from the child (as root owns the file, its 000 mode then applies) instead of
    # switching user, since the interpreter under /root is not reachable by other users.
    locked = tmp_path / "locked.pem"
    locked.write_bytes((device_dir / "cert.pem").read_bytes())
    locked.chmod(0)
    prefix = ("setpriv", "--bounding-set=-dac_override,-dac_read_search") if os.geteuid() == 0 else ()
    result = lancert("cert", "show", locked, prefix=prefix)
    assert_one_line_failure(result, "permission denied", str(locked))
    result = lancert("cert", "export", locked, "--format", "pem", "-o", tmp_path / "out.pem", prefix=prefix)
    assert_one_line_failure(result, "permission denied")
    assert not (tmp_path / "out.pem").exists()


@pytest.mark.parametrize(
    ("extra", "fragment", "code"),
    [
        (("--format", "p12"), "needs --password", 2),
        (("--format", "der", "--password", "x"), "apply to --format p12 only", 2),
        (("--format", "p12", "--password", "x", "--key", "{other_key}"), "does not belong", 1),
        (("--format", "p12", "--password", "x", "--key", "{garbage_key}"), "private key", 1),
    ],
    ids=["p12-no-password", "password-without-p12", "foreign-key", "garbage-key"],
)
def test_export_option_errors_write_nothing(
    device_dir: Path, tmp_path: Path, extra, fragment: str, code: int
) -> None:
    other = tmp_path / "other"
    create_device_certificate(other, ip="10.0.0.1")
    (tmp_path / "garbage.key").write_bytes(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    args = [a.format(other_key=other / "key.pem", garbage_key=tmp_path / "garbage.key") for a in extra]
    out = tmp_path / "out" / "x.bin"
    before = snapshot(device_dir)
    result = lancert("cert", "export", device_dir / "cert.pem", *args, "-o", out)
    assert_one_line_failure(result, fragment)
    assert result.returncode == code
    assert not out.parent.exists()
    assert snapshot(device_dir) == before


def test_show_of_a_certificate_with_duplicate_extensions_is_one_line(
    device_dir: Path, tmp_path: Path
) -> None:
    der = _cert(device_dir).public_bytes(serialization.Encoding.DER)
    forged = tmp_path / "forged.der"
    forged.write_bytes(der.replace(bytes.fromhex("0603551d11"), bytes.fromhex("0603551d0f"), 1))
    assert_one_line_failure(lancert("cert", "show", forged), "malformed extensions", str(forged))


def test_export_legacy_p12_uses_3des_and_sha1_and_opens_with_the_password(
    device_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "legacy.p12"
    result = lancert(
        "cert", "export", device_dir / "cert.pem", "--format", "p12", "--legacy", "-o", out,
        "--key", device_dir / "key.pem", "--password", "pw",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    info = openssl("pkcs12", "-info", "-in", out, "-passin", "pass:pw", "-nodes")
    assert info.returncode == 0, info.stderr
    assert "MAC: sha1" in info.stderr and "pbeWithSHA1And3-KeyTripleDES-CBC" in info.stderr
    assert "BEGIN PRIVATE KEY" in info.stdout
    assert openssl("pkcs12", "-info", "-in", out, "-passin", "pass:nope", "-nodes").returncode != 0
