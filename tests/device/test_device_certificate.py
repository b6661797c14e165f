"""``lancert.device`` in-process: the rules of the self-signed flow, fast enough for mutation runs.

The CLI's behaviour (exit codes, one-line errors) is in test_device_create_cli.py; these pin the values of
the contract: 1 to 10 years, the refusal to replace, Apple's 825 days.
"""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

import lancert.device.certificate as device
from lancert.device.certificate import (
    CertificateExists,
    apple_validity_warning,
    create_device_certificate,
    validity_for_years,
)
from lancert.errors import UsageError
from lancert.pki import fingerprint_sha256
from lancert.storage.files import CredentialFiles


def test_create_stores_a_self_signed_pair_for_the_ip(tmp_path: Path) -> None:
    credential = create_device_certificate(tmp_path, ip="192.168.1.25", dns=["printer.local"])
    stored = CredentialFiles(tmp_path).read()
    assert stored.certificate == credential.certificate
    cert = credential.certificate
    assert cert.issuer == cert.subject
    assert cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == "192.168.1.25"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["192.168.1.25"]
    assert san.get_values_for_type(x509.DNSName) == ["printer.local"]
    assert isinstance(credential.key, ec.EllipticCurvePrivateKey)
    assert stat.S_IMODE((tmp_path / "key.pem").stat().st_mode) == 0o600


def test_rsa_on_request(tmp_path: Path) -> None:
    credential = create_device_certificate(tmp_path, ip="192.168.1.25", key_kind="rsa")
    assert isinstance(credential.key, rsa.RSAPrivateKey) and credential.key.key_size == 2048


@pytest.mark.parametrize("left", ["cert.pem", "key.pem", None])
def test_an_existing_certificate_or_half_of_one_is_refused(tmp_path: Path, left: str | None) -> None:
    first = create_device_certificate(tmp_path, ip="192.168.1.25")
    if left is not None:
        (tmp_path / ({"cert.pem", "key.pem"} - {left}).pop()).unlink()
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(CertificateExists) as refused:
        create_device_certificate(tmp_path, ip="192.168.1.26")
    what = (
        f"a certificate (SHA-256 {fingerprint_sha256(first.certificate)[:23]}…)" if left is None
        else "certificate files"
    )
    assert str(refused.value) == (
        f"{tmp_path} already holds {what}; a new one would break HTTPS for every device that trusts the "
        "old one. Use --force to replace it anyway"
    )
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_force_replaces_the_pair(tmp_path: Path) -> None:
    first = create_device_certificate(tmp_path, ip="192.168.1.25")
    second = create_device_certificate(tmp_path, ip="192.168.1.26", force=True)
    assert second.certificate != first.certificate
    assert CredentialFiles(tmp_path).read().certificate == second.certificate


@pytest.mark.parametrize("years", [1, 2, 10])
def test_validity_is_whole_calendar_years_from_1_to_10(monkeypatch: pytest.MonkeyPatch, years: int) -> None:
    now = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    monkeypatch.setattr(device, "utcnow", lambda: now)
    assert now + validity_for_years(years) == datetime(2026 + years, 11, 30, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("years", [0, -1, 11])
def test_validity_outside_1_to_10_years_is_refused(years: int) -> None:
    with pytest.raises(UsageError) as refused:
        validity_for_years(years)
    assert str(refused.value) == f"--years must be between 1 and 10, not {years}"


def test_a_leap_day_maps_to_28_february(monkeypatch: pytest.MonkeyPatch) -> None:
    leap_day = datetime(2028, 2, 29, 12, 0, tzinfo=UTC)
    monkeypatch.setattr(device, "utcnow", lambda: leap_day)
    assert leap_day + validity_for_years(1) == datetime(2029, 2, 28, 12, 0, tzinfo=UTC)
    assert leap_day + validity_for_years(4) == datetime(2032, 2, 29, 12, 0, tzinfo=UTC)


def test_one_year_unless_asked(tmp_path: Path) -> None:
    cert = create_device_certificate(tmp_path, ip="192.168.1.25").certificate
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert timedelta(days=365) <= lifetime <= timedelta(days=367)


def test_the_certificate_lasts_the_years_asked(tmp_path: Path) -> None:
    cert = create_device_certificate(tmp_path, ip="192.168.1.25", years=2).certificate
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert timedelta(days=730) <= lifetime <= timedelta(days=732)


def test_apple_s_825_days_are_accepted_and_826_warned() -> None:
    assert apple_validity_warning(timedelta(days=825)) is None
    assert apple_validity_warning(timedelta(days=826)) == (
        "warning: valid 826 days; macOS and iOS refuse TLS certificates valid over 825 days "
        "(use --years 2 or less for Apple clients)"
    )
