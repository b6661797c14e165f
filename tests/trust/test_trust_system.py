"""The OS trust anchors, on fake roots in temporary directories; the machine's own trust is never touched.

The Debian layout runs the real ``update-ca-certificates`` (pointed at the fake root with its
``--certsconf/--certsdir/--localcertsdir/--etccertsdir/--hooksdir`` options), and OpenSSL through
Python's ``ssl`` then proves the rebuilt bundle makes a real TLS handshake verify.
"""

from __future__ import annotations

import hashlib
import socket
import ssl
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from trust_helpers import DEVICE_IP, TLSServer, run_lancert

from lancert.pki import CertificateAuthority, pem, read_certificate
from lancert.pki.formats import der
from lancert.trust import DEBIAN, FEDORA, SystemStore, TrustStoreError, anchor_file_name, detect_layout
from lancert.trust.system import bundle_der

REAL_PATHS = (Path("/etc/ssl/certs/ca-certificates.crt"), Path("/usr/local/share/ca-certificates"))


def _snapshot() -> list[tuple[str, str]]:
    out = []
    for path in REAL_PATHS:
        if path.is_file():
            out.append((str(path), hashlib.sha256(path.read_bytes()).hexdigest()))
        elif path.is_dir():
            out.append((str(path), ",".join(sorted(p.name for p in path.iterdir()))))
    return out


@pytest.fixture(autouse=True, scope="module")
def real_system_trust_unchanged() -> Iterator[None]:
    before = _snapshot()
    yield
    assert _snapshot() == before


@pytest.fixture
def debian_root(tmp_path: Path) -> tuple[Path, bytes]:
    """A Debian layout with one distribution CA listed in ca-certificates.conf, as on a real system."""
    root = tmp_path / "root"
    for d in ("etc/ssl/certs", "usr/share/ca-certificates/mozilla", "usr/local/share/ca-certificates"):
        (root / d).mkdir(parents=True)
    distro_ca = CertificateAuthority.create_root("Distribution Root").certificate
    (root / "usr/share/ca-certificates/mozilla/Distribution_Root.crt").write_bytes(pem(distro_ca))
    (root / "etc/ca-certificates.conf").write_text("mozilla/Distribution_Root.crt\n")
    return root, der(distro_ca)


def _handshake(server: TLSServer, cafile: Path) -> None:
    ctx = ssl.create_default_context(cafile=str(cafile))
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=DEVICE_IP):
            pass


@pytest.mark.slow
def test_debian_install_list_remove_with_the_real_update_tool(
    debian_root: tuple[Path, bytes], device_dir: Path, device_server: TLSServer
) -> None:
    root, distro_der = debian_root
    cert_file = device_dir / "cert.pem"
    cert = read_certificate(cert_file)
    bundle = root / DEBIAN.bundle
    args = ("--store", "system", "--system-root", root)

    result = run_lancert("trust", "install", cert_file, *args)
    assert result.returncode == 0, result.stderr
    anchor = root / DEBIAN.anchors_dir / anchor_file_name(cert)
    assert anchor.name.startswith("lancert-192.168.1.25-") and anchor.name.endswith(".crt")
    assert read_certificate(anchor) == cert and stat.S_IMODE(anchor.stat().st_mode) == 0o644
    assert (root / "etc/ssl/certs" / (anchor.stem + ".pem")).resolve() == anchor.resolve()
    assert set(bundle_der(bundle.read_bytes())) == {distro_der, der(cert)}
    _handshake(device_server, bundle)

    listed = run_lancert("trust", "list", *args)
    assert listed.stdout.split() == ["anchor", anchor.name, *listed.stdout.split()[2:]]
    assert run_lancert("trust", "list", cert_file, *args).returncode == 0

    result = run_lancert("trust", "remove", cert_file, *args)
    assert result.returncode == 0, result.stderr
    assert "removed from" in result.stdout
    assert not anchor.exists()
    assert bundle_der(bundle.read_bytes()) == [distro_der]
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(device_server, bundle)
    assert run_lancert("trust", "list", cert_file, *args).returncode == 1


