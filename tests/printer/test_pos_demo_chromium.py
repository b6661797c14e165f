"""The printing flow in a real browser: headless Chromium opens the POS demo page and presses "Print test
receipt", which posts an ePOS-Print request from the page to the printer simulator over HTTPS.

The page itself is served with a certificate from the shop's root, which the browser trusts from the start;
what changes is the printer's certificate. The browser's NSS database is ``<home>/.pki/nssdb``; the
printer's address 192.168.1.25 and the page's name pos.test are mapped to 127.0.0.1 (nothing leaves
loopback).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from printer_helpers import PRINTER_IP, choose_and_reset, receipts, running_printer, sign_in, wait_for_scheme

from capabilities import require
from chromium import run_script
from lancert.pki import read_certificates
from lancert.printer.device import Printer
from lancert.printer.server import PrinterServer
from lancert.up.printer import RunningServer, pos_demo_page, serve_page
from lancert_cli import lancert
from trust.trust_helpers import make_nssdb

pytestmark = pytest.mark.slow
POS_HOST = "pos.test"
RESOLVE = {POS_HOST: "127.0.0.1", PRINTER_IP: "127.0.0.1"}


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shop's root (``ca init``) and the POS page's certificate it issued (``ca issue``)."""
    directory = tmp_path_factory.mktemp("shop")
    lancert("ca", "init", "--dir", str(directory / "ca"), "--name", "Shop")
    lancert("ca", "issue", "--dir", str(directory / "ca"), "--ip", "127.0.0.1", "--dns", POS_HOST,
            "-o", str(directory / "pos"))
    return directory


def _home_trusting(shop: Path, home: Path) -> Path:
    nssdb = make_nssdb(home / ".pki" / "nssdb")
    lancert("trust", "install", str(shop / "ca" / "root.pem"), "--store", "nss", "--nssdb", str(nssdb))
    return nssdb


def _pos_page(shop: Path, printer: PrinterServer, printer_cert: Path) -> RunningServer:
    epos = f"https://{PRINTER_IP}:{printer.port}/cgi-bin/epos/service.cgi?devid=local_printer&timeout=10000"
    return serve_page(shop / "pos" / "cert.pem", shop / "pos" / "key.pem", pos_demo_page(epos, printer_cert),
                      host="127.0.0.1")


def press_print(page: RunningServer, home: Path, text: str, screenshot_png: Path | None = None) -> str:
    """Type ``text`` into the page, press the button, wait for the answer: ``state|what the page shows``."""
    script = (
        "(async () => {"
        f" document.getElementById('text').value = {json.dumps(text)};"
        " document.getElementById('print').click();"
        " const out = document.getElementById('result');"
        " while (out.dataset.state === 'pending') await new Promise(r => setTimeout(r, 50));"
        " return out.dataset.state + '|' + out.textContent; })()"
    )
    return run_script(page.url(POS_HOST), script, home=home, resolve=RESOLVE, screenshot_png=screenshot_png)


@pytest.fixture
def self_signed_printer(tmp_path: Path) -> Iterator[tuple[PrinterServer, Path]]:
    directory = tmp_path / "printer"
    lancert("device", "create", "--ip", PRINTER_IP, "--dir", str(directory))
    with running_printer(directory, ip=PRINTER_IP) as server:
        yield server, directory


def test_printing_fails_until_the_printer_certificate_is_trusted_and_again_after_removal(
    shop: Path, self_signed_printer: tuple[PrinterServer, Path], tmp_path: Path
) -> None:
    printer, directory = self_signed_printer
    home = tmp_path / "home"
    nssdb = _home_trusting(shop, home)
    cert = directory / "cert.pem"
    page = _pos_page(shop, printer, cert)
    text = "Table 4\nEspresso   1.80\nTotal EUR  1.80\n"
    try:
        state, shown = press_print(page, home, text).split("|", 1)
        assert state == "failed" and "refused the request" in shown, shown
        assert receipts(directory) == []

        lancert("trust", "install", str(cert), "--store", "nss", "--nssdb", str(nssdb))
        state, shown = press_print(page, home, text).split("|", 1)
        assert state == "success", shown
        assert 'success="true"' in shown
        (receipt,) = receipts(directory)
        assert receipt["text"] == text

        lancert("trust", "remove", str(cert), "--store", "nss", "--nssdb", str(nssdb))
        state, shown = press_print(page, home, text).split("|", 1)
        assert state == "failed", shown
        assert len(receipts(directory)) == 1
    finally:
        page.stop()


