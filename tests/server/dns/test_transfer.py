"""Zone transfers as secondaries see them: dnspython's own AXFR and IXFR clients over
real TCP and UDP on 127.0.0.1, against a small harness that frames the messages and
calls :meth:`Transfers.respond` (the data plane's listeners do the same), with the
IXFR differences read from a real change log in SQLite.

What a test compares is the zone the client ends up with, against a zone built here
from the served data; and for the refusals, the rcode or TSIG error the client gets,
that nothing reached its zone, and the log line.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import shutil
import socket
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, ip_network
from pathlib import Path
from typing import Any, TypeVar, cast
from unittest import mock

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.tsig
import dns.xfr
import dns.zone
import pytest
from nicupdate_server.config import ZoneSettings
from nicupdate_server.dns.catalog import CatalogZone
from nicupdate_server.dns.journal import Diff
from nicupdate_server.dns.transfer import Transfers
from nicupdate_server.logsummary import LogSummary
from nicupdate_server.zonedata import (
    SOA_EXPIRE,
    SOA_REFRESH,
    SOA_RETRY,
    AuthoritativeData,
    ZoneData,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.server.dns.test_journal import ZONE, ChangeLog, Row, apply, make_engine

T = TypeVar("T")
HOST = "127.0.0.1"
TIMEOUT = 20.0
ORIGIN = dns.name.from_text(ZONE)
SECRET = base64.b64encode(b"transfer-secret-of-32-bytes-long").decode()
KEY = dns.tsig.Key("xfr-key.", SECRET, "hmac-sha256")
OTHER_KEY = dns.tsig.Key("other-key.", SECRET, "hmac-sha256")
WRONG_SECRET = dns.tsig.Key("xfr-key.", base64.b64encode(b"not-the-secret").decode(), "hmac-sha256")
LOOPBACK = (IPv4Network("127.0.0.0/8"),)
FIRST_SERIAL = 2024010100
log = logging.getLogger("test.transfer")


def settings(ttl: int = 60) -> ZoneSettings:
    return ZoneSettings(
        name=ZONE,
        ttl=ttl,
        nameservers=(f"ns.{ZONE}", "ns2.example.net"),
        nameserver_addresses=(IPv4Address("192.0.2.53"),),
    )


def fill(zone: ZoneData, count: int) -> None:
    zone.fill(
        (
            f"h{i}.{ZONE}",
            {
                "A": (f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}",),
                "AAAA": (f"2001:db8::{i:x}",) if i % 3 == 0 else (),
            },
            False,
        )
        for i in range(count)
    )
    zone.set(f"deep.below.{ZONE}", "A", ("192.0.2.99", "192.0.2.98"))


def expected(zone: ZoneData) -> dns.zone.Zone:
    """The zone a secondary should hold, written here from what ``zone`` serves."""
    ttl = zone.ttl
    lines = [
        f"@ {ttl} IN SOA ns.{ZONE}. hostmaster.{ZONE}. {zone.serial} "
        f"{SOA_REFRESH} {SOA_RETRY} {SOA_EXPIRE} {ttl}",
        f"@ {ttl} IN NS ns.{ZONE}.",
        f"@ {ttl} IN NS ns2.example.net.",
    ]
    for rtype, table in zone.records.items():
        for owner, values in table.items():
            if rtype == "TXT":
                values = tuple(f'"{value}"' for value in values)
            lines.extend(f"{owner}. {ttl} IN {rtype} {value}" for value in values)
    return dns.zone.from_text("\n".join(lines), origin=ORIGIN)


def serial_of(zone: dns.zone.Zone) -> int:
    soa = zone.get_soa()
    return int(soa.serial)


# -- the harness: Transfers behind TCP and UDP, on an event loop in a thread ------------


@dataclass
class Primary:
    data: AuthoritativeData
    zone: ZoneData
    loop: asyncio.AbstractEventLoop
    transfers: Transfers | None = None
    log: ChangeLog | None = None
    position: int = 0
    tcp_port: int = 0
    udp_port: int = 0
    sizes: list[int] = field(default_factory=list)  # of every message sent over TCP
    # Called once after the first message of the next transfer is written.
    after_first: Callable[[], None] | None = None
    parse_keyring: dict[dns.name.Name, dns.tsig.Key] | None = None

    def call(self, work: Callable[[], Awaitable[T]]) -> T:
        async def wrapped() -> T:
            return await work()

        return asyncio.run_coroutine_threadsafe(wrapped(), self.loop).result(TIMEOUT * 3)

    def run(self, work: Callable[[], T]) -> T:
        async def wrapped() -> T:
            return work()

        return self.call(wrapped)

    def parse(self, wire: bytes) -> dns.message.Message:
        if self.parse_keyring is not None:
            return dns.message.from_wire(wire, keyring=self.parse_keyring)
        return dns.message.from_wire(wire, keyring=False)

    def replies(self, wire: bytes, peer: str, tcp: bool) -> AsyncIterator[bytes]:
        """A transfer's messages from :class:`Transfers`; for other questions (a
        secondary's SOA query), the answer the data plane would give."""
        assert self.transfers is not None
        query = self.parse(wire)
        if query.question and query.question[0].rdtype in (
            dns.rdatatype.AXFR,
            dns.rdatatype.IXFR,
        ):
            return self.transfers.respond(query, peer, tcp)
        return self.soa_answer(wire)

    async def soa_answer(self, wire: bytes) -> AsyncIterator[bytes]:
        assert self.transfers is not None
        query = dns.message.from_wire(wire, keyring={KEY.name: KEY})
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        question = query.question[0]
        soa = self.transfers.soa(question.name.to_text(omit_final_dot=True).lower())
        if question.rdtype == dns.rdatatype.SOA and soa is not None:
            response.answer = [soa]
        else:
            response.set_rcode(dns.rcode.REFUSED)
        yield response.to_wire()

    async def serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")[0]
        try:
            while True:
                size = int.from_bytes(await reader.readexactly(2), "big")
                wire = await reader.readexactly(size)
                async for reply in self.replies(wire, peer, True):
                    self.sizes.append(len(reply))
                    writer.write(len(reply).to_bytes(2, "big") + reply)
                    await writer.drain()
                    if self.after_first is not None:
                        hook, self.after_first = self.after_first, None
                        hook()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def answer_udp(
        self, transport: asyncio.DatagramTransport, wire: bytes, peer: Any
    ) -> None:
        async for reply in self.replies(wire, peer[0], False):
            transport.sendto(reply, peer)


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, primary: Primary) -> None:
        self.primary = primary
        self.transport: asyncio.DatagramTransport | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)  # not a subclass

    def datagram_received(self, data: bytes, addr: Any) -> None:
        assert self.transport is not None
        task = asyncio.get_running_loop().create_task(
            self.primary.answer_udp(self.transport, data, addr)
        )
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


