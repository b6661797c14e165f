"""Roots that can be told apart (issue 20 point 3): ``ca init`` names the root after the user and host that
made it, as mkcert's ``mkcert user@host``, plus the shop's name when given; roots made before keep theirs.

The host name is the real one of a UTS namespace (``unshare --uts``, its own ``hostname``), so the code
under test reads it as it would on two different machines: nothing is injected into lancert.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from capabilities import require
from lancert.pki import CertificateAuthority, pem, private_key_pem
from lancert_cli import lancert


def _unshare_works() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "--uts", "true"], capture_output=True)
    return probe.returncode == 0


def _ca_init_on_host(host: str, directory: Path, *extra: str) -> x509.Certificate:
    """``lancert ca init`` on a machine called ``host`` (a UTS namespace of its own)."""
    script = 'hostname "$1" && shift && exec "$@"'
    subprocess.run(
        ["unshare", "--user", "--map-root-user", "--uts", "sh", "-c", script, "sh", host,
         sys.executable, "-m", "lancert", "ca", "init", "--dir", str(directory), *extra],
        check=True, capture_output=True, timeout=60,
    )
    return x509.load_pem_x509_certificate((directory / "root.pem").read_bytes())


def _attr(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> str:
    return str(cert.subject.get_attributes_for_oid(oid)[0].value)


@pytest.mark.slow
def test_two_ca_init_on_differently_named_hosts_make_roots_with_different_subjects(tmp_path: Path) -> None:
    require(_unshare_works(), "unshare --user --uts (user namespaces) not allowed here")
    a = _ca_init_on_host("till-pc", tmp_path / "a")
    b = _ca_init_on_host("back-office", tmp_path / "b")
    assert a.subject != b.subject
    # In the namespace the process is uid 0 of a user namespace: the account it reads is root's.
    assert _attr(a, NameOID.COMMON_NAME) == "lancert Root CA (root@till-pc)"
    assert _attr(a, NameOID.ORGANIZATIONAL_UNIT_NAME) == "root@till-pc"
    assert _attr(b, NameOID.COMMON_NAME) == "lancert Root CA (root@back-office)"
    intermediate = x509.load_pem_x509_certificate((tmp_path / "a" / "intermediate.pem").read_bytes())
    assert _attr(intermediate, NameOID.COMMON_NAME) == "lancert Intermediate CA (root@till-pc)"


@pytest.mark.slow
def test_the_shop_name_goes_into_the_root_name_beside_the_maker(tmp_path: Path) -> None:
    out = lancert("ca", "init", "--dir", str(tmp_path / "ca"), "--name", "Bakery Smith").stdout
    me = pwd.getpwuid(os.getuid()).pw_name
    host = os.uname().nodename
    root = x509.load_pem_x509_certificate((tmp_path / "ca" / "root.pem").read_bytes())
    assert _attr(root, NameOID.COMMON_NAME) == f"lancert Bakery Smith Root CA ({me}@{host})"
    assert _attr(root, NameOID.ORGANIZATION_NAME) == "lancert"
    assert root.subject.rfc4514_string() in out


@pytest.mark.slow
def test_a_shop_name_too_long_for_a_common_name_is_refused_in_one_line(tmp_path: Path) -> None:
    result = lancert("ca", "init", "--dir", str(tmp_path / "ca"), "--name", "B" * 60, check=False)
    assert result.returncode != 0
    assert result.stderr.startswith("lancert: --name: at most") and result.stderr.count("\n") == 1
    assert not (tmp_path / "ca" / "root.pem").exists()


@pytest.mark.slow
def test_a_root_made_before_the_new_names_keeps_working(tmp_path: Path) -> None:
    """A CA directory written by an earlier lancert (``CN=lancert Root CA, O=lancert``) still issues."""
    root = CertificateAuthority.create_root("lancert Root CA", key=ec.generate_private_key(ec.SECP256R1()))
    inter = root.create_intermediate("lancert Intermediate CA")
    ca = tmp_path / "old-ca"
    ca.mkdir()
    (ca / "root.pem").write_bytes(pem(root.certificate))
    (ca / "root-key.pem").write_bytes(private_key_pem(root.key))
    (ca / "intermediate.pem").write_bytes(pem(inter.certificate))
    (ca / "intermediate-key.pem").write_bytes(private_key_pem(inter.key))
    lancert("ca", "issue", "--dir", str(ca), "--ip", "192.168.1.25", "-o", str(tmp_path / "out"))
    shown = json.loads(lancert("cert", "show", str(tmp_path / "out" / "cert.pem"), "--json").stdout)
    assert shown["issuer"] == "CN=lancert Intermediate CA,O=lancert"
    assert (ca / "root.pem").read_bytes() == pem(root.certificate)


def test_the_services_and_the_terminals_roots_are_named_after_their_maker_too(tmp_path: Path) -> None:
    from lancert.service.database import Database
    from lancert.service.issuer import ensure_service_identity
    from lancert.terminal.device import TerminalState

    maker = f"{pwd.getpwuid(os.getuid()).pw_name}@{os.uname().nodename}"
    database = Database(f"sqlite:///{tmp_path / 'service.db'}")
    database.migrate()
    try:
        service_root = ensure_service_identity(database, "iot.lancert.test", tmp_path / "service-ca").ca.root
    finally:
        database.dispose()
    terminal_root = TerminalState(tmp_path / "terminal").activate(name="till-terminal").root
    assert _attr(service_root, NameOID.COMMON_NAME) == f"lancert iot.lancert.test Root CA ({maker})"
    assert _attr(terminal_root, NameOID.COMMON_NAME) == f"lancert terminal till-terminal Root CA ({maker})"
    for root in (service_root, terminal_root):
        assert _attr(root, NameOID.ORGANIZATIONAL_UNIT_NAME) == maker
