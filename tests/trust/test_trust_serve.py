"""``lancert trust serve``: the LAN page a tablet opens from a QR code (issue 20 point 2).

Headless Chromium opens the page as an iPhone, an Android tablet and a Windows PC (their User-Agents),
follows the link the page offers, and checks the content type each platform's installer acts on and that
the file holds the certificate; a screenshot of the page, read by a real QR reader (``zbarimg``), gives the
page's URL; nothing is loaded from anywhere but the page's own server. The server listens on 127.0.0.1.
"""

from __future__ import annotations

import base64
import json
import plistlib
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509

from capabilities import require
from chromium import CHROMIUM, run_script
from lancert.trust.guide import Platform
from lancert.trust.page import platform_from_user_agent
from lancert_cli import lancert

IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
          "Version/17.5 Mobile/15E148 Safari/604.1")
ANDROID = ("Mozilla/5.0 (Linux; Android 14; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) "
           "Chrome/126.0.0.0 Safari/537.36")
WINDOWS = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
           "Chrome/126.0.0.0 Safari/537.36 Edg/126.0.0.0")
IPAD_DESKTOP = ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
                "Version/17.5 Safari/605.1.15")
LINUX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"

# What the issue asks each device be offered: (platform on the page, content type, file name ending).
OFFERS = {
    "iphone": (IPHONE, "ios", "application/x-apple-aspen-config", ".mobileconfig"),
    "android": (ANDROID, "android", "application/x-x509-ca-cert", ".cer"),
    "windows": (WINDOWS, "windows", "application/pkix-cert", ".cer"),
}

# Follow the offered link as the browser would, and report what the page shows and what it loaded.
SCRIPT = r"""
(async () => {
  const a = document.querySelector('a.offered');
  const r = await fetch(a.href);
  const bytes = new Uint8Array(await r.arrayBuffer());
  let bin = ''; for (const b of bytes) bin += String.fromCharCode(b);
  return JSON.stringify({
    href: a.getAttribute('href'), type: r.headers.get('content-type'),
    disposition: r.headers.get('content-disposition'), body: btoa(bin),
    platform: document.querySelector('#steps').dataset.platform || '',
    steps: [...document.querySelectorAll('#steps li')].map(li => li.textContent),
    text: document.body.innerText,
    resources: performance.getEntriesByType('resource').map(e => e.name),
    references: [...document.querySelectorAll('[src],[href]')].map(e => e.src || e.href),
    stylesheets: document.querySelectorAll('link[rel=stylesheet]').length,
    scripts: document.scripts.length,
    qr: [...document.images].map(i => i.complete && i.naturalWidth > 0),
    origin: location.origin,
  });
})()
"""


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    work = tmp_path_factory.mktemp("serve")
    lancert("ca", "init", "--dir", str(work / "shop-ca"), "--name", "Serve Test Shop")
    lancert("device", "create", "--ip", "192.168.1.25", "--dir", str(work / "printer"))
    return work / "shop-ca" / "root.pem", work / "printer" / "cert.pem"


