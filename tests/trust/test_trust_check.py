"""``lancert check``: exit 0 only for a padlock, exit 2 naming every reason, exit 1 when nobody answers."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from trust_helpers import (
    DEVICE_IP,
    DEVICE_NAME,
    TLSServer,
    resolve_args,
    run_lancert,
    run_lancert_process,
    tls_server,
)

from lancert.check.verdict import TrustSource, evaluate
from lancert.pki import (
    TLS_CLIENT,
    TLS_SERVER,
    CertificateAuthority,
    Profile,
    SubjectNames,
    generate_private_key,
    pem,
    self_signed_certificate,
    utcnow,
)
from lancert.storage.files import write_certificates, write_private_key

NAMES = SubjectNames.parse(dns=[DEVICE_NAME], ips=[DEVICE_IP])


@pytest.fixture(scope="module")
def root() -> CertificateAuthority:
    return CertificateAuthority.create_root("Check Test Root")


def issue(
    ca: CertificateAuthority, *, profile: Profile = TLS_SERVER, names: SubjectNames = NAMES,
    days: int = 30, start_days: float | None = None, common_name: str | None = None,
) -> x509.Certificate:
    start = None if start_days is None else utcnow() + timedelta(days=start_days)
    return ca.issue(generate_private_key().public_key(), profile, names=names, common_name=common_name,
                    validity=timedelta(days=days), not_before=start)


def codes(chain: list[x509.Certificate], host: str, trust: TrustSource) -> list[str]:
    return [r.code for r in evaluate(chain, host, trust)]


def trusting(*anchors: x509.Certificate, leaves: tuple[x509.Certificate, ...] = ()) -> TrustSource:
    return TrustSource("test anchors", tuple(anchors), leaves)


def test_leaf_from_a_trusted_root_is_secure_for_its_ip_and_name(root: CertificateAuthority) -> None:
    leaf = issue(root)
    assert codes([leaf, root.certificate], DEVICE_IP, trusting(root.certificate)) == []
    assert codes([leaf], DEVICE_NAME.upper(), trusting(root.certificate)) == []


def test_leaf_under_an_intermediate_is_secure_when_the_server_sends_the_intermediate(
    root: CertificateAuthority,
) -> None:
    intermediate = root.create_intermediate("Check Test Intermediate")
    leaf = issue(intermediate)
    assert codes([leaf, intermediate.certificate], DEVICE_IP, trusting(root.certificate)) == []
    assert codes([leaf], DEVICE_IP, trusting(root.certificate)) == ["untrusted-issuer"]


def test_expired_leaf(root: CertificateAuthority) -> None:
    reasons = evaluate([issue(root, start_days=-10, days=1)], DEVICE_IP, trusting(root.certificate))
    assert [r.code for r in reasons] == ["expired"]
    assert "expired on" in reasons[0].message


def test_not_yet_valid_leaf(root: CertificateAuthority) -> None:
    assert codes([issue(root, start_days=5)], DEVICE_IP, trusting(root.certificate)) == ["not-yet-valid"]


def test_ip_and_name_mismatch_name_what_the_certificate_is_for(root: CertificateAuthority) -> None:
    leaf = issue(root)
    for host in ("192.168.1.26", "other.test"):
        reasons = evaluate([leaf], host, trusting(root.certificate))
        assert [r.code for r in reasons] == ["name-mismatch"]
        message = reasons[0].message
        assert DEVICE_NAME in message and DEVICE_IP in message and host in message


def test_an_ip_written_as_a_dns_name_does_not_match_the_ip(root: CertificateAuthority) -> None:
    leaf = issue(root, names=SubjectNames.parse(dns=["printer.test"]), common_name=DEVICE_IP)
    assert codes([leaf], DEVICE_IP, trusting(root.certificate)) == ["name-mismatch"]


def test_wildcard_covers_one_label_only(root: CertificateAuthority) -> None:
    leaf = issue(root, names=SubjectNames.parse(dns=["*.box.test"]))
    assert codes([leaf], "a.box.test", trusting(root.certificate)) == []
    assert codes([leaf], "a.b.box.test", trusting(root.certificate)) == ["name-mismatch"]
    assert codes([leaf], "box.test", trusting(root.certificate)) == ["name-mismatch"]


def test_client_certificate_served_as_a_server_has_the_wrong_extended_key_usage(
    root: CertificateAuthority,
) -> None:
    reasons = evaluate([issue(root, profile=TLS_CLIENT)], DEVICE_IP, trusting(root.certificate))
    assert [r.code for r in reasons] == ["wrong-extended-key-usage"]
    assert "clientAuth" in reasons[0].message


@dataclass(frozen=True)
class _KeyAgreementOnly(Profile):
    def key_usage(self, public_key: object) -> x509.KeyUsage:
        return x509.KeyUsage(False, False, False, False, True, False, False, False, False)


def test_key_usage_without_digital_signature_is_wrong(root: CertificateAuthority) -> None:
    profile = _KeyAgreementOnly("key-agreement-only", is_ca=False,
                                extended_key_usages=(ExtendedKeyUsageOID.SERVER_AUTH,), requires_names=True)
    assert codes([issue(root, profile=profile)], DEVICE_IP, trusting(root.certificate)) == ["wrong-key-usage"]


def test_certificate_without_subject_alt_name_matches_nothing(root: CertificateAuthority) -> None:
    profile = Profile("no-san-server", is_ca=False, extended_key_usages=(ExtendedKeyUsageOID.SERVER_AUTH,))
    leaf = issue(root, profile=profile, names=SubjectNames(), common_name=DEVICE_NAME)
    assert leaf.subject.rfc4514_string() == f"CN={DEVICE_NAME}"
    assert codes([leaf], DEVICE_NAME, trusting(root.certificate)) == ["no-subject-alt-name"]


def test_issuer_nobody_trusts(root: CertificateAuthority) -> None:
    other = CertificateAuthority.create_root("Somebody Else's Root")
    reasons = evaluate([issue(other), other.certificate], DEVICE_IP, trusting(root.certificate))
    assert [r.code for r in reasons] == ["untrusted-issuer"]
    assert "Somebody Else's Root" in reasons[0].message


def test_self_signed_device_certificate_untrusted_then_trusted_as_a_leaf() -> None:
    device = self_signed_certificate(generate_private_key(), NAMES, validity=timedelta(days=365))
    assert codes([device], DEVICE_IP, trusting()) == ["self-signed-untrusted"]
    assert codes([device], DEVICE_IP, trusting(leaves=(device,))) == []


def test_every_reason_is_listed_not_only_the_first(root: CertificateAuthority) -> None:
    other = CertificateAuthority.create_root("Untrusted Root")
    leaf = issue(other, profile=TLS_CLIENT, start_days=-10, days=1)
    assert sorted(codes([leaf], "other.test", trusting(root.certificate))) == [
        "expired", "name-mismatch", "untrusted-issuer", "wrong-extended-key-usage",
    ]


def test_ca_file_makes_cas_anchors_and_device_certificates_trusted_leaves(
    root: CertificateAuthority, tmp_path: Path
) -> None:
    device = self_signed_certificate(generate_private_key(), NAMES, validity=timedelta(days=365))
    (tmp_path / "both.pem").write_bytes(pem([root.certificate, device]))
    source = TrustSource.from_ca_file(tmp_path / "both.pem")
    assert source.anchors == (root.certificate,) and source.trusted_leaves == (device,)


# -- through the CLI, against real TLS servers on loopback --------------------------------------------------


@pytest.fixture(scope="module")
def bad_server(
    root: CertificateAuthority, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Path, TLSServer]]:
    """An expired certificate for other.test from the trusted root, and the root's file."""
    d = tmp_path_factory.mktemp("bad")
    key = generate_private_key()
    leaf = root.issue(key.public_key(), TLS_SERVER, names=SubjectNames.parse(dns=["other.test"]),
                      validity=timedelta(days=1), not_before=utcnow() - timedelta(days=3))
    write_certificates(d / "chain.pem", [leaf, root.certificate])
    write_private_key(d / "key.pem", key)
    (d / "root.pem").write_bytes(pem(root.certificate))
    with tls_server(d / "chain.pem", d / "key.pem") as server:
        yield d / "root.pem", server


