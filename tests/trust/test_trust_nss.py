"""NSS databases through the real certutil: nicknames, trust flags, discovery of browser profiles."""

from __future__ import annotations

import json
import stat
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from trust_helpers import make_nssdb, nss_entries, run_lancert

from lancert.pki import (
    ROOT_CA,
    CertificateAuthority,
    SubjectNames,
    build_certificate,
    generate_private_key,
    make_name,
    pem,
    read_certificate,
    self_signed_certificate,
)
from lancert.trust import NssStore, nickname, nss_databases
from lancert.trust.nss import (
    firefox_profiles,
    firefox_refuses,
    has_trust,
    is_firefox_profile,
    parse_certutil_list,
    ssl_trust,
    trust_flags,
)
from lancert.trust.store import TrustStoreError


@pytest.fixture
def nssdb(tmp_path: Path) -> Path:
    return make_nssdb(tmp_path / "db")


@pytest.mark.slow
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


@pytest.mark.slow
def test_ca_root_gets_ca_trust(tmp_path: Path, nssdb: Path) -> None:
    root = CertificateAuthority.create_root("NSS Test Root").certificate
    (tmp_path / "root.pem").write_bytes(pem(root))
    result = run_lancert("trust", "install", tmp_path / "root.pem", "--store", "nss", "--nssdb", nssdb)
    assert result.returncode == 0
    assert nss_entries(nssdb) == [(nickname(root), "C,,")]


@pytest.mark.slow
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



@pytest.mark.slow
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

@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_install_makes_the_database_of_profiles_firefox_never_ran_in(
    device_dir: Path, tmp_path: Path
) -> None:
    """A profile named in profiles.ini without a cert9.db (made by ``-CreateProfile`` or the profile
    manager, never started) gets one, with the certificate: Firefox reads it at its first start."""
    home = tmp_path / "home"
    base = home / ".mozilla/firefox"
    make_nssdb(base / "abcd1234.default-release")
    (base / "fresh.default").mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere-profile"
    elsewhere.mkdir()
    (base / "profiles.ini").write_text(
        "[Install4F96D1932A9F858E]\nDefault=abcd1234.default-release\n\n"
        "[Profile0]\nName=default-release\nIsRelative=1\nPath=abcd1234.default-release\n\n"
        "[Profile1]\nName=fresh\nIsRelative=1\nPath=fresh.default\n\n"
        f"[Profile2]\nName=moved\nIsRelative=0\nPath={elsewhere}\n\n[General]\nVersion=2\n"
    )
    result = run_lancert("trust", "install", device_dir / "cert.pem", "--store", "nss", home=home)
    assert result.returncode == 0, result.stderr
    for profile in (base / "abcd1234.default-release", base / "fresh.default", elsewhere):
        assert [t for _, t in nss_entries(profile)] == ["CP,,"], profile
        assert f"trusted in NSS database {profile}" in result.stdout


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
@pytest.mark.slow
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


@pytest.mark.slow
def test_store_options_that_do_not_fit_are_refused(device_dir: Path, nssdb: Path) -> None:
    result = run_lancert("trust", "install", device_dir / "cert.pem", "--store", "system", "--nssdb", nssdb)
    assert result.returncode == 1 and "--nssdb applies to --store nss only" in result.stderr


@pytest.mark.slow
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


@pytest.mark.slow
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


# -- lancert.trust.nss in-process, with the real certutil: the store's rules and its exact messages --------


def device(ip: str = "192.168.1.25") -> x509.Certificate:
    names = SubjectNames.parse(ips=[ip])
    return self_signed_certificate(generate_private_key(), names, validity=timedelta(days=30))


def certutil_add(db: Path, name: str, flags: str, cert: x509.Certificate) -> None:
    """Add a certificate as another program would (not through lancert)."""
    subprocess.run(["certutil", "-A", "-d", f"sql:{db}", "-n", name, "-t", flags], input=pem(cert),
                   check=True, capture_output=True)


@pytest.fixture(scope="module")
def root() -> x509.Certificate:
    return CertificateAuthority.create_root("NSS Store Test Root").certificate


@pytest.fixture(scope="module")
def leaf() -> x509.Certificate:
    return device()


def ca_marked_device() -> x509.Certificate:
    key = generate_private_key()
    name = make_name("192.168.1.25")
    return build_certificate(subject=name, public_key=key.public_key(), issuer=name, issuer_key=key,
                             profile=ROOT_CA, names=SubjectNames.parse(ips=["192.168.1.25"]),
                             validity=timedelta(days=30))