def _serve(*args: str) -> Iterator[tuple[str, int]]:
    """``trust serve ARGS`` on a free port of 127.0.0.1: the page's URL (as shown) and the port."""
    proc = subprocess.Popen([sys.executable, "-m", "lancert", "trust", "serve", *args, "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    try:
        assert line.startswith("lancert trust serve: http://"), proc.stderr and proc.stderr.read()
        listening = re.search(r"listening on 127\.0\.0\.1:(\d+)\)", line)
        assert listening, line
        yield line.split()[3], int(listening[1])
    finally:
        proc.terminate()
        assert proc.wait(15) == 0


@pytest.fixture(scope="module")
def root_page(certificates: tuple[Path, Path]) -> Iterator[str]:
    yield from (url for url, _ in _serve(str(certificates[0])))


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _certificate_in(body: bytes, ending: str) -> x509.Certificate:
    """The certificate a downloaded file holds, read as the device's installer would."""
    if ending == ".mobileconfig":
        profile = plistlib.loads(body)
        (payload,) = profile["PayloadContent"]
        assert payload["PayloadType"] == "com.apple.security.root"
        return x509.load_der_x509_certificate(payload["PayloadContent"])
    return x509.load_der_x509_certificate(body)


@pytest.mark.slow
@pytest.mark.parametrize("device", list(OFFERS))
def test_each_device_is_offered_its_file_with_its_steps(
    device: str, root_page: str, certificates: tuple[Path, Path], tmp_path: Path
) -> None:
    require(Path(CHROMIUM).exists(), "chromium not installed")
    user_agent, platform, content_type, ending = OFFERS[device]
    seen = json.loads(run_script(root_page, SCRIPT, home=tmp_path, user_agent=user_agent))
    assert seen["platform"] == platform
    assert seen["type"] == content_type
    assert seen["href"].endswith(ending) and seen["disposition"].startswith("attachment")
    root = _cert(certificates[0])
    assert _certificate_in(base64.b64decode(seen["body"]), ending) == root
    # The steps are trust guide's, for a file downloaded on the device itself.
    guide = json.loads(lancert("trust", "guide", str(certificates[0]), "--os", platform, "-o", str(tmp_path),
                               "--json").stdout)
    assert seen["steps"][1:] == [s.replace(Path(guide["file"]).name, seen["href"].rsplit("/", 1)[1])
                                 for s in guide["steps"][1:]]
    assert "plain HTTP, on purpose" in seen["text"]
    sha256 = json.loads(lancert("cert", "show", str(certificates[0]), "--json").stdout)["sha256_fingerprint"]
    assert sha256 in seen["text"]
    # The other platforms are one link away.
    for other in {"windows", "macos", "linux", "android", "ios"} - {platform}:
        assert f"{seen['origin']}/?os={other}" in seen["references"]
    # No external asset, no script: every reference is the page's own server, the QR code loaded.
    assert all(ref.startswith(seen["origin"] + "/") for ref in seen["references"]), seen["references"]
    assert all(res.startswith(seen["origin"] + "/") for res in seen["resources"]), seen["resources"]
    assert f"{seen['origin']}/qr.png" in seen["resources"]
    assert seen["qr"] == [True] and seen["scripts"] == 0 and seen["stylesheets"] == 0


@pytest.mark.slow
def test_a_screenshot_of_the_page_scans_to_its_url(root_page: str, tmp_path: Path) -> None:
    require(Path(CHROMIUM).exists(), "chromium not installed")
    require(shutil.which("zbarimg") is not None, "zbarimg not installed (Debian: zbar-tools)")
    shot = tmp_path / "page.png"
    run_script(root_page, "document.title", home=tmp_path, user_agent=ANDROID, screenshot_png=shot)
    decoded = subprocess.run(["zbarimg", "--raw", "-q", str(shot)], capture_output=True, text=True,
                             timeout=60)
    assert decoded.stdout.splitlines() == [root_page]


@pytest.mark.slow
def test_qr_png_carries_the_given_url_whatever_host_header_a_client_sends(
    certificates: tuple[Path, Path], tmp_path: Path
) -> None:
    require(shutil.which("zbarimg") is not None, "zbarimg not installed (Debian: zbar-tools)")
    given = "http://192.168.1.10:8090/"
    for url, port in _serve(str(certificates[0]), "--url", given):
        assert url == given
        answer = httpx.get(f"http://127.0.0.1:{port}/qr.png", headers={"Host": "evil.example"}, timeout=10)
        assert answer.headers["content-type"] == "image/png"
        (tmp_path / "qr.png").write_bytes(answer.content)
        decoded = subprocess.run(["zbarimg", "--raw", "-q", str(tmp_path / "qr.png")], capture_output=True,
                                 text=True, timeout=60)
        assert decoded.stdout.splitlines() == [given]
        page = httpx.get(f"http://127.0.0.1:{port}/", headers={"Host": "evil.example"}, timeout=10).text
        assert "evil.example" not in page and given in page


@pytest.mark.slow
def test_serving_a_devices_own_certificate_says_a_shop_root_would_be_better(
    certificates: tuple[Path, Path]
) -> None:
    root, leaf = certificates
    for _, port in _serve(str(leaf), str(root)):
        page = httpx.get(f"http://127.0.0.1:{port}/?os=android", timeout=10).text
        assert 'id="better-1"' in page and 'id="better-2"' not in page  # the leaf only, not the root
        assert "A shop root would be better" in page
        assert "lancert ca init --dir shop-ca --name" in page
        assert "lancert trust serve shop-ca/root.pem" in page
        # Android's own warning from trust guide: its CA installer refuses a CA:FALSE certificate.
        assert "Android&#39;s &#34;CA certificate&#34; installer only accepts CA certificates" in page
        leaf_file = httpx.get(f"http://127.0.0.1:{port}/1/android/cert.cer", timeout=10)
        assert x509.load_der_x509_certificate(leaf_file.content) == _cert(leaf)
        root_file = httpx.get(f"http://127.0.0.1:{port}/2/android/root.cer", timeout=10)
        assert x509.load_der_x509_certificate(root_file.content) == _cert(root)


@pytest.mark.slow
def test_what_the_page_does_not_serve_is_404_and_nothing_but_get(root_page: str) -> None:
    for path in ("/2/ios/root.mobileconfig", "/1/ios/other.mobileconfig", "/1/beos/root.cer", "/?os=beos",
                 "/0/ios/root.mobileconfig", "/../etc/passwd", "/1/ios/..%2f..%2fetc%2fpasswd"):
        answer = httpx.get(root_page.rstrip("/") + path, timeout=10)
        assert answer.status_code == 404, path
        assert "Traceback" not in answer.text
    assert httpx.post(root_page, content=b"x" * 100, timeout=10).status_code == 405
    head = httpx.head(root_page + "1/linux/root.pem", timeout=10)
    assert head.status_code == 200 and head.headers["content-type"] == "application/x-pem-file"
    assert "default-src 'none'" in httpx.get(root_page, timeout=10).headers["content-security-policy"]


def test_user_agents_name_their_platform() -> None:
    assert platform_from_user_agent(IPHONE) is Platform.IOS  # says "like Mac OS X" too
    assert platform_from_user_agent(ANDROID) is Platform.ANDROID  # says "Linux" too
    assert platform_from_user_agent(WINDOWS) is Platform.WINDOWS
    assert platform_from_user_agent(IPAD_DESKTOP) is Platform.MACOS  # an iPad asking for desktop pages
    assert platform_from_user_agent(LINUX) is Platform.LINUX
    assert platform_from_user_agent("curl/8.5.0") is None
    assert platform_from_user_agent("x" * 100_000 + "iPhone") is None  # only the first 1,024 characters


@pytest.mark.slow
def test_a_url_that_is_no_page_address_is_refused_in_one_line(certificates: tuple[Path, Path]) -> None:
    result = lancert("trust", "serve", str(certificates[0]), "--url", "192.168.1.10:8090", check=False)
    assert result.returncode == 2
    assert result.stderr.startswith("lancert: --url 192.168.1.10:8090: expected the page's address")
    assert result.stderr.count("\n") == 1


@pytest.mark.slow
def test_up_serves_the_page_for_the_files_its_devices_name(certificates: tuple[Path, Path]) -> None:
    from lancert.up.system import Device, Stack, start_trust_page

    root, leaf = certificates
    stack = Stack(devices=[Device("printer", "https://127.0.0.1:1/", leaf),
                           Device("POS page", "https://127.0.0.1:2/", root),
                           Device("another", "https://127.0.0.1:3/", root)])
    url, note = start_trust_page(stack)
    try:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", url) and url in note
        page = httpx.get(url, headers={"User-Agent": ANDROID}, timeout=10)
        assert 'data-platform="android"' in page.text
        assert page.text.count('class="offered"') == 2  # each file once, though two devices name the root
        assert httpx.get(url + "qr.png", timeout=10).headers["content-type"] == "image/png"
    finally:
        stack.stop()
    with pytest.raises(httpx.TransportError):
        httpx.get(url, timeout=5)


@pytest.mark.slow
def test_the_printers_admin_page_shows_the_trust_page_and_a_qr_code_that_scans_to_it(tmp_path: Path) -> None:
    """What ``up`` sets: the printer's own page points tablets at the trust page (an inline SVG: the
    printer's page allows no image source)."""
    require(Path(CHROMIUM).exists(), "chromium not installed")
    require(shutil.which("zbarimg") is not None, "zbarimg not installed (Debian: zbar-tools)")
    from lancert.printer.device import Printer
    from lancert.printer.server import PrinterServer

    given = "http://192.168.1.10:8090/"
    printer = Printer(tmp_path / "printer", ip="127.0.0.1")
    printer.trust_page = given
    server = PrinterServer(printer, host="127.0.0.1", port=0).start_in_thread()
    try:
        shot = tmp_path / "admin.png"
        html = run_script(server.url, "document.querySelector('#trust-page').innerHTML", home=tmp_path,
                          screenshot_png=shot)
    finally:
        server.stop()
    assert f'href="{given}"' in html and "<svg" in html
    decoded = subprocess.run(["zbarimg", "--raw", "-q", str(shot)], capture_output=True, text=True,
                             timeout=60)
    assert decoded.stdout.splitlines() == [given]
