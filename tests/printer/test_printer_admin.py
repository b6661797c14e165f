"""The printer's web configuration, as on a real ePOS printer: sign-in with ``epson`` and the serial
number, a self-signed certificate made once (the generate-once guard of ``device create``), a CSR signed by
the shop's CA and imported (PEM or PKCS#12), each applied by a reset; HTTP only before any certificate."""

from __future__ import annotations

import base64
import json
import socket
import ssl
import stat
from pathlib import Path

import httpx
import pytest
from printer_helpers import PRINTER_IP, choose_and_reset, running_printer, sign_in, wait_for_scheme

from lancert.pki import fingerprint_sha256, read_certificates
from lancert.pki.formats import p12
from lancert.pki.keys import load_private_key_pem
from lancert.trust.fetch import Target, served_chain
from lancert_cli import lancert

pytestmark = pytest.mark.slow  # starts a server or subprocess (tests/conftest.py)


def _served(server) -> list:  # type: ignore[no-untyped-def]
    return served_chain(Target(PRINTER_IP, server.port, "127.0.0.1"), timeout=5)


def _client(server) -> httpx.Client:  # type: ignore[no-untyped-def]
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    return httpx.Client(base_url=server.url, verify=ctx, timeout=10, follow_redirects=False)


@pytest.fixture(scope="module")
def shop_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("shop") / "ca"
    lancert("ca", "init", "--dir", str(directory))
    return directory


def test_fresh_printer_speaks_http_only(tmp_path: Path) -> None:
    with running_printer(tmp_path / "p", ip=PRINTER_IP) as server:
        assert server.url.startswith("http://")
        assert httpx.get(server.url, timeout=10).status_code == 200
        with pytest.raises(ssl.SSLError):
            ctx = ssl.create_default_context()
            ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
            with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw:
                ctx.wrap_socket(raw)


def test_sign_in_needs_id_epson_and_the_serial_number(tmp_path: Path) -> None:
    with running_printer(tmp_path / "p", ip=PRINTER_IP) as server, _client(server) as client:
        assert client.post("/signin", data={"id": "epson", "password": "wrong"}).status_code == 403
        assert client.post("/signin", data={"id": "admin", "password": "epson"}).status_code == 403
        refused = client.post("/certificate/self-signed", data={"common_name": PRINTER_IP, "years": "1"})
        assert refused.status_code == 403
        assert not (tmp_path / "p" / "cert.pem").exists()
        sign_in(client, tmp_path / "p")
        page = client.get("/")
        assert f'name="common_name" value="{PRINTER_IP}"' in page.text


def test_self_signed_certificate_is_created_once_and_served_after_reset(tmp_path: Path) -> None:
    directory = tmp_path / "p"
    with running_printer(directory, ip=PRINTER_IP) as server:
        with _client(server) as client:
            sign_in(client, directory)
            created = client.post("/certificate/self-signed", data={"common_name": PRINTER_IP, "years": "2"})
            assert created.status_code == 200, created.text
            listed = directory / "certificates" / "self-signed" / "cert.pem"
            (cert,) = read_certificates(listed)
            assert cert.subject.rfc4514_string() == f"CN={PRINTER_IP}"
            assert not (directory / "cert.pem").exists()  # listed, not yet the server certificate
            again = client.post("/certificate/self-signed", data={"common_name": PRINTER_IP, "years": "1"})
            assert again.status_code == 409
            assert "would break HTTPS for every device that trusts" in again.text
            assert read_certificates(listed) == [cert]
            choose_and_reset(client, "self-signed")
            assert read_certificates(directory / "cert.pem") == [cert]
        wait_for_scheme(server, "https", resets=1)
        assert _served(server) == [cert]
        with _client(server) as client:
            sign_in(client, directory)
            assert fingerprint_sha256(cert) in client.get("/").text


def test_csr_signed_by_the_shop_ca_is_imported_and_served(tmp_path: Path, shop_ca: Path) -> None:
    directory = tmp_path / "p"
    with running_printer(directory, ip=PRINTER_IP) as server:
        with _client(server) as client:
            sign_in(client, directory)
            made = client.post("/certificate/csr", data={"common_name": PRINTER_IP})
            assert made.status_code == 200
            csr = client.get("/certificate/csr")
            assert csr.status_code == 200 and csr.content.startswith(b"-----BEGIN CERTIFICATE REQUEST-----")
            (tmp_path / "printer.csr").write_bytes(csr.content)
            lancert("ca", "issue", "--dir", str(shop_ca), "--csr", str(tmp_path / "printer.csr"),
                    "-o", str(tmp_path / "issued"))
            imported = client.post("/certificate/import",
                                   data={"pem": (tmp_path / "issued" / "cert.pem").read_text()})
            assert imported.status_code == 200, imported.text
            choose_and_reset(client, "ca-signed")
        wait_for_scheme(server, "https", resets=1)
        assert _served(server) == read_certificates(tmp_path / "issued" / "cert.pem")
        assert not (directory / "pending" / "key.pem").exists()


