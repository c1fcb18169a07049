"""Wildcards (RFC 4592) and ACME TXT records as the built-in DNS serves them.

A host with its wildcard on stands for ``*.<host>`` too (its A and AAAA), and its TXT
records live at ``_acme-challenge.<host>``. What is checked is what a resolver or a
secondary gets: the answers over UDP and TCP from a running server, the records the
``builtin`` backend's changes make visible, what the DNS process serves after change-log
rows and after a restart, and the zone that AXFR and IXFR give dnspython's client and
real BIND, Knot and NSD secondaries.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import threading
from collections.abc import Iterator
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import pytest
from nicupdate_server.backends.base import RecordChange, ZoneChange
from nicupdate_server.backends.builtin import BuiltinBackend
from nicupdate_server.changelog import Change, Kind, append
from nicupdate_server.config import DnsSettings, RateLimitSettings, ZoneSettings
from nicupdate_server.dns.answer import respond
from nicupdate_server.dns.control import bind
from nicupdate_server.dns.journal import Diff
from nicupdate_server.dns.notify import Notifier
from nicupdate_server.dns.server import DnsServer
from nicupdate_server.dns.wire import FastPath
from nicupdate_server.tables import hosts as hosts_table
from nicupdate_server.tables import records as records_table
from nicupdate_server.tables import zones as zones_table
from nicupdate_server.zonedata import AuthoritativeData, ZoneData
from sqlalchemy import select, update

from tests.server.conftest import ALICE, LiveServer, eventually
from tests.server.dns.test_journal import ChangeLog, Row, run
from tests.server.dns.test_server import Running, serving, soa_in_authority, tcp, udp
from tests.server.dns.test_transfer import (
    FIRST_SERIAL,
    HOST,
    KEY,
    Primary,
    axfr,
    commit,
    expected,
    ixfr,
    messages,
    with_change_log,
)
from tests.server.dns.test_transfer import serving as transfer_serving
from tests.server.primaries import free_port
from tests.server.secondaries import KINDS, running_secondary
from tests.server.secondaries import Kind as SecondaryKind

ZONE = "dyn.example.test"
HOME = f"home.{ZONE}"
SUB = f"sub.{HOME}"  # a host below home: a name that exists under the wildcard
ACME = f"_acme-challenge.{HOME}"
TOKENS = ("token-one-" + "x" * 40, "token-two-" + "y" * 40)


def make_data() -> tuple[AuthoritativeData, ZoneData]:
    data = AuthoritativeData()
    settings = ZoneSettings(name=ZONE, nameserver_addresses=(IPv4Address("127.0.0.1"),))
    zone = data.add_zone(
        settings,
        2024010101,
        [
            (HOME, {"A": ("203.0.113.7",), "AAAA": ("2001:db8::7",), "TXT": TOKENS}, True),
            (SUB, {"A": ("198.51.100.9",)}, False),
            (f"v4only.{ZONE}", {"A": ("198.51.100.1",)}, False),
        ],
    )
    return data, zone


@pytest.fixture
def running() -> Iterator[Running]:
    yield from serving(*make_data())


def ask(running: Running, name: str, rdtype: str, *, over_tcp: bool = False) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype)
    reply = tcp(running, query) if over_tcp else udp(running, query)
    assert reply.flags & dns.flags.AA
    return reply


def answer_of(reply: dns.message.Message) -> list[tuple[str, str, str]]:
    """(owner as asked, type, value) of every answer record, sorted."""
    return sorted(
        (rrset.name.to_text(), dns.rdatatype.to_text(rrset.rdtype), rd.to_text())
        for rrset in reply.answer
        for rd in rrset
    )


# -- answers --------------------------------------------------------------------------


@pytest.mark.parametrize("over_tcp", [False, True])
def test_a_name_below_a_wildcard_gets_its_addresses_as_its_own(
    running: Running, over_tcp: bool
) -> None:
    for name in (f"x.{HOME}", f"a.b.{HOME}", f"Printer.{HOME}"):
        a = ask(running, name, "A", over_tcp=over_tcp)
        assert a.rcode() == dns.rcode.NOERROR
        assert answer_of(a) == [(f"{name}.", "A", "203.0.113.7")]  # the query name, as asked
        assert a.authority == []
        aaaa = ask(running, name, "AAAA", over_tcp=over_tcp)
        assert answer_of(aaaa) == [(f"{name}.", "AAAA", "2001:db8::7")]
    # The wildcard itself, asked by name.
    assert answer_of(ask(running, f"*.{HOME}", "A")) == [(f"*.{HOME}.", "A", "203.0.113.7")]


def test_a_type_the_wildcard_lacks_is_nodata(running: Running) -> None:
    for rdtype in ("TXT", "MX"):
        reply = ask(running, f"x.{HOME}", rdtype)
        assert reply.rcode() == dns.rcode.NOERROR
        assert reply.answer == []
        soa_in_authority(reply)


def test_any_below_a_wildcard_is_one_rrset(running: Running) -> None:
    reply = ask(running, f"x.{HOME}", "ANY")
    assert answer_of(reply) == [(f"x.{HOME}.", "A", "203.0.113.7")]


def test_names_that_exist_are_never_made_from_the_wildcard(running: Running) -> None:
    # sub.home has its own A and no AAAA: NODATA, not the wildcard's AAAA.
    assert answer_of(ask(running, SUB, "A")) == [(f"{SUB}.", "A", "198.51.100.9")]
    nodata = ask(running, SUB, "AAAA")
    assert nodata.rcode() == dns.rcode.NOERROR and nodata.answer == []
    soa_in_authority(nodata)
    # Below a name that exists without a wildcard of its own: NXDOMAIN.
    for name in (f"x.{SUB}", f"x.{ACME}", f"deep.x.{ACME}"):
        reply = ask(running, name, "A")
        assert reply.rcode() == dns.rcode.NXDOMAIN, name
        soa_in_authority(reply)
    # The ACME name exists (its TXT records): no addresses there.
    acme_a = ask(running, ACME, "A")
    assert acme_a.rcode() == dns.rcode.NOERROR and acme_a.answer == []
    # A host without a wildcard: the names below it do not exist.
    assert ask(running, f"x.v4only.{ZONE}", "A").rcode() == dns.rcode.NXDOMAIN


def test_acme_txt_records_each_one_string(running: Running) -> None:
    for over_tcp in (False, True):
        reply = ask(running, ACME.upper(), "TXT", over_tcp=over_tcp)
        assert reply.rcode() == dns.rcode.NOERROR
        (rrset,) = reply.answer
        assert rrset.name.to_text() == f"{ACME.upper()}."  # the client's spelling (0x20)
        assert sorted(rd.strings for rd in rrset) == [(t.encode(),) for t in TOKENS]


def test_a_long_token_is_one_string_of_255_characters(running: Running) -> None:
    token = "t" * 255
    running.zone.set_host(f"long.{ZONE}", {"TXT": (token,)}, False)
    reply = ask(running, f"_acme-challenge.long.{ZONE}", "TXT")
    assert [rd.strings for rd in reply.answer[0]] == [(token.encode(),)]


def test_answers_follow_a_wildcard_turned_on_and_off(running: Running) -> None:
    """What the fast path keeps is not kept past a change: a name that was NXDOMAIN is
    answered once a wildcard covers it, and NXDOMAIN again once it goes."""
    v4only = f"v4only.{ZONE}"
    below = f"www.{v4only}"
    for _ in range(3):
        assert ask(running, below, "A").rcode() == dns.rcode.NXDOMAIN
        assert ask(running, v4only, "TXT").answer == []  # NODATA, kept
    running.zone.set_host(v4only, {"A": ("198.51.100.1",), "TXT": ("abc",)}, True)
    acme = f"_acme-challenge.{v4only}"
    for _ in range(3):
        assert answer_of(ask(running, below, "A")) == [(f"{below}.", "A", "198.51.100.1")]
        assert answer_of(ask(running, acme, "TXT")) == [(f"{acme}.", "TXT", '"abc"')]
        assert ask(running, v4only, "TXT").answer == []  # the token is not at the host
    running.zone.set_host(v4only, {"A": ("198.51.100.2",)}, True)  # a new address
    assert answer_of(ask(running, below, "A")) == [(f"{below}.", "A", "198.51.100.2")]
    running.zone.set_host(v4only, {"A": ("198.51.100.2",)}, False)
    assert ask(running, below, "A").rcode() == dns.rcode.NXDOMAIN
    assert ask(running, acme, "TXT").rcode() == dns.rcode.NXDOMAIN
    assert ask(running, f"*.{v4only}", "A").rcode() == dns.rcode.NXDOMAIN


def test_the_fast_path_and_the_reference_agree_on_wildcard_names() -> None:
    data, _ = make_data()
    fast = FastPath(data, lambda wire: (respond(data, wire, max_size=None) or (None,))[0])
    for name in (f"x.{HOME}", f"a.b.{HOME}", ACME, f"x.{ACME}", f"x.{SUB}", SUB, HOME):
        for rdtype in ("A", "AAAA", "TXT", "MX"):
            wire = dns.message.make_query(name, rdtype, use_edns=0).to_wire()
            made = fast.reply(wire)
            assert made is not None, (name, rdtype)  # all of these are the fast path's
            reference = respond(data, wire, max_size=None)
            assert reference is not None
            assert dns.message.from_wire(made[0]) == dns.message.from_wire(reference[0])


def test_a_flood_of_random_names_below_a_wildcard_is_one_account() -> None:
    """Response rate limiting counts the wildcard's answers by the wildcard, as BIND
    does: random names cannot each earn their own account."""
    data, _ = make_data()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    udp_socket, tcp_socket = bind(HOST, 0)
    settings = DnsSettings(rate_limit=RateLimitSettings(responses_per_second=5, slip=2))
    server = DnsServer(data, settings, udp_socket, tcp_socket)
    attacker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        asyncio.run_coroutine_threadsafe(server.start(), loop).result(5)
        attacker.bind((HOST, 0))
        attacker.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sent = 0
        for round_ in range(2):
            for _ in range(100):
                query = dns.message.make_query(f"r{sent}.{HOME}", "A")
                attacker.sendto(query.to_wire(), (HOST, server.port))
                sent += 1
            # Once another network is answered, the server has read the flood so far.
            reply = dns.query.udp(
                dns.message.make_query(f"other.{HOME}", "A"),
                HOST,
                port=server.port,
                source=f"127.0.{2 + round_}.1",
                timeout=5,
            )
            assert reply.answer and not reply.flags & dns.flags.TC
        attacker.setblocking(False)
        full = 0
        while True:
            try:
                reply = dns.message.from_wire(attacker.recv(4096))
            except BlockingIOError:
                break
            full += not reply.flags & dns.flags.TC
        assert full <= 0.1 * sent  # 5 a second, not one account per name
    finally:
        attacker.close()
        asyncio.run_coroutine_threadsafe(server.close(), loop).result(15)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


# -- the builtin backend --------------------------------------------------------------


def test_the_builtin_backend_serves_the_owners_the_reconciler_names() -> None:
    data, zone = make_data()
    backend = BuiltinBackend(data)
    fqdn = f"new.{ZONE}"
    change = ZoneChange(
        zone.settings,
        2024010102,
        [
            RecordChange(fqdn, "A", ("192.0.2.44",)),
            RecordChange(f"*.{fqdn}", "A", ("192.0.2.44",)),
            RecordChange(f"_acme-challenge.{fqdn}", "TXT", ("acme-token",)),
        ],
    )
    asyncio.run(backend.apply(change))

    def served(name: str, rdtype: str) -> dns.message.Message:
        replied = respond(data, dns.message.make_query(name, rdtype).to_wire(), max_size=None)
        assert replied is not None
        return dns.message.from_wire(replied[0])

    assert answer_of(served(f"host.{fqdn}", "A")) == [(f"host.{fqdn}.", "A", "192.0.2.44")]
    assert answer_of(served(f"_acme-challenge.{fqdn}", "TXT")) == [
        (f"_acme-challenge.{fqdn}.", "TXT", '"acme-token"')
    ]
    assert served(fqdn, "SOA").authority[0][0].serial == 2024010102
    # What the reconciler compares with: what is stored at each owner.
    assert backend.current(f"*.{fqdn}", "A") == ("192.0.2.44",)
    assert backend.current(f"_acme-challenge.{fqdn}", "TXT") == ("acme-token",)
    assert backend.current(f"host.{fqdn}", "A") == ()  # answered from the wildcard only

    removal = [
        RecordChange(f"*.{fqdn}", "A", ()),
        RecordChange(f"_acme-challenge.{fqdn}", "TXT", ()),
    ]
    asyncio.run(backend.apply(ZoneChange(zone.settings, 2024010103, removal)))
    assert served(f"host.{fqdn}", "A").rcode() == dns.rcode.NXDOMAIN
    assert served(f"_acme-challenge.{fqdn}", "TXT").rcode() == dns.rcode.NXDOMAIN
    assert answer_of(served(fqdn, "A")) == [(f"{fqdn}.", "A", "192.0.2.44")]


# -- the DNS process, fed by the change log --------------------------------------------


def write_records(
    server: LiveServer, fqdn: str, records: dict[str, list[str]], wildcard: bool
) -> None:
    """What a server process's writer commits for a change of ``fqdn``'s record set and
    wildcard flag: the rows, the zone's serial and the change-log row."""

    async def work() -> None:
        async with server.runtime.engine.begin() as conn:
            host_id = (
                await conn.execute(select(hosts_table.c.id).where(hosts_table.c.fqdn == fqdn))
            ).scalar_one()
            previous: dict[str, list[str]] = {}
            for rtype, value in await conn.execute(
                select(records_table.c.rtype, records_table.c.address).where(
                    records_table.c.host_id == host_id
                )
            ):
                previous.setdefault(rtype, []).append(value)
            was_wildcard = (
                await conn.execute(
                    select(hosts_table.c.wildcard).where(hosts_table.c.id == host_id)
                )
            ).scalar_one()
            await conn.execute(records_table.delete().where(records_table.c.host_id == host_id))
            rows = [
                {"host_id": host_id, "rtype": rtype, "address": value}
                for rtype, values in records.items()
                for value in values
            ]
            if rows:
                await conn.execute(records_table.insert(), rows)
            await conn.execute(
                update(hosts_table).where(hosts_table.c.id == host_id).values(wildcard=wildcard)
            )
            since = (
                await conn.execute(select(zones_table.c.serial).where(zones_table.c.name == ZONE))
            ).scalar_one()
            await conn.execute(
                update(zones_table).where(zones_table.c.name == ZONE).values(serial=since + 1)
            )
            value: dict[str, Any] = {
                "records": records,
                "previous": previous,
                "zone": ZONE,
                "serial": since + 1,
                "since": since,
            }
            if wildcard:
                value["wildcard"] = True
            if was_wildcard:
                value["previous_wildcard"] = True
            await append(conn, [Change(Kind.RECORDS, fqdn, value)], "test")

    server.call(work)


