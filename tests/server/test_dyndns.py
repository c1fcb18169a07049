"""The pure protocol parser, on every dialect and on random input."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st
from nicupdate_server.dyndns import (
    Code,
    Credentials,
    RequestRejected,
    answer_line,
    parse_basic_auth,
    parse_update,
)

ip = ipaddress.ip_address


def parse(query: str) -> object:
    return parse_update(query.encode(), max_hosts=20)


def test_hostnames_and_mixed_addresses_in_order() -> None:
    request = parse_update(
        b"hostname=a.example.test,,b.example.test&myip=2001:db8::1,,203.0.113.7,203.0.113.7",
        max_hosts=20,
    )
    assert request.hostnames == ("a.example.test", "b.example.test")
    assert request.addresses == (ip("2001:db8::1"), ip("203.0.113.7"))
    assert request.address_error is None
    assert not request.offline


@pytest.mark.parametrize("key", ["myip", "myipv4", "myipv6", "ipv4", "ipv6", "ip", "MyIP"])
def test_every_address_parameter(key: str) -> None:
    value = "2001:db8::9" if "6" in key else "203.0.113.9"
    request = parse_update(f"hostname=h.example.test&{key}={value}".encode(), max_hosts=5)
    assert request.addresses == (ip(value),)


def test_prefix_items_are_ignored_but_addresses_with_length_are_used() -> None:
    request = parse_update(
        b"hostname=h.example.test&myip=203.0.113.7,2001:db8:1:2::/64&ipv6=2001:db8::5/64",
        max_hosts=5,
    )
    assert request.addresses == (ip("203.0.113.7"), ip("2001:db8::5"))


@pytest.mark.parametrize("value", ["YES", "yes", "on", "1", "true"])
def test_offline(value: str) -> None:
    assert parse_update(f"hostname=h.example.test&offline={value}".encode(), max_hosts=5).offline


def test_offline_no_is_not_offline() -> None:
    assert not parse_update(b"hostname=h.example.test&offline=NO", max_hosts=5).offline


def test_bad_address_is_reported_not_raised() -> None:
    request = parse_update(b"hostname=h.example.test&myip=203.0.113.7,banana", max_hosts=5)
    assert request.addresses == ()
    assert request.address_error == "'banana' is not an IP address"


def test_too_many_addresses() -> None:
    many = ",".join(f"203.0.113.{i}" for i in range(1, 18))
    request = parse_update(f"hostname=h.example.test&myip={many}".encode(), max_hosts=5)
    assert request.address_error == "more than 16 IPv4 addresses"


@pytest.mark.parametrize(
    ("query", "code"),
    [
        (b"myip=203.0.113.7", Code.NOTFQDN),
        (b"hostname=,,,", Code.NOTFQDN),
        (b"hostname=%ff.example.test", Code.NOTFQDN),
        (b"hostname=a.test&x=" + b"y" * 5000, Code.NOTFQDN),
        (b"&".join(b"k%d=v" % i for i in range(70)) + b"&hostname=a.test", Code.NOTFQDN),
        (b"hostname=a.t,b.t,c.t,d.t,e.t,f.t", Code.NUMHOST),
    ],
)
def test_request_level_rejections(query: bytes, code: Code) -> None:
    with pytest.raises(RequestRejected) as caught:
        parse_update(query, max_hosts=5)
    assert caught.value.code is code


def test_query_credentials_are_hidden_in_repr() -> None:
    request = parse_update(b"hostname=h.example.test&username=u&password=s3cr3t", max_hosts=5)
    assert request.query_credentials == Credentials("u", "s3cr3t")
    assert "s3cr3t" not in repr(request)
    assert "s3cr3t" not in repr(request.query_credentials)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Basic YWxpY2U6cHc6d2l0aDpjb2xvbnM=", Credentials("alice", "pw:with:colons")),
        ("basic YWxpY2U6cHc=", Credentials("alice", "pw")),
        ("Basic !!!", None),
        ("Basic YWxpY2U=", None),  # no colon
        ("Bearer abc", None),
        ("Basic " + "QQ==" * 1000, None),
        ("Basic /w==", None),  # not UTF-8
    ],
)
def test_basic_auth(header: str, expected: Credentials | None) -> None:
    assert parse_basic_auth(header) == expected


def test_answer_lines() -> None:
    assert answer_line(Code.GOOD, [ip("203.0.113.7"), ip("2001:db8::7")]) == (
        "good 203.0.113.7,2001:db8::7"
    )
    assert answer_line(Code.NOCHG) == "nochg"
    assert answer_line(Code.DNSERR, [ip("203.0.113.7")]) == "dnserr"
    assert answer_line(Code.SERVER_ERROR) == "911"


@given(st.binary(max_size=600))
def test_parser_never_fails_on_random_bytes(query: bytes) -> None:
    try:
        request = parse_update(query, max_hosts=20)
    except RequestRejected as exc:
        assert exc.code in (Code.NOTFQDN, Code.NUMHOST)
    else:
        assert 1 <= len(request.hostnames) <= 20
        assert (request.address_error is None) or request.addresses == ()


def test_queries_with_a_password_are_not_kept_in_the_parse_cache() -> None:
    # A cached parse hands back the very same object; an uncached one a new one.
    plain = b"hostname=h.example.test&myip=203.0.113.7"
    secret = b"hostname=h.example.test&username=u&password=kept-nowhere"
    assert parse_update(plain, max_hosts=5) is parse_update(plain, max_hosts=5)
    assert parse_update(secret, max_hosts=5) is not parse_update(secret, max_hosts=5)
