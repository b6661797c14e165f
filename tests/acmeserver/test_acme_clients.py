"""Unmodified ACME clients from Debian obtain, renew and revoke against lancert with an EAB pair:
certbot 2.1, lego 4.9, dehydrated 0.7 and uacme 1.7 (all four support EAB). Each client has its own
temporary directories and trusts lancert's root the way its users would make it: certbot through
REQUESTS_CA_BUNDLE, lego through LEGO_CA_CERTIFICATES, dehydrated through CURL_CA_BUNDLE (it runs the
curl tool), uacme (libcurl-gnutls, which reads only the system bundle and has no option for another)
through the system bundle's path replaced inside its private mount namespace.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from acme_harness import ZONE, AcmeService, assert_lint_clean
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from capabilities import require
from lancert_cli import lancert

pytestmark = pytest.mark.slow  # starts a server or subprocess (tests/conftest.py)


@pytest.fixture
def shop(acme_service: AcmeService) -> tuple[dict, str]:
    eab = acme_service.eab(acme_service.database())
    return eab, acme_service.label_of(eab)


def needs(program: str) -> None:
    require(shutil.which(program) is not None,
            f"{program} is not installed (Debian package {program}, see .ci/run)")


def test_certbot_obtains_renews_and_revokes(
    acme_service: AcmeService, shop: tuple[dict, str], tmp_path: Path
) -> None:
    needs("certbot")
    eab, label = shop
    dirs = ["--config-dir", str(tmp_path / "config"), "--work-dir", str(tmp_path / "work"),
            "--logs-dir", str(tmp_path / "logs")]
    env = {"REQUESTS_CA_BUNDLE": str(acme_service.root_pem)}
    server = ["--server", acme_service.directory_url, "--non-interactive"]
    names = [f"*.{label}.{ZONE}", f"192-168-1-25.{label}.{ZONE}"]
    # --manual with a failing hook: the authorizations are valid at creation, so no hook may run.
    acme_service.run_client(
        ["certbot", "certonly", *server, *dirs, "--agree-tos", "--no-eff-email", "-m", "it@example.org",
         "--eab-kid", eab["kid"], f"--eab-hmac-key={eab['hmac_key']}", "--manual",
         "--manual-auth-hook", "/bin/false", "--preferred-challenges", "dns", "--cert-name", "shop",
         *(arg for n in names for arg in ("-d", n))], env=env)
    live = tmp_path / "config" / "live" / "shop"
    first = (live / "fullchain.pem").read_text()
    assert_lint_clean(first, acme_service.root_pem, names)

    acme_service.run_client(["certbot", "renew", *dirs, "--non-interactive", "--force-renewal",
                             "--no-random-sleep-on-renew"], env=env)
    renewed = (live / "fullchain.pem").read_text()
    assert renewed != first
    assert_lint_clean(renewed, acme_service.root_pem, names)

    acme_service.run_client(["certbot", "revoke", *server, *dirs, "--cert-name", "shop",
                             "--reason", "superseded", "--no-delete-after-revoke"], env=env)
    assert acme_service.revoked(renewed) and not acme_service.revoked(first)


def test_certbot_without_eab_is_told_the_ca_requires_external_account_binding(
    acme_service: AcmeService, tmp_path: Path
) -> None:
    needs("certbot")
    result = acme_service.run_client(
        ["certbot", "register", "--server", acme_service.directory_url, "--non-interactive", "--agree-tos",
         "-m", "it@example.org", "--config-dir", str(tmp_path / "c"), "--work-dir", str(tmp_path / "w"),
         "--logs-dir", str(tmp_path / "l")],
        env={"REQUESTS_CA_BUNDLE": str(acme_service.root_pem)}, check=False)
    assert result.returncode != 0
    assert "requires external account binding" in result.stdout + result.stderr


def test_lego_obtains_renews_and_revokes(
    acme_service: AcmeService, shop: tuple[dict, str], tmp_path: Path
) -> None:
    needs("lego")
    eab, label = shop
    name = f"shop.{label}.{ZONE}"
    base = ["lego", "--accept-tos", "--email", "it@example.org", "--server", acme_service.directory_url,
            "--eab", "--kid", eab["kid"], "--hmac", eab["hmac_key"], "--path", str(tmp_path),
            "--http", "--http.port", "127.0.0.1:0", "-d", name]
    env = {"LEGO_CA_CERTIFICATES": str(acme_service.root_pem)}
    acme_service.run_client([*base, "run"], env=env)
    crt = tmp_path / "certificates" / f"{name}.crt"
    first = crt.read_text()
    assert_lint_clean(first, acme_service.root_pem, [name])
    # --days 90: renew now (the certificate lives 90 days)
    acme_service.run_client([*base, "renew", "--days", "90", "--no-random-sleep"], env=env)
    renewed = crt.read_text()
    assert renewed != first
    assert_lint_clean(renewed, acme_service.root_pem, [name])
    acme_service.run_client([*base, "revoke"], env=env)
    assert acme_service.revoked(renewed)


def test_dehydrated_obtains_renews_and_revokes(
    acme_service: AcmeService, shop: tuple[dict, str], tmp_path: Path
) -> None:
    needs("dehydrated")
    eab, label = shop
    name = f"dh.{label}.{ZONE}"
    config = tmp_path / "config"
    config.write_text(
        f'CA="{acme_service.directory_url}"\nCHALLENGETYPE="dns-01"\nHOOK=/bin/true\n'
        f'BASEDIR="{tmp_path}"\nEAB_KID="{eab["kid"]}"\nEAB_HMAC_KEY="{eab["hmac_key"]}"\n'
        'CONTACT_EMAIL="it@example.org"\nKEY_ALGO=secp384r1\n')
    env = {"CURL_CA_BUNDLE": str(acme_service.root_pem)}
    acme_service.run_client(["dehydrated", "--register", "--accept-terms", "-f", str(config)], env=env)
    acme_service.run_client(["dehydrated", "-c", "-d", name, "-f", str(config)], env=env)
    first = (tmp_path / "certs" / name / "fullchain.pem").read_text()
    assert_lint_clean(first, acme_service.root_pem, [name])
    acme_service.run_client(["dehydrated", "-c", "--force", "-d", name, "-f", str(config)], env=env)
    renewed = (tmp_path / "certs" / name / "fullchain.pem").read_text()
    assert renewed != first
    cert = tmp_path / "certs" / name / "cert.pem"
    acme_service.run_client(["dehydrated", "-r", str(cert), "-f", str(config)], env=env)
    assert acme_service.revoked(renewed)


def test_uacme_obtains_renews_and_revokes(
    acme_service: AcmeService, shop: tuple[dict, str], tmp_path: Path
) -> None:
    needs("uacme")
    eab, label = shop
    name = f"ua.{label}.{ZONE}"
    binds = {acme_service.root_pem: "/etc/ssl/certs/ca-certificates.crt"}
    uacme = ["uacme", "-a", acme_service.directory_url, "-c", str(tmp_path), "-y"]
    acme_service.run_client([*uacme, "-e", f"{eab['kid']}:{eab['hmac_key']}", "new", "it@example.org"],
                            binds=binds)
    # -h /bin/false: no challenge hook may be needed (authorizations are valid at creation).
    acme_service.run_client([*uacme, "-t", "EC", "-h", "/bin/false", "issue", name], binds=binds)
    cert = tmp_path / name / "cert.pem"
    first = cert.read_text()
    assert_lint_clean(first, acme_service.root_pem, [name])
    acme_service.run_client([*uacme, "-t", "EC", "-h", "/bin/false", "-f", "issue", name], binds=binds)
    renewed = cert.read_text()
    assert renewed != first
    acme_service.run_client([*uacme, "revoke", str(cert)], binds=binds)
    assert acme_service.revoked(renewed)


def test_certbot_gets_a_certificate_for_a_csr_naming_its_host_in_the_common_name_only(
    acme_service: AcmeService, shop: tuple[dict, str], tmp_path: Path
) -> None:
    """``certbot certonly --csr``: the CSR as acme-tiny documents it (``-subj /CN=name``, no SAN), built with
    cryptography; RFC 8555 7.4 lets the identifier be in the CN alone, and the certificate names it in
    its SAN."""
    needs("certbot")
    eab, label = shop
    name = f"cn.{label}.{ZONE}"
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
           .sign(key, hashes.SHA256()))
    (tmp_path / "cn.csr").write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    dirs = ["--config-dir", str(tmp_path / "config"), "--work-dir", str(tmp_path / "work"),
            "--logs-dir", str(tmp_path / "logs")]
    acme_service.run_client(
        ["certbot", "certonly", "--server", acme_service.directory_url, "--non-interactive", *dirs,
         "--agree-tos", "--no-eff-email", "-m", "it@example.org", "--eab-kid", eab["kid"],
         f"--eab-hmac-key={eab['hmac_key']}", "--manual", "--manual-auth-hook", "/bin/false",
         "--preferred-challenges", "dns", "--csr", str(tmp_path / "cn.csr"),
         "--cert-path", str(tmp_path / "cert.pem"), "--fullchain-path", str(tmp_path / "fullchain.pem"),
         "--chain-path", str(tmp_path / "chain.pem")],
        env={"REQUESTS_CA_BUNDLE": str(acme_service.root_pem)})
    assert_lint_clean((tmp_path / "fullchain.pem").read_text(), acme_service.root_pem, [name])


def test_uacme_without_eab_is_refused_then_registers_once_its_key_is_bound(
    acme_service: AcmeService, tmp_path: Path
) -> None:
    """A client without EAB (uacme run without -e, as acme-tiny or acmetool always are) is told the CA
    needs one; ``lancert service acme-eab --bind-key`` on the account key it made binds it to a database
    in one step, and the same client then issues with no EAB."""
    needs("uacme")
    uuid = acme_service.database()
    label = acme_service.label_of(acme_service.eab(uuid))
    binds = {acme_service.root_pem: "/etc/ssl/certs/ca-certificates.crt"}
    uacme = ["uacme", "-a", acme_service.directory_url, "-c", str(tmp_path), "-y"]
    refused = acme_service.run_client([*uacme, "new", "it@example.org"], binds=binds, check=False)
    assert refused.returncode != 0
    # uacme reads the directory's meta.externalAccountRequired and stops before it registers.
    assert "requires external credentials" in refused.stderr, refused.stderr
    account_key = tmp_path / "private" / "key.pem"
    assert account_key.is_file()  # uacme made its key before it was refused
    lancert("service", "acme-eab", "--uuid", uuid, "--bind-key", str(account_key),
            "--data-dir", str(acme_service.data_dir))
    acme_service.run_client([*uacme, "new", "it@example.org"], binds=binds, check=False)
    name = f"bound.{label}.{ZONE}"
    acme_service.run_client([*uacme, "-t", "EC", "-h", "/bin/false", "issue", name], binds=binds)
    assert_lint_clean((tmp_path / name / "cert.pem").read_text(), acme_service.root_pem, [name])
