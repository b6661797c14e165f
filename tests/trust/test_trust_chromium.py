"""The padlock in a real browser: headless Chromium before and after ``trust install``/``remove``.

Chromium gets its own HOME, so ``<home>/.pki/nssdb`` is the only NSS store it reads; the server listens
on 127.0.0.1 and the names the certificate carries (192.168.1.25, printer.test) are mapped there.
``lancert check --nssdb`` must agree with Chromium in every state.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
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

from chromium import load, screenshot

pytestmark = pytest.mark.slow
LOOPBACK = {DEVICE_IP: "127.0.0.1", DEVICE_NAME: "127.0.0.1"}


def _browser_and_check(server: TLSServer, home: Path, host: str) -> tuple[bool, str, int]:
    page = load(server.url(host), home=home, resolve=LOOPBACK, marker=MARKER)
    check = run_lancert("check", server.url(host), *resolve_args(host), "--nssdb", home / ".pki" / "nssdb")
    return page.ok, page.detail, check.returncode


def test_device_certificate_error_before_install_none_after_and_back_after_remove(
    device_dir: Path, device_server: TLSServer, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    nssdb = make_nssdb(home / ".pki" / "nssdb")
    cert = device_dir / "cert.pem"

    for host in (DEVICE_IP, DEVICE_NAME):
        ok, detail, rc = _browser_and_check(device_server, home, host)
        assert (ok, detail, rc) == (False, "net::ERR_CERT_AUTHORITY_INVALID", 2), host

    installed = run_lancert("trust", "install", cert, "--store", "nss", "--nssdb", nssdb)
    assert installed.returncode == 0, installed.stderr
    assert [t for n, t in nss_entries(nssdb) if n.startswith("lancert ")] == ["CP,,"]
    for host in (DEVICE_IP, DEVICE_NAME):
        ok, detail, rc = _browser_and_check(device_server, home, host)
        assert (ok, detail, rc) == (True, "loaded", 0), host

    removed = run_lancert("trust", "remove", cert, "--store", "nss", "--nssdb", nssdb)
    assert removed.returncode == 0, removed.stderr
    assert nss_entries(nssdb) == []
    ok, detail, rc = _browser_and_check(device_server, home, DEVICE_IP)
    assert (ok, detail, rc) == (False, "net::ERR_CERT_AUTHORITY_INVALID", 2)


def test_name_not_in_certificate_fails_in_browser_and_check_even_when_trusted(
    device_dir: Path, device_server: TLSServer, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    nssdb = make_nssdb(home / ".pki" / "nssdb")
    installed = run_lancert("trust", "install", device_dir / "cert.pem", "--store", "nss", "--nssdb", nssdb)
    assert installed.returncode == 0
    url = device_server.url("other.test")
    page = load(url, home=home, resolve={"other.test": "127.0.0.1"}, marker=MARKER)
    check = run_lancert("check", url, *resolve_args("other.test"), "--nssdb", nssdb)
    assert (page.ok, page.detail) == (False, "net::ERR_CERT_COMMON_NAME_INVALID")
    assert check.returncode == 2 and "name-mismatch" in check.stdout


def test_device_certificate_given_ca_trust_by_hand_is_rejected_by_chromium_and_check(
    device_dir: Path, device_server: TLSServer, tmp_path: Path
) -> None:
    """Why a device's own certificate gets CP,, and not C,, alone: Chromium rejects C,, on CA:FALSE."""
    home = tmp_path / "home"
    db = make_nssdb(home / ".pki" / "nssdb")
    subprocess.run(["certutil", "-A", "-d", f"sql:{db}", "-n", "as ca", "-t", "C,,",
                    "-i", str(device_dir / "cert.pem")], check=True)
    page = load(device_server.url(), home=home, resolve=LOOPBACK, marker=MARKER)
    check = run_lancert("check", device_server.url(), *resolve_args(), "--nssdb", db)
    assert (page.ok, page.detail) == (False, "net::ERR_CERT_INVALID")
    assert check.returncode == 2 and "end-entity-trusted-as-ca" in check.stdout


@pytest.fixture(scope="module")
def ca_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, TLSServer]]:
    """A leaf issued by a root CA, served with its chain; yields the root's file."""
    root, chain, key = write_shop_ca(tmp_path_factory.mktemp("ca"))
    with tls_server(chain, key) as server:
        yield root, server


def test_ca_root_needs_c_trust_and_lancert_gives_it(
    ca_server: tuple[Path, TLSServer], tmp_path: Path
) -> None:
    """The empirical basis of NSS trust flags: P,, on a root does not work in Chromium, C,, does."""
    root, server = ca_server
    wrong = tmp_path / "wrong"
    db = make_nssdb(wrong / ".pki" / "nssdb")
    subprocess.run(["certutil", "-A", "-d", f"sql:{db}", "-n", "root as peer", "-t", "P,,", "-i", str(root)],
                   check=True)
    ok, detail, rc = _browser_and_check(server, wrong, DEVICE_IP)
    assert (ok, detail, rc) == (False, "net::ERR_CERT_AUTHORITY_INVALID", 2)

    right = tmp_path / "right"
    db = make_nssdb(right / ".pki" / "nssdb")
    assert run_lancert("trust", "install", root, "--store", "nss", "--nssdb", db).returncode == 0
    assert [t for n, t in nss_entries(db)] == ["C,,"]
    ok, detail, rc = _browser_and_check(server, right, DEVICE_IP)
    assert (ok, detail, rc) == (True, "loaded", 0)


def test_screenshot_of_a_trusted_page_and_none_of_a_warning(
    device_dir: Path, device_server: TLSServer, tmp_path: Path
) -> None:
    """Headless Chromium renders no interstitial: a rejected page yields the net error and no PNG."""
    home = tmp_path / "home"
    refused = screenshot(device_server.url(), tmp_path / "refused.png", home=home, resolve=LOOPBACK)
    assert (refused.ok, refused.detail) == (False, "net::ERR_CERT_AUTHORITY_INVALID")
    assert not (tmp_path / "refused.png").exists()

    nssdb = make_nssdb(home / ".pki" / "nssdb")
    installed = run_lancert("trust", "install", device_dir / "cert.pem", "--store", "nss", "--nssdb", nssdb)
    assert installed.returncode == 0
    out = tmp_path / "page.png"
    shown = screenshot(device_server.url(), out, home=home, resolve=LOOPBACK, size=(800, 600))
    assert shown.ok, shown.detail
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert (int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")) == (800, 600)


def test_self_signed_server_certificate_marked_ca_works_with_the_ca_trust_lancert_gives(
    tmp_path: Path,
) -> None:
    """Some printers mark their own certificate CA:TRUE; lancert installs it with C,, and Chromium agrees."""
    write_ca_marked_device(tmp_path)
    home = tmp_path / "home"
    db = make_nssdb(home / ".pki" / "nssdb")
    with tls_server(tmp_path / "cert.pem", tmp_path / "key.pem") as server:
        assert _browser_and_check(server, home, DEVICE_IP)[::2] == (False, 2)
        installed = run_lancert("trust", "install", tmp_path / "cert.pem", "--store", "nss", "--nssdb", db)
        assert installed.returncode == 0
        assert [t for _, t in nss_entries(db)] == ["C,,"]
        assert _browser_and_check(server, home, DEVICE_IP) == (True, "loaded", 0)
