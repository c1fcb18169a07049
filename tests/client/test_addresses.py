"""Strict parsing of echo replies, and which addresses may be published."""

from __future__ import annotations

import ipaddress

import pytest
from nicupdate_client.addresses import AddressProblem, check_public, parse_reply


@pytest.mark.parametrize(
    ("reply", "family", "address"),
    [
        ("81.2.69.160\n", 4, "81.2.69.160"),
        ("  81.2.69.160  ", 4, "81.2.69.160"),
        ('{"ip": "81.2.69.160"}', 4, "81.2.69.160"),
        ("当前 IP\uff1a81.2.69.160  来自于\uff1a英国 伦敦\n", 4, "81.2.69.160"),
        (
            "<html><head><title>Current IP Check</title></head>"
            "<body>Current IP Address: 81.2.69.160</body></html>\r\n",
            4,
            "81.2.69.160",
        ),
        ("Your address is 81.2.69.160.", 4, "81.2.69.160"),
        ("IP:81.2.69.160", 4, "81.2.69.160"),
        ("81.2.69.160 81.2.69.160\n", 4, "81.2.69.160"),  # the same one twice
        ("2a02:1388::7\n", 6, "2a02:1388::7"),
        ("2A02:1388:0000:0000:0000:0000:0000:0007", 6, "2a02:1388::7"),
        ("当前 IP\uff1a2a02:1388::7 来自于\uff1a英国", 6, "2a02:1388::7"),
        ('{"ip":"2a02:1388::7","country":"GB"}', 6, "2a02:1388::7"),
    ],
)
def test_one_address_in_any_shape_of_reply(reply: str, family: int, address: str) -> None:
    assert parse_reply(reply, family) == address


@pytest.mark.parametrize(
    ("reply", "family", "problem"),
    [
        ("", 4, "no address in the reply"),
        ("<html><body>502 Bad Gateway</body></html>", 4, "no address in the reply"),
        ("81.2.69.1600", 4, "no address in the reply"),
        ("081.2.69.160", 4, "no address in the reply"),
        ("81.2.69.160, 81.2.69.161", 4, "2 addresses in the reply (81.2.69.160, 81.2.69.161)"),
        ("X-Forwarded-For: 81.2.69.160, 10.0.0.1", 4, "2 addresses in the reply"),
        ("81.2.69.160 2a02:1388::7", 4, "2 addresses in the reply"),
        ("81.2.69.160", 6, "81.2.69.160 is IPv4, not IPv6"),
        ("2a02:1388::7", 4, "2a02:1388::7 is IPv6, not IPv4"),
        ("81.2.69.160\n" + "x" * 5000, 4, "longer than 4 KiB"),
    ],
)
def test_anything_but_exactly_one_address_is_a_problem(
    reply: str, family: int, problem: str
) -> None:
    with pytest.raises(AddressProblem) as caught:
        parse_reply(reply, family)
    assert problem in str(caught.value)


@pytest.mark.parametrize("address", ["81.2.69.160", "8.8.8.8", "1.1.1.1"])
def test_public_ipv4_passes(address: str) -> None:
    check_public(address, 4, accept_private=False)


@pytest.mark.parametrize("address", ["2a02:1388::7", "2606:4700::1111", "2001:4860:4860::8888"])
def test_public_ipv6_passes(address: str) -> None:
    check_public(address, 6, accept_private=False)


@pytest.mark.parametrize(
    ("address", "family", "message"),
    [
        ("0.0.0.0", 4, "0.0.0.0 is the unspecified address, not a public one"),
        ("127.0.0.1", 4, "127.0.0.1 is a loopback address, not a public one"),
        ("224.0.0.1", 4, "224.0.0.1 is a multicast address, not a public one"),
        ("169.254.1.1", 4, "169.254.1.1 is a link-local address, not a public one"),
        ("255.255.255.255", 4, "255.255.255.255 is the broadcast address, not a public one"),
        ("::", 6, ":: is the unspecified address, not a public one"),
        ("::1", 6, "::1 is a loopback address, not a public one"),
        ("ff02::1", 6, "ff02::1 is a multicast address, not a public one"),
        ("fe80::1", 6, "fe80::1 is a link-local address, not a public one"),
        (
            "::ffff:81.2.69.160",
            6,
            # Python 3.13 prints the mapped address in dotted form
            f"{ipaddress.ip_address('::ffff:81.2.69.160')} is an IPv4-mapped IPv6 address, "
            "not a public one",
        ),
    ],
)
def test_never_public_even_with_accept_private(address: str, family: int, message: str) -> None:
    for accept_private in (False, True):
        with pytest.raises(AddressProblem) as caught:
            check_public(address, family, accept_private)
        assert str(caught.value) == message


@pytest.mark.parametrize(
    ("address", "family", "message"),
    [
        ("10.0.0.1", 4, "10.0.0.1 is a private address, not a public one"),
        ("172.16.5.4", 4, "172.16.5.4 is a private address, not a public one"),
        ("192.168.1.10", 4, "192.168.1.10 is a private address, not a public one"),
        ("100.64.1.1", 4, "100.64.1.1 is a carrier-grade NAT address, not a public one"),
        ("192.0.2.1", 4, "192.0.2.1 is a documentation address, not a public one"),
        ("198.51.100.7", 4, "198.51.100.7 is a documentation address, not a public one"),
        ("203.0.113.9", 4, "203.0.113.9 is a documentation address, not a public one"),
        ("198.18.0.1", 4, "198.18.0.1 is a reserved address, not a public one"),
        ("240.0.0.1", 4, "240.0.0.1 is a reserved address, not a public one"),
        ("fd00::2", 6, "fd00::2 is a unique local address, not a public one"),
        ("2001:db8::1", 6, "2001:db8::1 is a documentation address, not a public one"),
    ],
)
def test_private_only_with_accept_private(address: str, family: int, message: str) -> None:
    with pytest.raises(AddressProblem) as caught:
        check_public(address, family, accept_private=False)
    assert str(caught.value) == message
    check_public(address, family, accept_private=True)


def test_wrong_family_is_refused() -> None:
    with pytest.raises(AddressProblem, match=r"^81\.2\.69\.160 is IPv4, not IPv6$"):
        check_public("81.2.69.160", 6, accept_private=True)