@pytest.mark.slow
def test_remove_with_an_empty_ca_certificates_conf_empties_the_bundle(
    tmp_path: Path, device_dir: Path, device_server: TLSServer
) -> None:
    """The documented minimal layout: ``etc/ca-certificates.conf`` empty (no distribution CA), so lancert's
    anchor is the bundle's only certificate. Removing it must take it out of the bundle too (the real
    update-ca-certificates leaves a bundle it would write empty as it was)."""
    root = tmp_path / "root"
    for d in ("etc/ssl/certs", "usr/share/ca-certificates", "usr/local/share/ca-certificates"):
        (root / d).mkdir(parents=True)
    (root / "etc/ca-certificates.conf").write_text("")
    cert_file = device_dir / "cert.pem"
    bundle = root / DEBIAN.bundle
    args = ("--store", "system", "--system-root", root)
    assert run_lancert("trust", "install", cert_file, *args).returncode == 0
    assert bundle_der(bundle.read_bytes()) == [der(read_certificate(cert_file))]
    _handshake(device_server, bundle)

    result = run_lancert("trust", "remove", cert_file, *args)

    assert result.returncode == 0, result.stderr
    assert "removed from" in result.stdout
    assert list((root / DEBIAN.anchors_dir).iterdir()) == []
    assert bundle_der(bundle.read_bytes()) == []
    assert stat.S_IMODE(bundle.stat().st_mode) == 0o644  # what update-ca-certificates gives it
    with pytest.raises(ssl.SSLError):
        _handshake(device_server, bundle)
    assert run_lancert("trust", "list", cert_file, *args).returncode == 1
    # Installing again works on that empty bundle.
    assert run_lancert("trust", "install", cert_file, *args).returncode == 0
    _handshake(device_server, bundle)


@pytest.mark.slow
def test_install_twice_keeps_one_anchor_file(debian_root: tuple[Path, bytes], device_dir: Path) -> None:
    root, _ = debian_root
    store = SystemStore.detect(root)
    cert = read_certificate(device_dir / "cert.pem")
    store.install(cert)
    store.install(cert)
    assert [e.label for e in store.list()] == [anchor_file_name(cert)]
    assert store.uninstall(cert) is True and store.uninstall(cert) is False


@pytest.mark.slow
def test_fedora_layout_places_the_anchor_and_runs_its_update_command(
    tmp_path: Path, device_dir: Path
) -> None:
    root = tmp_path / "fedora"
    (root / FEDORA.anchors_dir).mkdir(parents=True)
    script = tmp_path / "fake-update-ca-trust"
    bundle = root / FEDORA.bundle
    # Stands in for p11-kit's extraction (not installable on Debian): concatenate the anchors.
    anchors = root / FEDORA.anchors_dir
    script.write_text(f"#!/bin/sh\nmkdir -p {bundle.parent}\n"
                      f"cat {anchors}/*.crt > {bundle} 2>/dev/null || : > {bundle}\n")
    script.chmod(0o755)
    assert detect_layout(root) is FEDORA
    store = SystemStore.detect(root, update_command=[str(script)])
    cert = read_certificate(device_dir / "cert.pem")
    store.install(cert)
    assert (root / FEDORA.anchors_dir / anchor_file_name(cert)).is_file() and store.check(cert)
    assert store.uninstall(cert) is True and not store.check(cert)
    assert "fedora" in store.description


def test_fedora_on_another_root_without_an_update_command_is_refused(
    tmp_path: Path, device_dir: Path
) -> None:
    (tmp_path / FEDORA.anchors_dir).mkdir(parents=True)
    with pytest.raises(TrustStoreError, match="cannot work on another root"):
        SystemStore.detect(tmp_path).install(read_certificate(device_dir / "cert.pem"))


def test_unknown_layout_names_what_it_looked_for(tmp_path: Path) -> None:
    result = run_lancert("trust", "list", "--store", "system", "--system-root", tmp_path)
    assert result.returncode == 1 and result.stderr.count("\n") == 1
    assert "/usr/local/share/ca-certificates" in result.stderr
    assert "/etc/pki/ca-trust/source/anchors" in result.stderr


@pytest.mark.slow
def test_update_failure_is_reported_and_the_check_fails_loudly(
    debian_root: tuple[Path, bytes], device_dir: Path
) -> None:
    root, _ = debian_root
    store = SystemStore(DEBIAN, root, update_command=["false"])
    with pytest.raises(TrustStoreError, match="false failed"):
        store.install(read_certificate(device_dir / "cert.pem"))
    noop = SystemStore(DEBIAN, root, update_command=["true"])
    with pytest.raises(TrustStoreError, match=r"not in .* after the update"):
        noop.install(read_certificate(device_dir / "cert.pem"))
