"""Fixtures of the trust tests: a device certificate from ``lancert device create``, served on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from trust_helpers import DEVICE_IP, DEVICE_NAME, TLSServer, run_lancert, tls_server


@pytest.fixture(scope="session")
def device_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``lancert device create --ip 192.168.1.25 --dns printer.test``: a printer's own certificate."""
    directory = tmp_path_factory.mktemp("device") / "printer"
    result = run_lancert("device", "create", "--ip", DEVICE_IP, "--dns", DEVICE_NAME, "--dir", directory)
    assert result.returncode == 0, result.stderr
    return directory


@pytest.fixture(scope="session")
def device_server(device_dir: Path) -> Iterator[TLSServer]:
    with tls_server(device_dir / "cert.pem", device_dir / "key.pem") as server:
        yield server
