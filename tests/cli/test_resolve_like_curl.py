"""``--resolve`` is described "like curl": curl's ``HOST:PORT:IP`` works as well as ``HOST:IP``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lancert.up.printer import RunningServer, serve_page
from lancert_cli import lancert

pytestmark = pytest.mark.slow  # starts a server or subprocess (tests/conftest.py)


@pytest.fixture(scope="module")
def printer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, Path]]:
    directory = tmp_path_factory.mktemp("printer")
    lancert("device", "create", "--ip", "192.168.1.25", "--dns", "printer.test", "--dir", str(directory))
    server = serve_page(directory / "cert.pem", directory / "key.pem", b"receipt printer")
    yield server, directory / "cert.pem"
    server.stop()


@pytest.mark.parametrize("form", ["curl", "short"])
def test_check_accepts_curls_host_port_ip(printer: tuple[RunningServer, Path], form: str) -> None:
    server, cert = printer
    mapping = f"printer.test:{server.port}:127.0.0.1" if form == "curl" else "printer.test:127.0.0.1"
    result = lancert("check", f"https://printer.test:{server.port}/", "--ca", str(cert), "--resolve", mapping,
                     check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"printer.test:{server.port} via 127.0.0.1: secure")


def test_fetch_accepts_curls_host_port_ip_for_an_ip_url(printer: tuple[RunningServer, Path],
                                                        tmp_path: Path) -> None:
    server, cert = printer
    out = tmp_path / "printer.crt"
    lancert("trust", "fetch", f"https://192.168.1.25:{server.port}", "-o", str(out),
            "--resolve", f"192.168.1.25:{server.port}:127.0.0.1")
    assert lancert("cert", "show", str(out), "--json").stdout == lancert("cert", "show", str(cert),
                                                                          "--json").stdout


def test_a_mapping_for_another_port_is_refused_as_curl_would_not_use_it(
        printer: tuple[RunningServer, Path]) -> None:
    server, cert = printer
    result = lancert("check", f"https://printer.test:{server.port}/", "--ca", str(cert),
                     "--resolve", "printer.test:443:127.0.0.1", check=False)
    assert result.returncode == 1
    assert result.stderr == (f"lancert: --resolve printer.test:443:127.0.0.1: maps port 443, the URL's port "
                             f"is {server.port}\n")
