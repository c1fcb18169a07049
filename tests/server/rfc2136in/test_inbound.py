"""DNS UPDATE messages sent to the live server's DNS port, as real clients send them.

``nsupdate -k`` (BIND's own client), a MikroTik router's ``/tool dns-update`` (one
replace of its A record over UDP, signed HMAC-MD5) and certbot's rfc2136 plugin (add a
TXT record, then delete that one record, over TCP) as dnspython builds them; checked by
what ``dig`` and the built-in DNS answer, and by what nsupdate and the replies say.
"""

from __future__ import annotations

import re
from pathlib import Path

import dns.name
import dns.rcode
import dns.update
import httpx
import pytest

from tests.server.conftest import ALICE, LiveServer, eventually
from tests.server.rfc2136in.clients import (
    CHALLENGE,
    HOME,
    TOKEN,
    WORK,
    ZONE,
    Key,
    dig,
    key_add,
    nsupdate,
    refusal,
    send,
    signed,
)


@pytest.fixture
def server(alice: LiveServer) -> LiveServer:
    """alice owning home.dyn.example.test, bob owning work.dyn.example.test."""
    alice.add_user("bob", "bob-secret-12")
    alice.add_host(WORK, "bob")
    return alice


@pytest.fixture
def key(server: LiveServer) -> Key:
    return key_add(server, "router", "--owner", "alice")


def test_nsupdate_sets_a_host_and_dig_sees_it_with_the_zones_ttl(
    server: LiveServer, key: Key, tmp_path: Path
) -> None:
    key_file = tmp_path / "router.key"
    key_file.write_text(key.clause)
    nsupdate(
        server,
        key_file,
        f"update delete {HOME} A",
        f"update add {HOME} 300 A 203.0.113.7",
        f"update add {HOME} 300 AAAA 2001:db8::7",
    )
    # nsupdate returns once the server answered NOERROR: DNS has it already.
    assert dig(server, HOME, "A") == ["203.0.113.7"]
    assert dig(server, HOME, "AAAA") == ["2001:db8::7"]
    assert server.ttl(HOME) == 60  # the zone's TTL; the message's 300 is not taken
    # The history names the key (rows are written as answers go: within a moment).
    assert eventually(lambda: "rfc2136 key router" in server.cli("host", "log", HOME).stdout)


def test_a_mikrotik_dns_update_replaces_the_a_record_over_udp(server: LiveServer) -> None:
    key = key_add(server, "mikrotik", "--owner", "alice", "--host", HOME, "--algorithm", "hmac-md5")
    for address in ("198.51.100.1", "198.51.100.2"):
        # /tool dns-update dns-server=... zone=dyn.example.test name=home address=...
        # key-name=mikrotik key=SECRET: one replace of the A record, HMAC-MD5, over UDP.
        update = signed(key)
        update.replace("home", 0, "A", address)
        assert send(server, update) == dns.rcode.NOERROR
        assert server.addresses(HOME) == [address]


def test_an_acme_challenge_txt_is_set_then_deleted_as_certbot_does(
    server: LiveServer, key: Key
) -> None:
    add = signed(key)
    add.add(dns.name.from_text(CHALLENGE + "."), 120, "TXT", TOKEN)
    assert send(server, add, tcp=True) == dns.rcode.NOERROR
    assert dig(server, CHALLENGE, "TXT") == [f'"{TOKEN}"']
    delete = signed(key)
    delete.delete(dns.name.from_text(CHALLENGE + "."), "TXT", TOKEN)
    assert send(server, delete, tcp=True) == dns.rcode.NOERROR
    assert dig(server, CHALLENGE, "TXT") == []


def test_a_host_key_updates_its_host_and_no_other(server: LiveServer) -> None:
    server.add_host(f"cam.{ZONE}", "alice")
    key = key_add(server, "cam", "--owner", "alice", "--host", f"cam.{ZONE}")
    mine = signed(key)
    mine.replace("cam", 60, "A", "198.51.100.9")
    assert send(server, mine) == dns.rcode.NOERROR
    other = signed(key)
    other.replace("home", 60, "A", "198.51.100.9")
    assert send(server, other) == dns.rcode.REFUSED
    assert server.addresses(f"cam.{ZONE}") == ["198.51.100.9"]
    assert server.addresses(HOME) == []


