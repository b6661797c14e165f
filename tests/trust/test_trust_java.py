"""``trust install|remove|list --store java`` against the real JDK (issue 20 point 1).

A COPY of the JDK's own ``cacerts`` (never the real one) gets the certificate; a Java program run by the
real JDK (single-file source launch, ``java Probe.java``) with ``-Djavax.net.ssl.trustStore=<copy>`` then
reaches ``lancert printer run`` over HTTPS, and fails before the install and after the remove. The printer's
certificate names ``printer.shop.test`` and 192.168.1.25; Java resolves the name to 127.0.0.1 through a hosts
file of its own (``-Djdk.net.hosts.file``), so nothing leaves the machine.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from capabilities import required_for_module
from lancert_cli import lancert

_capability = required_for_module(
    shutil.which("java") is not None and shutil.which("keytool") is not None,
    "java/keytool not found (Debian: default-jdk-headless)",
)

NAME = "printer.shop.test"
PROBE = r"""
import java.net.URL;
import javax.net.ssl.HttpsURLConnection;

public class Probe {
    public static void main(String[] args) throws Exception {
        HttpsURLConnection c = (HttpsURLConnection) new URL(args[0]).openConnection();
        c.setConnectTimeout(10000);
        c.setReadTimeout(10000);
        try {
            System.out.println("STATUS " + c.getResponseCode());
        } catch (javax.net.ssl.SSLException e) {
            System.out.println("TLS-FAILED " + e);
            System.exit(2);
        }
    }
}
"""


def _java_home() -> Path:
    out = subprocess.run(["java", "-XshowSettings:properties", "-version"], capture_output=True, text=True,
                         check=True).stderr
    m = re.search(r"java\.home = (.+)", out)
    assert m, out
    return Path(m[1].strip())


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("java")
    (work / "Probe.java").write_text(PROBE)
    (work / "hosts").write_text(f"127.0.0.1 {NAME}\n")
    lancert("ca", "init", "--dir", str(work / "shop-ca"), "--name", "Java Test Shop")
    lancert("device", "create", "--ip", "192.168.1.25", "--dns", NAME, "--dir", str(work / "own"))
    lancert("device", "create", "--ip", "192.168.1.25", "--dns", NAME, "--dir", str(work / "issued"),
            "--ca", str(work / "shop-ca"))
    return work


@pytest.fixture
def cacerts_copy(tmp_path: Path) -> Path:
    """A copy of the JDK's own cacerts (its roots included), as a POS application's trust store."""
    copy = tmp_path / "cacerts"
    shutil.copyfile(_java_home() / "lib" / "security" / "cacerts", copy)
    return copy


def _printer(directory: Path) -> Iterator[str]:
    proc = subprocess.Popen([sys.executable, "-m", "lancert", "printer", "run", "--dir", str(directory),
                             "--ip", "192.168.1.25", "--host", "127.0.0.1", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    try:
        assert line.startswith("lancert printer: https://127.0.0.1:"), proc.stderr and proc.stderr.read()
        port = line.split()[2].rstrip("/").rsplit(":", 1)[1]
        yield f"https://{NAME}:{port}/"
    finally:
        proc.terminate()
        proc.wait(15)


@pytest.fixture(params=["own", "issued"])
def printer(request: pytest.FixtureRequest, work: Path) -> Iterator[tuple[str, Path]]:
    """The printer served with its own self-signed certificate, or with one from the shop root; and the
    file a user installs for it (the certificate itself, or the shop's root)."""
    trust_file = work / "own" / "cert.pem" if request.param == "own" else work / "shop-ca" / "root.pem"
    yield from ((url, trust_file) for url in _printer(work / request.param))


def _probe(work: Path, url: str, truststore: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["java", f"-Djavax.net.ssl.trustStore={truststore}", "-Djavax.net.ssl.trustStorePassword=changeit",
         f"-Djdk.net.hosts.file={work / 'hosts'}", str(work / "Probe.java"), url],
        capture_output=True, text=True, timeout=120,
    )


def _java(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return lancert("trust", *args, "--store", "java", check=check)


@pytest.mark.slow
def test_a_java_program_reaches_the_printer_only_while_its_certificate_is_installed(
    work: Path, cacerts_copy: Path, printer: tuple[str, Path]
) -> None:
    url, trust_file = printer
    before = _probe(work, url, cacerts_copy)
    assert before.returncode == 2 and "TLS-FAILED" in before.stdout, before.stdout + before.stderr
    assert "PKIX path building failed" in before.stdout

    installed = _java("install", str(trust_file), "--keystore", str(cacerts_copy))
    assert installed.stdout.startswith(f"trusted in Java keystore {cacerts_copy}")
    reached = _probe(work, url, cacerts_copy)
    assert reached.returncode == 0, reached.stdout + reached.stderr
    assert reached.stdout.startswith("STATUS 200")

    removed = _java("remove", str(trust_file), "--keystore", str(cacerts_copy))
    assert removed.stdout.startswith("removed from Java keystore")
    after = _probe(work, url, cacerts_copy)
    assert after.returncode == 2 and "TLS-FAILED" in after.stdout


@pytest.mark.slow
def test_check_keystore_says_what_the_jdk_says(
    work: Path, cacerts_copy: Path, printer: tuple[str, Path]
) -> None:
    url, trust_file = printer
    port = url.rstrip("/").rsplit(":", 1)[1]
    target = ["check", url, "--resolve", f"{NAME}:127.0.0.1", "--keystore", str(cacerts_copy)]
    refused = lancert(*target, "--json", check=False)
    assert refused.returncode == 2
    assert json.loads(refused.stdout)["trust_source"] == f"Java keystore {cacerts_copy}"
    _java("install", str(trust_file), "--keystore", str(cacerts_copy))
    trusted = lancert(*target)
    expected = f"{NAME}:{port} via 127.0.0.1: secure (trust: Java keystore {cacerts_copy})"
    assert trusted.stdout.startswith(expected)


@pytest.mark.slow
def test_install_is_idempotent_and_names_the_entry_after_the_certificate(
    work: Path, cacerts_copy: Path
) -> None:
    root = work / "shop-ca" / "root.pem"
    entries_before = _keytool_count(cacerts_copy)
    for _ in range(2):
        _java("install", str(root), "--keystore", str(cacerts_copy))
    assert _keytool_count(cacerts_copy) == entries_before + 1
    listed = json.loads(_java("list", "--keystore", str(cacerts_copy), "--json").stdout)
    shown = json.loads(lancert("cert", "show", str(root), "--json").stdout)
    assert [e["sha256_fingerprint"] for e in listed] == [shown["sha256_fingerprint"]]
    short = shown["sha256_fingerprint"].replace(":", "")[:8].lower()
    # keytool lower-cases aliases; the alias still says what it is: lancert's, which root, which one.
    assert listed[0]["label"].startswith("lancert java test shop root ca (")
    assert listed[0]["label"].endswith(f") {short}")
    assert _java("list", str(root), "--keystore", str(cacerts_copy)).stdout.startswith("trusted ")
    # Removing by the label that list printed, then again: the second says it was not there.
    assert _java("remove", listed[0]["label"], "--keystore", str(cacerts_copy)).stdout.startswith("removed")
    assert _java("remove", str(root), "--keystore", str(cacerts_copy)).stdout.startswith("was not in")
    assert _keytool_count(cacerts_copy) == entries_before
    assert _java("list", str(root), "--keystore", str(cacerts_copy), check=False).returncode == 1


def _keytool_count(keystore: Path) -> int:
    out = subprocess.run(["keytool", "-list", "-keystore", str(keystore), "-storepass", "changeit"],
                         capture_output=True, text=True, check=True).stdout
    return out.count("trustedCertEntry")


@pytest.mark.slow
def test_a_keystore_with_its_own_password_needs_storepass_file(work: Path, tmp_path: Path) -> None:
    keystore, password = tmp_path / "pos-truststore.p12", tmp_path / "storepass"
    password.write_text("till-secret-2026\n")
    root = work / "shop-ca" / "root.pem"
    subprocess.run(["keytool", "-importcert", "-noprompt", "-alias", "other",
                    "-file", str(work / "own" / "cert.pem"), "-keystore", str(keystore),
                    "-storepass", "till-secret-2026"], capture_output=True, check=True)
    mode_before = os.stat(keystore).st_mode
    wrong = _java("install", str(root), "--keystore", str(keystore), check=False)
    assert wrong.returncode == 1
    assert wrong.stderr == (f"lancert: {keystore}: wrong keystore password (a JDK's cacerts uses "
                            "'changeit'); give the right one with --storepass-file FILE\n")
    _java("install", str(root), "--keystore", str(keystore), "--storepass-file", str(password))
    listed = _java("list", str(root), "--keystore", str(keystore), "--storepass-file", str(password))
    assert listed.returncode == 0
    assert os.stat(keystore).st_mode == mode_before
    assert "till-secret-2026" not in wrong.stderr + wrong.stdout


@pytest.mark.slow
def test_without_a_jdk_the_error_says_what_to_install(tmp_path: Path, work: Path) -> None:
    env = {**os.environ, "PATH": str(tmp_path)}  # no java, no keytool
    result = subprocess.run([sys.executable, "-m", "lancert", "trust", "install",
                             str(work / "own" / "cert.pem"), "--store", "java"],
                            capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 1
    assert result.stderr.startswith("lancert: no JDK found: java is not on PATH; install a JDK "
                                    "(Debian/Ubuntu: apt install default-jdk-headless")
    assert result.stderr.count("\n") == 1


@pytest.mark.slow
def test_options_of_another_store_are_refused(work: Path, tmp_path: Path) -> None:
    result = lancert("trust", "list", "--store", "nss", "--keystore", str(tmp_path / "ks"), check=False)
    assert result.returncode == 1
    assert result.stderr == "lancert: --keystore/--storepass-file applies to --store java only\n"
