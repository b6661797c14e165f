"""The ePOS-Print endpoint answers every request with the right SOAP answer or HTTP status, never a 5xx.

Contract (Epson's ePOS-Print reference): ``POST /cgi-bin/epos/service.cgi?devid=...&timeout=...`` with a
SOAP 1.1 envelope holding one ``epos-print`` document; the answer is a SOAP ``response`` element with
``success``, ``code`` (``SchemaError``, ``DeviceNotFound``, ...) and ``status``. Receipts land in
``DIR/receipts/`` only for a successful print.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from printer_helpers import EPOS, SOAP, envelope, receipts, running_printer

from lancert.printer.server import PrinterServer

pytestmark = pytest.mark.slow  # starts a server or subprocess (tests/conftest.py)

PATH = "/cgi-bin/epos/service.cgi"
OK = f"{PATH}?devid=local_printer&timeout=10000"
BOMB = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        + b"".join(b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10)
                   for i in range(1, 10))
        + b']>' + envelope("<text>&lol9;</text>")[len(b'<?xml version="1.0" encoding="utf-8"?>'):])
XXE = (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
       + envelope("<text>&xxe;</text>")[len(b'<?xml version="1.0" encoding="utf-8"?>'):])


@pytest.fixture(scope="module")
def printer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("printer")


@pytest.fixture(scope="module")
def server(printer_dir: Path) -> Iterator[PrinterServer]:
    with running_printer(printer_dir) as s:
        yield s


def _answer(response: httpx.Response) -> dict[str, str]:
    root = ET.fromstring(response.content)  # noqa: S314 - our own server's answer
    assert root.tag == f"{{{SOAP}}}Envelope"
    (element,) = root.find(f"{{{SOAP}}}Body")  # type: ignore[misc]
    assert element.tag == f"{{{EPOS}}}response"
    return dict(element.attrib)


CASES = [
    # (name, method, path, body, status, success, code, printed)
    ("valid print", "POST", OK, envelope('<text>Coffee 2.50&#10;</text><cut type="feed"/>'), 200, "true",
     "", True),
    ("unknown device", "POST", f"{PATH}?devid=kitchen_printer&timeout=10000", envelope("<text>x</text>"), 200,
     "false", "DeviceNotFound", False),
    ("no device id", "POST", PATH, envelope("<text>x</text>"), 200, "false", "DeviceNotFound", False),
    ("malformed XML", "POST", OK, b"<s:Envelope xmlns:s='x'><s:Body>", 200, "false", "SchemaError", False),
    ("not SOAP", "POST", OK, b"<epos-print/>", 200, "false", "SchemaError", False),
    ("unknown command", "POST", OK, envelope("<shred/>"), 200, "false", "SchemaError", False),
    ("bad timeout", "POST", f"{PATH}?devid=local_printer&timeout=soon", envelope("<text>x</text>"), 200,
     "false", "SchemaError", False),
    ("timeout in non-ASCII digits", "POST", f"{PATH}?devid=local_printer&timeout=%C2%B2",
     envelope("<text>x</text>"), 200, "false", "SchemaError", False),
    ("feed in non-ASCII digits", "POST", OK, envelope('<feed line="\u0662"/>'), 200, "false", "SchemaError",
     False),
    ("XML bomb", "POST", OK, BOMB, 200, "false", "SchemaError", False),
    ("external entity", "POST", OK, XXE, 200, "false", "SchemaError", False),
    ("not UTF-8 bytes", "POST", OK, b"\xff\xfe<\x00", 200, "false", "SchemaError", False),
]


@pytest.mark.parametrize(("name", "method", "path", "body", "status", "success", "code", "printed"), CASES,
                         ids=[c[0] for c in CASES])
def test_epos_request_gets_the_documented_answer(
    server: PrinterServer, printer_dir: Path, name: str, method: str, path: str, body: bytes, status: int,
    success: str, code: str, printed: bool,
) -> None:
    before = len(receipts(printer_dir))
    response = httpx.request(method, server.url.rstrip("/") + path, content=body,
                             headers={"Content-Type": "text/xml; charset=utf-8"}, timeout=10)
    assert response.status_code == status
    assert response.headers["content-type"].startswith("text/xml")
    answer = _answer(response)
    assert (answer["success"], answer["code"]) == (success, code)
    assert len(receipts(printer_dir)) == before + (1 if printed else 0)


def test_a_printed_receipt_holds_exactly_the_text_cut_and_barcode_sent(server: PrinterServer,
                                                                      printer_dir: Path) -> None:
    text = "Espresso   1.80\nTotal      1.80 <EUR> & thanks\n"
    body = envelope(f"<text>{text.replace('&', '&amp;').replace('<', '&lt;').replace('>', '&gt;')}</text>"
                    '<barcode type="ean13" hri="below">4901234567894</barcode><feed line="2"/>'
                    '<cut type="no_feed"/>')
    response = httpx.post(server.url.rstrip("/") + OK, content=body, timeout=10)
    assert _answer(response)["success"] == "true"
    last = receipts(printer_dir)[-1]
    assert last["text"] == text
    assert last["cuts"] == ["no_feed"]
    assert last["barcodes"] == [{"type": "ean13", "data": "4901234567894"}]


def test_the_printer_keeps_the_newest_200_receipts_each_text_stored_once(tmp_path: Path, caplog) -> None:
    """Before: every job was kept, its text twice (200 prints of 1 MiB wrote 419 MB in 5 s), and nothing
    was logged per job. Now: the newest 200 receipts, at most 16 MiB in all, the text once, one log line
    per job."""
    import logging

    directory = tmp_path / "printer"
    with running_printer(directory) as printer, httpx.Client(timeout=30) as client, \
            caplog.at_level(logging.INFO, logger="lancert.printer"):
        for i in range(205):
            job = envelope(f"<text>job {i} unique-{i}\n</text>")
            answer = client.post(printer.url.rstrip("/") + OK, content=job)
            assert _answer(answer)["success"] == "true"
        kept = receipts(directory)
        assert len(kept) == 200
        assert (kept[0]["text"], kept[-1]["text"]) == ("job 5 unique-5\n", "job 204 unique-204\n")
        newest = sorted((directory / "receipts").glob("*.json"))[-1].read_text()
        assert newest.count("unique-204") == 1  # the text once, not in "text" and again in "items"
        assert len([r for r in caplog.records if r.getMessage().startswith("printed job")]) == 205
        big = "x" * (900 * 1024)
        for _ in range(20):
            assert _answer(client.post(printer.url.rstrip("/") + OK, content=envelope(f"<text>{big}</text>"))
                           )["success"] == "true"
    stored = sum(p.stat().st_size for p in (directory / "receipts").glob("*.json"))
    assert stored <= 16 * 1024 * 1024, stored
    assert receipts(directory)[-1]["text"] == big


def test_success_status_carries_the_print_success_bit(server: PrinterServer) -> None:
    response = httpx.post(server.url.rstrip("/") + OK, content=envelope("<text>s</text>"), timeout=10)
    assert int(_answer(response)["status"]) & 0x2  # ASB_PRINT_SUCCESS


@pytest.mark.parametrize("size", [1024 * 1024 + 1, 8 * 1024 * 1024])
def test_oversized_body_is_413_and_prints_nothing(
    server: PrinterServer, printer_dir: Path, size: int
) -> None:
    before = len(receipts(printer_dir))
    body = envelope("<text>" + "A" * size + "</text>")
    response = httpx.post(server.url.rstrip("/") + OK, content=body, timeout=30)
    assert response.status_code == 413
    assert len(receipts(printer_dir)) == before


def test_oversized_chunked_body_is_413_counted_on_the_stream(server: PrinterServer) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(20):
            yield b"A" * 65536 * 2

    response = httpx.post(server.url.rstrip("/") + OK, content=chunks(), timeout=30)
    assert response.status_code == 413


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_wrong_method_is_405_naming_post(server: PrinterServer, method: str) -> None:
    response = httpx.request(method, server.url.rstrip("/") + OK, timeout=10)
    assert response.status_code == 405
    assert "POST" in response.headers["allow"]


def test_preflight_for_text_xml_is_answered_for_any_origin_by_default(server: PrinterServer) -> None:
    response = httpx.options(server.url.rstrip("/") + OK, headers={
        "Origin": "https://pos.example.com", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
        "Access-Control-Request-Private-Network": "true",
    }, timeout=10)
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == "*"
    assert "POST" in response.headers["access-control-allow-methods"]
    assert "content-type" in response.headers["access-control-allow-headers"].lower()
    assert response.headers["access-control-allow-private-network"] == "true"
    post = httpx.post(server.url.rstrip("/") + OK, content=envelope("<text>c</text>"),
                      headers={"Origin": "https://pos.example.com"}, timeout=10)
    assert post.headers["access-control-allow-origin"] == "*"


def test_allow_origin_list_answers_only_those_origins(tmp_path: Path) -> None:
    with running_printer(tmp_path, allow_origins=("https://pos.shop.test",)) as server:
        url = server.url.rstrip("/") + OK
        asked = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
        good = httpx.options(url, headers={"Origin": "https://pos.shop.test", **asked}, timeout=10)
        assert good.status_code == 204
        assert good.headers["access-control-allow-origin"] == "https://pos.shop.test"
        bad = httpx.options(url, headers={"Origin": "https://evil.test", **asked}, timeout=10)
        assert bad.status_code == 403 and "access-control-allow-origin" not in bad.headers
        post = httpx.post(url, content=envelope("<text>x</text>"), headers={"Origin": "https://evil.test"},
                          timeout=10)
        assert post.status_code == 403
        assert receipts(tmp_path) == []


def test_preflight_asking_for_other_headers_is_refused(server: PrinterServer) -> None:
    response = httpx.options(server.url.rstrip("/") + OK, headers={
        "Origin": "https://pos.example.com", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type, x-secret-token"}, timeout=10)
    assert response.status_code == 403


def test_a_client_leaving_mid_body_prints_nothing_and_logs_no_traceback(tmp_path: Path, caplog) -> None:
    import logging
    import socket
    import time

    directory = tmp_path / "printer"
    with running_printer(directory) as printer, caplog.at_level(logging.DEBUG):
        for _ in range(5):
            with socket.create_connection(("127.0.0.1", printer.port), timeout=5) as sock:
                sock.sendall(f"POST {OK} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/xml\r\n"
                             "Content-Length: 5000\r\n\r\n".encode() + envelope("<text>half")[:40])
        time.sleep(1)  # let the server notice the closed connections
        assert httpx.get(printer.url, timeout=10).status_code == 200  # still serving
    assert receipts(directory) == []
    logged = "\n".join(f"{r.levelname} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    assert "Traceback" not in logged and not [r for r in caplog.records if r.exc_info], logged
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], logged
