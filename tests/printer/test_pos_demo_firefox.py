"""The printing flow in a real Firefox (firefox-esr over Marionette), sealed in its own network namespace
with the POS demo page (https://pos.test/, from the shop root) and the printer simulator
(https://192.168.1.25:8043/, self-signed) both inside it (``tests/firefox.py``).

Firefox reads trust at start, so each state is one Firefox start; the trust changes are made between
starts with ``lancert trust install/remove --store nss`` on the profile, as a user would (the profile's
``cert9.db`` is made ahead with certutil, so no start is spent making it).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from printer_helpers import PRINTER_IP, receipts

from capabilities import required_for_module
from firefox import PRINTER_PORT, new_profile, sealed_namespaces_work, url, visit
from lancert.up.printer import pos_demo_page
from lancert_cli import lancert
from trust.trust_helpers import make_nssdb

pytestmark = pytest.mark.slow
_capability = required_for_module(
    sealed_namespaces_work(), "no network namespace (unshare --net) for Firefox here")
TEXT = "Firefox table 2\nTea        2.20\n"
PRESS = (
    "const done = arguments[arguments.length - 1];"
    f" document.getElementById('text').value = {json.dumps(TEXT)};"
    " document.getElementById('print').click();"
    " const out = document.getElementById('result');"
    " const poll = () => out.dataset.state === 'pending' ? setTimeout(poll, 50)"
    " : done(out.dataset.state + '|' + out.textContent);"
    " poll();"
)


def test_firefox_prints_only_while_the_printer_certificate_is_trusted(tmp_path: Path) -> None:
    lancert("ca", "init", "--dir", str(tmp_path / "ca"), "--name", "Shop")
    lancert("ca", "issue", "--dir", str(tmp_path / "ca"), "--ip", PRINTER_IP, "--dns", "pos.test",
            "-o", str(tmp_path / "pos"))
    printer = tmp_path / "printer"
    lancert("device", "create", "--ip", PRINTER_IP, "--dir", str(printer))
    epos = f"https://{PRINTER_IP}:{PRINTER_PORT}/cgi-bin/epos/service.cgi?devid=local_printer&timeout=10000"
    page = tmp_path / "pos.html"
    page.write_bytes(pos_demo_page(epos, printer / "cert.pem"))
    home = tmp_path / "home"
    profile = new_profile(home)
    press = {"url": url("pos.test"), "script": PRESS}
    lancert_cmd = [sys.executable, "-m", "lancert"]
    install_root = [*lancert_cmd, "trust", "install", str(tmp_path / "ca" / "root.pem"), "--store", "nss",
                    "--nssdb", str(profile)]
    common = {"profile": profile, "chain": tmp_path / "pos" / "cert.pem", "key": tmp_path / "pos" / "key.pem",
              "page": page, "printer_dir": printer}

    # The profile's cert9.db made ahead (as Firefox's first start would), with the shop root in it.
    make_nssdb(profile)
    installed = subprocess.run(install_root, capture_output=True, text=True, check=False)
    assert installed.returncode == 0, installed.stderr

    before, install = visit([press, [*lancert_cmd, "trust", "install", str(printer / "cert.pem"), "--store",
                                     "nss", "--nssdb", str(profile)]], **common)  # type: ignore[arg-type]
    assert before.ok, before.detail  # the page itself loaded (shop root trusted)
    state, shown = before.text.split("|", 1)
    assert state == "failed" and "refused the request" in shown, shown
    assert receipts(printer) == []
    assert install.ok, install.detail

    after, remove = visit([press, [*lancert_cmd, "trust", "remove", str(printer / "cert.pem"), "--store",
                                   "nss", "--nssdb", str(profile)]], **common)  # type: ignore[arg-type]
    state, shown = after.text.split("|", 1)
    assert state == "success" and 'success="true"' in shown, shown
    assert [r["text"] for r in receipts(printer)] == [TEXT]
    assert remove.ok, remove.detail

    (again,) = visit([press], **common)  # type: ignore[arg-type]
    assert again.text.split("|", 1)[0] == "failed", again.text
    assert len(receipts(printer)) == 1