def start_transfers(
    primary: Primary,
    *,
    keyring: dict[dns.name.Name, dns.tsig.Key] | None = None,
    allow: tuple[Any, ...] = LOOPBACK,
    catalog: CatalogZone | None = None,
    max_message: int = 65535,
) -> None:
    """Serve ``primary``'s data (run on its loop)."""

    async def journal(zone: str, since: int, upto: int) -> list[Diff] | None:
        if primary.log is None:
            return None
        return await primary.log.diffs(since, upto, zone)

    async def start() -> None:
        primary.transfers = Transfers(
            primary.data,
            {KEY.name: KEY} if keyring is None else keyring,
            allow,
            journal,
            lambda: primary.position,
            catalog,
            LogSummary(log, 60.0),
            max_message=max_message,
        )

    primary.call(start)


@pytest.fixture
def primary() -> Iterator[Primary]:
    yield from serving()


def serving() -> Iterator[Primary]:
    """Transfers of a zone of 300 names, on free loopback ports, its loop in a thread."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    data = AuthoritativeData()
    zone = data.add_zone(settings(), FIRST_SERIAL)
    fill(zone, 300)
    made = Primary(data, zone, loop)
    start_transfers(made)

    async def listen() -> tuple[asyncio.Server, asyncio.DatagramTransport]:
        for _ in range(20):  # TCP and UDP on one port, as a secondary expects
            server = await asyncio.start_server(made.serve_tcp, HOST, 0)
            port = server.sockets[0].getsockname()[1]
            try:
                transport, _ = await loop.create_datagram_endpoint(
                    lambda: _Udp(made), local_addr=(HOST, port)
                )
            except OSError:
                server.close()
                await server.wait_closed()
                continue
            made.tcp_port = made.udp_port = port
            return server, transport
        raise RuntimeError("no loopback port free for both TCP and UDP")

    server, transport = made.call(listen)
    try:
        yield made
    finally:

        async def stop() -> None:
            transport.close()
            server.close()
            await server.wait_closed()
            if made.log is not None:
                await made.log.engine.dispose()

        made.call(stop)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


def with_change_log(primary: Primary, directory: Path) -> ChangeLog:
    """Give ``primary`` a real change log whose first row is the zone's serial."""

    async def make() -> ChangeLog:
        engine: AsyncEngine = await make_engine(directory)
        primary.log = ChangeLog(engine)
        return primary.log

    made = primary.call(make)
    commit(primary, primary.zone.serial, [Row(f"h0.{ZONE}", {"A": ["10.0.0.0"]}, {})])
    return made


