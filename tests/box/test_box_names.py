"""The box's name for its address, and where the DNS diagnosis sends its queries."""

from __future__ import annotations

import pytest

from lancert.box.diagnose import parse_server
from lancert.box.names import https_url
from lancert.dns.names import dashed_address, device_hostname


@pytest.mark.parametrize(("ip", "label"), [
    ("192.168.1.25", "192-168-1-25"),
    ("127.0.0.1", "127-0-0-1"),
    ("fd00::1", "fd00--1"),
    ("2001:db8:0:0:1:0:0:1", "2001-db8--1-0-0-1"),
])
def test_ip_label_writes_the_address_as_one_dns_label(ip: str, label: str) -> None:
    assert dashed_address(ip) == label


def test_hostname_and_url_of_a_box() -> None:
    name = device_hostname("192.168.1.25", "K7M2Q9XD4A1B", "iot.example.net")
    assert name == "192-168-1-25.k7m2q9xd4a1b.iot.example.net"
    assert https_url(name, 443) == f"https://{name}/"
    assert https_url(name, 8443) == f"https://{name}:8443/"


def test_ip_label_refuses_what_is_not_an_address() -> None:
    with pytest.raises(ValueError):
        dashed_address("192.168.1.256")


@pytest.mark.parametrize(("text", "address"), [
    ("127.0.0.1", ("127.0.0.1", 53)),
    ("127.0.0.1:5353", ("127.0.0.1", 5353)),
    ("[::1]:5353", ("::1", 5353)),
    ("::1", ("::1", 53)),
])
def test_parse_server(text: str, address: tuple[str, int]) -> None:
    assert parse_server(text) == address
