"""Hosts that follow another host's IPv6 prefix: the machines behind a router.

A router's update delegates a prefix (FRITZ!Box's ``<ip6lanprefix>``, an item of
``myip`` or its own ``ip6lanprefix=``); every host that follows it gets the prefix + its
interface id as AAAA, in the same commit as the router's own change, and the answer is
``good`` once DNS serves them all.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from nicupdate_server.addresses import in_prefix
from nicupdate_server.admin import Following
from nicupdate_server.dyndns import parse_update
from sqlalchemy import create_engine, text

from tests.server.conftest import (
    ALICE,
    LiveServer,
    eventually,
    start_server,
    stop_server,
    write_config,
)
from tests.server.primaries import Primary
from tests.server.test_durable import primary, serving  # noqa: F401 (fixture)
from tests.server.test_update import HOME, basic, raw_http10

NAS = "nas.dyn.example.test"
PRINTER = "printer.dyn.example.test"
NAS_IID = "::1234:5678:9abc:def0"
FRITZ = "Fritz!Box DDNS/1.0.1"


@pytest.fixture
def lan(alice: LiveServer) -> LiveServer:
    """alice's router (home) and two machines behind it that follow its prefix."""
    alice.admin(
        lambda a: a.add_host(NAS, "alice", following=Following(HOME, NAS_IID)),
    )
    alice.admin(
        lambda a: a.add_host(PRINTER, "alice", following=Following(HOME, "::77")),
    )
    return alice


# --- parsing ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "addresses", "prefix"),
    [
        # FRITZ!Box: <ipaddr>,<ip6addr>,<ip6lanprefix> substituted into myip
        (
            "myip=203.0.113.7,2001:db8::7,2001:db8:1:2::/64",
            ["203.0.113.7", "2001:db8::7"],
            "2001:db8:1:2::/64",
        ),
        # FRITZ!Box without an IPv6 address of its own
        ("myip=203.0.113.7,,2001:db8:1:2::/64", ["203.0.113.7"], "2001:db8:1:2::/64"),
        # a URL that names the prefix apart
        (
            "myip=203.0.113.7&ip6lanprefix=2001:db8:1:200::/56",
            ["203.0.113.7"],
            "2001:db8:1:200::/56",
        ),
        # deSEC's myipv6 with a prefix
        ("myip=203.0.113.7&myipv6=2001:db8:1:2::/64", ["203.0.113.7"], "2001:db8:1:2::/64"),
        # an address with its length is that address, and no prefix
        ("myip=2001:db8:1:2::13/64", ["2001:db8:1:2::13"], None),
        ("myip=203.0.113.7", ["203.0.113.7"], None),
    ],
)
def test_the_prefix_is_read_from_every_shape(
    query: str, addresses: list[str], prefix: str | None
) -> None:
    request = parse_update(f"hostname={HOME}&{query}".encode(), max_hosts=20)
    assert [str(a) for a in request.addresses] == addresses
    assert request.prefix == prefix
    assert request.address_error is None


def test_two_prefixes_or_a_bad_one_are_refused() -> None:
    two = parse_update(
        f"hostname={HOME}&myip=2001:db8:1::/64,2001:db8:2::/64".encode(), max_hosts=20
    )
    assert two.address_error == "more than one IPv6 prefix (2001:db8:1::/64, 2001:db8:2::/64)"
    bad = parse_update(f"hostname={HOME}&ip6lanprefix=nonsense".encode(), max_hosts=20)
    assert bad.address_error == "'nonsense' is not an IPv6 prefix"


@pytest.mark.parametrize(
    ("prefix", "iid", "length", "expect"),
    [
        ("2001:db8:1:2::/64", NAS_IID, 64, "2001:db8:1:2:1234:5678:9abc:def0"),
        # a /56: the interface id's bits 56-63 pick the subnet
        ("2001:db8:1:200::/56", "::5:0:0:0:77", 64, "2001:db8:1:205::77"),
        ("2001:db8:1:200::/56", "::77", 56, "2001:db8:1:200::77"),
        # the prefix's bits win over the interface id's within the length
        ("2001:db8:1:2::/64", "ffff::1", 64, "2001:db8:1:2::1"),
    ],
)
def test_prefix_plus_interface_id(prefix: str, iid: str, length: int, expect: str) -> None:
    assert str(in_prefix(prefix, iid, length)) == expect


# --- end to end ---------------------------------------------------------------------


