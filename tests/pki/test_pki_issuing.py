"""What the core signs: self-signed device certificates, CA hierarchy, TLS profiles, serials, lifetimes."""

from __future__ import annotations

import ipaddress
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pki_test_helpers import ZONE, extension, openssl, write_pem

from lancert.pki import (
    TLS_CLIENT,
    TLS_SERVER,
    CertificateAuthority,
    ChainError,
    InvalidName,
    PKIError,
    SubjectNames,
    build_certificate,
    generate_private_key,
    make_name,
    self_signed_certificate,
    utcnow,
    verify_client_chain,
    verify_server_chain,
)

PRINTER = SubjectNames.parse(dns=["printer.local"], ips=["192.168.1.25"])


def test_self_signed_device_certificate_fields(ec_key) -> None:
    cert = self_signed_certificate(ec_key, PRINTER, common_name="192.168.1.25", validity=timedelta(days=365))
    assert cert.subject == cert.issuer
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "192.168.1.25"
    san = extension(cert, x509.SubjectAlternativeName)
    assert not san.critical
    assert san.value.get_values_for_type(x509.DNSName) == ["printer.local"]
    assert san.value.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("192.168.1.25")]
    bc = extension(cert, x509.BasicConstraints)
    assert bc.critical and bc.value.ca is False
    ku = extension(cert, x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature
    assert not ku.value.key_encipherment and not ku.value.key_cert_sign
    assert list(extension(cert, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.SERVER_AUTH]
    ski = extension(cert, x509.SubjectKeyIdentifier).value
    assert extension(cert, x509.AuthorityKeyIdentifier).value.key_identifier == ski.digest
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == timedelta(days=365)
    assert cert.version is x509.Version.v3
    # It is its own trust anchor: the RFC 5280 verifier (and so `lancert check`) accepts it for its IP.
    assert verify_server_chain(cert, anchors=[cert], host="192.168.1.25") == [cert]
    assert verify_server_chain(cert, anchors=[cert], host="printer.local") == [cert]
    with pytest.raises(ChainError):
        verify_server_chain(cert, anchors=[cert], host="192.168.1.26")


def test_self_signed_rsa_certificate_adds_key_encipherment(rsa_key) -> None:
    cert = self_signed_certificate(rsa_key, PRINTER, validity=timedelta(days=30))
    ku = extension(cert, x509.KeyUsage).value
    assert ku.digital_signature and ku.key_encipherment


def test_serials_are_positive_random_and_over_64_bits(ec_key) -> None:
    serials = {
        self_signed_certificate(ec_key, PRINTER, validity=timedelta(days=1)).serial_number for _ in range(40)
    }
    assert len(serials) == 40
    assert all(s > 0 for s in serials)
    # 159 random bits: a few may have leading zero bits, but none fits in 64 bits by any chance.
    assert min(s.bit_length() for s in serials) > 64
    assert max(s.bit_length() for s in serials) <= 159  # DER encodes it in at most 20 octets


def test_long_first_name_is_not_truncated_into_the_common_name(ec_key) -> None:
    long_name = "a" * 63 + "." + "b" * 20 + ".example"
    cert = self_signed_certificate(ec_key, SubjectNames.parse(dns=[long_name]), validity=timedelta(days=1))
    assert len(cert.subject) == 0
    assert extension(cert, x509.SubjectAlternativeName).critical  # RFC 5280 4.2.1.6: empty subject


def test_certificate_without_subject_and_names_is_refused(intermediate_ca) -> None:
    with pytest.raises(InvalidName):
        intermediate_ca.issue(generate_private_key().public_key(), TLS_CLIENT, validity=timedelta(days=1))


def test_validity_over_the_profile_maximum_is_refused(ec_key) -> None:
    with pytest.raises(PKIError, match="exceeds"):
        self_signed_certificate(ec_key, PRINTER, validity=timedelta(days=3654))


def test_root_and_intermediate_ca_fields(root_ca, intermediate_ca) -> None:
    root, inter = root_ca.certificate, intermediate_ca.certificate
    assert root.subject == root.issuer and inter.issuer == root.subject
    for cert, pathlen in ((root, None), (inter, 0)):
        bc = extension(cert, x509.BasicConstraints)
        assert bc.critical and bc.value.ca is True and bc.value.path_length == pathlen
        ku = extension(cert, x509.KeyUsage).value
        assert ku.key_cert_sign and ku.crl_sign and not ku.key_encipherment
    nc = extension(root, x509.NameConstraints)
    assert nc.critical
    assert nc.value.permitted_subtrees == [x509.DNSName(ZONE)]
    assert {str(n.value) for n in nc.value.excluded_subtrees} == {"0.0.0.0/0", "::/0"}
    root_ski = extension(root, x509.SubjectKeyIdentifier).value.digest
    assert extension(inter, x509.AuthorityKeyIdentifier).value.key_identifier == root_ski
    assert inter.not_valid_after_utc <= root.not_valid_after_utc
    assert intermediate_ca.chain == (inter, root)


def test_leaf_lifetime_is_clamped_to_the_issuer(root_ca) -> None:
    short = root_ca.create_intermediate("Short", validity=timedelta(days=10))
    leaf = short.issue(
        generate_private_key().public_key(),
        TLS_SERVER,
        names=SubjectNames.parse(dns=[f"a.{ZONE}"]),
        validity=timedelta(days=398),
    )
    assert leaf.not_valid_after_utc == short.certificate.not_valid_after_utc


def test_tls_server_leaf_profile(intermediate_ca, rsa_key) -> None:
    names = SubjectNames.parse(dns=[f"*.box1.{ZONE}"])
    leaf = intermediate_ca.issue(rsa_key.public_key(), TLS_SERVER, names=names, validity=timedelta(days=90))
    assert extension(leaf, x509.BasicConstraints).value.ca is False
    ku = extension(leaf, x509.KeyUsage).value
    assert ku.digital_signature and ku.key_encipherment and not ku.key_cert_sign
    assert list(extension(leaf, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert extension(leaf, x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName) == [
        f"*.box1.{ZONE}"
    ]
    inter_ski = extension(intermediate_ca.certificate, x509.SubjectKeyIdentifier).value.digest
    assert extension(leaf, x509.AuthorityKeyIdentifier).value.key_identifier == inter_ski
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc == timedelta(days=90)
    assert leaf.not_valid_before_utc <= utcnow()


def test_tls_server_leaf_without_names_is_refused(intermediate_ca) -> None:
    with pytest.raises(InvalidName, match="tls-server"):
        intermediate_ca.issue(
            generate_private_key().public_key(), TLS_SERVER, common_name="x", validity=timedelta(days=1)
        )


def test_tls_client_leaf_profile_verifies_as_client_and_not_as_server(root_ca, intermediate_ca) -> None:
    leaf = intermediate_ca.issue(
        generate_private_key().public_key(),
        TLS_CLIENT,
        common_name="pos-1",
        names=SubjectNames.parse(dns=[f"pos-1.{ZONE}"]),
        validity=timedelta(days=365),
    )
    assert list(extension(leaf, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    ku = extension(leaf, x509.KeyUsage).value
    assert ku.digital_signature and not ku.key_encipherment
    chain = verify_client_chain(
        leaf, anchors=[root_ca.certificate], intermediates=[intermediate_ca.certificate]
    )
    assert chain[0] == leaf and chain[-1] == root_ca.certificate
    with pytest.raises(ChainError):
        verify_server_chain(
            leaf,
            anchors=[root_ca.certificate],
            host=f"pos-1.{ZONE}",
            intermediates=[intermediate_ca.certificate],
        )


@pytest.mark.slow
def test_leaf_inside_the_zone_verifies_and_openssl_agrees(root_ca, intermediate_ca, tmp_path: Path) -> None:
    leaf = intermediate_ca.issue(
        generate_private_key().public_key(),
        TLS_SERVER,
        names=SubjectNames.parse(dns=[f"*.box1.{ZONE}"]),
        validity=timedelta(days=90),
    )
    path = verify_server_chain(
        leaf,
        anchors=[root_ca.certificate],
        host=f"192-168-1-25.box1.{ZONE}",
        intermediates=[intermediate_ca.certificate],
    )
    assert path == [leaf, intermediate_ca.certificate, root_ca.certificate]
    result = openssl(
        "verify",
        "-CAfile",
        str(write_pem(tmp_path / "root.pem", root_ca.certificate)),
        "-untrusted",
        str(write_pem(tmp_path / "inter.pem", intermediate_ca.certificate)),
        "-purpose",
        "sslserver",
        str(write_pem(tmp_path / "leaf.pem", leaf)),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith(b": OK")


@pytest.mark.parametrize(
    "names",
    [
        SubjectNames.parse(dns=["shop.example.com"]),
        SubjectNames.parse(dns=[f"a.{ZONE}"], ips=["192.168.1.25"]),
    ],
    ids=["dns-outside-zone", "ip-address"],
)
@pytest.mark.slow
def test_leaf_outside_the_zone_fails_and_openssl_agrees(
    root_ca, intermediate_ca, tmp_path: Path, names
) -> None:
    # The core signs what it is asked; the root's name constraints are what make it harmless to trust.
    leaf = intermediate_ca.issue(
        generate_private_key().public_key(), TLS_SERVER, names=names, validity=timedelta(days=90)
    )
    with pytest.raises(ChainError, match=r"name constraint|excluded"):
        verify_server_chain(
            leaf,
            anchors=[root_ca.certificate],
            host=names.as_strings()[0],
            intermediates=[intermediate_ca.certificate],
        )
    result = openssl(
        "verify",
        "-CAfile",
        str(write_pem(tmp_path / "root.pem", root_ca.certificate)),
        "-untrusted",
        str(write_pem(tmp_path / "inter.pem", intermediate_ca.certificate)),
        str(write_pem(tmp_path / "leaf.pem", leaf)),
    )
    assert result.returncode != 0
    # "permitted subtree violation" for the DNS name, "excluded subtree violation" for the IP address
    assert b"subtree violation" in result.stderr, result.stderr


def test_expired_leaf_fails_verification_at_a_later_time(root_ca, intermediate_ca) -> None:
    leaf = intermediate_ca.issue(
        generate_private_key().public_key(),
        TLS_SERVER,
        names=SubjectNames.parse(dns=[f"a.{ZONE}"]),
        validity=timedelta(days=1),
    )
    with pytest.raises(ChainError, match="not valid at validation time"):
        verify_server_chain(
            leaf,
            anchors=[root_ca.certificate],
            host=f"a.{ZONE}",
            intermediates=[intermediate_ca.certificate],
            at=utcnow() + timedelta(days=2),
        )


def test_verify_refuses_no_anchors_and_bad_host(intermediate_ca, root_ca) -> None:
    with pytest.raises(ChainError, match="no trust anchors"):
        verify_server_chain(root_ca.certificate, anchors=[], host="a.example")
    with pytest.raises(ChainError, match="no trust anchors"):
        verify_client_chain(root_ca.certificate, anchors=[])
    with pytest.raises(ChainError, match="neither"):
        verify_server_chain(root_ca.certificate, anchors=[root_ca.certificate], host="a b")


def test_leaf_aki_copies_a_foreign_issuers_ski_rather_than_recomputing_it(rsa_key) -> None:
    # A CA made by another tool, with an RFC 7093-style SKI (truncated SHA-256) that a SHA-1 recomputation
    # would not reproduce: the leaf's AKI must equal the issuer's SKI, or chain building fails.
    ca_key = generate_private_key()
    ski = x509.SubjectKeyIdentifier(b"\x42" * 20)
    name = make_name("Foreign Root")
    foreign = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(utcnow() - timedelta(days=1))
        .not_valid_after(utcnow() + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    leaf = CertificateAuthority(foreign, ca_key).issue(
        rsa_key.public_key(), TLS_SERVER, names=PRINTER, validity=timedelta(days=398)
    )
    assert extension(leaf, x509.AuthorityKeyIdentifier).value.key_identifier == b"\x42" * 20
    assert leaf.not_valid_after_utc <= foreign.not_valid_after_utc  # clamped to the issuer
    below = CertificateAuthority(foreign, ca_key).create_intermediate("Below", validity=timedelta(days=10))
    assert extension(below.certificate, x509.AuthorityKeyIdentifier).value.key_identifier == b"\x42" * 20


def test_explicit_common_name_over_64_characters_is_refused(ec_key) -> None:
    with pytest.raises(InvalidName, match="longer than 64"):
        self_signed_certificate(ec_key, PRINTER, common_name="c" * 65, validity=timedelta(days=1))


def test_profiles_reuse_their_extension_values_across_certificates(ec_key, rsa_key) -> None:
    # Built once per profile (bench/pki_issue.py): equal values, and the RSA/EC key usages stay distinct.
    assert TLS_SERVER.key_usage(ec_key.public_key()) is TLS_SERVER.key_usage(
        generate_private_key().public_key()
    )
    assert TLS_SERVER.key_usage(rsa_key.public_key()).key_encipherment
    assert not TLS_SERVER.key_usage(ec_key.public_key()).key_encipherment
    assert not TLS_CLIENT.key_usage(ec_key.public_key()).key_cert_sign


def test_issue_for_csr_uses_the_csr_key_and_the_policy_s_names_only(intermediate_ca) -> None:
    from lancert.pki import create_csr, load_csr
    from lancert.pki.keys import public_key_matches

    key = generate_private_key()
    asked = create_csr(key, SubjectNames.parse(dns=["asked.example", f"box.{ZONE}"]))
    csr = load_csr(asked.public_bytes(serialization.Encoding.PEM))
    allowed = SubjectNames.parse(dns=[f"*.box.{ZONE}"])
    leaf = intermediate_ca.issue_for_csr(csr, TLS_SERVER, names=allowed, common_name="the box",
                                         validity=timedelta(days=30))
    assert public_key_matches(key, leaf.public_key())
    san = extension(leaf, x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [f"*.box.{ZONE}"]
    assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "the box"
    assert leaf.issuer == intermediate_ca.certificate.subject
    lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    assert lifetime == timedelta(days=30)


def test_a_refused_chain_says_why(root_ca, intermediate_ca) -> None:
    server = intermediate_ca.issue(generate_private_key().public_key(), TLS_SERVER,
                                   names=SubjectNames.parse(dns=[f"a.{ZONE}"]), validity=timedelta(days=30))
    for call in (
        lambda: verify_client_chain(server, anchors=[root_ca.certificate],
                                    intermediates=[intermediate_ca.certificate]),
        lambda: verify_server_chain(server, anchors=[root_ca.certificate], host=f"b.{ZONE}",
                                    intermediates=[intermediate_ca.certificate]),
    ):
        with pytest.raises(ChainError) as refused:
            call()
        assert str(refused.value) not in ("", "None")  # cryptography's reason, passed on


def test_server_names_are_matched_as_browsers_do(root_ca, intermediate_ca) -> None:
    server = intermediate_ca.issue(
        generate_private_key().public_key(), TLS_SERVER,
        names=SubjectNames.parse(dns=[f"a.{ZONE}"]), validity=timedelta(days=30),
    )
    path = verify_server_chain(server, anchors=[root_ca.certificate], host=f"A.{ZONE.upper()}.",
                               intermediates=[intermediate_ca.certificate])
    assert path == [server, intermediate_ca.certificate, root_ca.certificate]
    with pytest.raises(ChainError) as refused:
        verify_server_chain(root_ca.certificate, anchors=[root_ca.certificate], host="a b")
    assert str(refused.value) == "'a b' is neither an IP address nor a DNS name"
    with pytest.raises(ChainError) as none:
        verify_server_chain(root_ca.certificate, anchors=[], host="a.example")
    assert str(none.value) == "no trust anchors given"


@pytest.mark.parametrize(
    ("profile", "days"),
    [("TLS_SERVER", 398), ("TLS_CLIENT", 3650), ("SELF_SIGNED_DEVICE", 3653), ("ROOT_CA", 7305),
     ("INTERMEDIATE_CA", 3653)],
)
def test_each_profile_s_longest_lifetime(profile: str, days: int) -> None:
    """398 days: the CA/Browser Forum's limit for server certificates; the others are lancert's choices
    (README): ten years for a POS's client certificate and a device's own, twenty for a root."""
    from lancert.pki import profiles

    chosen = getattr(profiles, profile)
    assert chosen.max_validity == timedelta(days=days)
    key = generate_private_key()
    name = make_name("x", None)
    names = SubjectNames.parse(dns=["x.example"])
    cert = build_certificate(subject=name, public_key=key.public_key(), issuer=name, issuer_key=key,
                             profile=chosen, names=names, validity=timedelta(days=days))
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == timedelta(days=days)
    with pytest.raises(PKIError) as refused:
        build_certificate(subject=name, public_key=key.public_key(), issuer=name, issuer_key=key,
                          profile=chosen, names=names, validity=timedelta(days=days + 1))
    assert str(refused.value) == (
        f"validity of {days + 1} days exceeds the {chosen.name} maximum of {days} days"
    )


def test_key_usages_exactly(ec_key, rsa_key, root_ca) -> None:
    def usages(cert: x509.Certificate) -> x509.KeyUsage:
        return extension(cert, x509.KeyUsage).value

    def ku(*, key_encipherment: bool = False, ca: bool = False) -> x509.KeyUsage:
        return x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=key_encipherment,
            data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
            encipher_only=False, decipher_only=False,
        )

    assert usages(self_signed_certificate(ec_key, PRINTER, validity=timedelta(days=1))) == ku()
    rsa_device = self_signed_certificate(rsa_key, PRINTER, validity=timedelta(days=1))
    assert usages(rsa_device) == ku(key_encipherment=True)
    assert usages(root_ca.certificate) == ku(ca=True)
    rsa_root = CertificateAuthority.create_root("RSA Root", key=rsa_key)
    assert usages(rsa_root.certificate) == ku(ca=True)  # no keyEncipherment on a CA, RSA or not
    assert extension(rsa_root.certificate, x509.BasicConstraints).value.path_length is None


def test_certificates_are_backdated_one_minute_for_slow_device_clocks(ec_key) -> None:
    before = utcnow().replace(microsecond=0)
    cert = self_signed_certificate(ec_key, PRINTER, validity=timedelta(days=1))
    after = utcnow()
    assert before - timedelta(minutes=1) <= cert.not_valid_before_utc <= after - timedelta(minutes=1)


def test_a_p384_issuer_signs_with_sha384_and_p256_with_sha256() -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    p384 = ec.generate_private_key(ec.SECP384R1())
    cert = self_signed_certificate(p384, PRINTER, validity=timedelta(days=1))
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA384)
    ca = CertificateAuthority.create_root("P-384 Root", key=p384)
    leaf = ca.issue(generate_private_key().public_key(), TLS_SERVER, names=PRINTER,
                    validity=timedelta(days=1))
    assert isinstance(leaf.signature_hash_algorithm, hashes.SHA384)
    assert isinstance(self_signed_certificate(generate_private_key(), PRINTER, validity=timedelta(days=1))
                      .signature_hash_algorithm, hashes.SHA256)


def test_subjects_names_and_constraints(ec_key) -> None:
    from lancert.pki import zone_name_constraints
    from lancert.pki.issuing import default_common_name

    assert make_name("box", "Shop").rfc4514_string() == "CN=box,O=Shop"
    assert make_name(None).rfc4514_string() == ""
    assert make_name("x" * 64).rfc4514_string() == "CN=" + "x" * 64
    with pytest.raises(InvalidName) as long_cn:
        make_name("y" * 65)
    assert str(long_cn.value) == f"common name longer than 64 characters: {'y' * 20!r}…"
    long_dns = "a" * 60 + ".example"
    assert default_common_name(SubjectNames.parse(dns=[long_dns, "short.example"])) == "short.example"
    at_limit = "x" * 56 + ".example"  # 64 characters
    assert default_common_name(SubjectNames.parse(dns=[at_limit])) == at_limit
    assert default_common_name(SubjectNames.parse(dns=["x" + at_limit])) is None
    assert default_common_name(SubjectNames.parse(dns=[long_dns], ips=["10.0.0.1"])) == "10.0.0.1"
    assert default_common_name(SubjectNames()) is None
    assert zone_name_constraints("IoT.Example.NET.").permitted_subtrees == [x509.DNSName("iot.example.net")]
    with pytest.raises(PKIError) as on_leaf:
        build_certificate(
            subject=make_name("x"), public_key=ec_key.public_key(), issuer=make_name("x"),
            issuer_key=ec_key,
            profile=TLS_SERVER, names=PRINTER, validity=timedelta(days=1),
            name_constraints=zone_name_constraints("iot.example.net"),
        )
    assert str(on_leaf.value) == "name constraints belong on CA certificates only"


def test_the_refusals_of_build_certificate_are_exact(ec_key, intermediate_ca) -> None:
    with pytest.raises(InvalidName) as no_names:
        intermediate_ca.issue(ec_key.public_key(), TLS_SERVER, common_name="x", validity=timedelta(days=1))
    assert str(no_names.value) == "a tls-server certificate needs at least one DNS name or IP address"
    with pytest.raises(InvalidName) as nothing:
        intermediate_ca.issue(ec_key.public_key(), TLS_CLIENT, validity=timedelta(days=1))
    assert str(nothing.value) == "a certificate needs a subject name or at least one DNS name or IP address"
    for validity in (timedelta(0), timedelta(seconds=-1)):
        with pytest.raises(PKIError) as not_positive:
            self_signed_certificate(ec_key, PRINTER, validity=validity)
        assert str(not_positive.value) == "validity must be positive"
    tiny = self_signed_certificate(ec_key, PRINTER, validity=timedelta(seconds=1))
    assert tiny.not_valid_after_utc - tiny.not_valid_before_utc == timedelta(seconds=1)


def test_a_ca_knows_its_chain_and_root(root_ca, intermediate_ca) -> None:
    assert root_ca.chain == (root_ca.certificate,) and root_ca.root == root_ca.certificate
    assert intermediate_ca.parents == (root_ca.certificate,)
    assert intermediate_ca.root == root_ca.certificate
    assert root_ca.certificate.subject.rfc4514_string() == "CN=Test Root,O=lancert"
    long_lived = root_ca.create_intermediate("Long", validity=timedelta(days=36500))
    assert long_lived.certificate.not_valid_after_utc <= root_ca.certificate.not_valid_after_utc
    default = CertificateAuthority.create_root("Default Root")
    lifetime = default.certificate.not_valid_after_utc - default.certificate.not_valid_before_utc
    assert lifetime == timedelta(days=3650)
    inter = default.create_intermediate("Default Intermediate")
    lifetime = inter.certificate.not_valid_after_utc - inter.certificate.not_valid_before_utc
    assert timedelta(days=1824) < lifetime <= timedelta(days=1825)


def test_an_intermediate_carries_its_name_constraints(root_ca) -> None:
    from lancert.pki import zone_name_constraints

    constrained = root_ca.create_intermediate("Zone", name_constraints=zone_name_constraints("a.example"))
    nc = extension(constrained.certificate, x509.NameConstraints)
    assert nc.critical and nc.value.permitted_subtrees == [x509.DNSName("a.example")]


def test_issue_honours_an_explicit_start(intermediate_ca) -> None:
    start = utcnow() + timedelta(days=2)
    leaf = intermediate_ca.issue(generate_private_key().public_key(), TLS_SERVER, names=PRINTER,
                                 validity=timedelta(days=10), not_before=start.replace(microsecond=0))
    assert leaf.not_valid_before_utc == start.replace(microsecond=0)
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc == timedelta(days=10)


def test_an_ipv6_host_in_brackets_and_a_fully_qualified_name_verify(ec_key) -> None:
    names = SubjectNames.parse(dns=["printer.local"], ips=["2001:db8::25"])
    cert = self_signed_certificate(ec_key, names, validity=timedelta(days=1))
    assert verify_server_chain(cert, anchors=[cert], host="[2001:db8::25]") == [cert]
    assert verify_server_chain(cert, anchors=[cert], host="Printer.Local.") == [cert]
