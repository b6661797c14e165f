"""``lancert scan`` on 127.0.0.0/28 with three real devices bound to their own loopback addresses:
an ePOS printer (self-signed) on 127.0.0.2, an IoT box (certificate from the real service) on 127.0.0.3,
a payment terminal (its own CA) on 127.0.0.4. Nothing is connected to outside 127.0.0.0/28.

Exit status contract: 0 all fine, 1 a certificate expires within --warn-days, 2 untrusted or expired.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from box.box_harness import CODE, Box, Service
from lancert.check.verdict import TrustSource
from lancert.loopback import free_port
from lancert.pki import (
    SELF_SIGNED_DEVICE,
    SubjectNames,
    build_certificate,
    generate_private_key,
    make_name,
    pem,
    read_certificates,
    utcnow,
)
from lancert.printer.device import Printer
from lancert.printer.server import PrinterServer
from lancert.scan.probe import Found
from lancert.scan.scanner import judge
from lancert.up.stack import Child
from lancert_cli import lancert
from trust.trust_helpers import make_nssdb

pytestmark = pytest.mark.slow


@dataclass
class Shop:
    ports: str
    printer_cert: Path
    service_root: Path
    terminal_root: Path
    box_port: int
    bundle: Path


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    base = tmp_path_factory.mktemp("scan")
    ports = (free_port(), free_port(), free_port())
    lancert("device", "create", "--ip", "127.0.0.2", "--dir", str(base / "printer"))
    printer = PrinterServer(Printer(base / "printer", ip="127.0.0.2"), host="127.0.0.2",
                            port=ports[0]).start_in_thread()
    fresh = PrinterServer(Printer(base / "fresh", ip="127.0.0.5"), host="127.0.0.5",  # no certificate yet
                          port=ports[0]).start_in_thread()
    service = Service(base / "service").start()
    box = Box(base / "box", ["--server", service.url, "--db-uuid", service.add_db(),
                             "--enterprise-code", CODE, "--host", "127.0.0.3", "--lan-ip", "127.0.0.3"])
    box.https_port = ports[1]
    terminal = Child.start("the terminal", [
        "terminal", "run", "--state-dir", str(base / "terminal"), "--host", "127.0.0.4",
        "--port", str(ports[2]), "--key-pool", "1"], base / "terminal.log")
    try:
        box.start()
        terminal.wait_for("ready", 60)
        bundle = base / "trusted.pem"
        bundle.write_bytes(b"".join(p.read_bytes() for p in (
            base / "printer" / "cert.pem", service.root, base / "terminal" / "ca" / "root.pem")))
        yield Shop(",".join(map(str, ports)), base / "printer" / "cert.pem", service.root,
                   base / "terminal" / "ca" / "root.pem", ports[1], bundle)
    finally:
        terminal.stop()
        box.stop()
        service.stop()
        printer.stop()
        fresh.stop()


def _scan(shop: Shop, *args: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    result = lancert("scan", "127.0.0.0/28", "--ports", shop.ports, "--json", "--timeout", "5", *args,
                     check=False)
    assert result.returncode in (0, 1, 2) and result.stdout, result.stderr
    return result.returncode, json.loads(result.stdout)


def _by_address(report: dict) -> dict[str, dict]:  # type: ignore[type-arg]
    """The TLS services (the fresh printer on 127.0.0.5 speaks plain HTTP)."""
    return {s["address"]: s for s in report["services"] if s["tls"]}


def test_scan_finds_the_three_devices_and_says_what_each_is(shop: Shop, tmp_path: Path) -> None:
    code, report = _scan(shop, "--ca", str(shop.bundle), "--warn-days", "0")
    found = _by_address(report)
    assert sorted(found) == ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
    assert [found[a]["kind"] for a in sorted(found)] == ["ePOS printer", "IoT box", "pairing terminal"]

    printer = found["127.0.0.2"]["certificate"]
    (printer_cert,) = read_certificates(shop.printer_cert)
    assert printer["self_signed"] is True and printer["names"] == ["127.0.0.2"]
    assert printer["subject"] == printer["issuer"] == "CN=127.0.0.2"
    assert printer["sha256_fingerprint"] == json.loads(lancert("cert", "show", str(shop.printer_cert),
                                                               "--json").stdout)["sha256_fingerprint"]
    assert printer["not_after"] == printer_cert.not_valid_after_utc.isoformat()
    assert 364 <= printer["days_left"] <= 366

    box = found["127.0.0.3"]
    assert box["certificate"]["self_signed"] is False
    assert box["certificate"]["names"][0].startswith("*.") and box["certificate"]["names"][0].endswith(
        ".iot.lancert.test")
    assert box["host"].startswith("127-0-0-3.")  # judged by the name a browser opens, not the address
    assert box["port"] == shop.box_port

    terminal = found["127.0.0.4"]["certificate"]
    assert terminal["self_signed"] is False and "127.0.0.4" in terminal["names"]
    assert all(s["trusted"] for s in found.values()) and code == 0


def test_a_printer_fresh_from_the_box_shows_as_no_tls_and_does_not_change_the_exit(shop: Shop) -> None:
    code, report = _scan(shop, "--ca", str(shop.bundle), "--warn-days", "0")
    (fresh,) = [s for s in report["services"] if not s["tls"]]
    assert (fresh["address"], fresh["kind"], fresh["status"]) == ("127.0.0.5", "ePOS printer", "no-tls")
    assert code == 0


def test_untrusted_devices_exit_2_naming_the_reason(shop: Shop, tmp_path: Path) -> None:
    code, report = _scan(shop, "--nssdb", str(make_nssdb(tmp_path / "nssdb")))
    assert code == 2
    found = _by_address(report)
    assert {s["status"] for s in found.values()} == {"untrusted"}
    assert found["127.0.0.2"]["trust"][0]["reasons"] == ["self-signed-untrusted"]
    assert found["127.0.0.3"]["trust"][0]["reasons"] == ["untrusted-issuer"]


def test_warn_days_turns_a_soon_expiring_certificate_into_exit_1(shop: Shop) -> None:
    # The box's certificate lives 120 s (the box harness's service), so it expires within 1 day.
    code, report = _scan(shop, "--ca", str(shop.bundle), "--warn-days", "1")
    assert code == 1
    assert {a: s["status"] for a, s in _by_address(report).items()} == {
        "127.0.0.2": "ok", "127.0.0.3": "expiring", "127.0.0.4": "ok"}


def test_trusting_only_the_printer_exits_2_for_the_others(shop: Shop) -> None:
    code, report = _scan(shop, "--ca", str(shop.printer_cert), "--warn-days", "0")
    assert code == 2
    assert {a: s["status"] for a, s in _by_address(report).items()} == {
        "127.0.0.2": "ok", "127.0.0.3": "untrusted", "127.0.0.4": "untrusted"}


def test_the_table_lists_each_device(shop: Shop) -> None:
    result = lancert("scan", "127.0.0.0/28", "--ports", shop.ports, "--ca", str(shop.bundle),
                     "--warn-days", "0", env={**os.environ, "COLUMNS": "250"})
    for text in ("127.0.0.2", "127.0.0.3", "127.0.0.4", "ePOS printer", "IoT box", "pairing terminal",
                 "self-signed"):
        assert text in result.stdout


def test_an_expired_certificate_is_exit_2_even_when_trusted() -> None:
    key = generate_private_key()
    name = make_name("127.0.0.9")
    cert = build_certificate(subject=name, public_key=key.public_key(), issuer=name, issuer_key=key,
                             profile=SELF_SIGNED_DEVICE, names=SubjectNames.parse(ips=["127.0.0.9"]),
                             validity=timedelta(days=30), not_before=utcnow() - timedelta(days=31))
    trust = TrustSource("test", trusted_leaves=(cert,))
    service = judge(Found("127.0.0.9", 9, (cert,)), [trust], 30)
    assert service.status == "expired"
    assert pem(cert)  # a real certificate, not a stand-in


@pytest.mark.parametrize("cidr", ["127.0.0.0/15", "127.0.0.0/8", "::1/64"])
def test_ranges_over_a_slash_16_are_refused_before_any_probe(cidr: str) -> None:
    result = lancert("scan", cidr, check=False)
    assert result.returncode == 2
    assert result.stderr.startswith("lancert: ") and "--allow-large" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(("args", "fragment"), [
    (("not-a-range",), "not a CIDR"),
    (("127.0.0.0/28", "--ports", "0"), "--ports"),
    (("127.0.0.0/28", "--ports", "443,x"), "--ports"),
    (("127.0.0.0/28", "--concurrency", "0"), "--concurrency"),
])
def test_bad_input_is_one_line(args: tuple[str, ...], fragment: str) -> None:
    result = lancert("scan", *args, check=False)
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1 and fragment in result.stderr


def test_without_ca_or_nssdb_trust_is_judged_by_the_system_and_each_nss_database(
    shop: Shop, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    chrome = make_nssdb(home / ".pki" / "nssdb")
    lancert("trust", "install", str(shop.printer_cert), "--store", "nss", "--nssdb", str(chrome))
    result = lancert("scan", "127.0.0.0/28", "--ports", shop.ports, "--json", "--warn-days", "0", check=False,
                     env={**os.environ, "HOME": str(home)})
    assert result.returncode == 2  # the box and the terminal are trusted by none of them
    found = _by_address(json.loads(result.stdout))
    sources = [t["source"] for t in found["127.0.0.2"]["trust"]]
    assert sources[0].startswith("system trust ") and sources[1:] == [f"NSS database {chrome}"]
    assert [t["secure"] for t in found["127.0.0.2"]["trust"]] == [False, True]
    assert (found["127.0.0.2"]["status"], found["127.0.0.3"]["status"]) == ("ok", "untrusted")
