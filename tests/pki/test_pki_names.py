"""subjectAltName input: typed names or a one-line InvalidName, never another exception."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lancert.pki import InvalidName, SubjectNames, normalize_dns_name, parse_ip


@pytest.mark.parametrize(
    ("given_name", "expected"),
    [
        ("Printer.Local.", "printer.local"),
        ("*.k7m2q9xd4a1b.iot.example.net", "*.k7m2q9xd4a1b.iot.example.net"),
        ("bücher.example", "xn--bcher-kva.example"),
        ("192-168-1-25.box.iot.example.net", "192-168-1-25.box.iot.example.net"),
    ],
)
def test_dns_names_are_normalized(given_name: str, expected: str) -> None:
    assert normalize_dns_name(given_name) == expected


@pytest.mark.parametrize(
    "bad",
    [
        "",
        ".",
        "*",
        "*.com",
        "a..b",
        "-a.example",
        "a-.example",
        "a b.example",
        "foo.*.example",
        "a_b.example",
        "x" * 64 + ".example",
        ("a." * 127) + "example",
        "192.168.1.25",
        "1.2",
    ],
)
def test_invalid_dns_names_are_refused(bad: str) -> None:
    with pytest.raises(InvalidName):
        normalize_dns_name(bad)


@pytest.mark.parametrize("bad", ["192.168.1.256", "printer", "", "1.2.3", "fe80::1%eth0", "::ffff::1"])
def test_invalid_ip_addresses_are_refused_quoting_the_input(bad: str) -> None:
    with pytest.raises(InvalidName, match=r"IP|zone"):
        parse_ip(bad)


def test_ipv6_in_brackets_is_accepted() -> None:
    assert parse_ip("[2001:db8::1]") == ipaddress.ip_address("2001:db8::1")


def test_parse_deduplicates_and_keeps_order() -> None:
    names = SubjectNames.parse(
        dns=["B.example", "a.example", "b.example."], ips=["10.0.0.2", "10.0.0.1", "10.0.0.2"]
    )
    assert names.dns == ("b.example", "a.example")
    assert [str(ip) for ip in names.ips] == ["10.0.0.2", "10.0.0.1"]
    assert names.as_strings() == ["b.example", "a.example", "10.0.0.2", "10.0.0.1"]
    assert bool(names) and not bool(SubjectNames())


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_normalize_dns_name_never_crashes_on_arbitrary_text(text: str) -> None:
    try:
        name = normalize_dns_name(text)
    except InvalidName as exc:
        assert "\n" not in str(exc)
        return
    assert name.isascii() and len(name) <= 253 and name == name.lower()


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(max_size=80), max_size=4), st.lists(st.text(max_size=50), max_size=4))
def test_subject_names_parse_never_crashes_on_arbitrary_text(dns: list[str], ips: list[str]) -> None:
    try:
        SubjectNames.parse(dns=dns, ips=ips)
    except InvalidName:
        pass


@settings(max_examples=100, deadline=None)
@given(st.ip_addresses())
def test_every_ip_address_round_trips_through_its_text(
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> None:
    assert SubjectNames.parse(ips=[str(ip)]).ips == (ip,)


def test_the_refusals_quote_the_input_exactly() -> None:
    cases = [
        (lambda: parse_ip("192.168.1.256"), "invalid IP address: '192.168.1.256'"),
        (lambda: parse_ip("fe80::1%eth0"), "IPv6 zone index not allowed in a certificate: 'fe80::1%eth0'"),
        (lambda: normalize_dns_name("*.com"),
         "wildcard must cover a subdomain of a registered name: '*.com'"),
        (lambda: normalize_dns_name("a b.example"), "invalid DNS name: 'a b.example'"),
        (lambda: normalize_dns_name("10.0.0.1"), "not a DNS name (an IP address goes in --ip): '10.0.0.1'"),
        (lambda: normalize_dns_name("\udcff.example"), "invalid DNS name: '\\udcff.example'"),
    ]
    for call, message in cases:
        with pytest.raises(InvalidName) as refused:
            call()
        assert str(refused.value) == message


def test_the_length_limits_are_those_of_dns() -> None:
    assert normalize_dns_name("x" * 63 + ".example") == "x" * 63 + ".example"
    longest = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])  # 253 characters
    assert len(longest) == 253 and normalize_dns_name(longest) == longest
    with pytest.raises(InvalidName):
        normalize_dns_name(longest + "d")
    assert normalize_dns_name("  *.Box.Example.  ") == "*.box.example"
    assert normalize_dns_name("a1.example") == "a1.example"  # a digit in a label, not all digits at the top


def test_parse_ip_strips_spaces_and_brackets() -> None:
    assert parse_ip(" 192.168.1.25 ") == ipaddress.ip_address("192.168.1.25")
    assert parse_ip("::1") == ipaddress.ip_address("::1")


def test_uris_are_absolute_ascii_without_spaces() -> None:
    from lancert.pki.names import validate_uri

    assert validate_uri("urn:lancert:pos:123") == "urn:lancert:pos:123"
    assert validate_uri("https://x.example/a?b=c") == "https://x.example/a?b=c"
    for bad in ["lancert:pos 123", "no-scheme", "1urn:x", "urn:", "urn:\u00e9", "urn:" + "x" * 252]:
        with pytest.raises(InvalidName) as refused:
            validate_uri(bad)
        assert str(refused.value) == f"invalid URI name: {bad!r}"
    assert validate_uri("urn:" + "x" * 251) == "urn:" + "x" * 251  # 255 characters


def test_subject_names_as_general_names_strings_and_truth() -> None:
    from cryptography import x509

    names = SubjectNames.parse(dns=["a.example"], ips=["10.0.0.1"], uris=["urn:lancert:pos:1"])
    assert names.general_names() == [
        x509.DNSName("a.example"), x509.IPAddress(ipaddress.ip_address("10.0.0.1")),
        x509.UniformResourceIdentifier("urn:lancert:pos:1"),
    ]
    assert names.as_strings() == ["a.example", "10.0.0.1", "urn:lancert:pos:1"]
    assert SubjectNames.from_extension(x509.SubjectAlternativeName(names.general_names())) == names
    assert bool(names) is True
    assert bool(SubjectNames()) is False
    assert bool(SubjectNames(ips=(ipaddress.ip_address("10.0.0.1"),))) is True
    assert bool(SubjectNames(uris=("urn:x:y",))) is True


def test_names_of_a_certificate_and_its_common_name() -> None:
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    from lancert.pki import generate_private_key
    from lancert.pki.names import certificate_names, common_name

    key = generate_private_key()
    now = datetime.now(UTC)
    bare = (
        x509.CertificateBuilder().subject_name(x509.Name([])).issuer_name(x509.Name([]))
        .public_key(key.public_key()).serial_number(1).not_valid_before(now)
        .not_valid_after(now + timedelta(days=1)).sign(key, hashes.SHA256())
    )
    assert certificate_names(bare) == SubjectNames()
    assert common_name(bare.subject) is None
    named = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "printer")])
    assert common_name(named) == "printer"


def test_only_trailing_dots_and_outer_spaces_or_brackets_are_dropped() -> None:
    assert normalize_dns_name("Printer.LOCALX.") == "printer.localx"
    with pytest.raises(InvalidName):
        parse_ip("X10.0.0.1")
    ip = ipaddress.ip_address("10.0.0.1")
    assert SubjectNames.parse(ips=[ip, "10.0.0.2"]).ips == (ip, ipaddress.ip_address("10.0.0.2"))