def addresses(server: LiveServer, name: str, rdtype: str = "A") -> list[str]:
    return sorted(rd.to_text() for rrset in server.dns_query(name, rdtype).answer for rd in rrset)


def test_the_dns_process_follows_wildcards_and_txt_through_the_change_log(
    alice: LiveServer,
) -> None:
    reply = alice.update(f"hostname={HOME}&myip=192.0.2.5", auth=ALICE)
    assert reply.text.strip() == "good 192.0.2.5"
    assert alice.dns_query(f"x.{HOME}").rcode() == dns.rcode.NXDOMAIN

    write_records(alice, HOME, {"A": ["192.0.2.5"], "TXT": ["tok-a", "tok-b"]}, True)
    assert eventually(lambda: addresses(alice, f"x.{HOME}") == ["192.0.2.5"], 10)
    assert addresses(alice, f"a.b.{HOME}") == ["192.0.2.5"]
    assert addresses(alice, ACME, "TXT") == ['"tok-a"', '"tok-b"']

    # A restarted DNS process loads them from the database.
    assert alice.runtime.dns is not None
    process = alice.runtime.dns._process
    assert process is not None
    os.kill(process.pid, signal.SIGKILL)
    assert eventually(lambda: alice.runtime.dns is not None and alice.runtime.dns.restarts == 1)
    assert eventually(lambda: addresses(alice, f"y.{HOME}") == ["192.0.2.5"], 10)
    assert addresses(alice, ACME, "TXT") == ['"tok-a"', '"tok-b"']

    write_records(alice, HOME, {"A": ["192.0.2.5"]}, False)  # wildcard off, token gone
    assert eventually(lambda: alice.dns_query(f"x.{HOME}").rcode() == dns.rcode.NXDOMAIN, 10)
    assert alice.dns_query(ACME, "TXT").rcode() == dns.rcode.NXDOMAIN
    assert addresses(alice, HOME) == ["192.0.2.5"]

    write_records(alice, HOME, {"A": ["192.0.2.5"], "TXT": ["tok-c"]}, True)
    assert eventually(lambda: addresses(alice, f"x.{HOME}") == ["192.0.2.5"], 10)
    result = alice.cli("host", "remove", HOME)
    assert result.returncode == 0, result.stderr
    for name, rdtype in ((f"x.{HOME}", "A"), (ACME, "TXT"), (HOME, "A"), (f"*.{HOME}", "A")):
        assert eventually(
            lambda name=name, rdtype=rdtype: (
                alice.dns_query(name, rdtype).rcode() == dns.rcode.NXDOMAIN
            ),
            10,
        ), name