def commit(primary: Primary, serial: int, rows: list[Row], *, serve: bool = True) -> int:
    """Commit ``rows`` under ``serial`` and (``serve``) apply them as the DNS process does."""
    assert primary.log is not None
    log = primary.log
    ids = primary.call(lambda: log.commit(serial, rows))

    def applied() -> None:
        if serve:
            apply(primary.zone, rows, serial)
            primary.position = ids[-1]

    primary.run(applied)
    return ids[-1]


# -- the clients ------------------------------------------------------------------------


def axfr(primary: Primary, key: dns.tsig.Key | None = KEY) -> dns.zone.Zone:
    zone = dns.zone.Zone(ORIGIN)
    query, _ = dns.xfr.make_query(zone, serial=None, keyring=key)
    dns.query.inbound_xfr(HOST, zone, query, port=primary.tcp_port, timeout=TIMEOUT)
    return zone


def ixfr(primary: Primary, zone: dns.zone.Zone, key: dns.tsig.Key | None = KEY) -> None:
    """Bring ``zone`` up to date with an IXFR from its serial."""
    query, _ = dns.xfr.make_query(zone, serial=0, keyring=key)
    dns.query.inbound_xfr(HOST, zone, query, port=primary.tcp_port, timeout=TIMEOUT)


def messages(
    primary: Primary, rdtype: str, serial: int = 0, key: dns.tsig.Key | None = KEY
) -> list[dns.message.Message]:
    """The messages of a transfer as dnspython's client reads them (TSIG checked)."""
    keyring = None if key is None else {key.name: key}
    return list(
        dns.query.xfr(
            HOST,
            ORIGIN,
            rdtype=rdtype,
            serial=serial,
            port=primary.tcp_port,
            timeout=TIMEOUT,
            keyring=keyring,
            keyname=None if key is None else key.name,
            keyalgorithm=KEY.algorithm,
        )
    )


def answer_types(replies: list[dns.message.Message]) -> list[tuple[str, int | None]]:
    """(type, serial for SOA) of every record, in order."""
    found: list[tuple[str, int | None]] = []
    for message in replies:
        for rrset in message.answer:
            for rdata in rrset:
                serial = int(rdata.serial) if rrset.rdtype == dns.rdatatype.SOA else None
                found.append((dns.rdatatype.to_text(rrset.rdtype), serial))
    return found


# -- AXFR ---------------------------------------------------------------------------------


