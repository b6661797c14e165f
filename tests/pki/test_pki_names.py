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