# -- zone transfers -------------------------------------------------------------------


@pytest.fixture
def primary() -> Iterator[Primary]:
    yield from transfer_serving()


H1 = f"h1.{ZONE}"  # 10.0.0.1 in the harness's zone


def test_axfr_carries_wildcards_and_txt(primary: Primary) -> None:
    def give() -> None:
        primary.zone.set_host(H1, {"A": ("10.0.0.1",), "TXT": TOKENS}, True)
        primary.zone.set_host(f"h2.{ZONE}", {"TXT": ("t" * 255,)}, False)

    primary.run(give)
    transferred = axfr(primary)
    assert transferred == expected(primary.zone)
    wildcard = transferred.get_rdataset(f"*.{H1}.", "A")
    assert wildcard is not None and [rd.to_text() for rd in wildcard] == ["10.0.0.1"]
    tokens = transferred.get_rdataset(f"_acme-challenge.{H1}.", "TXT")
    assert tokens is not None and sorted(rd.strings for rd in tokens) == [
        (t.encode(),) for t in TOKENS
    ]
    long = transferred.get_rdataset(f"_acme-challenge.h2.{ZONE}.", "TXT")
    assert long is not None and [rd.strings for rd in long] == [(b"t" * 255,)]


def test_ixfr_turns_a_wildcard_on_and_off(primary: Primary, tmp_path: Path) -> None:
    log = with_change_log(primary, tmp_path)
    secondary = axfr(primary)
    first = FIRST_SERIAL
    a = {"A": ["10.0.0.1"]}
    on = commit(primary, first + 1, [Row(H1, a, a, wildcard=True)])
    with_token = {"A": ["10.0.0.1"], "TXT": ["tok"]}
    commit(primary, first + 2, [Row(H1, with_token, a, wildcard=True, previous_wildcard=True)])
    off = commit(primary, first + 3, [Row(H1, a, with_token, previous_wildcard=True)])

    star, acme = f"*.{H1}", f"_acme-challenge.{H1}"
    assert primary.call(lambda: log.diffs(first, off)) == [
        Diff(first, first + 1, [], [(star, "A", "10.0.0.1")]),
        Diff(first + 1, first + 2, [], [(acme, "TXT", "tok")]),
        Diff(first + 2, first + 3, [(star, "A", "10.0.0.1"), (acme, "TXT", "tok")], []),
    ]
    assert primary.call(lambda: log.diffs(first, on)) == [
        Diff(first, first + 1, [], [(star, "A", "10.0.0.1")])
    ]

    replies = messages(primary, "IXFR", serial=first)
    assert replies[0].answer[0].rdtype == dns.rdatatype.SOA
    sent = [  # names relative to the zone, as dnspython's client gives them
        (rrset.name.to_text(), dns.rdatatype.to_text(rrset.rdtype))
        for reply in replies
        for rrset in reply.answer
    ]
    assert ("*.h1", "A") in sent and ("_acme-challenge.h1", "TXT") in sent
    assert ("h1", "A") not in sent  # its own address did not change
    ixfr(primary, secondary)
    assert secondary == expected(primary.zone)
    assert secondary.get_rdataset(f"{star}.", "A") is None
    # Both (the messages read above, then the client's) went as differences.
    assert primary.transfers is not None and primary.transfers.counts["ixfr"] == 2