@pytest.mark.slow
def test_cli_exit_2_with_json_reasons(bad_server: tuple[Path, TLSServer]) -> None:
    root_file, server = bad_server
    result = run_lancert("check", server.url(), *resolve_args(), "--ca", root_file, "--json")
    assert result.returncode == 2, result.stderr
    verdict = json.loads(result.stdout)
    assert verdict["secure"] is False and verdict["connected_to"] == "127.0.0.1"
    assert [r["code"] for r in verdict["reasons"]] == ["name-mismatch", "expired"]
    assert verdict["chain"][0]["names"] == ["other.test"]


@pytest.mark.slow
def test_cli_exit_0_for_the_device_certificate_given_as_ca(
    device_dir: Path, device_server: TLSServer
) -> None:
    result = run_lancert("check", device_server.url(DEVICE_NAME), *resolve_args(DEVICE_NAME),
                         "--ca", device_dir / "cert.pem")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "secure" in result.stdout and "NOT" not in result.stdout


@pytest.mark.slow
def test_cli_system_trust_does_not_trust_a_self_signed_device(device_server: TLSServer) -> None:
    result = run_lancert("check", device_server.url(), *resolve_args())
    assert result.returncode == 2
    assert "self-signed-untrusted" in result.stdout and "system trust" in result.stdout


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_cli_unreachable_is_exit_1_with_one_line() -> None:
    result = run_lancert_process("check", f"https://{DEVICE_IP}:{_dead_port()}/", *resolve_args())
    assert result.returncode == 1
    assert result.stdout == "" and result.stderr.count("\n") == 1 and "connection refused" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--resolve", "printer.test"], "expected HOST:IP"),
        (["--resolve", "other.test:127.0.0.1"], "not the URL's host"),
        (["--ca", "/nonexistent.pem"], "no such file"),
        (["--ca", "x.pem", "--nssdb", "db"], "give one of --ca, --nssdb and --keystore"),
        (["--nssdb", "db", "--keystore", "ks"], "give one of --ca, --nssdb and --keystore"),
        (["--storepass-file", "pw"], "--storepass-file goes with --keystore"),
        (["--nssdb", "/nonexistent-db"], "not an NSS database"),
    ],
)
def test_cli_bad_input_is_exit_1_with_one_line(args: list[str], message: str) -> None:
    result = run_lancert("check", "https://printer.test:1/", *args)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and message in result.stderr


def test_cli_non_https_url_is_refused() -> None:
    result = run_lancert("check", "http://127.0.0.1:1/")
    assert result.returncode == 1 and "only https://" in result.stderr
