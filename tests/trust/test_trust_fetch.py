"""``lancert trust fetch``: the live device's leaf, saved byte for byte as a browser's Base64 export."""

from __future__ import annotations

import hashlib
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from trust_helpers import (
    DEVICE_IP,
    DEVICE_NAME,
    TLSServer,
    resolve_args,
    run_lancert,
    run_lancert_process,
    tls_server,
)

from lancert.pki import TLS_SERVER, CertificateAuthority, SubjectNames, generate_private_key
from lancert.pki.formats import crt
from lancert.storage.files import write_certificates, write_private_key


def served_der(port: int, sni: str | None = None) -> bytes:
    """The leaf as Python's own TLS client receives it: the independent reference."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port)) as raw:
        with ctx.wrap_socket(raw, server_hostname=sni) as tls:
            return tls.getpeercert(binary_form=True)


@pytest.mark.slow
def test_fetch_saves_the_served_leaf_as_crlf_base64(device_server: TLSServer, tmp_path: Path) -> None:
    out = tmp_path / "printer.crt"
    result = run_lancert("trust", "fetch", device_server.url(), *resolve_args(), "-o", out)
    assert result.returncode == 0, result.stderr
    data = out.read_bytes()
    der = served_der(device_server.port)
    assert data == crt(x509.load_der_x509_certificate(der))
    assert data.startswith(b"-----BEGIN CERTIFICATE-----\r\n")
    assert data.endswith(b"-----END CERTIFICATE-----\r\n")
    assert data.count(b"\n") == data.count(b"\r\n")
    openssl_der = subprocess.run(["openssl", "x509", "-in", out, "-outform", "DER"], capture_output=True,
                                 check=True).stdout
    assert openssl_der == der
    fingerprint = hashlib.sha256(der).hexdigest().upper()
    assert ":".join(fingerprint[i:i + 2] for i in range(0, 64, 2)) in result.stdout
    assert f"CN={DEVICE_IP}" in result.stdout and "self-signed" in result.stdout and "valid:" in result.stdout


@pytest.mark.slow
def test_fetch_by_name_sends_sni_and_gets_the_same_leaf(device_server: TLSServer, tmp_path: Path) -> None:
    out = tmp_path / "byname.crt"
    url = device_server.url(DEVICE_NAME)
    result = run_lancert("trust", "fetch", url, *resolve_args(DEVICE_NAME), "-o", out)
    assert result.returncode == 0, result.stderr
    served = x509.load_der_x509_certificate(served_der(device_server.port, DEVICE_NAME))
    assert out.read_bytes() == crt(served)
    assert DEVICE_NAME in result.stdout


@pytest.fixture(scope="module")
def chain_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[bytes, TLSServer]]:
    d = tmp_path_factory.mktemp("chain")
    root = CertificateAuthority.create_root("Fetch Root")
    intermediate = root.create_intermediate("Fetch Intermediate")
    key = generate_private_key()
    leaf = intermediate.issue(key.public_key(), TLS_SERVER, names=SubjectNames.parse(ips=[DEVICE_IP]),
                              validity=timedelta(days=30))
    write_certificates(d / "chain.pem", [leaf, intermediate.certificate, root.certificate])
    write_private_key(d / "key.pem", key)
    with tls_server(d / "chain.pem", d / "key.pem") as server:
        yield crt(leaf), server


@pytest.mark.slow
def test_fetch_keeps_only_the_leaf_of_a_served_chain(
    chain_server: tuple[bytes, TLSServer], tmp_path: Path
) -> None:
    expected, server = chain_server
    out = tmp_path / "leaf.crt"
    result = run_lancert("trust", "fetch", server.url(), *resolve_args(), "-o", out)
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == expected
    assert "issued by" in result.stdout and "Fetch Intermediate" in result.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_url_nobody_answers_writes_nothing_and_says_so_in_one_line(tmp_path: Path) -> None:
    out = tmp_path / "new.crt"
    kept = tmp_path / "kept.crt"
    kept.write_bytes(b"previous content")
    for target in (out, kept):
        url = f"https://{DEVICE_IP}:{_free_port()}/"
        # An existing file is replaced only with --force (the CLI mistakes list); even then a fetch that
        # fails leaves it as it was.
        force = ["--force"] if target.exists() else []
        result = run_lancert_process("trust", "fetch", url, *resolve_args(), "-o", target, *force)
        assert result.returncode == 1
        assert result.stderr.count("\n") == 1 and "connection refused" in result.stderr
    assert not out.exists() and kept.read_bytes() == b"previous content"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.crt"]


@pytest.mark.slow
def test_a_server_that_does_not_speak_tls_is_a_one_line_error(tmp_path: Path) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()

    def answer_plain_http() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(4096)
            conn.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n")

    thread = threading.Thread(target=answer_plain_http, daemon=True)
    thread.start()
    port = listener.getsockname()[1]
    result = run_lancert("trust", "fetch", f"https://127.0.0.1:{port}/", "-o", tmp_path / "x.crt")
    listener.close()
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "TLS handshake failed" in result.stderr
    assert not (tmp_path / "x.crt").exists()


@pytest.mark.parametrize(
    ("url", "extra", "message"),
    [
        ("ftp://127.0.0.1/", [], "only https://"),
        ("https://", [], "no host"),
        ("https://printer.test:99999/", [], "not a valid URL"),
        ("https://printer.test/", ["--resolve", "printer.test:not-an-ip"], "expected HOST:IP"),
    ],
)
def test_bad_urls_are_one_line_errors(url: str, extra: list[str], message: str, tmp_path: Path) -> None:
    result = run_lancert("trust", "fetch", url, *extra, "-o", tmp_path / "x.crt")
    assert result.returncode == 1 and result.stderr.count("\n") == 1 and message in result.stderr
    assert not (tmp_path / "x.crt").exists()


@pytest.mark.slow
def test_a_server_that_never_answers_the_handshake_times_out_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as listener:  # accepts TCP in its backlog, never speaks TLS
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        url = f"https://127.0.0.1:{listener.getsockname()[1]}/"
        result = run_lancert("trust", "fetch", url, "--timeout", "0.5", "-o", tmp_path / "x.crt")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "timed out after 0.5 s" in result.stderr
    assert not (tmp_path / "x.crt").exists()


@pytest.mark.parametrize(
    ("url", "resolve", "expected", "sni"),
    [
        ("192.168.1.25", None, ("192.168.1.25", 443, "192.168.1.25"), None),
        ("https://Printer.Test.:8443/path?q", "printer.test:127.0.0.1", ("printer.test", 8443, "127.0.0.1"),
         "printer.test"),
        ("https://[fe80::25]:8443/", "[fe80::25]:::1", ("fe80::25", 8443, "::1"), None),
        ("https://printer.test/", "printer.test:::1", ("printer.test", 443, "::1"), "printer.test"),
    ],
)
def test_targets_keep_the_name_to_check_apart_from_the_address_to_connect(
    url: str, resolve: str | None, expected: tuple[str, int, str], sni: str | None
) -> None:
    from lancert.trust import parse_target

    target = parse_target(url, resolve)
    assert (target.host, target.port, target.connect_host) == expected
    assert target.sni == sni