@pytest.mark.parametrize(
    ("name", "rdtype", "value", "rcode"),
    [
        ("work", "A", "198.51.100.1", dns.rcode.REFUSED),  # bob's host
        ("*.home", "A", "198.51.100.1", dns.rcode.REFUSED),  # the wildcard
        ("home", "MX", "10 mail.example.org.", dns.rcode.REFUSED),
        ("nothere", "A", "198.51.100.1", dns.rcode.REFUSED),
        ("home.example.org.", "A", "198.51.100.1", dns.rcode.NOTZONE),
    ],
)
def test_what_the_key_may_not_change_is_refused_and_unchanged(
    server: LiveServer, key: Key, name: str, rdtype: str, value: str, rcode: dns.rcode.Rcode
) -> None:
    update = signed(key)
    update.add(name, 60, rdtype, value)
    assert send(server, update) == rcode
    assert server.addresses(WORK) == []
    assert server.addresses(HOME) == []


def test_an_update_of_a_zone_not_served_here_is_notauth(server: LiveServer, key: Key) -> None:
    update = signed(key, zone="example.org")
    update.add("home", 60, "A", "198.51.100.1")
    assert send(server, update) == dns.rcode.NOTAUTH


def test_an_unsigned_update_is_refused(server: LiveServer) -> None:
    update = dns.update.UpdateMessage(ZONE)
    update.replace("home", 60, "A", "198.51.100.1")
    assert send(server, update) == dns.rcode.REFUSED
    assert server.addresses(HOME) == []


def test_an_unknown_key_is_badkey_and_a_wrong_secret_badsig(server: LiveServer, key: Key) -> None:
    unknown = signed(key, name="nobody")
    unknown.replace("home", 60, "A", "198.51.100.1")
    assert refusal(server, unknown) == ("NOTAUTH", "BADKEY")
    wrong = signed(key, secret="d3Jvbmctc2VjcmV0LXdyb25nLXNlY3JldC13cm9uZyE=")
    wrong.replace("home", 60, "A", "198.51.100.1")
    assert refusal(server, wrong) == ("NOTAUTH", "BADSIG")
    assert server.addresses(HOME) == []


def test_prerequisites_decide_whether_the_update_is_made(server: LiveServer, key: Key) -> None:
    first = signed(key)
    first.absent("home", "A")  # RRset does not exist: true
    first.add("home", 60, "A", "203.0.113.7")
    assert send(server, first) == dns.rcode.NOERROR
    again = signed(key)
    again.absent("home", "A")  # now false
    again.replace("home", 60, "A", "203.0.113.8")
    assert send(server, again) == dns.rcode.YXRRSET
    assert server.addresses(HOME) == ["203.0.113.7"]
    compare = signed(key)
    compare.present("home", "A", "203.0.113.7")  # value dependent: true
    compare.replace("home", 60, "A", "203.0.113.9")
    assert send(server, compare) == dns.rcode.NOERROR
    assert server.addresses(HOME) == ["203.0.113.9"]


@pytest.mark.parametrize(
    ("kind", "holds", "fails"),
    [
        ("name in use", lambda u: u.present("home"), lambda u: u.present("nothere")),
        ("name not in use", lambda u: u.absent("nothere"), lambda u: u.absent("home")),
        ("RRset exists", lambda u: u.present("home", "A"), lambda u: u.present("home", "AAAA")),
        ("RRset absent", lambda u: u.absent("home", "AAAA"), lambda u: u.absent("home", "A")),
        (
            "RRset with values",
            lambda u: u.present("home", "A", "203.0.113.7"),
            lambda u: u.present("home", "A", "203.0.113.1"),
        ),
    ],
)
def test_each_prerequisite_kind_holds_or_fails_with_its_rcode(
    server: LiveServer, key: Key, kind: str, holds: object, fails: object
) -> None:
    server.update(f"hostname={HOME}&myip=203.0.113.7", auth=ALICE)
    expected = {
        "name in use": dns.rcode.NXDOMAIN,
        "name not in use": dns.rcode.YXDOMAIN,
        "RRset exists": dns.rcode.NXRRSET,
        "RRset absent": dns.rcode.YXRRSET,
        "RRset with values": dns.rcode.NXRRSET,
    }[kind]
    failing = signed(key)
    fails(failing)  # type: ignore[operator]
    failing.add("home", 60, "AAAA", "2001:db8::1")
    assert send(server, failing) == expected
    assert server.addresses(HOME, "AAAA") == []
    holding = signed(key)
    holds(holding)  # type: ignore[operator]
    holding.add("home", 60, "AAAA", "2001:db8::1")
    assert send(server, holding) == dns.rcode.NOERROR
    assert server.addresses(HOME, "AAAA") == ["2001:db8::1"]


