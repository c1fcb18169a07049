"""RFC 2136's rules on messages dnspython builds: parsing, prerequisites, what keys may do.

The live server's answers are in test_inbound.py; here each rule is checked on its own,
against a server's stored state made by hand.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
import dns.update
import pytest
from nicupdate_server.config import Config, load_config
from nicupdate_server.rfc2136in import message as parsed
from nicupdate_server.rfc2136in.keys import UpdateKey, key_clause, key_name, make_key
from nicupdate_server.rfc2136in.message import Action, Change, Condition, Rejected, Update
from nicupdate_server.rfc2136in.policy import Target, apply, changed_types, target
from nicupdate_server.rfc2136in.prereqs import Stored, check
from nicupdate_server.state import HostEntry, State

from tests.server.conftest import write_config

ZONE = "dyn.example.test"
HOME = f"home.{ZONE}"
WORK = f"work.{ZONE}"  # bob's
SECRET = "c2VjcmV0LW9mLTMyLWJ5dGVzLXRoYXQtaXMtbG9uZyE="
ALICE_ID, BOB_ID = 1, 2


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return load_config(write_config(tmp_path), environ={})


@pytest.fixture
def state() -> State:
    state = State()
    home = HostEntry(10, HOME, ALICE_ID, None, a=("203.0.113.7",))
    home.change_extra(wildcard=True, txt=("token-1",))
    state.hosts[HOME] = home
    state.hosts[WORK] = HostEntry(11, WORK, BOB_ID, None, aaaa=("2001:db8::1",))
    state.zone_serials[ZONE] = 42
    return state


def stored(config: Config, state: State) -> Stored:
    zone = config.zone_for(ZONE)
    assert zone is not None
    return Stored(config, zone, state)


ALICE_KEY = make_key(1, "router", ALICE_ID, None, "hmac-sha256", SECRET)


def parse(config: Config, update: dns.update.UpdateMessage) -> Update:
    message = dns.message.from_wire(update.to_wire())
    assert isinstance(message, dns.update.UpdateMessage)
    origin, _ = parsed.zone_of(message)
    zone = config.zone_for(parsed.text(origin))
    return parsed.parse(message, origin, lambda name: config.zone_for(name) is zone)


def rejected(work: Callable[[], object]) -> dns.rcode.Rcode:
    """The rcode ``work()`` answers the whole message with."""
    with pytest.raises(Rejected) as caught:
        work()
    return caught.value.rcode


# -- parsing -----------------------------------------------------------------------------


def test_a_replace_is_a_deletion_of_the_rrset_then_an_addition(config: Config) -> None:
    update = dns.update.UpdateMessage(ZONE)
    update.replace("home", 300, "A", "198.51.100.1")
    changes = parse(config, update).changes
    assert [(c.action, c.name, c.rdtype) for c in changes] == [
        (Action.DELETE_RRSET, HOME, dns.rdatatype.A),
        (Action.ADD, HOME, dns.rdatatype.A),
    ]
    assert changes[1].value is not None and changes[1].value.to_text() == "198.51.100.1"


def test_each_kind_of_prerequisite_is_told_apart(config: Config) -> None:
    update = dns.update.UpdateMessage(ZONE)
    update.present("home")
    update.absent("nothere")
    update.present("home", "A")
    update.absent("home", "AAAA")
    update.present("home", "A", "203.0.113.7")
    found = {(p.condition, p.name, p.rdtype) for p in parse(config, update).prerequisites}
    assert found == {
        (Condition.NAME_IN_USE, HOME, dns.rdatatype.ANY),
        (Condition.NAME_NOT_IN_USE, f"nothere.{ZONE}", dns.rdatatype.ANY),
        (Condition.RRSET_EXISTS, HOME, dns.rdatatype.A),
        (Condition.RRSET_ABSENT, HOME, dns.rdatatype.AAAA),
        (Condition.RRSET_EQUALS, HOME, dns.rdatatype.A),
    }


def test_a_prerequisite_with_a_ttl_is_formerr(config: Config) -> None:
    update = dns.update.UpdateMessage(ZONE)
    update.present("home", "A", "203.0.113.7")
    update.prerequisite[0].ttl = 60
    assert rejected(lambda: parse(config, update)) == dns.rcode.FORMERR


def test_a_name_outside_the_zone_is_notzone(config: Config) -> None:
    update = dns.update.UpdateMessage(ZONE)
    update.add(dns.name.from_text("home.example.org."), 60, "A", "198.51.100.1")
    assert rejected(lambda: parse(config, update)) == dns.rcode.NOTZONE
    prerequisite = dns.update.UpdateMessage(ZONE)
    prerequisite.present(dns.name.from_text("public.example.net."))
    assert rejected(lambda: parse(config, prerequisite)) == dns.rcode.NOTZONE


def test_a_zone_section_without_soa_is_formerr() -> None:
    update = dns.update.UpdateMessage(ZONE)
    update.zone[0] = dns.rrset.RRset(dns.name.from_text(ZONE), dns.rdataclass.IN, dns.rdatatype.A)
    with pytest.raises(Rejected) as caught:
        parsed.zone_of(update)
    assert caught.value.rcode == dns.rcode.FORMERR


# -- prerequisites -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "rcode"),
    [
        (lambda u: u.present("home"), None),
        (lambda u: u.present("nothere"), dns.rcode.NXDOMAIN),
        (lambda u: u.present("ns"), None),  # a nameserver name is in use
        (lambda u: u.present("_acme-challenge.home"), None),  # its TXT
        (lambda u: u.present("_acme-challenge.work"), dns.rcode.NXDOMAIN),
        (lambda u: u.absent("nothere"), None),
        (lambda u: u.absent("home"), dns.rcode.YXDOMAIN),
        (lambda u: u.absent(dns.name.from_text(f"{ZONE}.")), dns.rcode.YXDOMAIN),
        (lambda u: u.present("home", "A"), None),
        (lambda u: u.present("*.home", "A"), None),  # the wildcard is on
        (lambda u: u.present("home", "AAAA"), dns.rcode.NXRRSET),
        (lambda u: u.present(dns.name.from_text(f"{ZONE}."), "NS"), None),
        (lambda u: u.absent("home", "AAAA"), None),
        (lambda u: u.absent("work", "AAAA"), dns.rcode.YXRRSET),
        (lambda u: u.present("home", "A", "203.0.113.7"), None),
        (lambda u: u.present("home", "A", "203.0.113.8"), dns.rcode.NXRRSET),
        (lambda u: u.present("_acme-challenge.home", "TXT", "token-1"), None),
        (lambda u: u.present("_acme-challenge.home", "TXT", "token-2"), dns.rcode.NXRRSET),
        (lambda u: u.present(dns.name.from_text(f"{ZONE}."), "NS", f"ns.{ZONE}."), None),
    ],
)
def test_prerequisites_pass_or_fail_with_the_rfcs_rcode(
    config: Config,
    state: State,
    build: Callable[[dns.update.UpdateMessage], None],
    rcode: dns.rcode.Rcode | None,
) -> None:
    update = dns.update.UpdateMessage(ZONE)
    build(update)
    prerequisites = parse(config, update).prerequisites
    if rcode is None:
        check(prerequisites, stored(config, state))
    else:
        assert rejected(lambda: check(prerequisites, stored(config, state))) == rcode


def test_a_value_dependent_rrset_must_match_whole(config: Config, state: State) -> None:
    state.hosts[HOME].a = ("203.0.113.7", "203.0.113.8")
    update = dns.update.UpdateMessage(ZONE)
    update.present("home", "A", "203.0.113.7")
    prerequisites = parse(config, update).prerequisites
    assert rejected(lambda: check(prerequisites, stored(config, state))) == dns.rcode.NXRRSET
    update.present("home", "A", "203.0.113.8")
    check(parse(config, update).prerequisites, stored(config, state))


# -- what keys may change ----------------------------------------------------------------


def targets(
    config: Config, state: State, update: dns.update.UpdateMessage, key: UpdateKey
) -> list[tuple[Change, Target]]:
    where = stored(config, state)
    return [(change, target(key, change, where)) for change in parse(config, update).changes]


@pytest.mark.parametrize(
    ("name", "rdtype", "value"),
    [
        ("work", "A", "198.51.100.1"),  # bob's host
        ("*.home", "A", "198.51.100.1"),  # the wildcard
        ("home", "MX", "10 mail.example.org."),
        ("home", "TXT", "token"),  # TXT lives at _acme-challenge.<host>
        ("_acme-challenge.home", "A", "198.51.100.1"),
        ("nothere", "A", "198.51.100.1"),
        ("ns", "A", "198.51.100.1"),  # a nameserver's glue
        (f"{ZONE}.", "NS", "ns2.example.org."),
    ],
)
def test_a_key_changes_nothing_but_its_hosts_a_aaaa_and_acme_txt(
    config: Config, state: State, name: str, rdtype: str, value: str
) -> None:
    update = dns.update.UpdateMessage(ZONE)
    update.add(name, 60, rdtype, value)
    assert rejected(lambda: targets(config, state, update, ALICE_KEY)) == dns.rcode.REFUSED


def test_a_host_key_changes_its_host_alone(config: Config, state: State) -> None:
    state.hosts[f"cam.{ZONE}"] = HostEntry(12, f"cam.{ZONE}", ALICE_ID, None)
    host_key = make_key(2, "cam", ALICE_ID, 12, "hmac-sha256", SECRET)
    update = dns.update.UpdateMessage(ZONE)
    update.add("cam", 60, "A", "198.51.100.1")
    assert targets(config, state, update, host_key)[0][1].host.fqdn == f"cam.{ZONE}"
    other = dns.update.UpdateMessage(ZONE)
    other.add("home", 60, "A", "198.51.100.1")
    assert rejected(lambda: targets(config, state, other, host_key)) == dns.rcode.REFUSED


def test_a_blocked_host_takes_no_change(config: Config, state: State) -> None:
    state.set_blocked(state.hosts[HOME], True)
    update = dns.update.UpdateMessage(ZONE)
    update.add("home", 60, "A", "198.51.100.1")
    assert rejected(lambda: targets(config, state, update, ALICE_KEY)) == dns.rcode.REFUSED


def after(config: Config, state: State, update: dns.update.UpdateMessage) -> dict[str, object]:
    zone = config.zone_for(ZONE)
    assert zone is not None
    found = apply(targets(config, state, update, ALICE_KEY), zone)
    host, records = found[HOME]
    return dict(changed_types(host, records))


def test_the_update_section_acts_on_the_hosts_record_set(config: Config, state: State) -> None:
    replace = dns.update.UpdateMessage(ZONE)
    replace.replace("home", 0, "A", "198.51.100.1")
    replace.add("home", 0, "AAAA", "2001:db8::1")
    assert after(config, state, replace) == {"A": ("198.51.100.1",), "AAAA": ("2001:db8::1",)}
    add = dns.update.UpdateMessage(ZONE)
    add.add("home", 60, "A", "203.0.113.9")
    add.add("home", 60, "A", "203.0.113.7")  # there already
    assert after(config, state, add) == {"A": ("203.0.113.7", "203.0.113.9")}
    one = dns.update.UpdateMessage(ZONE)
    one.delete("home", "A", "203.0.113.7")
    one.delete("_acme-challenge.home", "TXT", "token-1")
    assert after(config, state, one) == {"A": (), "TXT": ()}
    name = dns.update.UpdateMessage(ZONE)
    name.delete("home")
    assert after(config, state, name) == {"A": ()}  # the TXT is at another name
    unchanged = dns.update.UpdateMessage(ZONE)
    unchanged.delete("home", "AAAA")
    assert after(config, state, unchanged) == {}


def test_a_third_txt_value_drops_the_oldest(config: Config, state: State) -> None:
    update = dns.update.UpdateMessage(ZONE)
    update.add("_acme-challenge.home", 60, "TXT", "token-2")
    update.add("_acme-challenge.home", 60, "TXT", "token-3")
    assert after(config, state, update) == {"TXT": ("token-2", "token-3")}


@pytest.mark.parametrize(
    ("rdtype", "value"),
    [
        ("A", "127.0.0.1"),
        ("AAAA", "fe80::1"),
        ("TXT", '"two" "strings"'),
        ("TXT", '"with space"'),
        ("TXT", '""'),
        ("TXT", '"a,b"'),  # a comma would split the value where values are listed
        ("TXT", '"semi;colon"'),
    ],
)
def test_values_no_host_may_have_are_refused(
    config: Config, state: State, rdtype: str, value: str
) -> None:
    name = "_acme-challenge.home" if rdtype == "TXT" else "home"
    update = dns.update.UpdateMessage(ZONE)
    update.add(name, 60, rdtype, value)
    assert rejected(lambda: after(config, state, update)) == dns.rcode.REFUSED


# -- keys --------------------------------------------------------------------------------


def test_a_key_never_shows_its_secret() -> None:
    assert SECRET not in repr(ALICE_KEY)
    assert SECRET not in str(ALICE_KEY.key)
    assert repr(ALICE_KEY.key) == "<TSIG key router hmac-sha256>"


def test_key_names_are_dns_names_in_normal_form() -> None:
    assert key_name("Home-Router.Alice.") == "home-router.alice"
    for bad in ("", "a..b", "-a", "a b", "x" * 64):
        with pytest.raises(ValueError):
            key_name(bad)


def test_the_key_clause_is_what_tsig_keygen_prints() -> None:
    clause = key_clause("router", "hmac-md5", b"0123456789abcdef")
    assert clause == (
        'key "router" {\n\talgorithm hmac-md5;\n\tsecret "MDEyMzQ1Njc4OWFiY2RlZg==";\n};\n'
    )