def test_flags_a_device_gets_peer_and_anchor_trust_a_ca_anchor_only(root, leaf) -> None:
    assert trust_flags(leaf) == "CP,,"
    assert trust_flags(root) == "C,,"


def test_firefox_refuses_only_a_ca_certificate_that_names_hosts(root, leaf) -> None:
    assert firefox_refuses(ca_marked_device()) is True
    assert firefox_refuses(root) is False  # a real root names no host
    assert firefox_refuses(leaf) is False


@pytest.mark.parametrize(
    ("found", "wanted", "granted"),
    [("CP,,", "CP,,", True), ("CPu,C,", "CP,,", True), ("C,,", "CP,,", False), ("P,,", "CP,,", False),
     ("P,C,C", "C,,", False), ("C,,", "C,,", True), (",C,", "C,,", False), (",,", ",,", True)],
)
def test_has_trust_compares_the_ssl_flags_only(found: str, wanted: str, granted: bool) -> None:
    assert has_trust(found, wanted) is granted


def test_ssl_trust_is_the_first_field() -> None:
    assert ssl_trust("CT,C,") == "CT"
    assert ssl_trust(",C,C") == ""
    assert ssl_trust("CP,,") == "CP"


def test_parse_certutil_list_keeps_nicknames_with_spaces_and_skips_the_header() -> None:
    output = (
        "\n"
        "Certificate Nickname                                         Trust Attributes\n"
        "                                                             SSL,S/MIME,JAR/XPI\n"
        "\n"
        "lancert 192.168.1.25 0a1b2c3d                               CP,,   \n"
        "My Shop Root CA                                              C,C,C\n"
        "not a line with trust\n"
    )
    assert parse_certutil_list(output) == [
        ("lancert 192.168.1.25 0a1b2c3d", "CP,,"), ("My Shop Root CA", "C,C,C")
    ]


@pytest.mark.parametrize(
    ("layout", "is_profile"),
    [(".mozilla/firefox/abc.default", True), ("snap/firefox/common/.mozilla/firefox/x.y", True),
     ("other/firefox/abc", False), (".mozilla/chrome/abc", False), (".pki/nssdb", False)],
)
def test_a_firefox_profile_by_its_place(tmp_path: Path, layout: str, is_profile: bool) -> None:
    assert is_firefox_profile(tmp_path / layout) is is_profile


@pytest.mark.parametrize("marker", ["prefs.js", "times.json", "compatibility.ini"])
def test_a_firefox_profile_by_the_files_firefox_writes(tmp_path: Path, marker: str) -> None:
    (tmp_path / marker).write_text("")
    assert is_firefox_profile(tmp_path) is True
    (tmp_path / marker).unlink()
    (tmp_path / marker).mkdir()  # a directory of that name is not Firefox's file
    assert is_firefox_profile(tmp_path) is False


@pytest.mark.slow
def test_install_check_list_trusted_uninstall(tmp_path: Path, root, leaf) -> None:
    store = NssStore(make_nssdb(tmp_path / "db"))
    assert store.description == f"NSS database {tmp_path / 'db'}"
    assert store.check(leaf) is False and store.find(leaf) is None
    store.install(leaf)
    store.install(root)
    store.install(leaf)  # again: nothing changes
    assert sorted(nss_entries(tmp_path / "db")) == sorted([(nickname(leaf), "CP,,"), (nickname(root), "C,,")])
    assert store.find(leaf) == (nickname(leaf), "CP,,")
    assert store.check(leaf) and store.check(root)
    listed = {(e.label, e.trust): e.certificate for e in store.list()}
    assert listed == {(nickname(leaf), "CP,,"): leaf, (nickname(root), "C,,"): root}
    anchors, leaves = store.trusted()
    assert sorted(c.serial_number for c in anchors) == sorted([leaf.serial_number, root.serial_number])
    assert leaves == [leaf]
    assert store.uninstall(leaf) is True
    assert store.uninstall(leaf) is False
    assert store.find(leaf) is None and nss_entries(tmp_path / "db") == [(nickname(root), "C,,")]