def test_a_fritzbox_update_gives_every_follower_its_address(lan: LiveServer) -> None:
    response = lan.get(
        f"/nic/update?hostname={HOME}&myip=203.0.113.12,2001:db8::12,2001:db8:1:2::/64",
        headers={"Authorization": basic(*ALICE), "User-Agent": FRITZ},
    )
    assert response.text == "good 203.0.113.12,2001:db8::12\n"
    # Served as soon as the router is answered: the followers were in the same change.
    assert lan.addresses(HOME, "A") == ["203.0.113.12"]
    assert lan.addresses(HOME, "AAAA") == ["2001:db8::12"]
    assert lan.addresses(NAS, "AAAA") == ["2001:db8:1:2:1234:5678:9abc:def0"]
    assert lan.addresses(PRINTER, "AAAA") == ["2001:db8:1:2::77"]
    assert lan.addresses(NAS, "A") == []  # a follower's IPv4 is its own business

    # One commit: the three rows of the change log carry the same zone serial.
    rows = change_rows(lan)
    serials = {row["subject"]: row["serial"] for row in rows[-3:]}
    assert set(serials) == {HOME, NAS, PRINTER}
    assert len(set(serials.values())) == 1

    # The same request again is nochg; a new prefix moves every follower.
    again = lan.get(
        f"/nic/update?hostname={HOME}&myip=203.0.113.12,2001:db8::12,2001:db8:1:2::/64",
        headers={"Authorization": basic(*ALICE), "User-Agent": FRITZ},
    )
    assert again.text == "nochg 203.0.113.12,2001:db8::12\n"
    moved = lan.get(
        f"/nic/update?hostname={HOME}&myip=203.0.113.12,2001:db8::12,2001:db8:9:9::/64",
        headers={"Authorization": basic(*ALICE), "User-Agent": FRITZ},
    )
    assert moved.text == "good 203.0.113.12,2001:db8::12\n"
    assert lan.addresses(NAS, "AAAA") == ["2001:db8:9:9:1234:5678:9abc:def0"]
    assert lan.addresses(PRINTER, "AAAA") == ["2001:db8:9:9::77"]

    # Each follower's history says who moved it (rows are written soon after the answer).
    def moved_in_log() -> str:
        text = lan.cli("host", "log", NAS).stdout
        return text if "AAAA 2001:db8:9:9:1234:5678:9abc:def0" in text else ""

    log = eventually(moved_in_log)
    assert "- -> AAAA 2001:db8:1:2:1234:5678:9abc:def0" in log
    assert "Fritz!Box DDNS/1.0.1" in log


def test_an_inadyn_style_prefix_only_request_moves_the_followers_only(lan: LiveServer) -> None:
    """A script (or inadyn's custom path) that sends only the prefix, over raw HTTP/1.0:
    the router's own records stay as they are."""
    headers = {"Authorization": basic(*ALICE), "User-Agent": "inadyn/2.12.0"}
    status, body = raw_http10(lan, f"/nic/update?hostname={HOME}&myip=203.0.113.30", headers)
    assert (status, body) == (200, "good 203.0.113.30\n")
    status, body = raw_http10(lan, f"/nic/update?hostname={HOME}&myip=2001:db8:5:6::/64", headers)
    assert (status, body) == (200, "good\n")
    assert lan.addresses(HOME, "A") == ["203.0.113.30"]
    assert lan.addresses(HOME, "AAAA") == []
    assert lan.addresses(NAS, "AAAA") == ["2001:db8:5:6:1234:5678:9abc:def0"]


def test_a_follower_updates_on_its_own_and_is_listed(lan: LiveServer) -> None:
    lan.update(f"hostname={HOME}&myip=203.0.113.12,2001:db8:1:2::/64", auth=ALICE)
    own = lan.update(f"hostname={NAS}&myip=203.0.113.99", auth=ALICE)
    assert own.text == "good 203.0.113.99\n"
    assert lan.addresses(NAS, "A") == ["203.0.113.99"]
    assert lan.addresses(NAS, "AAAA") == ["2001:db8:1:2:1234:5678:9abc:def0"]

    listed = {
        row["fqdn"]: row
        for row in map(json.loads, lan.cli("host", "list", "--json").stdout.splitlines())
    }
    assert listed[HOME]["followers"] == [NAS, PRINTER]
    assert listed[HOME]["ipv6_prefix"] == "2001:db8:1:2::/64"
    assert listed[NAS]["follows"] == HOME
    assert (listed[NAS]["interface_id"], listed[NAS]["prefix_length"]) == (
        "::1234:5678:9abc:def0",
        64,
    )
    table = lan.cli("host", "list").stdout
    nas_line = next(line for line in table.splitlines() if line.startswith(NAS))
    assert f"follows {HOME} (::1234:5678:9abc:def0/64)" in nas_line
    home_line = next(line for line in table.splitlines() if line.startswith(HOME + " "))
    assert f"followed by {NAS}, {PRINTER}" in home_line