def test_axfr_gives_every_record_in_signed_messages(primary: Primary) -> None:
    start_transfers(primary, max_message=2048)  # many messages from a small zone
    replies = messages(primary, "AXFR")
    assert len(replies) > 5
    assert all(reply.had_tsig for reply in replies)  # each one signed and checked
    assert all(size <= 2048 for size in primary.sizes)

    transferred = axfr(primary)
    assert transferred == expected(primary.zone)
    assert transferred.get_rdataset(f"ns.{ZONE}.", "A") is not None  # the glue
    assert serial_of(transferred) == FIRST_SERIAL


def test_a_large_zone_comes_in_full_messages_and_the_loop_keeps_running(
    primary: Primary,
) -> None:
    primary.run(lambda: fill(primary.zone, 20_000))
    ticks = 0
    running = True

    async def ticker() -> None:
        nonlocal ticks
        while running:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.run_coroutine_threadsafe(ticker(), primary.loop)
    primary.sizes.clear()
    transferred = axfr(primary)
    running = False
    task.result(TIMEOUT)
    assert transferred == expected(primary.zone)
    assert len(primary.sizes) > 3
    assert max(primary.sizes) <= 65535
    assert min(primary.sizes[:-1]) > 60_000  # many records per message
    assert ticks > len(primary.sizes)  # other tasks ran between the messages


def test_a_transfer_serves_the_version_it_started_with(primary: Primary) -> None:
    """A change applied while a transfer is under way is not in it, nor its serial."""
    start_transfers(primary, max_message=1024)
    before = expected(primary.zone)

    def change() -> None:
        primary.zone.set(f"h1.{ZONE}", "A", ("203.0.113.1",))
        primary.zone.set(f"new.{ZONE}", "A", ("203.0.113.2",))
        primary.zone.serial += 1

    primary.after_first = change
    transferred = axfr(primary)
    assert primary.after_first is None  # the change came in the middle
    assert transferred == before
    assert axfr(primary) == expected(primary.zone) != before


def test_a_query_the_listener_checked_already_is_served(primary: Primary) -> None:
    primary.parse_keyring = {KEY.name: KEY, OTHER_KEY.name: OTHER_KEY}
    assert axfr(primary) == expected(primary.zone)
    with pytest.raises(dns.xfr.TransferError) as refused:
        axfr(primary, OTHER_KEY)  # known to the listener, not a transfer key
    assert refused.value.rcode == dns.rcode.REFUSED


# -- refusals -----------------------------------------------------------------------------


def refused_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "zone transfer refused" in r.getMessage()]


def test_an_unsigned_transfer_is_refused_and_logged(
    primary: Primary, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="test.transfer")
    zone = dns.zone.Zone(ORIGIN)
    for _ in range(3):
        with pytest.raises(dns.xfr.TransferError) as refused:
            dns.query.inbound_xfr(HOST, zone, port=primary.tcp_port, timeout=TIMEOUT)
        assert refused.value.rcode == dns.rcode.REFUSED
    assert len(zone.nodes) == 0
    lines = refused_lines(caplog)
    assert len(lines) == 1  # once per source and interval
    assert f"from 127.0.0.1: {ZONE}: not signed" in lines[0]


def test_an_address_not_allowed_is_refused(
    primary: Primary, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="test.transfer")
    start_transfers(primary, allow=(ip_network("127.0.0.2/32"), ip_network("::1/128")))
    zone = dns.zone.Zone(ORIGIN)
    with pytest.raises(dns.xfr.TransferError) as refused:
        dns.query.inbound_xfr(
            HOST, zone, dns.xfr.make_query(zone, serial=None, keyring=KEY)[0], port=primary.tcp_port
        )
    assert refused.value.rcode == dns.rcode.REFUSED
    assert len(zone.nodes) == 0
    assert "address not in the allowed networks" in refused_lines(caplog)[0]


