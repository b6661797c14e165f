"""Helpers of the PKI-core tests (a uniquely named module: conftest.py names clash across test dirs)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from lancert.pki import PrivateKey, pem

ZONE = "iot.example.net"


def extension(cert: x509.Certificate, cls: type) -> x509.Extension:
    return cert.extensions.get_extension_for_class(cls)


def write_pem(path: Path, certs: x509.Certificate | list[x509.Certificate]) -> Path:
    path.write_bytes(pem(certs))
    return path


def openssl(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run the system's OpenSSL 3, the independent reader every format is checked against."""
    return subprocess.run(["openssl", *args], input=stdin, capture_output=True, timeout=30, check=False)


def spki_der(key: PrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
