"""CADirectory: a root and an intermediate made once, loaded thereafter, never silently replaced."""

from __future__ import annotations

import stat
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.x509.oid import NameOID
from pki_test_helpers import ZONE

from lancert.ca.directory import (
    INTERMEDIATE_CERT,
    INTERMEDIATE_KEY,
    ROOT_CERT,
    ROOT_KEY,
    CADirectory,
    CAExists,
)
from lancert.errors import LancertError
from lancert.pki import (
    TLS_SERVER,
    SubjectNames,
    generate_private_key,
    private_key_pem,
    verify_server_chain,
    zone_name_constraints,
)


def test_create_writes_root_and_intermediate_with_private_keys_0600(tmp_path: Path) -> None:
    ca = CADirectory(tmp_path).create(
        "Shop", name_constraints=zone_name_constraints(ZONE), made_by="ana@till"
    )
    for name, mode in (
        (ROOT_CERT, 0o644),
        (ROOT_KEY, 0o600),
        (INTERMEDIATE_CERT, 0o644),
        (INTERMEDIATE_KEY, 0o600),
    ):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name
    assert ca.root.subject.rfc4514_string() == "CN=Shop Root CA (ana@till),OU=ana@till,O=lancert"
    assert (ca.certificate.subject.rfc4514_string()
            == "CN=Shop Intermediate CA (ana@till),OU=ana@till,O=lancert")


def test_a_long_maker_is_shortened_in_the_common_name_and_kept_whole_in_the_ou(tmp_path: Path) -> None:
    made_by = "cashier@" + "till-" * 8 + "pc.shop.example"  # 63 characters: fits an OU (64), not a CN
    ca = CADirectory(tmp_path).create("lancert Bakery Smith", made_by=made_by)
    cn = ca.root.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    ou = ca.root.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value
    assert len(cn) <= 64 and cn.endswith("...)")
    assert cn.startswith("lancert Bakery Smith Root CA (cashier@till-")
    assert ou == made_by


def test_load_gives_an_issuing_ca_whose_leaves_verify_to_the_stored_root(tmp_path: Path) -> None:
    created = CADirectory(tmp_path).create("Shop", name_constraints=zone_name_constraints(ZONE))
    loaded = CADirectory(tmp_path).load()
    assert loaded.certificate == created.certificate and loaded.root == created.root
    leaf = loaded.issue(
        generate_private_key().public_key(),
        TLS_SERVER,
        names=SubjectNames.parse(dns=[f"*.box.{ZONE}"]),
        validity=timedelta(days=30),
    )
    path = verify_server_chain(
        leaf, anchors=[loaded.root], host=f"10-0-0-1.box.{ZONE}", intermediates=[loaded.certificate]
    )
    assert len(path) == 3


def test_create_refuses_when_a_ca_exists_and_changes_nothing(tmp_path: Path) -> None:
    CADirectory(tmp_path).create("Shop")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(CAExists, match="already holds a CA"):
        CADirectory(tmp_path).create("Other")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_load_or_create_creates_once_and_then_loads(tmp_path: Path) -> None:
    first = CADirectory(tmp_path).load_or_create("Shop")
    assert CADirectory(tmp_path).load_or_create("Shop").certificate == first.certificate


def test_load_or_create_replaces_a_partial_ca_left_by_a_crash(tmp_path: Path) -> None:
    CADirectory(tmp_path).create("Shop")
    (tmp_path / INTERMEDIATE_CERT).unlink()  # crashed before the "done" marker was written
    old_root = (tmp_path / ROOT_CERT).read_bytes()
    ca = CADirectory(tmp_path).load_or_create("Shop")
    assert (tmp_path / ROOT_CERT).read_bytes() != old_root
    assert CADirectory(tmp_path).load().certificate == ca.certificate


def test_load_refuses_missing_mismatched_or_foreign_files(tmp_path: Path) -> None:
    with pytest.raises(LancertError, match="missing"):
        CADirectory(tmp_path).load()
    CADirectory(tmp_path).create("Shop")
    good_key = (tmp_path / INTERMEDIATE_KEY).read_bytes()
    (tmp_path / INTERMEDIATE_KEY).write_bytes(private_key_pem(generate_private_key()))
    with pytest.raises(LancertError, match="does not belong"):
        CADirectory(tmp_path).load()
    (tmp_path / INTERMEDIATE_KEY).write_bytes(good_key)
    other = tmp_path / "other"
    CADirectory(other).create("Other")
    (tmp_path / ROOT_CERT).write_bytes((other / ROOT_CERT).read_bytes())
    with pytest.raises(LancertError, match="not issued by"):
        CADirectory(tmp_path).load()
