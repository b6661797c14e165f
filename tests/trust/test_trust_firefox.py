"""The padlock in a real Firefox (firefox-esr, headless, over Marionette) before and after trust changes.

Firefox, its HTTPS server (192.168.1.25:443) and the Marionette client run in a network namespace of
their own (``tests/firefox.py``): nothing can leave the machine. HOME is a temporary home whose
``.mozilla/firefox/lancert.default-release`` is the profile Firefox uses, so ``lancert trust install
--store nss`` (no ``--nssdb``) has to find it the way it finds a user's profiles. Each ``visit`` is
one Firefox start, because Firefox reads its trust at start. ``lancert check --nssdb <profile>`` judges
a Firefox profile as Firefox does and must agree with it in every state (its server is the same
certificate on 127.0.0.1).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from trust_helpers import (
    DEVICE_IP,
    DEVICE_NAME,
    MARKER,
    TLSServer,
    make_nssdb,
    nss_entries,
    resolve_args,
    run_lancert,
    tls_server,
    write_ca_marked_device,
    write_shop_ca,
)

from capabilities import require
from chromium import load
from firefox import new_profile, sealed_namespaces_work, url, visit
from lancert.trust import nss_databases

URLS = [url(DEVICE_IP), url(DEVICE_NAME)]
SELF_SIGNED = "MOZILLA_PKIX_ERROR_SELF_SIGNED_CERT"

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True, scope="module")
def _sealed_namespace() -> None:
    """Firefox runs only where it can be sealed off the network; CI runs as root, where this holds (and
    where its absence fails the run, see tests/capabilities.py)."""
    require(sealed_namespaces_work(), "no network namespace (unshare --net) for Firefox here")


def _pages(results: list) -> list[tuple[bool, str]]:
    return [(r.ok, r.detail) for r in results]


def _check(server: TLSServer, profile: Path, host: str = DEVICE_IP) -> tuple[int, list[str]]:
    """``lancert check --nssdb <profile>``: exit status and reason codes."""
    result = run_lancert("check", server.url(host), *resolve_args(host), "--nssdb", profile, "--json")
    verdict = json.loads(result.stdout)
    assert verdict["trust_source"] == f"Firefox profile {profile}"
    return result.returncode, [r["code"] for r in verdict["reasons"]]


def test_device_certificate_warning_before_install_none_after_and_back_after_remove(
    device_dir: Path, device_server: TLSServer, tmp_path: Path
) -> None:
    """One ``trust install --store nss`` makes Firefox (its profile) and Chromium (~/.pki/nssdb) trust it."""
    home = tmp_path / "home"
    profile = new_profile(home)
    cert, key = device_dir / "cert.pem", device_dir / "key.pem"

    # Firefox's first start in the profile makes its cert9.db; before that lancert does not see the profile.
    assert [s.directory for s in nss_databases(home)] == [home / ".pki/nssdb"]
    before = visit(URLS, profile=profile, chain=cert, key=key, marker=MARKER)
    assert _pages(before) == [(False, SELF_SIGNED)] * 2
    assert [s.directory for s in nss_databases(home)] == [home / ".pki/nssdb", profile]
    assert _check(device_server, profile) == (2, ["self-signed-untrusted"])

    installed = run_lancert("trust", "install", cert, "--store", "nss", home=home)
    assert installed.returncode == 0, installed.stderr
    assert f"trusted in NSS database {profile} (trust CP,,)" in installed.stdout
    assert [t for n, t in nss_entries(profile) if n.startswith("lancert ")] == ["CP,,"]
    pages = visit(URLS, profile=profile, chain=cert, key=key, marker=MARKER)
    assert _pages(pages) == [(True, "loaded")] * 2
    assert MARKER in pages[0].text
    assert _check(device_server, profile, DEVICE_NAME) == (0, [])
    chromium = load(device_server.url(), home=home, resolve={DEVICE_IP: "127.0.0.1"}, marker=MARKER)
    assert (chromium.ok, chromium.detail) == (True, "loaded")

    removed = run_lancert("trust", "remove", cert, "--store", "nss", home=home)
    assert removed.returncode == 0 and removed.stdout.count("removed from") == 2, removed.stdout
    assert [n for n, _ in nss_entries(profile) if n.startswith("lancert ")] == []
    again = visit(URLS[:1], profile=profile, chain=cert, key=key, marker=MARKER)
    assert _pages(again) == [(False, SELF_SIGNED)]
    assert _check(device_server, profile) == (2, ["self-signed-untrusted"])


def test_a_running_firefox_sees_a_trust_change_only_after_a_restart(device_dir: Path, tmp_path: Path) -> None:
    """certutil changes the profile of a running Firefox without error, but Firefox keeps what it read."""
    home = tmp_path / "home"
    profile = make_nssdb(new_profile(home))  # a database made by certutil, not by Firefox: it uses it
    cert, key = device_dir / "cert.pem", device_dir / "key.pem"
    lancert = [sys.executable, "-m", "lancert", "trust"]
    install = [*lancert, "install", str(cert), "--store", "nss"]
    remove = [*lancert, "remove", str(cert), "--store", "nss"]

    first = visit([URLS[0], install, URLS[0], URLS[1]], profile=profile, chain=cert, key=key, marker=MARKER)
    assert first[1].ok and f"trusted in NSS database {profile}" in first[1].text, first[1].detail
    assert _pages([first[0], first[2], first[3]]) == [(False, SELF_SIGNED)] * 3

    second = visit([URLS[0], remove, URLS[1]], profile=profile, chain=cert, key=key, marker=MARKER)
    assert second[1].ok and f"removed from NSS database {profile}" in second[1].text, second[1].detail
    assert _pages([second[0], second[2]]) == [(True, "loaded")] * 2
    assert nss_entries(profile) == []


@pytest.mark.parametrize(
    ("flags", "expected", "check"),
    [("P,,", (False, SELF_SIGNED), (2, ["peer-trust-only"])), ("C,,", (True, "loaded"), (0, []))],
    ids=["peer-is-not-enough", "anchor-is-what-firefox-wants"],
)
def test_device_certificate_trust_flags_firefox_accepts(
    device_dir: Path, device_server: TLSServer, tmp_path: Path,
    flags: str, expected: tuple[bool, str], check: tuple[int, list[str]],
) -> None:
    """Why the device's certificate gets CP,,: Firefox ignores P (which Chromium needs) and wants C."""
    profile = make_nssdb(new_profile(tmp_path / "home"))
    subprocess.run(["certutil", "-A", "-d", f"sql:{profile}", "-n", "by hand", "-t", flags,
                    "-i", str(device_dir / "cert.pem")], check=True)
    pages = visit(URLS[:1], profile=profile, chain=device_dir / "cert.pem", key=device_dir / "key.pem",
                  marker=MARKER)
    assert _pages(pages) == [expected]
    assert _check(device_server, profile) == check


