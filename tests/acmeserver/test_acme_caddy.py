"""Caddy (Debian's 2.6) gets its site certificate from lancert's ACME server with the EAB pair
(``acme_ca``, ``acme_ca_root``, ``acme_eab`` in its Caddyfile) and serves the site on loopback; headless
Chromium, with lancert's root in its NSS database, loads the page without a certificate error.

Caddy runs with ``admin off``, HTTP/1.1 and HTTP/2 only (HTTP/3 would bind a UDP port too), its
storage and HOME in the test's temp dir, and the ACME host mapped by the private /etc/hosts.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from acme_harness import ZONE, AcmeService, assert_lint_clean
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from capabilities import require
from chromium import load
from lancert.loopback import free_port
from lancert_cli import lancert

pytestmark = pytest.mark.slow  # starts a server or subprocess (tests/conftest.py)

MARKER = "lancert caddy ok"


@pytest.fixture(scope="module")
def caddy_site(
    acme_service: AcmeService, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, int, Path]]:
    require(shutil.which("caddy") is not None, "caddy is not installed (Debian package caddy, see .ci/run)")
    work = tmp_path_factory.mktemp("caddy")
    eab = acme_service.eab(acme_service.database())
    host = f"192-168-1-25.{acme_service.label_of(eab)}.{ZONE}"
    http_port, https_port = free_port(), free_port()
    (work / "Caddyfile").write_text(f"""{{
\tadmin off
\thttp_port {http_port}
\thttps_port {https_port}
\tstorage file_system {{
\t\troot {work / "storage"}
\t}}
\tacme_ca {acme_service.directory_url}
\tacme_ca_root {acme_service.root_pem}
\tacme_eab {{
\t\tkey_id {eab["kid"]}
\t\tmac_key {eab["hmac_key"]}
\t}}
\temail it@example.org
\tskip_install_trust
\tocsp_stapling off
\tservers {{
\t\tprotocols h1 h2
\t}}
}}
https://{host}:{https_port} {{
\tbind 127.0.0.1
\trespond "{MARKER}"
}}
""")
    env = {"HOME": str(work), "XDG_DATA_HOME": str(work), "XDG_CONFIG_HOME": str(work),
           "PATH": "/usr/bin:/bin"}
    log = (work / "caddy.log").open("wb")
    command = acme_service.in_namespace(["caddy", "run", "--config", str(work / "Caddyfile"),
                                         "--adapter", "caddyfile"])
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        yield host, https_port, work
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def fetch(acme_service: AcmeService, host: str, port: int, timeout: float = 60) -> httpx.Response:
    """The page, once Caddy has its certificate (it obtains it in the background after starting)."""
    context = ssl.create_default_context(cafile=str(acme_service.root_pem))
    deadline = time.monotonic() + timeout
    with httpx.Client(verify=context, timeout=5) as client:
        while True:
            try:
                return client.get(f"https://127.0.0.1:{port}/", headers={"Host": f"{host}:{port}"},
                                  extensions={"sni_hostname": host})
            except (httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)


def test_caddy_serves_its_site_with_a_certificate_from_lancert(
    acme_service: AcmeService, caddy_site: tuple[str, int, Path]
) -> None:
    host, port, work = caddy_site
    assert fetch(acme_service, host, port).text == MARKER
    (stored,) = (work / "storage" / "certificates").glob(f"*/{host}/{host}.crt")
    assert_lint_clean(stored.read_text(), acme_service.root_pem, [host])
    context = ssl.create_default_context(cafile=str(acme_service.root_pem))
    with socket.create_connection(("127.0.0.1", port)) as raw:
        with context.wrap_socket(raw, server_hostname=host) as tls:
            served = tls.getpeercert(binary_form=True)
    leaf = x509.load_pem_x509_certificate(stored.read_bytes())
    assert served == leaf.public_bytes(serialization.Encoding.DER)


def test_chromium_trusting_lancerts_root_loads_the_caddy_site(
    acme_service: AcmeService, caddy_site: tuple[str, int, Path], tmp_path: Path
) -> None:
    host, port, _ = caddy_site
    fetch(acme_service, host, port)
    home = tmp_path / "home"
    lancert("trust", "install", str(acme_service.root_pem), "--store", "nss",
            "--nssdb", str(home / ".pki" / "nssdb"))
    result = load(f"https://{host}:{port}/", home=home, resolve={host: "127.0.0.1"}, marker=MARKER)
    assert result.ok, result.detail