def _install_ca_signed(printer: PrinterServer, directory: Path, shop: Path, work: Path, resets: int) -> Path:
    """What the shop owner does on the printer's page: CSR → ``ca issue`` → import → Reset."""
    import httpx

    work.mkdir(parents=True)
    with httpx.Client(base_url=printer.url, verify=False, timeout=10) as client:  # noqa: S501 - the printer's own page
        sign_in(client, directory)
        assert client.post("/certificate/csr", data={"common_name": PRINTER_IP}).status_code == 200
        (work / "printer.csr").write_bytes(client.get("/certificate/csr").content)
        lancert("ca", "issue", "--dir", str(shop / "ca"), "--csr", str(work / "printer.csr"), "-o", str(work))
        imported = client.post("/certificate/import", data={"pem": (work / "cert.pem").read_text()})
        assert imported.status_code == 200, imported.text
        choose_and_reset(client, "ca-signed")
    wait_for_scheme(printer, "https", resets=resets)
    return work / "cert.pem"


def test_ca_model_root_installed_once_survives_a_new_printer_certificate(shop: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    _home_trusting(shop, home)  # the shop root, once; the printer's certificates are never installed
    directory = tmp_path / "printer"
    with running_printer(directory, ip=PRINTER_IP) as printer:
        first = _install_ca_signed(printer, directory, shop, tmp_path / "first", resets=1)
        page = _pos_page(shop, printer, first)
        try:
            state, shown = press_print(page, home, "first certificate\n").split("|", 1)
            assert state == "success", shown

            second = _install_ca_signed(printer, directory, shop, tmp_path / "second", resets=2)
            old, new = read_certificates(first)[0], read_certificates(second)[0]
            assert old.public_key() != new.public_key() and old.serial_number != new.serial_number
            state, shown = press_print(page, home, "after renewal\n").split("|", 1)
            assert state == "success", shown
        finally:
            page.stop()
    assert [r["text"] for r in receipts(directory)] == ["first certificate\n", "after renewal\n"]


# The ePOS SDK's connection probe (epos-2 ePOSDevice.connect, probeWebServiceIF), as it sends it:
# an ePOS-Print request with no print command, to the printer's local_printer device.
SDK_PROBE = ('<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><epos-print '
             'xmlns="http://www.epson-pos.com/schemas/2011/03/epos-print"></epos-print></s:Body></s:Envelope>')


def test_chromium_prints_to_a_printer_entered_by_its_ip_alone_and_probes_are_not_receipts(
    shop: Path, tmp_path: Path
) -> None:
    """Odoo's POS (15 and later) posts to ``https://<printer IP>/cgi-bin/epos/service.cgi``: no port, so
    443, where a real Epson printer serves ePOS-Print. The simulator at an address of its own
    (127.0.0.26) serves there by default; the page prints to the IP alone, and the SDK's empty probe
    (Odoo 14 sends two per connect) is answered success but prints nothing."""
    require(os.geteuid() == 0, "port 443 needs root (CI runs the tests as root)")
    ip = "127.0.0.26"
    directory = tmp_path / "printer"
    lancert("device", "create", "--ip", ip, "--dir", str(directory))
    printer = PrinterServer(Printer(directory, ip=ip), host=ip, port=None).start_in_thread()
    home = tmp_path / "home"
    nssdb = _home_trusting(shop, home)
    cert = directory / "cert.pem"
    lancert("trust", "install", str(cert), "--store", "nss", "--nssdb", str(nssdb))
    epos = f"https://{ip}/cgi-bin/epos/service.cgi?devid=local_printer&timeout=10000"  # the IP alone
    page = serve_page(shop / "pos" / "cert.pem", shop / "pos" / "key.pem", pos_demo_page(epos, cert),
                      host="127.0.0.1")
    text = "Table 9\nCappuccino  2.40\nTotal EUR   2.40\n"
    script = (
        "(async () => {"
        " const probes = [];"
        " for (let i = 0; i < 2; i++) {"
        f"   const r = await fetch({json.dumps(epos)}, {{method: 'POST', body: {json.dumps(SDK_PROBE)}}});"
        "   probes.push(r.status + ' ' + (await r.text()).includes('success=\"true\"')); }"
        f" document.getElementById('text').value = {json.dumps(text)};"
        " document.getElementById('print').click();"
        " const out = document.getElementById('result');"
        " while (out.dataset.state === 'pending') await new Promise(r => setTimeout(r, 50));"
        " return probes.join(',') + '|' + out.dataset.state + '|' + out.textContent; })()"
    )
    try:
        assert (printer.port, printer.port_note) == (443, None)
        assert printer.url == f"https://{ip}/"
        answer = run_script(page.url(POS_HOST), script, home=home, resolve={**RESOLVE, ip: ip})
        probes, state, shown = answer.split("|", 2)
        assert probes == "200 true,200 true", probes
        assert state == "success", shown
        (receipt,) = receipts(directory)  # the two probes left no receipt
        assert receipt["text"] == text
    finally:
        page.stop()
        printer.stop()