@pytest.fixture(scope="module")
def ca_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """``(root.pem, chain.pem, key.pem)``: a shop root and a server leaf it issued for the device."""
    return write_shop_ca(tmp_path_factory.mktemp("firefox-ca"))


def test_ca_root_with_peer_trust_fails_and_lancert_repairs_it_to_ca_trust(
    ca_files: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    root, chain, key = ca_files
    home = tmp_path / "home"
    profile = make_nssdb(new_profile(home))
    subprocess.run(["certutil", "-A", "-d", f"sql:{profile}", "-n", "root as peer", "-t", "P,,",
                    "-i", str(root)], check=True)
    wrong = visit(URLS[1:], profile=profile, chain=chain, key=key, marker=MARKER)
    assert _pages(wrong) == [(False, "SEC_ERROR_UNTRUSTED_ISSUER")]
    with tls_server(chain, key) as server:
        assert _check(server, profile, DEVICE_NAME) == (2, ["untrusted-issuer"])

    installed = run_lancert("trust", "install", root, "--store", "nss", home=home)
    assert installed.returncode == 0, installed.stderr
    assert nss_entries(profile) == [("root as peer", "C,,")]
    assert _pages(visit(URLS, profile=profile, chain=chain, key=key, marker=MARKER)) == [(True, "loaded")] * 2
    with tls_server(chain, key) as server:
        assert _check(server, profile, DEVICE_NAME) == (0, [])


def test_self_signed_server_certificate_marked_ca_is_refused_by_firefox_and_lancert_warns(
    tmp_path: Path,
) -> None:
    """Chromium takes such a certificate with C,,; Firefox refuses it as an end entity whatever the trust."""
    write_ca_marked_device(tmp_path)
    home = tmp_path / "home"
    profile = make_nssdb(new_profile(home))
    installed = run_lancert("trust", "install", tmp_path / "cert.pem", "--store", "nss", home=home)
    assert installed.returncode == 0, installed.stderr
    assert "Firefox refuses it" in installed.stderr
    assert [t for _, t in nss_entries(profile)] == ["C,,"]
    pages = visit(URLS[:1], profile=profile, chain=tmp_path / "cert.pem", key=tmp_path / "key.pem")
    assert _pages(pages) == [(False, "MOZILLA_PKIX_ERROR_CA_CERT_USED_AS_END_ENTITY")]
    with tls_server(tmp_path / "cert.pem", tmp_path / "key.pem") as server:
        assert _check(server, profile) == (2, ["ca-certificate-as-end-entity"])


def test_a_profile_made_by_firefox_esr_in_the_xdg_folder_gets_the_certificate(
    device_dir: Path, device_server: TLSServer, tmp_path: Path
) -> None:
    """Firefox ESR 153 (Debian) makes new profiles under ``~/.config/mozilla/firefox`` (XDG), named in
    the profiles.ini there, without a cert9.db until Firefox first runs in them: ``trust install --store
    nss`` must find the profile there and give it the certificate, and ``check --nssdb`` on the profile
    must then say secure (and, before, advise the command that works)."""
    require(shutil.which("firefox-esr") is not None, "firefox-esr (Debian package) is not installed")
    home = tmp_path / "home"
    home.mkdir()
    made = subprocess.run(
        ["unshare", "--net", "firefox-esr", "--headless", "-CreateProfile", "shop"],
        env={**os.environ, "HOME": str(home)}, capture_output=True, text=True, timeout=120,
    )
    assert made.returncode == 0, made.stderr
    profiles = sorted((home / ".config/mozilla/firefox").glob("*.shop"))
    assert len(profiles) == 1, sorted(p.relative_to(home) for p in home.rglob("*"))
    profile = profiles[0]
    assert "shop" in (home / ".config/mozilla/firefox/profiles.ini").read_text()
    assert not (home / ".mozilla").exists()  # the legacy folder is not used: only XDG holds it

    installed = run_lancert("trust", "install", device_dir / "cert.pem", "--store", "nss", home=home)
    assert installed.returncode == 0, installed.stderr
    assert f"trusted in NSS database {profile}" in installed.stdout
    assert [t for _, t in nss_entries(profile)] == ["CP,,"]
    assert _check(device_server, profile) == (0, [])

    removed = run_lancert("trust", "remove", device_dir / "cert.pem", "--store", "nss", home=home)
    assert removed.returncode == 0, removed.stderr
    status, reasons = _check(device_server, profile)
    assert (status, reasons) == (2, ["self-signed-untrusted"])
    advice = json.loads(run_lancert("check", device_server.url(), *resolve_args(), "--nssdb", profile,
                                    "--json").stdout)["reasons"][0]["message"]
    assert "lancert trust install FILE --store nss" in advice