@pytest.mark.parametrize(
    ("key", "error", "reason"),
    [
        (WRONG_SECRET, dns.tsig.PeerBadSignature, "bad TSIG signature (key xfr-key)"),
        (OTHER_KEY, dns.tsig.PeerBadKey, "unknown TSIG key other-key"),
        (
            dns.tsig.Key("xfr-key.", SECRET, "hmac-sha512"),
            dns.tsig.PeerBadKey,
            "TSIG key xfr-key with another algorithm",
        ),
    ],
)
def test_a_wrong_key_gets_notauth_with_the_tsig_error(
    primary: Primary,
    caplog: pytest.LogCaptureFixture,
    key: dns.tsig.Key,
    error: type[Exception],
    reason: str,
) -> None:
    caplog.set_level(logging.INFO, logger="test.transfer")
    zone = dns.zone.Zone(ORIGIN)
    with pytest.raises(error):
        dns.query.inbound_xfr(
            HOST, zone, dns.xfr.make_query(zone, serial=None, keyring=key)[0], port=primary.tcp_port
        )
    assert len(zone.nodes) == 0
    lines = refused_lines(caplog)
    assert lines and reason in lines[0]
    assert SECRET not in caplog.text


def test_a_skewed_clock_gets_badtime(primary: Primary) -> None:
    query = dns.message.make_query(ZONE, "AXFR")
    query.use_tsig(KEY)
    with mock.patch("dns.message.time.time", return_value=1_000_000_000.0):
        wire = query.to_wire()  # signed in 2001
    with socket.create_connection((HOST, primary.tcp_port), timeout=TIMEOUT) as conn:
        conn.sendall(len(wire).to_bytes(2, "big") + wire)
        size = int.from_bytes(conn.recv(2), "big")
        reply = b""
        while len(reply) < size:
            reply += conn.recv(size - len(reply))
    with pytest.raises(dns.tsig.PeerBadTime):
        dns.message.from_wire(reply, keyring=KEY, request_mac=query.mac)
    parsed = dns.message.from_wire(reply, keyring=False)
    assert parsed.rcode() == dns.rcode.NOTAUTH and parsed.answer == []


def test_a_zone_not_served_here_gets_notauth(primary: Primary) -> None:
    zone = dns.zone.Zone("elsewhere.example.")
    with pytest.raises(dns.xfr.TransferError) as refused:
        dns.query.inbound_xfr(
            HOST, zone, dns.xfr.make_query(zone, serial=None, keyring=KEY)[0], port=primary.tcp_port
        )
    assert refused.value.rcode == dns.rcode.NOTAUTH


def test_udp_axfr_is_formerr_and_udp_ixfr_gets_the_soa(primary: Primary) -> None:
    query = dns.message.make_query(ZONE, "AXFR")
    query.use_tsig(KEY)
    reply = dns.query.udp(query, HOST, port=primary.udp_port, timeout=TIMEOUT)
    assert reply.rcode() == dns.rcode.FORMERR
    assert reply.had_tsig

    zone = dns.zone.Zone(ORIGIN)
    query, _ = dns.xfr.make_query(zone, serial=FIRST_SERIAL - 5, keyring=KEY)
    with pytest.raises(dns.xfr.UseTCP):  # the SOA alone: "ask again over TCP"
        dns.query.inbound_xfr(
            HOST, zone, query, port=primary.udp_port, udp_mode=dns.query.UDPMode.ONLY
        )
    reply = dns.query.udp(query, HOST, port=primary.udp_port, timeout=TIMEOUT)
    assert answer_types([reply]) == [("SOA", FIRST_SERIAL)]


# -- IXFR ---------------------------------------------------------------------------------


