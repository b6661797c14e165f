"""NSS databases through the real certutil: nicknames, trust flags, discovery of browser profiles."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from trust_helpers import make_nssdb, nss_entries, run_lancert

from lancert.pki import CertificateAuthority, pem, read_certificate
from lancert.trust import NssStore, nickname, nss_databases


@pytest.fixture
def nssdb(tmp_path: Path) -> Path:
    return make_nssdb(tmp_path / "db")


def test_device_certificate_gets_peer_trust_under_a_nickname_from_its_fingerprint(
    device_dir: Path, nssdb: Path
) -> None:
    cert = read_certificate(device_dir / "cert.pem")
    result = run_lancert("trust", "install", device_dir / "cert.pem", "--store", "nss", "--nssdb", nssdb)
    assert result.returncode == 0, result.stderr
    fp8 = cert.fingerprint(hashes.SHA256()).hex()[:8]
    assert nss_entries(nssdb) == [(f"lancert 192.168.1.25 {fp8}", "CP,,")]
    exported = subprocess.run(["certutil", "-L", "-d", f"sql:{nssdb}", "-n", nickname(cert), "-a"],
                              capture_output=True, check=True).stdout
    assert exported.replace(b"\r\n", b"\n") == pem(cert)


def test_ca_root_gets_ca_trust(tmp_path: Path, nssdb: Path) -> None:
    root = CertificateAuthority.create_root("NSS Test Root").certificate
    (tmp_path / "root.pem").write_bytes(pem(root))
    result = run_lancert("trust", "install", tmp_path / "root.pem", "--store", "nss", "--nssdb", nssdb)
    assert result.returncode == 0
    assert nss_entries(nssdb) == [(nickname(root), "C,,")]


def test_install_is_idempotent_and_repairs_missing_trust(device_dir: Path, nssdb: Path) -> None:
    cert = read_certificate(device_dir / "cert.pem")
    subprocess.run(["certutil", "-A", "-d", f"sql:{nssdb}", "-n", "added by hand", "-t", ",,",
                    "-i", str(device_dir / "cert.pem")], check=True)
    store = NssStore(nssdb)
    assert store.check(cert) is False
    store.install(cert)
    store.install(cert)
    assert nss_entries(nssdb) == [("added by hand", "CP,,")] and store.check(cert)
    assert store.uninstall(cert) is True and nss_entries(nssdb) == []
    assert store.uninstall(cert) is False



def test_peer_only_trust_from_an_older_lancert_is_upgraded_to_what_firefox_also_needs(
    device_dir: Path, nssdb: Path
) -> None:
    """Older lancert gave P,, (Chromium only); Firefox needs C too, so P,, no longer counts as trusted."""
    cert = read_certificate(device_dir / "cert.pem")
    subprocess.run(["certutil", "-A", "-d", f"sql:{nssdb}", "-n", nickname(cert), "-t", "P,,",
                    "-i", str(device_dir / "cert.pem")], check=True)
    store = NssStore(nssdb)
    assert store.check(cert) is False
    result = run_lancert("trust", "install", device_dir / "cert.pem", "--store", "nss", "--nssdb", nssdb)
    assert result.returncode == 0, result.stderr
    assert nss_entries(nssdb) == [(nickname(cert), "CP,,")] and store.check(cert)

def test_list_shows_lancert_entries_only_and_list_file_tells_whether_trusted(
    device_dir: Path, nssdb: Path, tmp_path: Path
) -> None:
    other = CertificateAuthority.create_root("Not Ours").certificate
    (tmp_path / "other.pem").write_bytes(pem(other))
    subprocess.run(["certutil", "-A", "-d", f"sql:{nssdb}", "-n", "Not Ours", "-t", "C,,",
                    "-i", str(tmp_path / "other.pem")], check=True)
    cert_file = device_dir / "cert.pem"
    assert run_lancert("trust", "list", cert_file, "--store", "nss", "--nssdb", nssdb).returncode == 1
    run_lancert("trust", "install", cert_file, "--store", "nss", "--nssdb", nssdb)
    listed = json.loads(run_lancert("trust", "list", "--store", "nss", "--nssdb", nssdb, "--json").stdout)
    assert [(e["label"], e["trust"], e["subject"]) for e in listed] == [
        (nickname(read_certificate(cert_file)), "CP,,", "CN=192.168.1.25")
    ]
    check = run_lancert("trust", "list", cert_file, "--store", "nss", "--nssdb", nssdb)
    assert check.returncode == 0 and check.stdout.startswith("trusted")


def test_default_stores_are_chrome_created_if_missing_and_every_firefox_profile(
    device_dir: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    firefox = make_nssdb(home / ".mozilla/firefox/abcd1234.default-release")
    snap_firefox = make_nssdb(home / "snap/firefox/common/.mozilla/firefox/x.default")
    (home / ".mozilla/firefox/old.profile").mkdir()  # no cert9.db: not a database
    assert [s.directory for s in nss_databases(home)] == [home / ".pki/nssdb", firefox, snap_firefox]

    result = run_lancert("trust", "install", device_dir / "cert.pem", "--store", "nss", home=home)
    assert result.returncode == 0, result.stderr
    for db in (home / ".pki/nssdb", firefox, snap_firefox):
        assert [t for _, t in nss_entries(db)] == ["CP,,"], db
    removed = run_lancert("trust", "remove", device_dir / "cert.pem", "--store", "nss", home=home)
    assert removed.stdout.count("removed from") == 3
    for db in (home / ".pki/nssdb", firefox, snap_firefox):
        assert nss_entries(db) == []


def test_install_names_firefox_profiles_that_have_no_database_yet(device_dir: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    base = home / ".mozilla/firefox"
    make_nssdb(base / "abcd1234.default-release")
    (base / "fresh.default").mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere-profile"
    (base / "profiles.ini").write_text(
        "[Install4F96D1932A9F858E]\nDefault=abcd1234.default-release\n\n"
        "[Profile0]\nName=default-release\nIsRelative=1\nPath=abcd1234.default-release\n\n"
        "[Profile1]\nName=fresh\nIsRelative=1\nPath=fresh.default\n\n"
        f"[Profile2]\nName=moved\nIsRelative=0\nPath={elsewhere}\n\n[General]\nVersion=2\n"
    )
    result = run_lancert("trust", "install", device_dir / "cert.pem", "--store", "nss", home=home)
    assert result.returncode == 0, result.stderr
    notes = [line for line in result.stderr.splitlines() if line.startswith("note: Firefox profile")]
    assert notes == [
        f"note: Firefox profile {path} has no certificate database yet; start Firefox with it once, then run "
        "this install again" for path in (base / "fresh.default", elsewhere)
    ]
    assert [t for _, t in nss_entries(base / "abcd1234.default-release")] == ["CP,,"]
    with_nssdb = run_lancert("trust", "install", device_dir / "cert.pem", "--store", "nss",
                             "--nssdb", base / "abcd1234.default-release", home=home)
    assert "note:" not in with_nssdb.stderr


def test_a_profile_directory_without_a_database_is_not_created_by_check(
    tmp_path: Path, device_dir: Path
) -> None:
    store = NssStore(tmp_path / "nothing")
    assert store.check(read_certificate(device_dir / "cert.pem")) is False
    assert not (tmp_path / "nothing").exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        (b"", "file is empty"),
        (b"this is not a certificate", "not a valid certificate"),
        (b"-----BEGIN CERTIFICATE-----\nMIIBozCCAUmgAwIBAgIU\n-----END CERTIFICATE-----\n",
         "not a valid certificate"),
    ],
    ids=["missing", "empty", "garbage", "truncated"],
)
def test_bad_files_change_nothing(tmp_path: Path, nssdb: Path, content: bytes | None, message: str) -> None:
    source = tmp_path / "bad.crt"
    if content is not None:
        source.write_bytes(content)
    before = sorted((p.name, p.stat().st_mtime_ns) for p in nssdb.iterdir())
    for verb in ("install", "remove"):
        result = run_lancert("trust", verb, source, "--store", "nss", "--nssdb", nssdb)
        assert result.returncode == 1 and result.stderr.count("\n") == 1 and message in result.stderr
    assert sorted((p.name, p.stat().st_mtime_ns) for p in nssdb.iterdir()) == before
    fresh = tmp_path / "would-be-created"
    assert run_lancert("trust", "install", source, "--store", "nss", "--nssdb", fresh).returncode == 1
    assert not fresh.exists()


def test_store_options_that_do_not_fit_are_refused(device_dir: Path, nssdb: Path) -> None:
    result = run_lancert("trust", "install", device_dir / "cert.pem", "--store", "system", "--nssdb", nssdb)
    assert result.returncode == 1 and "--nssdb applies to --store nss only" in result.stderr


def test_a_regenerated_certificate_with_the_same_subject_is_removed_alone(
    device_dir: Path, nssdb: Path, tmp_path: Path
) -> None:
    """A printer that made a new certificate keeps its CN; NSS then lists both under each nickname."""
    old = read_certificate(device_dir / "cert.pem")
    created = run_lancert("device", "create", "--ip", "192.168.1.25", "--dir", tmp_path / "new")
    assert created.returncode == 0, created.stderr
    new = read_certificate(tmp_path / "new" / "cert.pem")
    assert new.subject == old.subject and new != old
    store = NssStore(nssdb)
    store.install(old)
    store.install(new)
    assert sorted(nss_entries(nssdb)) == sorted([(nickname(old), "CP,,"), (nickname(new), "CP,,")])
    assert store.uninstall(new) is True
    assert nss_entries(nssdb) == [(nickname(old), "CP,,")]
    assert store.check(old) and not store.check(new)


def test_a_store_that_cannot_be_changed_fails_loudly_and_others_still_get_it(
    device_dir: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    firefox = make_nssdb(home / ".mozilla/firefox/p.default")
    (home / ".pki").mkdir(parents=True)
    (home / ".pki/nssdb").write_text("a file where Chrome's database directory should be")
    result = run_lancert("trust", "install", device_dir / "cert.pem", "--store", "nss", home=home)
    assert result.returncode == 1
    assert "FAILED NSS database" in result.stderr and "install failed in 1 of 2 stores" in result.stderr
    assert [t for _, t in nss_entries(firefox)] == ["CP,,"]