def test_repeated_bad_signatures_lock_the_source_out(server: LiveServer, key: Key) -> None:
    for _ in range(5):  # limits.auth_failures_per_user
        wrong = signed(key, secret="d3Jvbmctc2VjcmV0LXdyb25nLXNlY3JldC13cm9uZyE=")
        wrong.replace("home", 60, "A", "198.51.100.1")
        assert refusal(server, wrong) == ("NOTAUTH", "BADSIG")
    right = signed(key)
    right.replace("home", 60, "A", "198.51.100.1")
    assert refusal(server, right) == ("REFUSED", None)  # not even looked at
    assert server.addresses(HOME) == []


def test_key_list_shows_no_secret_and_removing_a_key_stops_it_at_once(
    server: LiveServer, key: Key
) -> None:
    listed = server.cli("key", "list")
    assert listed.returncode == 0
    assert re.match(r"router\towner alice\tall hosts\thmac-sha256\tcreated ", listed.stdout)
    assert key.secret not in listed.stdout + listed.stderr
    before = signed(key)
    before.replace("home", 60, "A", "198.51.100.1")
    assert send(server, before) == dns.rcode.NOERROR
    removed = server.cli("key", "remove", "router")
    assert removed.stdout == "key router of alice removed\n"
    after = signed(key)
    after.replace("home", 60, "A", "198.51.100.2")
    assert refusal(server, after) == ("NOTAUTH", "BADKEY")
    assert server.addresses(HOME) == ["198.51.100.1"]


def test_the_log_never_holds_a_secret(
    server: LiveServer, key: Key, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    good = signed(key)
    good.replace("home", 60, "A", "198.51.100.1")
    assert send(server, good) == dns.rcode.NOERROR
    wrong = signed(key, secret="d3Jvbmctc2VjcmV0LXdyb25nLXNlY3JldC13cm9uZyE=")
    wrong.replace("work", 60, "A", "198.51.100.1")
    assert refusal(server, wrong) == ("NOTAUTH", "BADSIG")
    refused = signed(key)
    refused.replace("work", 60, "A", "198.51.100.1")
    assert send(server, refused) == dns.rcode.REFUSED
    logged = eventually(lambda: "rfc2136 update REFUSED" in caplog.text and caplog.text)
    assert logged
    assert "BADSIG" in caplog.text
    for secret in (key.secret, "d3Jvbmctc2VjcmV0LXdyb25nLXNlY3JldC13cm9uZyE="):
        assert secret not in caplog.text


def test_updates_are_counted_by_rcode_in_metrics(server: LiveServer, key: Key) -> None:
    good = signed(key)
    good.replace("home", 60, "A", "198.51.100.1")
    assert send(server, good) == dns.rcode.NOERROR
    refused = dns.update.UpdateMessage(ZONE)
    refused.replace("home", 60, "A", "198.51.100.1")
    assert send(server, refused) == dns.rcode.REFUSED

    def counted() -> bool:
        page = httpx.get(server.url + "/metrics", timeout=10).text
        return (
            'nicupdate_dns_updates_total{rcode="NOERROR"} 1.0' in page
            and 'nicupdate_dns_updates_total{rcode="REFUSED"} 1.0' in page
        )

    assert eventually(counted)  # the DNS process reports its counts every second


def test_key_add_refusals_say_what_to_do(server: LiveServer) -> None:
    no_user = server.cli("key", "add", "k1", "--owner", "nobody")
    assert no_user.returncode == 1
    assert "no user named 'nobody' (see: user list)" in no_user.stderr
    not_hers = server.cli("key", "add", "k1", "--owner", "alice", "--host", WORK)
    assert f"host {WORK} is not alice's" in not_hers.stderr
    assert server.cli("key", "add", "k1", "--owner", "alice").returncode == 0
    twice = server.cli("key", "add", "k1", "--owner", "bob")
    assert "a key named 'k1' exists already (see: key list)" in twice.stderr
    bad_name = server.cli("key", "add", "not a name", "--owner", "alice")
    assert "is not a valid key name" in bad_name.stderr
    gone = server.cli("key", "remove", "k2")
    assert "no key named 'k2' (see: key list)" in gone.stderr


def test_removing_the_host_removes_its_keys(server: LiveServer) -> None:
    key_add(server, "home-only", "--owner", "alice", "--host", HOME)
    assert server.cli("host", "remove", HOME).returncode == 0
    assert server.cli("key", "list").stdout.startswith("no keys yet")