def test_ixfr_sends_the_differences_and_the_client_ends_at_the_data(
    primary: Primary, tmp_path: Path
) -> None:
    with_change_log(primary, tmp_path)
    secondary = axfr(primary)
    first = FIRST_SERIAL
    commit(primary, first + 1, [Row(f"h1.{ZONE}", {"A": ["203.0.113.1"]}, {"A": ["10.0.0.1"]})])
    commit(  # a batch: several hosts under one serial
        primary,
        first + 2,
        [
            Row(f"h2.{ZONE}", {"AAAA": ["2001:db8::2"]}, {"A": ["10.0.0.2"]}),
            Row(f"new.{ZONE}", {"A": ["203.0.113.9"], "AAAA": ["2001:db8::9"]}, {}),
            Row(f"h3.{ZONE}", {}, {"A": ["10.0.0.3"], "AAAA": ["2001:db8::3"]}, removed=True),
        ],
    )
    commit(primary, first + 3, [Row(f"h1.{ZONE}", {"A": ["203.0.113.2"]}, {"A": ["203.0.113.1"]})])

    replies = messages(primary, "IXFR", serial=first)
    assert answer_types(replies)[:2] == [("SOA", first + 3), ("SOA", first)]  # incremental
    steps = [serial for kind, serial in answer_types(replies) if kind == "SOA"]
    # the new SOA; per version its old SOA, then its new one; the new SOA again
    news = [first + 3]
    assert steps == [*news, first, first + 1, first + 1, first + 2, first + 2, first + 3, *news]

    ixfr(primary, secondary)
    assert secondary == expected(primary.zone)
    assert serial_of(secondary) == first + 3
    assert primary.transfers is not None and primary.transfers.counts["ixfr"] == 2


def test_ixfr_of_a_current_client_is_one_soa(primary: Primary, tmp_path: Path) -> None:
    with_change_log(primary, tmp_path)
    replies = messages(primary, "IXFR", serial=FIRST_SERIAL)
    assert answer_types(replies) == [("SOA", FIRST_SERIAL)]
    ahead = list(  # a client ahead of us (another primary's serial) gets ours alone
        dns.query.xfr(
            HOST,
            ORIGIN,
            rdtype="IXFR",
            serial=FIRST_SERIAL + 10,
            port=primary.tcp_port,
            timeout=TIMEOUT,
            keyring={KEY.name: KEY},
            raise_on_serial_went_backwards=False,
        )
    )
    assert answer_types(ahead) == [("SOA", FIRST_SERIAL)]


def test_ixfr_sends_the_whole_zone_when_the_log_does_not_reach_back(
    primary: Primary, tmp_path: Path
) -> None:
    log = with_change_log(primary, tmp_path)
    secondary = axfr(primary)
    newest = commit(
        primary, FIRST_SERIAL + 1, [Row(f"h1.{ZONE}", {"A": ["203.0.113.1"]}, {"A": ["10.0.0.1"]})]
    )
    primary.call(lambda: log.prune(newest))  # the row of the client's serial is gone

    replies = messages(primary, "IXFR", serial=FIRST_SERIAL)
    types = answer_types(replies)
    assert types[:2] == [("SOA", FIRST_SERIAL + 1), ("NS", None)]  # AXFR-style
    ixfr(primary, secondary)
    assert secondary == expected(primary.zone)


def test_ixfr_asks_only_up_to_what_is_served(primary: Primary, tmp_path: Path) -> None:
    """A change committed but not yet applied here is in the log, not in the transfer."""
    with_change_log(primary, tmp_path)
    secondary = axfr(primary)
    commit(
        primary, FIRST_SERIAL + 1, [Row(f"h1.{ZONE}", {"A": ["203.0.113.1"]}, {"A": ["10.0.0.1"]})]
    )
    commit(
        primary,
        FIRST_SERIAL + 2,
        [Row(f"h1.{ZONE}", {"A": ["203.0.113.2"]}, {"A": ["203.0.113.1"]})],
        serve=False,
    )
    ixfr(primary, secondary)
    assert secondary == expected(primary.zone)
    assert serial_of(secondary) == FIRST_SERIAL + 1
    assert primary.transfers is not None and primary.transfers.counts["ixfr"] == 1


