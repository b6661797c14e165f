"""cert show's facts: days left as a user reads them, status, fingerprint, key type."""

from __future__ import annotations

from datetime import timedelta

import pytest

from lancert.pki import SubjectNames, days_left, self_signed_certificate, summarize, utcnow, validity_status


@pytest.fixture(scope="module")
def year_cert(ec_key):
    return self_signed_certificate(
        ec_key, SubjectNames.parse(ips=["192.168.1.25"]), validity=timedelta(days=365)
    )


def test_fresh_one_year_certificate_shows_365_days_left(year_cert) -> None:
    assert days_left(year_cert) == 365
    assert summarize(year_cert).days_left == 365


@pytest.mark.parametrize(
    ("before_expiry", "expected"),
    [
        (timedelta(days=1, hours=1), 2),
        (timedelta(hours=3), 1),  # still valid for part of a day: not "0", which reads as expired
        (timedelta(0), 0),
        (-timedelta(hours=3), -1),
        (-timedelta(days=2, seconds=1), -3),
    ],
)
def test_days_left_rounds_away_from_zero(year_cert, before_expiry: timedelta, expected: int) -> None:
    at = year_cert.not_valid_after_utc - before_expiry
    assert days_left(year_cert, at) == expected


def test_status_before_during_and_after_validity(year_cert) -> None:
    assert (
        validity_status(year_cert, year_cert.not_valid_before_utc - timedelta(seconds=1)) == "not yet valid"
    )
    assert validity_status(year_cert) == "valid"
    assert validity_status(year_cert, year_cert.not_valid_after_utc + timedelta(seconds=1)) == "expired"


def test_summary_fields(year_cert) -> None:
    s = summarize(year_cert).as_dict()
    assert s["subject"] == s["issuer"] == "CN=192.168.1.25"
    assert s["names"] == ["192.168.1.25"]
    assert s["self_signed"] is True and s["is_ca"] is False
    assert s["key_type"] == "ECDSA P-256"
    assert s["serial"] == format(year_cert.serial_number, "x")
    assert len(s["sha256_fingerprint"].split(":")) == 32
    assert s["not_before"] == year_cert.not_valid_before_utc.isoformat()
    assert utcnow().isoformat() > s["not_before"]