def test_a_host_added_later_takes_the_last_prefix_at_once(alice: LiveServer) -> None:
    alice.update(f"hostname={HOME}&myip=203.0.113.12,2001:db8:1:2::/64", auth=ALICE)
    added = alice.cli(
        "host", "add", NAS, "--owner", "alice", "--follows", HOME, "--interface-id", NAS_IID
    )
    assert added.returncode == 0, added.stderr
    alice.call(alice.runtime.feed.catch_up)
    assert alice.addresses(NAS, "AAAA") == ["2001:db8:1:2:1234:5678:9abc:def0"]
    # host set: another interface id moves it; --no-follow leaves its address alone.
    moved = alice.cli("host", "set", NAS, "--follows", HOME, "--interface-id", "::42")
    assert moved.stdout == f"host {NAS}: follows {HOME}\n"
    alice.call(alice.runtime.feed.catch_up)
    assert alice.addresses(NAS, "AAAA") == ["2001:db8:1:2::42"]
    freed = alice.cli("host", "set", NAS, "--no-follow")
    assert freed.stdout == f"host {NAS}: follows no host\n"
    alice.call(alice.runtime.feed.catch_up)
    alice.update(f"hostname={HOME}&myip=2001:db8:7:7::/64", auth=ALICE)
    assert alice.addresses(NAS, "AAAA") == ["2001:db8:1:2::42"]


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--follows", HOME], "--interface-id is needed"),
        (
            ["--follows", HOME, "--interface-id", "nonsense"],
            "--interface-id 'nonsense' is not an IPv6 interface id",
        ),
        (
            ["--follows", HOME, "--interface-id", "::", "--prefix-length", "64"],
            "--interface-id ::: its last 64 bits are all zero",
        ),
        (
            ["--follows", HOME, "--interface-id", "::1", "--prefix-length", "200"],
            "--prefix-length 200: between 1 and 127",
        ),
        (
            ["--follows", "nowhere.dyn.example.test", "--interface-id", "::1"],
            "no host named 'nowhere.dyn.example.test'",
        ),
        (["--interface-id", "::1"], "--interface-id and --prefix-length go with --follows HOST"),
    ],
)
def test_bad_follow_settings_get_one_line(alice: LiveServer, args: list[str], error: str) -> None:
    result = alice.cli("host", "add", NAS, "--owner", "alice", *args)
    assert result.returncode != 0
    assert error in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr
    assert NAS not in alice.cli("host", "list").stdout  # nothing was added


def test_a_host_of_another_owner_cannot_be_followed(alice: LiveServer) -> None:
    alice.add_user("bob", "bob-secret-1")
    result = alice.cli(
        "host", "add", NAS, "--owner", "bob", "--follows", HOME, "--interface-id", "::1"
    )
    assert result.returncode != 0
    assert f"{HOME} belongs to another user" in result.stderr


def test_followers_survive_a_restart_and_the_leaders_removal(tmp_path: Path) -> None:
    server = start_server(write_config(tmp_path))
    try:
        server.add_user("alice", ALICE[1])
        server.add_host(HOME, "alice")
        server.admin(lambda a: a.add_host(NAS, "alice", following=Following(HOME, NAS_IID)))
    finally:
        stop_server(server)
    again = start_server(write_config(tmp_path))
    try:
        again.update(f"hostname={HOME}&myip=2001:db8:1:2::/64", auth=ALICE)
        assert again.addresses(NAS, "AAAA") == ["2001:db8:1:2:1234:5678:9abc:def0"]
        removed = again.cli("host", "remove", HOME)
        assert removed.returncode == 0, removed.stderr
        again.call(again.runtime.feed.catch_up)
        listed = json.loads(
            next(line for line in again.cli("host", "list", "--json").stdout.splitlines())
        )
        assert (listed["fqdn"], listed["follows"]) == (NAS, None)
        assert again.addresses(NAS, "AAAA") == ["2001:db8:1:2:1234:5678:9abc:def0"]
    finally:
        stop_server(again)


def test_router_and_followers_reach_a_primary_in_one_update_message(
    tmp_path: Path,
    primary: Primary,  # noqa: F811 (fixture: real BIND, then real PowerDNS)
) -> None:
    zone = primary.zone
    home, nas, printer = (f"{name}.{zone}" for name in ("home", "nas", "printer"))
    with serving(tmp_path, primary) as server:
        server.add_host(home, "alice")
        server.admin(lambda a: a.add_host(nas, "alice", following=Following(home, NAS_IID)))
        server.admin(lambda a: a.add_host(printer, "alice", following=Following(home, "::77")))
        backend = server.runtime.backends["primary"]
        sent = backend.messages_sent  # type: ignore[attr-defined]
        answer = server.get(
            f"/nic/update?hostname={home}&myip=203.0.113.12,2001:db8:1:2::/64",
            headers={"Authorization": basic(*ALICE), "User-Agent": FRITZ},
        )
        assert answer.text == "good 203.0.113.12\n"
        # `good`: the primary has all three already, from one UPDATE message.
        assert backend.messages_sent == sent + 1  # type: ignore[attr-defined]
        assert primary.query(home, "A") == ["203.0.113.12"]
        assert primary.query(nas, "AAAA") == ["2001:db8:1:2:1234:5678:9abc:def0"]
        assert primary.query(printer, "AAAA") == ["2001:db8:1:2::77"]


def change_rows(server: LiveServer) -> list[dict[str, object]]:
    """The change log's ``records`` rows, oldest first: subject and zone serial."""
    url = server.config.server.database.replace("+aiosqlite", "")
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT subject, value FROM changes WHERE kind = 'records' ORDER BY id")
            )
            return [
                {"subject": subject, "serial": json.loads(value)["serial"]}
                for subject, value in rows
            ]
    finally:
        engine.dispose()
