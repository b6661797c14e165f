"""cert show's facts: days left as a user reads them, status, fingerprint, key type."""

from __future__ import annotations

from datetime import timedelta

import pytest

from lancert.pki import (
    TLS_SERVER,
    SubjectNames,
    days_left,
    generate_private_key,
    self_signed_certificate,
    summarize,
    utcnow,
    validity_status,
)


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
        (timedelta(days=1, seconds=1), 2),  # a second into a second day is two days
        (timedelta(seconds=0.5), 1),
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


def test_validity_bounds_are_inclusive(year_cert) -> None:
    assert validity_status(year_cert, year_cert.not_valid_before_utc) == "valid"
    assert validity_status(year_cert, year_cert.not_valid_after_utc) == "valid"


def test_summary_at_a_given_time_and_of_a_ca_issued_leaf(year_cert, root_ca, intermediate_ca) -> None:
    import hashlib

    from cryptography.hazmat.primitives import serialization

    later = summarize(year_cert, year_cert.not_valid_after_utc + timedelta(days=2))
    assert (later.status, later.days_left) == ("expired", -2)
    assert later.not_after == year_cert.not_valid_after_utc.isoformat()
    assert summarize(root_ca.certificate).is_ca is True
    leaf = intermediate_ca.issue(
        generate_private_key().public_key(), TLS_SERVER,
        names=SubjectNames.parse(dns=["a.iot.example.net"]), validity=timedelta(days=30),
    )
    summary = summarize(leaf)
    assert summary.self_signed is False and summary.is_ca is False
    assert summary.issuer == "CN=Test Intermediate,O=lancert"
    digest = hashlib.sha256(leaf.public_bytes(serialization.Encoding.DER)).hexdigest().upper()
    assert summary.sha256_fingerprint == ":".join(digest[i:i + 2] for i in range(0, 64, 2))


def test_a_certificate_without_basic_constraints_is_not_a_ca() -> None:
    from datetime import UTC, datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    key = generate_private_key()
    now = datetime.now(UTC)
    bare = (
        x509.CertificateBuilder().subject_name(x509.Name([])).issuer_name(x509.Name([]))
        .public_key(key.public_key()).serial_number(1).not_valid_before(now)
        .not_valid_after(now + timedelta(days=1)).sign(key, hashes.SHA256())
    )
    assert summarize(bare).is_ca is False