@pytest.mark.slow
def test_list_and_trusted_ignore_what_lancert_did_not_install(tmp_path: Path, root, leaf) -> None:
    db = make_nssdb(tmp_path / "db")
    for name, cert, flags in (("Shop Root", root, "C,,"), ("Someone's printer", leaf, "P,,")):
        certutil_add(db, name, flags, cert)
    other = device("192.168.1.26")
    certutil_add(db, "untrusted", ",,", other)
    store = NssStore(db)
    assert store.list() == []
    anchors, leaves = store.trusted()
    assert anchors == [root] and leaves == [leaf]
    assert store.find(leaf) == ("Someone's printer", "P,,")
    assert store.check(leaf) is False  # P alone is not what lancert installs (Firefox needs C)


@pytest.mark.slow
def test_a_weaker_trust_is_raised_in_place(tmp_path: Path, leaf) -> None:
    db = make_nssdb(tmp_path / "db")
    certutil_add(db, "older", "P,,", leaf)
    NssStore(db).install(leaf)
    assert nss_entries(db) == [("older", "CP,,")]


@pytest.mark.slow
def test_a_missing_database_is_created_private_only_when_asked(tmp_path: Path, leaf) -> None:
    with pytest.raises(TrustStoreError) as refused:
        NssStore(tmp_path / "profile").install(leaf)
    assert str(refused.value) == (
        f"{tmp_path / 'profile'} is not an NSS database (no cert9.db); if it is a browser profile, start the "
        "browser once so it creates it"
    )
    assert not (tmp_path / "profile").exists()
    assert NssStore(tmp_path / "profile").entries() == []
    created = NssStore(tmp_path / "chrome" / "nssdb", create=True)
    created.install(leaf)
    assert created.exists() and stat.S_IMODE((tmp_path / "chrome" / "nssdb").stat().st_mode) == 0o700
    assert created.check(leaf)


def test_a_database_that_cannot_be_created_says_why(tmp_path: Path, leaf) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(TrustStoreError) as refused:
        NssStore(tmp_path / "file" / "nssdb", create=True).install(leaf)
    assert str(refused.value) == f"{tmp_path / 'file' / 'nssdb'}: cannot create (Not a directory)"


@pytest.mark.slow
def test_a_missing_certutil_names_the_package(tmp_path: Path, leaf) -> None:
    store = NssStore(make_nssdb(tmp_path / "db"), certutil="certutil-not-installed")
    with pytest.raises(TrustStoreError) as refused:
        store.check(leaf)
    assert str(refused.value) == (
        "certutil-not-installed not found: install it (Debian/Ubuntu: apt install libnss3-tools; "
        "Fedora: dnf install nss-tools)"
    )


@pytest.mark.slow
def test_a_certutil_failure_quotes_its_last_line(tmp_path: Path, leaf) -> None:
    (tmp_path / "db").mkdir()
    (tmp_path / "db" / "cert9.db").write_bytes(b"not a database")
    with pytest.raises(TrustStoreError) as refused:
        NssStore(tmp_path / "db").install(leaf)
    message = str(refused.value)
    assert message.startswith(f"certutil failed on {tmp_path / 'db'}: ")
    assert "\n" not in message and len(message) > len(f"certutil failed on {tmp_path / 'db'}: ")


@pytest.mark.slow
def test_a_nickname_holding_several_certificates_is_not_deleted_blindly(tmp_path: Path) -> None:
    key_a, key_b = generate_private_key(), generate_private_key()
    names = SubjectNames.parse(ips=["192.168.1.25"])
    old = self_signed_certificate(key_a, names, validity=timedelta(days=30))
    new = self_signed_certificate(key_b, names, validity=timedelta(days=30))
    db = make_nssdb(tmp_path / "db")
    for cert in (old, new):  # NSS files the second under the first one's nickname (same subject)
        certutil_add(db, "printer", "CP,,", cert)
    store = NssStore(db)
    assert len(store.certificates("printer")) == 2
    with pytest.raises(TrustStoreError) as refused:
        store.uninstall(new)
    assert str(refused.value) == (
        f"NSS database {db}: the nickname 'printer' holds several certificates; remove this one by hand "
        f"(certutil -D -d sql:{db} -n 'printer'), checking which it deletes"
    )
    assert len(store.certificates("printer")) == 2
    assert store.certificates("no such nickname") == []


