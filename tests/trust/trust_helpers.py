"""Helpers of the trust tests: the real CLI, TLS servers on loopback, NSS databases."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from lancert.pki import (
    ROOT_CA,
    TLS_SERVER,
    CertificateAuthority,
    SubjectNames,
    build_certificate,
    generate_private_key,
    make_name,
    pem,
)
from lancert.storage.files import write_certificates, write_private_key
from lancert.up.printer import serve_page

DEVICE_IP = "192.168.1.25"
DEVICE_NAME = "printer.test"
MARKER = "lancert-test-page-7f3a"


def run_lancert_process(
    *args: str | Path, cwd: Path | None = None, home: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """The real console script (``python -m lancert``) in a child process, output captured."""
    env = {**os.environ, "HOME": str(home)} if home is not None else None
    return subprocess.run([sys.executable, "-m", "lancert", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=120, check=False)


def run_lancert(*args: str | Path, home: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The real entry point, :func:`lancert.commands.main.main`, in this process (a child's start-up costs
    seconds on a busy machine): its own error handling turns failures into the one ``lancert: ...`` line
    and the exit status, so a test sees exactly what a user sees. ``home``: ``$HOME`` for the run (where
    NSS databases and Firefox profiles are looked for)."""
    from lancert.commands.main import main

    stdout, stderr = io.StringIO(), io.StringIO()
    saved_home = os.environ.get("HOME")
    if home is not None:
        os.environ["HOME"] = str(home)
    try:
        with redirect_stdout(stdout), redirect_stderr(stderr):
            try:
                main([str(a) for a in args])
                code = 0
            except SystemExit as exc:  # main always ends with sys.exit, as the console script does
                if isinstance(exc.code, str):  # what the interpreter does with sys.exit("message")
                    stderr.write(exc.code + "\n")
                code = 1 if isinstance(exc.code, str) else (exc.code or 0)
    finally:
        if home is not None:
            if saved_home is None:
                os.environ.pop("HOME", None)
            else:
                os.environ["HOME"] = saved_home
    argv = ["lancert", *map(str, args)]
    return subprocess.CompletedProcess(argv, code, stdout.getvalue(), stderr.getvalue())


@dataclass(frozen=True)
class TLSServer:
    port: int

    def url(self, host: str = DEVICE_IP) -> str:
        return f"https://{host}:{self.port}/"


@contextmanager
def tls_server(cert_chain: Path, key: Path) -> Iterator[TLSServer]:
    """An HTTPS server on 127.0.0.1 (never another address) serving the marker page with this chain."""
    server = serve_page(cert_chain, key, f"<html><body><p>{MARKER}</p></body></html>".encode(),
                        host="127.0.0.1")
    try:
        yield TLSServer(server.port)
    finally:
        server.stop()


def resolve_args(host: str = DEVICE_IP) -> list[str]:
    return ["--resolve", f"{host}:127.0.0.1"]


def make_nssdb(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(["certutil", "-N", "-d", f"sql:{directory}", "--empty-password"], check=True,
                   capture_output=True)
    return directory


def nss_entries(directory: Path) -> list[tuple[str, str]]:
    from lancert.trust.nss import parse_certutil_list

    out = subprocess.run(["certutil", "-L", "-d", f"sql:{directory}"], check=True, capture_output=True,
                         text=True)
    return parse_certutil_list(out.stdout)


def write_shop_ca(directory: Path) -> tuple[Path, Path, Path]:
    """``(root.pem, chain.pem, key.pem)`` in ``directory``: a shop root and a server leaf it issued for
    the device (its IP and name), the case where a browser must trust the root, not the leaf."""
    ca = CertificateAuthority.create_root("Test Shop Root")
    key = generate_private_key()
    names = SubjectNames.parse(dns=[DEVICE_NAME], ips=[DEVICE_IP])
    leaf = ca.issue(key.public_key(), TLS_SERVER, names=names, validity=timedelta(days=30))
    write_certificates(directory / "chain.pem", [leaf, ca.certificate])
    write_private_key(directory / "key.pem", key)
    (directory / "root.pem").write_bytes(pem(ca.certificate))
    return directory / "root.pem", directory / "chain.pem", directory / "key.pem"


def write_ca_marked_device(directory: Path) -> tuple[Path, Path]:
    """``(cert.pem, key.pem)``: a printer's self-signed certificate that marks itself CA:TRUE (old
    firmware does), which Chromium and Firefox judge differently."""
    key = generate_private_key()
    name = make_name(DEVICE_IP)
    cert = build_certificate(subject=name, public_key=key.public_key(), issuer=name, issuer_key=key,
                             profile=ROOT_CA, names=SubjectNames.parse(ips=[DEVICE_IP]),
                             validity=timedelta(days=365))
    write_certificates(directory / "cert.pem", [cert])
    write_private_key(directory / "key.pem", key)
    return directory / "cert.pem", directory / "key.pem"
