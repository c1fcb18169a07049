"""The names a host stands for in DNS, and the changes the service takes for them."""

from __future__ import annotations

import pytest
from nicupdate_server.dyndns import Code
from nicupdate_server.hostrecords import (
    derived_host,
    describe_key,
    expand,
    host_of,
    keyed,
    unkeyed,
    valid_txt,
)

from tests.server.conftest import LiveServer
from tests.server.test_update import HOME

TOKEN = "LHDhK3oGRvkiefQnx7OOczTY5Tic_xZ6HcMOc_gmtoM"


def test_expand_names_every_owner_and_empties_what_the_host_lacks() -> None:
    records = {"A": ("203.0.113.7",), "TXT": (TOKEN,)}
    assert expand(HOME, records, wildcard=False) == {
        (HOME, "A"): ("203.0.113.7",),
        (HOME, "AAAA"): (),
        (f"*.{HOME}", "A"): (),
        (f"*.{HOME}", "AAAA"): (),
        (f"_acme-challenge.{HOME}", "TXT"): (TOKEN,),
    }
    with_wildcard = expand(HOME, records, wildcard=True)
    assert with_wildcard[(f"*.{HOME}", "A")] == ("203.0.113.7",)
    assert with_wildcard[(f"*.{HOME}", "AAAA")] == ()


def test_keyed_and_unkeyed_are_inverses() -> None:
    records = {"A": ("203.0.113.7",), "AAAA": ("2001:db8::7",), "TXT": (TOKEN, "x")}
    star = {"A": ("203.0.113.8",), "AAAA": ()}
    assert unkeyed(HOME, keyed(HOME, records, star)) == (records, star)


@pytest.mark.parametrize(
    ("name", "host"),
    [
        (HOME, HOME),
        (f"*.{HOME}", HOME),
        (f"_acme-challenge.{HOME}", HOME),
        ("_acme-challenge", "_acme-challenge"),  # no host below it: a name of its own
    ],
)
def test_host_of(name: str, host: str) -> None:
    assert host_of(name) == host
    assert (derived_host(name) is None) == (name == host)


def test_describe_key() -> None:
    assert describe_key(HOME, HOME, "AAAA") == "AAAA"
    assert describe_key(HOME, f"*.{HOME}", "A") == "*.A"
    assert describe_key(HOME, f"_acme-challenge.{HOME}", "TXT") == "_acme-challenge.TXT"


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        (TOKEN, True),
        ("v=spf1", True),
        ("a,b", False),
        ("a b", False),
        ('"q"', False),
        ("", False),
        ("x" * 255, True),
        ("x" * 256, False),
    ],
)
def test_txt_values(value: str, ok: bool) -> None:
    assert valid_txt(value) is ok


def test_the_service_refuses_txt_values_it_cannot_keep(alice: LiveServer) -> None:
    host = alice.runtime.state.hosts[HOME]
    service = alice.runtime.service

    async def change(values: tuple[str, ...]) -> tuple[Code, str]:
        outcome = await service.change(host, {"TXT": values}, caller="test", user_agent="test")
        return outcome.code, outcome.reason

    code, reason = alice.call(lambda: change(("a,b",)))
    assert code is Code.DNSERR and "TXT: at most 2 values" in reason
    code, _ = alice.call(lambda: change(("a", "b", "c")))
    assert code is Code.DNSERR
    assert alice.dns_query(f"_acme-challenge.{HOME}", "TXT").answer == []
    code, _ = alice.call(lambda: change((TOKEN,)))
    assert code is Code.GOOD
    answer = alice.dns_query(f"_acme-challenge.{HOME}", "TXT").answer
    assert [b"".join(rd.strings).decode() for rrset in answer for rd in rrset] == [TOKEN]