@pytest.mark.slow
def test_the_databases_a_user_s_browsers_read(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert [(s.directory, s.create) for s in nss_databases(home)] == [(home / ".pki/nssdb", True)]
    places = [
        "snap/chromium/current/.pki/nssdb",
        ".mozilla/firefox/b.default",
        ".mozilla/firefox/a.default-release",
        "snap/firefox/common/.mozilla/firefox/s.default",
        ".var/app/org.mozilla.firefox/.mozilla/firefox/f.default",
    ]
    for place in places:
        make_nssdb(home / place)
    (home / ".mozilla/firefox/no-db.default").mkdir()
    assert [(s.directory, s.create) for s in nss_databases(home)] == [
        (home / ".pki/nssdb", True),
        (home / "snap/chromium/current/.pki/nssdb", False),
        (home / ".mozilla/firefox/a.default-release", True),
        (home / ".mozilla/firefox/b.default", True),
        (home / "snap/firefox/common/.mozilla/firefox/s.default", True),
        (home / ".var/app/org.mozilla.firefox/.mozilla/firefox/f.default", True),
    ]


@pytest.mark.slow
def test_profiles_from_every_profiles_ini_and_installs_ini_in_both_folders(tmp_path: Path) -> None:
    home = tmp_path / "home"
    deb = home / ".mozilla/firefox"
    xdg = home / ".config/mozilla/firefox"
    flatpak = home / ".var/app/org.mozilla.firefox/.mozilla/firefox"
    make_nssdb(deb / "ready.default")
    moved = tmp_path / "moved"
    for profile in (deb / "fresh.default", moved, flatpak / "flat.default", xdg / "new.default-release",
                    xdg / "Profiles/inst.default", tmp_path / "absolute-install"):
        profile.mkdir(parents=True)
    (xdg / "profiles.ini").write_text("[Profile0]\nName=new\nIsRelative=1\nPath=new.default-release\n")
    (xdg / "installs.ini").write_text(f"[4F96D1932A9F858E]\nDefault=Profiles/inst.default\nLocked=1\n\n"
                                      f"[AB12]\nDefault={tmp_path / 'absolute-install'}\n")
    deb.mkdir(parents=True, exist_ok=True)
    (deb / "profiles.ini").write_text(
        "[General]\nPath=not-a-profile\n\n"
        "[Profile0]\nPath=ready.default\n\n"
        "[Profile1]\nIsRelative=1\nPath=fresh.default\n\n"
        f"[Profile2]\nIsRelative=0\nPath={moved}\n\n"
        "[Profile3]\nName=no path\n\n"
        "[InstallABC]\nDefault=fresh.default\n"
    )
    flatpak.mkdir(parents=True, exist_ok=True)
    (flatpak / "profiles.ini").write_text("[Profile0]\nPath=flat.default\n")
    (home / "snap/firefox/common/.mozilla/firefox").mkdir(parents=True)
    (home / "snap/firefox/common/.mozilla/firefox/profiles.ini").write_bytes(b"[Profile0\n\xff\xfe")
    assert firefox_profiles(home, environ={}) == [
        xdg / "new.default-release", xdg / "Profiles/inst.default", tmp_path / "absolute-install",
        deb / "ready.default", deb / "fresh.default", moved, flatpak / "flat.default",
    ]
    # $XDG_CONFIG_HOME moves the XDG folder (an absolute one only, as Firefox reads it).
    other = tmp_path / "xdg-config"
    (other / "mozilla/firefox/x.default").mkdir(parents=True)
    (other / "mozilla/firefox/profiles.ini").write_text("[Profile0]\nPath=x.default\n")
    moved_xdg = other / "mozilla/firefox/x.default"
    assert firefox_profiles(home, environ={"XDG_CONFIG_HOME": str(other)})[0] == moved_xdg
    assert moved_xdg not in firefox_profiles(home, environ={"XDG_CONFIG_HOME": "relative"})


def fake_certutil(tmp_path: Path, body: str) -> str:
    """A certutil stand-in (a shell script) for what the real one does only when something is wrong."""
    script = tmp_path / "certutil"
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(0o755)
    return str(script)


@pytest.mark.slow
def test_a_certutil_that_hangs_is_given_up_on_with_the_likely_cause(
    tmp_path: Path, leaf, monkeypatch: pytest.MonkeyPatch
) -> None:
    import lancert.trust.nss as nss

    monkeypatch.setattr(nss, "CERTUTIL_TIMEOUT", 0.5)
    store = NssStore(make_nssdb(tmp_path / "db"), certutil=fake_certutil(tmp_path, "exec sleep 30\n"))
    with pytest.raises(TrustStoreError) as refused:
        store.check(leaf)
    assert str(refused.value) == f"certutil timed out on {tmp_path / 'db'} (a browser locking it?)"


@pytest.mark.slow
@pytest.mark.parametrize("stream", ["stderr", "stdout"])
def test_a_certutil_failure_is_its_last_line(tmp_path: Path, leaf, stream: str) -> None:
    redirect = " >&2" if stream == "stderr" else ""
    script = fake_certutil(tmp_path, f"printf 'first line\\nthe reason \\377\\n'{redirect}\nexit 3\n")
    with pytest.raises(TrustStoreError) as refused:
        NssStore(make_nssdb(tmp_path / "db"), certutil=script).check(leaf)
    assert str(refused.value) == f"certutil failed on {tmp_path / 'db'}: the reason \ufffd"


@pytest.mark.slow
def test_a_silent_certutil_failure_gives_its_status(tmp_path: Path, leaf) -> None:
    with pytest.raises(TrustStoreError) as refused:
        NssStore(make_nssdb(tmp_path / "db"), certutil=fake_certutil(tmp_path, "exit 7\n")).check(leaf)
    assert str(refused.value) == f"certutil failed on {tmp_path / 'db'}: 7"


@pytest.mark.slow
def test_changes_certutil_claims_but_does_not_make_are_caught(tmp_path: Path, leaf) -> None:
    """install and uninstall verify with a fresh look (mkcert's lesson): a store changed behind the
    browser's back, or a certutil that reports success for nothing, is an error, not a silent no-op."""
    db = make_nssdb(tmp_path / "db")
    lazy = fake_certutil(
        tmp_path, 'case " $* " in *" -A "*|*" -M "*|*" -D "*) exit 0;; esac\nexec certutil "$@"\n'
    )
    with pytest.raises(TrustStoreError) as not_added:
        NssStore(db, certutil=lazy).install(leaf)
    assert str(not_added.value) == (
        f"NSS database {db}: certutil reported success but the certificate is not trusted there; close the "
        "browser using it and retry"
    )
    NssStore(db).install(leaf)
    with pytest.raises(TrustStoreError) as not_removed:
        NssStore(db, certutil=lazy).uninstall(leaf)
    assert str(not_removed.value) == f"NSS database {db}: the certificate is still there after certutil -D"


@pytest.mark.slow
def test_an_existing_empty_directory_becomes_the_database(tmp_path: Path, leaf) -> None:
    (tmp_path / "nssdb").mkdir()
    store = NssStore(tmp_path / "nssdb", create=True)
    store.install(leaf)
    assert store.check(leaf)
    assert {e.store for e in store.list()} == {f"NSS database {tmp_path / 'nssdb'}"}


@pytest.mark.slow
def test_a_new_database_never_asks_for_a_password_even_from_a_terminal(tmp_path: Path) -> None:
    """Run from a terminal, certutil -N would prompt for a password (and wait) unless told the database
    has none; Chrome's database must open without one. Made here on a pseudo-terminal."""
    import os
    import pty
    import select
    import signal
    import time

    NssStore(tmp_path / "plain", create=True)._ensure()  # the same call without a terminal, in this process
    assert (tmp_path / "plain" / "cert9.db").is_file()
    pid, terminal = pty.fork()
    if pid == 0:  # the child, whose standard input is the new terminal
        try:
            NssStore(tmp_path / "nssdb", create=True)._ensure()
        finally:
            os._exit(0)
    output, deadline = b"", time.monotonic() + 20
    while time.monotonic() < deadline:
        if select.select([terminal], [], [], 0.2)[0]:
            try:
                output += os.read(terminal, 1024)
            except OSError:  # the child closed the terminal
                break
        if os.waitpid(pid, os.WNOHANG) != (0, 0):
            break
    else:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise AssertionError(f"creating the database waited on the terminal: {output!r}")
    os.close(terminal)
    assert b"password" not in output.lower(), output
    assert (tmp_path / "nssdb" / "cert9.db").is_file()


@pytest.mark.slow
def test_certutil_output_that_is_not_utf8_is_read_with_replacements(tmp_path: Path) -> None:
    script = fake_certutil(tmp_path, "printf 'caf\\351 printer                   CP,,\\n'\n")
    assert NssStore(make_nssdb(tmp_path / "db"), certutil=script).entries() == [("caf\ufffd printer", "CP,,")]