def test_a_certificate_for_another_key_is_refused(tmp_path: Path, shop_ca: Path) -> None:
    directory = tmp_path / "p"
    lancert("ca", "issue", "--dir", str(shop_ca), "--ip", PRINTER_IP, "-o", str(tmp_path / "other"))
    with running_printer(directory, ip=PRINTER_IP) as server, _client(server) as client:
        sign_in(client, directory)
        client.post("/certificate/csr", data={"common_name": PRINTER_IP})
        refused = client.post("/certificate/import",
                              data={"pem": (tmp_path / "other" / "cert.pem").read_text()})
        assert refused.status_code == 400 and "does not belong" in refused.text
        assert not (directory / "certificates" / "ca-signed").exists()
        assert client.post("/certificate/server", data={"certificate": "ca-signed"}).status_code == 400
        assert not (directory / "cert.pem").exists()


def test_pkcs12_with_its_key_is_imported(tmp_path: Path, shop_ca: Path) -> None:
    directory = tmp_path / "p"
    lancert("ca", "issue", "--dir", str(shop_ca), "--ip", PRINTER_IP, "-o", str(tmp_path / "issued"))
    chain = read_certificates(tmp_path / "issued" / "cert.pem")
    key = load_private_key_pem((tmp_path / "issued" / "key.pem").read_bytes())
    bundle = p12(chain[0], password="s3cret", key=key, chain=chain[1:])
    with running_printer(directory, ip=PRINTER_IP) as server:
        with _client(server) as client:
            sign_in(client, directory)
            wrong = client.post("/certificate/import", data={"pkcs12": base64.b64encode(bundle).decode(),
                                                             "password": "nope"})
            assert wrong.status_code == 400
            ok = client.post("/certificate/import", data={"pkcs12": base64.b64encode(bundle).decode(),
                                                          "password": "s3cret"})
            assert ok.status_code == 200, ok.text
            choose_and_reset(client, "ca-signed")
        wait_for_scheme(server, "https", resets=1)
        assert _served(server) == chain


def test_five_wrong_passwords_lock_sign_in_for_30_seconds(tmp_path: Path) -> None:
    with running_printer(tmp_path / "p", ip=PRINTER_IP) as server, _client(server) as client:
        for _ in range(5):
            assert client.post("/signin", data={"id": "epson", "password": "guess"}).status_code == 403
        serial = json.loads((tmp_path / "p" / "printer.json").read_text())["serial"]
        locked = client.post("/signin", data={"id": "epson", "password": serial})
        assert locked.status_code == 403  # even the right password, during the lockout
        server.printer._sign_ins.clear()  # the lockout's end, without waiting 30 s
        assert client.post("/signin", data={"id": "epson", "password": serial}).status_code == 303


def test_a_guesser_elsewhere_does_not_lock_the_owner_out(tmp_path: Path) -> None:
    """The lockout is per address: before, 5 wrong guesses from anyone locked the owner out, and one guess
    every 6 s kept them out."""
    with running_printer(tmp_path / "p", ip=PRINTER_IP) as server, _client(server) as owner:
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        transport = httpx.HTTPTransport(verify=ctx, local_address="127.0.0.2")  # another machine
        with httpx.Client(base_url=server.url, transport=transport, timeout=10) as guesser:
            for _ in range(10):
                assert guesser.post("/signin", data={"id": "epson", "password": "guess"}).status_code == 403
            serial = json.loads((tmp_path / "p" / "printer.json").read_text())["serial"]
            assert guesser.post("/signin", data={"id": "epson", "password": serial}).status_code == 403
            assert owner.post("/signin", data={"id": "epson", "password": serial}).status_code == 303


def test_the_serial_number_file_is_private(tmp_path: Path) -> None:
    with running_printer(tmp_path / "p", ip=PRINTER_IP):
        assert stat.S_IMODE((tmp_path / "p" / "printer.json").stat().st_mode) == 0o600


def test_ssl_tls_switches_between_the_listed_certificates(tmp_path: Path, shop_ca: Path) -> None:
    directory = tmp_path / "p"
    lancert("device", "create", "--ip", PRINTER_IP, "--dir", str(directory))  # serving self-signed
    (self_signed,) = read_certificates(directory / "cert.pem")
    lancert("ca", "issue", "--dir", str(shop_ca), "--ip", PRINTER_IP, "-o", str(tmp_path / "issued"))
    bundle = (tmp_path / "issued" / "cert.pem").read_text() + (tmp_path / "issued" / "key.pem").read_text()
    with running_printer(directory, ip=PRINTER_IP) as server:
        assert _served(server) == [self_signed]
        with _client(server) as client:
            sign_in(client, directory)
            assert 'value="self-signed" checked' in client.get("/").text  # device create's joined the list
            assert client.post("/certificate/import", data={"pem": bundle}).status_code == 200
            choose_and_reset(client, "ca-signed")
        wait_for_scheme(server, "https", resets=1)
        assert _served(server) == read_certificates(tmp_path / "issued" / "cert.pem")
        with _client(server) as client:
            sign_in(client, directory)
            choose_and_reset(client, "self-signed")
        wait_for_scheme(server, "https", resets=2)
        assert _served(server) == [self_signed]