def test_a_removed_host_takes_its_wildcard_out_of_the_ixfr(
    primary: Primary, tmp_path: Path
) -> None:
    log = with_change_log(primary, tmp_path)
    records = {"A": ["10.0.0.1"], "TXT": ["tok"]}
    commit(primary, FIRST_SERIAL + 1, [Row(H1, records, {"A": ["10.0.0.1"]}, wildcard=True)])
    secondary = axfr(primary)
    assert secondary.get_rdataset(f"*.{H1}.", "A") is not None
    gone = commit(
        primary, FIRST_SERIAL + 2, [Row(H1, {}, records, removed=True, previous_wildcard=True)]
    )
    diffs = primary.call(lambda: log.diffs(FIRST_SERIAL + 1, gone))
    assert diffs is not None and sorted(diffs[0].deleted) == sorted(
        [
            (H1, "A", "10.0.0.1"),
            (f"*.{H1}", "A", "10.0.0.1"),
            (f"_acme-challenge.{H1}", "TXT", "tok"),
        ]
    )
    ixfr(primary, secondary)
    assert secondary == expected(primary.zone)
    assert primary.transfers is not None and primary.transfers.counts["ixfr"] == 1


def test_rows_written_before_wildcards_still_give_their_differences(
    tmp_path: Path,
) -> None:
    """Rows without the wildcard keys (older servers) read as wildcard off."""
    from tests.server.dns.test_journal import make_engine

    async def scenario() -> list[Diff] | None:
        engine = await make_engine(tmp_path)
        try:
            log = ChangeLog(engine)
            await log.commit(60, [Row(H1, {"A": ["192.0.2.1"]})])
            [newest] = await log.commit(61, [Row(H1, {"A": ["192.0.2.2"]}, {"A": ["192.0.2.1"]})])
            return await log.diffs(60, newest)
        finally:
            await engine.dispose()

    assert run(scenario()) == [Diff(60, 61, [(H1, "A", "192.0.2.1")], [(H1, "A", "192.0.2.2")])]


