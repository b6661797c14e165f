"""The homepage in a real browser, its settings form's origin check, its log, and the DNS diagnosis."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import pytest
from box_harness import CODE, ZONE, Service, lancert, wait_for

from capabilities import require
from chromium import load, screenshot
from lancert.loopback import free_port

pytestmark = pytest.mark.slow  # starts a server or subprocess (tests/conftest.py)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def ok_box(make_box, service: Service):  # type: ignore[no-untyped-def]
    uuid = service.add_db()
    dns = f"127.0.0.1:{service.dns_port}"
    box = make_box("--server", service.url, "--db-uuid", uuid, "--enterprise-code", CODE,
                   "--resolver", dns, "--zone-dns", dns)
    assert box.state()["status"] == "OK"
    return box


def test_chromium_trusting_the_root_loads_the_homepage_with_ok_and_validity(ok_box, service: Service,
                                                                             tmp_path: Path) -> None:
    home = tmp_path / "home"
    nssdb = home / ".pki" / "nssdb"
    nssdb.mkdir(parents=True)
    subprocess.run(["certutil", "-N", "-d", f"sql:{nssdb}", "--empty-password"], check=True)
    state = ok_box.state()
    url, hostname = str(state["https_url"]), str(state["hostname"])
    assert url == f"https://{hostname}:{ok_box.https_port}/"
    assert hostname.startswith("127-0-0-1.") and hostname.endswith(f".{ZONE}")
    before = load(url, home=home, resolve={hostname: "127.0.0.1"})
    assert not before.ok and "ERR_CERT_AUTHORITY_INVALID" in before.detail
    subprocess.run(["certutil", "-A", "-d", f"sql:{nssdb}", "-n", "lancert service root", "-t", "C,,",
                    "-i", str(service.root)], check=True)
    page = load(url, home=home, resolve={hostname: "127.0.0.1"}, marker='id="status">OK<')
    assert page.ok, page.detail
    assert f"Valid from <b>{state['not_before']}</b> to <b>{state['not_after']}</b>" in page.dom
    assert f'href="{url}"' in page.dom
    shot = tmp_path / "box-homepage.png"
    assert screenshot(url + "?details=open", shot, home=home, resolve={hostname: "127.0.0.1"},
                      size=(480, 1100)).ok
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("LANCERT_UPDATE_SCREENSHOT"):
        shutil.copyfile(shot, REPO / "docs" / "box-homepage.png")


def test_settings_post_from_another_origin_or_none_is_refused(make_box) -> None:
    box = make_box()
    with box.http() as client:
        assert client.post("/settings", data={"server_url": "http://evil.example"}).status_code == 403
        foreign = client.post("/settings", data={"server_url": "http://evil.example"},
                              headers={"Origin": "http://evil.example"})
        assert foreign.status_code == 403
        bad = client.post("/settings", data={"server_url": "ftp://x"},
                          headers={"Origin": f"http://127.0.0.1:{box.http_port}"})
        assert bad.status_code == 400
    assert "evil" not in (box.state_dir / "settings.json").read_text()


def test_settings_file_is_private_and_page_never_shows_the_code(ok_box) -> None:
    assert (ok_box.state_dir / "settings.json").stat().st_mode & 0o777 == 0o600
    assert (ok_box.state_dir / "key.pem").stat().st_mode & 0o777 == 0o600
    text = ok_box.reload()  # 302 to HTTPS: the redirect carries no page
    assert text.status_code == 302 and text.headers["location"] == ok_box.state()["https_url"]


def test_log_download_has_the_story_but_never_the_key_or_code(ok_box, service: Service) -> None:
    status, page, _ = ok_box.https(service.root, "/log")
    assert status == 200
    assert "new certificate for 127-0-0-1." in page
    assert CODE not in page
    assert "PRIVATE KEY" not in page
    key_body = (ok_box.state_dir / "key.pem").read_text().splitlines()[1]
    assert key_body not in page
    homepage = ok_box.https(service.root)[1]
    assert CODE not in homepage


@contextlib.contextmanager
def running_dnsmasq(tmp_path: Path, *options: str, address: str = "127.0.0.1",
                    port: int | None = None) -> Iterator[int]:
    """A real dnsmasq on ``address``:``port`` (a free port by default) with no upstream but ``options``;
    yields its port once it answers."""
    port = port or free_port()
    args = ["dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts", "--no-daemon",
            f"--port={port}", f"--listen-address={address}", "--bind-interfaces", "--user=root",
            f"--pid-file={tmp_path / f'dnsmasq-{address}-{port}.pid'}", *options]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        query = dns.message.make_query("ready.invalid", "A")
        deadline = time.monotonic() + 10
        while True:
            try:
                dns.query.udp(query, address, port=port, timeout=0.2)
                break
            except dns.exception.Timeout:
                assert proc.poll() is None and time.monotonic() < deadline, "dnsmasq did not start"
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def dnsmasq(service: Service, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[int]:
    options = [f"--server=/{ZONE}/127.0.0.1#{service.dns_port}"]
    if request.param:
        options.append("--stop-dns-rebind")  # what shop and home routers do
    with running_dnsmasq(tmp_path, *options) as port:
        yield port


@pytest.mark.parametrize("dnsmasq", [True], indirect=True)
def test_diagnose_names_dns_rebinding_protection(ok_box, service: Service, dnsmasq: int) -> None:
    result = lancert("box", "diagnose", "--state-dir", str(ok_box.state_dir),
                     "--resolver", f"127.0.0.1:{dnsmasq}",
                     "--zone-dns", f"127.0.0.1:{service.dns_port}", check=False)
    assert result.returncode == 1
    assert "verdict:        rebind_protection" in result.stdout
    assert f"rebind-domain-ok=/{ZONE}/" in result.stdout
    assert "zone DNS:       127.0.0.1:" in result.stdout and ": 127.0.0.1" in result.stdout


@pytest.mark.parametrize("dnsmasq", [False], indirect=True)
def test_diagnose_ok_through_a_resolver_without_the_filter(ok_box, service: Service, dnsmasq: int) -> None:
    result = lancert("box", "diagnose", "--state-dir", str(ok_box.state_dir),
                     "--resolver", f"127.0.0.1:{dnsmasq}",
                     "--zone-dns", f"127.0.0.1:{service.dns_port}", "--json", check=False)
    assert result.returncode == 0, result.stdout
    assert '"verdict": "ok"' in result.stdout


def _diagnose(box, service: Service, *options: str) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    return lancert("box", "diagnose", "--state-dir", str(box.state_dir), *options,
                   "--zone-dns", f"127.0.0.1:{service.dns_port}", check=False)


def test_diagnose_names_a_resolver_that_answers_refused_without_router_advice(
    ok_box, service: Service, tmp_path: Path
) -> None:
    with running_dnsmasq(tmp_path) as port:  # no upstream: REFUSED for every name it does not hold
        result = _diagnose(ok_box, service, "--resolver", f"127.0.0.1:{port}")
    assert result.returncode == 1
    assert f"local resolver: 127.0.0.1:{port}: REFUSED\n" in result.stdout
    assert "verdict:        resolver_refused\n" in result.stdout
    assert "refuses to resolve" in result.stdout and "DHCP" in result.stdout
    assert "rebind" not in result.stdout.lower()


def test_diagnose_names_a_resolver_nobody_runs_without_router_advice(ok_box, service: Service) -> None:
    port = free_port()  # nothing listens there
    result = _diagnose(ok_box, service, "--resolver", f"127.0.0.1:{port}")
    assert result.returncode == 1
    assert f"local resolver: 127.0.0.1:{port}: no answer from 127.0.0.1:{port} within 2 s" in result.stdout
    assert "verdict:        no_resolver\n" in result.stdout
    assert "No DNS resolver answers" in result.stdout
    assert "rebind" not in result.stdout.lower()


@pytest.mark.parametrize("refusing", [True, False], ids=["refused", "nobody"])
def test_diagnose_through_the_system_resolver_names_refused_or_none(
    ok_box, service: Service, tmp_path: Path, refusing: bool
) -> None:
    """Without --resolver the name is looked up as a browser does (getaddrinfo), through the
    /etc/resolv.conf of a private mount namespace pointing at a loopback address: glibc says only
    "temporary failure" in both cases, the diagnosis must still tell them apart."""
    require(os.geteuid() == 0, "a resolver on port 53 in a private mount namespace needs root (CI is root)")
    address = "127.0.0.77"
    resolv = tmp_path / "resolv.conf"
    resolv.write_text(f"nameserver {address}\noptions timeout:1 attempts:1\n")
    command = ["unshare", "--mount", "--", "sh", "-c", 'mount --bind "$0" /etc/resolv.conf && exec "$@"',
               str(resolv), sys.executable, "-m", "lancert", "box", "diagnose",
               "--state-dir", str(ok_box.state_dir), "--zone-dns", f"127.0.0.1:{service.dns_port}"]
    with running_dnsmasq(tmp_path, address=address, port=53) if refusing else contextlib.nullcontext():
        result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1, result.stderr
    assert f"local resolver: system ({address}): " in result.stdout
    if refusing:
        assert "REFUSED" in result.stdout and "verdict:        resolver_refused\n" in result.stdout
    else:
        assert f"no answer from {address}:53" in result.stdout
        assert "verdict:        no_resolver\n" in result.stdout
    assert "rebind" not in result.stdout.lower()


def test_homepage_dns_line_after_check_dns(ok_box, service: Service) -> None:
    assert ok_box.https(service.root, "/diagnose")[0] == 405  # a GET any site could trigger does nothing
    assert ok_box.post_https(service.root, "/diagnose", {}) == 303
    assert wait_for(lambda: ok_box.state()["dns"].get("verdict") == "ok", timeout=10)
    page = ok_box.https(service.root)[1]
    assert 'id="dns-verdict">OK:' in page


def test_log_level_setting_takes_effect_without_restart(ok_box, service: Service) -> None:
    ok_box.https(service.root)
    assert "check (homepage): certificate valid until" not in (ok_box.state_dir / "box.log").read_text()
    assert ok_box.post_settings_https(service.root, log_level="DEBUG") == 303
    ok_box.https(service.root)
    assert "check (homepage): certificate valid until" in (ok_box.state_dir / "box.log").read_text()
    assert ok_box.post_settings_https(service.root, log_level="LOUD") == 400


def test_settings_over_plain_http_are_refused_once_https_works(ok_box, service: Service) -> None:
    before = (ok_box.state_dir / "settings.json").read_bytes()
    refused = ok_box.post_settings(log_level="DEBUG", server_url="http://127.0.0.1:9/")
    https_url = str(ok_box.state()["https_url"]).rstrip("/")
    assert (refused.status_code, refused.text) == (
        403, f"refused: this box takes its settings over HTTPS only: {https_url}/settings\n")
    assert (ok_box.state_dir / "settings.json").read_bytes() == before
