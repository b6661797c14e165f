"""``scan``, ``check`` and ``trust fetch`` against hostile TLS servers on loopback (issue 24 point 3).

Each server sits on its own address of 127.0.0.0/28, all on one port, and misbehaves in one way: a
certificate with an extension ``cryptography`` refuses to parse (two kinds), a handshake that trickles one
byte every 1.5 s, an HTTPS answer that trickles, a plain-HTTP trickle, a port that takes the connection and
never speaks, garbage, an immediate close; one honest self-signed device beside them. The scan must end
within its bounds (per host: 3 steps of ``--timeout``), report every hostile device that answered, and go
on to report the honest one; no traceback anywhere.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtensionOID, NameOID

from lancert.loopback import free_port
from lancert_cli import lancert

pytestmark = pytest.mark.slow
TRICKLE_SECONDS = 1.5
TIMEOUT = 2.0  # scan's default --timeout, per step; a host's whole probe is bounded by 3 of them: 6 s


def _certificate(directory: Path, ip: str, odd_extension: x509.ObjectIdentifier | None) -> ssl.SSLContext:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ip)])
    now = datetime.now(UTC)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=1))
               .not_valid_after(now + timedelta(days=30))
               .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), False)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True))
    if odd_extension is not None:
        # DER that is not the extension's syntax: OpenSSL serves it, cryptography refuses it when read.
        builder = builder.add_extension(x509.UnrecognizedExtension(odd_extension, b"\x30\x03\x02\x01\x00"),
                                        critical=False)
    cert = builder.sign(key, hashes.SHA256())
    cert_path, key_path = directory / f"{ip}.pem", directory / f"{ip}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    return context


def _trickle(conn: socket.socket, data: bytes, stop: threading.Event) -> None:
    for byte in data:
        if stop.wait(TRICKLE_SECONDS):
            return
        conn.sendall(bytes([byte]))


def _one_port_on_every_address(ips: list[str]) -> tuple[int, list[socket.socket]]:
    """Bind one port on each address: a port free on 127.0.0.1 may be held on 127.0.0.2 by another test's
    server (seen in a full run), so a port is taken only when every address could bind it."""
    for _ in range(20):
        port, listeners = free_port(), []
        try:
            for ip in ips:
                listeners.append(socket.create_server((ip, port)))
        except OSError:
            for listener in listeners:
                listener.close()
            continue
        return port, listeners
    raise RuntimeError(f"no port free on all of {ips}")


class Hostile:
    """One misbehaving server: ``serve(conn, stop)`` runs per accepted connection, in its own thread."""

    def __init__(self, listener: socket.socket,
                 serve: Callable[[socket.socket, threading.Event], None]) -> None:
        self.listener = listener
        self.serve, self.stop = serve, threading.Event()
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._run, args=(conn,), daemon=True).start()

    def _run(self, conn: socket.socket) -> None:
        try:
            self.serve(conn, self.stop)
        except (OSError, ssl.SSLError):
            pass

    def close(self) -> None:
        self.stop.set()
        self.listener.close()
        for conn in self.conns:
            conn.close()


def _tls(context: ssl.SSLContext, then: Callable[[ssl.SSLSocket, threading.Event], None]):
    def serve(conn: socket.socket, stop: threading.Event) -> None:
        with context.wrap_socket(conn, server_side=True) as tls:
            then(tls, stop)
    return serve


def _http_answer(tls: socket.socket, stop: threading.Event) -> None:
    tls.recv(4096)
    tls.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")


def _http_trickle(tls: socket.socket, stop: threading.Event) -> None:
    tls.recv(4096)
    _trickle(tls, b"HTTP/1.1 200 OK\r\n" + b"X-Slow: " + b"a" * 1000, stop)


# A TLS record header announcing a 16 KiB handshake record, then one byte of it every 1.5 s.
_SLOW_HANDSHAKE = b"\x16\x03\x03\x40\x00" + b"\x02" * 16384


@pytest.fixture(scope="module")
def hostile_shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path, dict[str, str]]]:
    directory = tmp_path_factory.mktemp("hostile-tls")
    servers = {
        "127.0.0.2": ("odd certificate policies", _tls(_certificate(directory, "127.0.0.2",
                      ExtensionOID.CERTIFICATE_POLICIES), _http_answer)),
        "127.0.0.3": ("odd TLS feature", _tls(_certificate(directory, "127.0.0.3", ExtensionOID.TLS_FEATURE),
                                              _http_answer)),
        "127.0.0.4": ("slow handshake", lambda c, s: _trickle(c, _SLOW_HANDSHAKE, s)),
        "127.0.0.5": ("slow HTTPS answer", _tls(_certificate(directory, "127.0.0.5", None), _http_trickle)),
        "127.0.0.6": ("slow plain HTTP", lambda c, s: (c.recv(4096), _trickle(c, b"HTTP/1.1 200 OK\r\n" * 99,
                                                                            s))),
        "127.0.0.7": ("silent", lambda c, s: s.wait(60)),
        "127.0.0.8": ("garbage", lambda c, s: c.sendall(b"\x00\xff" * 3000)),
        "127.0.0.9": ("closes at once", lambda c, s: c.close()),
        "127.0.0.10": ("honest", _tls(_certificate(directory, "127.0.0.10", None), _http_answer)),
    }
    port, listeners = _one_port_on_every_address(list(servers))
    running = [Hostile(listener, serve)
               for listener, (_, serve) in zip(listeners, servers.values(), strict=True)]
    try:
        yield port, directory, {ip: what for ip, (what, _) in servers.items()}
    finally:
        for server in running:
            server.close()


def test_scan_reports_each_hostile_device_within_its_bounds_and_goes_on(
    hostile_shop: tuple[int, Path, dict[str, str]],
) -> None:
    port, directory, _ = hostile_shop
    started = time.monotonic()
    result = lancert("scan", "127.0.0.0/28", "--ports", str(port), "--json", "--timeout", str(TIMEOUT),
                     "--ca", str(directory / "127.0.0.10.pem"), "--warn-days", "0", check=False)
    elapsed = time.monotonic() - started
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    report = json.loads(result.stdout)
    found = {s["address"]: s for s in report["services"]}
    print(f"\nscan of {len(found)} hostile and honest devices: {elapsed:.1f} s")
    # Before: the odd certificate aborted the whole scan with a traceback; the trickles never ended.
    assert elapsed < 40, elapsed
    assert found["127.0.0.10"]["status"] == "ok" and found["127.0.0.10"]["trusted"]
    for ip in ("127.0.0.2", "127.0.0.3"):
        assert found[ip]["status"] == "untrusted" and "cannot be parsed" in found[ip]["error"], found[ip]
    # Took the connection, never finished a handshake: silent, one byte every 1.5 s, a plain-HTTP trickle
    # (the same to TLS). Before: not shown at all.
    for ip in ("127.0.0.4", "127.0.0.6", "127.0.0.7"):
        assert found[ip]["status"] == "no-answer" and "timed out after 2 s" in found[ip]["error"], found[ip]
    # The handshake worked, the HTTPS answer trickles: cut at 6 s, reported.
    assert "no complete answer within 6 s" in found["127.0.0.5"]["error"], found["127.0.0.5"]
    assert found["127.0.0.8"]["status"] == "no-tls"
    assert result.returncode == 2  # untrusted devices were found
    table = lancert("scan", "127.0.0.0/28", "--ports", str(port), "--timeout", str(TIMEOUT), check=False,
                    env={**os.environ, "COLUMNS": "300"})
    assert table.returncode == 2 and "Traceback" not in table.stderr, table.stderr
    rows = {line.split()[1]: line for line in table.stdout.splitlines() if "127.0.0." in line}
    assert "cannot be parsed" in rows[f"127.0.0.2:{port}"] and "no-answer" in rows[f"127.0.0.7:{port}"], rows


@pytest.mark.parametrize("ip", ["127.0.0.2", "127.0.0.3"])
def test_check_and_fetch_say_in_one_line_that_the_certificate_cannot_be_parsed(
    hostile_shop: tuple[int, Path, dict[str, str]], ip: str, tmp_path: Path,
) -> None:
    port, directory, _ = hostile_shop
    checked = lancert("check", f"https://{ip}:{port}/", "--ca", str(directory / "127.0.0.10.pem"),
                      check=False)
    assert checked.returncode == 2 and "Traceback" not in checked.stderr, checked.stderr
    assert "cannot be parsed" in checked.stdout + checked.stderr
    fetched = lancert("trust", "fetch", f"https://{ip}:{port}/", "-o", str(tmp_path / "x.crt"), check=False)
    assert fetched.returncode != 0 and fetched.stderr.count("\n") == 1, fetched.stderr
    assert fetched.stderr.startswith("lancert: ") and "cannot be parsed" in fetched.stderr
    assert not (tmp_path / "x.crt").exists()


@pytest.mark.parametrize("ip", ["127.0.0.4", "127.0.0.7"])
def test_check_and_fetch_of_a_stalled_handshake_end_in_their_timeout(
    hostile_shop: tuple[int, Path, dict[str, str]], ip: str, tmp_path: Path,
) -> None:
    port, _, _ = hostile_shop
    for args in (["check", f"https://{ip}:{port}/", "--timeout", "2"],
                 ["trust", "fetch", f"https://{ip}:{port}/", "--timeout", "2", "-o",
                  str(tmp_path / "x.crt")]):
        started = time.monotonic()
        result = lancert(*args, check=False)
        assert time.monotonic() - started < 15, args  # before: the trickle kept a 2 s timeout happy
        assert result.returncode == 1 and "TLS handshake" in result.stderr, result.stderr
        assert "timed out after 2 s" in result.stderr, result.stderr
        assert result.stderr.count("\n") == 1