@pytest.mark.parametrize("kind", KINDS)
def test_a_real_secondary_answers_for_the_wildcard_and_follows_it(
    primary: Primary, tmp_path: Path, kind: SecondaryKind
) -> None:
    """BIND, Knot and NSD take the wildcard and the TXT records by AXFR, answer names
    below the wildcard themselves, and drop it when an IXFR turns it off."""
    with_change_log(primary, tmp_path)
    a = {"A": ["10.0.0.1"]}
    with_token = {"A": ["10.0.0.1"], "TXT": ["acme-token"]}
    commit(primary, FIRST_SERIAL + 1, [Row(H1, with_token, a, wildcard=True)])
    port = free_port()
    transfers = primary.transfers
    assert transfers is not None
    notifier = Notifier([(HOST, port)], KEY, soa=transfers.soa, timeouts=(1.0, 2.0, 4.0))
    primary.call(notifier.start)
    try:
        with running_secondary(kind, tmp_path, primary.tcp_port, [ZONE], KEY, port=port) as server:
            server.wait_serial(ZONE, FIRST_SERIAL + 1, timeout=20)
            below = server.query(f"www.{H1}", "A")
            assert below.rcode() == dns.rcode.NOERROR
            assert [rd.to_text() for rd in below.answer[0]] == ["10.0.0.1"]
            assert below.answer[0].name == dns.name.from_text(f"www.{H1}")
            txt = server.query(f"_acme-challenge.{H1}", "TXT")
            assert [rd.strings for rd in txt.answer[0]] == [(b"acme-token",)]
            assert server.query(f"x._acme-challenge.{H1}", "A").rcode() == dns.rcode.NXDOMAIN

            commit(primary, FIRST_SERIAL + 2, [Row(H1, a, with_token, previous_wildcard=True)])
            primary.run(lambda: notifier.changed(ZONE, FIRST_SERIAL + 2))
            server.wait_serial(ZONE, FIRST_SERIAL + 2, timeout=20)
            assert server.query(f"www.{H1}", "A").rcode() == dns.rcode.NXDOMAIN
            assert server.query(f"_acme-challenge.{H1}", "TXT").rcode() == dns.rcode.NXDOMAIN
            assert [rd.to_text() for rd in server.query(H1, "A").answer[0]] == ["10.0.0.1"]
        assert transfers.counts["ixfr"] >= 1  # the change went as differences
    finally:
        primary.call(notifier.close)