def test_differences_that_do_not_match_the_data_send_the_whole_zone(
    primary: Primary, tmp_path: Path
) -> None:
    """A row the data did not take (a reserved name, say), and a host named like a
    nameserver with glue: the log cannot say what the secondary holds there."""
    with_change_log(primary, tmp_path)
    secondary = axfr(primary)
    row = Row(f"reserved.{ZONE}", {"A": ["203.0.113.1"]}, {})
    commit(primary, FIRST_SERIAL + 1, [row], serve=False)
    primary.run(lambda: setattr(primary.zone, "serial", FIRST_SERIAL + 1))
    primary.position += 1
    ixfr(primary, secondary)
    assert secondary == expected(primary.zone)
    assert primary.transfers is not None and primary.transfers.counts["ixfr-full"] == 1

    commit(primary, FIRST_SERIAL + 2, [Row(f"ns.{ZONE}", {"AAAA": ["2001:db8::53"]}, {})])
    assert primary.zone.lookup(f"ns.{ZONE}", "A") == ()  # the host's records replace the glue
    ixfr(primary, secondary)
    assert secondary == expected(primary.zone)
    assert primary.transfers.counts["ixfr-full"] == 2


def test_differences_larger_than_the_zone_send_the_whole_zone(
    primary: Primary, tmp_path: Path
) -> None:
    with_change_log(primary, tmp_path)
    secondary = axfr(primary)
    serial = FIRST_SERIAL
    for round_ in range(3):  # every host changes three times
        serial += 1
        rows = [
            Row(
                f"h{i}.{ZONE}",
                {"A": [f"198.51.{round_}.{i % 250}"]},
                {"A": [primary.zone.lookup(f"h{i}.{ZONE}", "A")[0]]},
            )
            for i in range(1, 300)
        ]
        for row in rows:  # keep the AAAA families as they are
            aaaa = primary.zone.lookup(row.fqdn, "AAAA")
            if aaaa:
                row.records["AAAA"] = list(aaaa)
                assert row.previous is not None
                row.previous["AAAA"] = list(aaaa)
        commit(primary, serial, rows)
    replies = messages(primary, "IXFR", serial=FIRST_SERIAL)
    assert answer_types(replies)[1] == ("NS", None)
    ixfr(primary, secondary)
    assert secondary == expected(primary.zone)


# -- a real secondary ---------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("named") is None, reason="BIND 9 (named) is not installed")
def test_bind_takes_the_zone_then_the_changes_after_a_notify(
    primary: Primary, tmp_path: Path
) -> None:
    """BIND 9, configured from deploy/secondaries, as a secondary of the harness: an AXFR
    at start, then NOTIFY from the Notifier and an IXFR with a batch of changes."""
    from nicupdate_server.dns.notify import Notifier

    from tests.server.primaries import free_port
    from tests.server.secondaries import running_secondary

    with_change_log(primary, tmp_path)
    port = free_port()
    transfers = primary.transfers
    assert transfers is not None
    notifier = Notifier([(HOST, port)], KEY, soa=transfers.soa, timeouts=(1.0, 2.0, 4.0))
    primary.call(notifier.start)
    try:
        with running_secondary("bind", tmp_path, primary.tcp_port, [ZONE], KEY, port=port) as bind:
            bind.wait_serial(ZONE, FIRST_SERIAL, timeout=TIMEOUT)
            assert [rd.to_text() for rd in bind.query(f"h7.{ZONE}", "A").answer[0]] == ["10.0.0.7"]
            commit(
                primary,
                FIRST_SERIAL + 1,
                [
                    Row(f"h7.{ZONE}", {"A": ["203.0.113.7"]}, {"A": ["10.0.0.7"]}),
                    Row(f"new.{ZONE}", {"AAAA": ["2001:db8::77"]}, {}),
                ],
            )
            primary.run(lambda: notifier.changed(ZONE, FIRST_SERIAL + 1))
            bind.wait_serial(ZONE, FIRST_SERIAL + 1, timeout=TIMEOUT)
            assert [rd.to_text() for rd in bind.query(f"h7.{ZONE}", "A").answer[0]] == [
                "203.0.113.7"
            ]
            assert [rd.to_text() for rd in bind.query(f"new.{ZONE}", "AAAA").answer[0]] == [
                "2001:db8::77"
            ]
            assert bind.transfers(ZONE) == ["AXFR", "IXFR"]
        assert notifier.acknowledged >= 1
    finally:
        primary.call(notifier.close)
