"""Wildcards: ``*.<host>`` carries the host's addresses, set by the CLI or by the dyndns2
``wildcard=ON|OFF|NOCHG`` parameter, served by the built-in DNS and by a real primary."""

from __future__ import annotations

from pathlib import Path

import dns.rcode
import pytest
from nicupdate_server.dyndns import parse_update
from sqlalchemy import create_engine, text

from tests.server.conftest import ALICE, LiveServer, eventually
from tests.server.primaries import Primary
from tests.server.test_durable import primary, serving  # noqa: F401 (fixture)
from tests.server.test_update import HOME

BELOW = f"www.{HOME}"
DEEPER = f"a.b.{HOME}"


@pytest.mark.parametrize(
    ("word", "wildcard"),
    [("ON", True), ("on", True), ("YES", True), ("OFF", False), ("no", False), ("NOCHG", None)],
)
def test_the_wildcard_parameter(word: str, wildcard: bool | None) -> None:
    request = parse_update(f"hostname={HOME}&wildcard={word}".encode(), max_hosts=20)
    assert request.wildcard is wildcard
    assert parse_update(f"hostname={HOME}".encode(), max_hosts=20).wildcard is None


def rcode(server: LiveServer, name: str, rdtype: str = "A") -> str:
    return dns.rcode.to_text(server.dns_query(name, rdtype).rcode())


def test_wildcard_on_and_off_by_the_dyndns2_parameter(alice: LiveServer) -> None:
    first = alice.update(f"hostname={HOME}&myip=203.0.113.7,2001:db8::7", auth=ALICE)
    assert first.text == "good 203.0.113.7,2001:db8::7\n"
    assert rcode(alice, BELOW) == "NXDOMAIN"

    on = alice.update(f"hostname={HOME}&myip=203.0.113.7,2001:db8::7&wildcard=ON", auth=ALICE)
    assert on.text == "good 203.0.113.7,2001:db8::7\n"  # a change, though not of an address
    assert alice.addresses(BELOW) == ["203.0.113.7"]
    assert alice.addresses(DEEPER, "AAAA") == ["2001:db8::7"]
    answer = alice.dns_query(BELOW).answer[0]
    assert (answer.name.to_text(), answer.ttl) == (f"{BELOW}.", 60)  # owner: the name asked

    # NOCHG, or no parameter, leaves it on; a new address moves the wildcard with it.
    same = alice.update(f"hostname={HOME}&myip=203.0.113.7,2001:db8::7&wildcard=NOCHG", auth=ALICE)
    assert same.text == "nochg 203.0.113.7,2001:db8::7\n"
    moved = alice.update(f"hostname={HOME}&myip=203.0.113.8", auth=ALICE)
    assert moved.text == "good 203.0.113.8\n"
    assert alice.addresses(BELOW) == ["203.0.113.8"]

    # pfSense always sends wildcard=OFF: it turns it off, and is nochg from then on.
    pfsense = f"system=dyndns&hostname={HOME}&myip=203.0.113.8&wildcard=OFF&mx=&backmx=NO"
    assert alice.update(pfsense, auth=ALICE).text == "good 203.0.113.8\n"
    assert rcode(alice, BELOW) == "NXDOMAIN"
    assert alice.update(pfsense, auth=ALICE).text == "nochg 203.0.113.8\n"

    def both_in_log() -> bool:  # history rows are written soon after the answers
        log = alice.cli("host", "log", HOME).stdout
        return "wildcard on" in log and "wildcard off" in log

    assert eventually(both_in_log)


def test_wildcard_from_the_cli(alice: LiveServer) -> None:
    office = f"office.{HOME.partition('.')[2]}"
    added = alice.cli("host", "add", office, "--owner", "alice", "--wildcard")
    assert added.returncode == 0, added.stderr
    alice.call(alice.runtime.feed.catch_up)
    assert alice.update(f"hostname={office}&myip=203.0.113.9", auth=ALICE).text == (
        "good 203.0.113.9\n"
    )
    assert alice.addresses(f"x.{office}") == ["203.0.113.9"]

    alice.update(f"hostname={HOME}&myip=203.0.113.10", auth=ALICE)
    turned = alice.cli("host", "set", HOME, "--wildcard", "on")
    assert turned.stdout == f"host {HOME}: wildcard on\n"
    alice.call(alice.runtime.feed.catch_up)
    assert alice.addresses(BELOW) == ["203.0.113.10"]
    listed = alice.cli("host", "list").stdout
    assert f"*.{HOME}" in next(line for line in listed.splitlines() if line.startswith(HOME))
    off = alice.cli("host", "set", HOME, "--wildcard", "off")
    assert off.stdout == f"host {HOME}: wildcard off\n"
    alice.call(alice.runtime.feed.catch_up)
    assert rcode(alice, BELOW) == "NXDOMAIN"
    none = alice.cli("host", "set", HOME)
    assert none.returncode != 0
    assert "give --wildcard on|off" in none.stderr


def test_a_wildcard_reaches_a_primary(
    tmp_path: Path,
    primary: Primary,  # noqa: F811 (fixture: real BIND, then real PowerDNS)
) -> None:
    home = f"home.{primary.zone}"
    with serving(tmp_path, primary) as server:
        server.add_host(home, "alice")
        on = server.update(f"hostname={home}&myip=203.0.113.7,2001:db8::7&wildcard=ON", auth=ALICE)
        assert on.text == "good 203.0.113.7,2001:db8::7\n"
        assert primary.query(f"www.{home}", "A") == ["203.0.113.7"]
        assert primary.query(f"www.{home}", "AAAA") == ["2001:db8::7"]
        off = server.update(f"hostname={home}&wildcard=OFF&myip=203.0.113.7", auth=ALICE)
        assert off.text == "good 203.0.113.7\n"
        assert primary.query(f"www.{home}", "A") == []
        assert primary.query(home, "A") == ["203.0.113.7"]


def test_an_update_keeps_a_wildcard_set_elsewhere_it_has_not_heard_of(alice: LiveServer) -> None:
    """Another process turned the wildcard on (its change-log row not read here yet): an
    update carries the wildcard as the database has it, not as this process last knew."""
    url = alice.config.server.database.replace("+aiosqlite", "")
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text("UPDATE hosts SET wildcard = 1 WHERE fqdn = :f"), {"f": HOME})
    finally:
        engine.dispose()
    assert alice.update(f"hostname={HOME}&myip=203.0.113.11", auth=ALICE).text == (
        "good 203.0.113.11\n"
    )
    assert alice.addresses(BELOW) == ["203.0.113.11"]
    assert alice.runtime.state.hosts[HOME].wildcard
