"""The built-in authoritative DNS server, queried the way a resolver would query it."""

from __future__ import annotations

import asyncio
import contextlib
import random
import select
import socket
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address

import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest
from nicupdate_server.config import DnsSettings, RateLimitSettings, ZoneSettings
from nicupdate_server.dns import server as dnsserver
from nicupdate_server.dns.answer import answer
from nicupdate_server.dns.control import bind
from nicupdate_server.dns.server import DnsServer
from nicupdate_server.dns.wire import FastPath
from nicupdate_server.zonedata import (
    SOA_EXPIRE,
    SOA_REFRESH,
    SOA_RETRY,
    AuthoritativeData,
    ZoneData,
)

ZONE = "dyn.example.test"
HOST = "127.0.0.1"
TIMEOUT = 2.0
# No response rate limiting unless a test asks for it (test_ratelimit.py).
UNLIMITED = DnsSettings(rate_limit=RateLimitSettings(responses_per_second=0))


def make_server(
    data: AuthoritativeData, port: int = 0, settings: DnsSettings = UNLIMITED
) -> DnsServer:
    udp, tcp = bind(HOST, port)
    return DnsServer(data, settings, udp, tcp)


def make_data() -> tuple[AuthoritativeData, ZoneData]:
    data = AuthoritativeData()
    settings = ZoneSettings(name=ZONE, nameserver_addresses=(IPv4Address("127.0.0.1"),))
    zone = data.add_zone(settings, serial=2024010101)
    zone.set(f"home.{ZONE}", "A", ("203.0.113.7",))
    zone.set(f"home.{ZONE}", "AAAA", ("2001:db8::7",))
    zone.set(f"v4only.{ZONE}", "A", ("198.51.100.1",))
    zone.set(f"a.b.{ZONE}", "A", ("192.0.2.99",))
    zone.set(f"many.{ZONE}", "A", tuple(f"192.0.2.{i}" for i in range(1, 17)))
    zone.set(f"many.{ZONE}", "AAAA", tuple(f"2001:db8::{i:x}" for i in range(1, 17)))
    return data, zone


@dataclass
class Running:
    server: DnsServer
    zone: ZoneData
    data: AuthoritativeData

    @property
    def port(self) -> int:
        return self.server.port


@pytest.fixture
def running() -> Iterator[Running]:
    """A server on 127.0.0.1, port 0, in a thread with its own event loop."""
    yield from serving(*make_data())


def serving(data: AuthoritativeData, zone: ZoneData) -> Iterator[Running]:
    """Serve ``data`` (``zone`` is the one tests change) as :func:`running` does."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = make_server(data)
    try:
        asyncio.run_coroutine_threadsafe(server.start(), loop).result(5)
        yield Running(server, zone, data)
    finally:
        asyncio.run_coroutine_threadsafe(server.close(), loop).result(15)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


def udp(running: Running, query: dns.message.Message) -> dns.message.Message:
    return dns.query.udp(query, HOST, port=running.port, timeout=TIMEOUT)


def tcp(running: Running, query: dns.message.Message) -> dns.message.Message:
    return dns.query.tcp(query, HOST, port=running.port, timeout=TIMEOUT)


def records(response: dns.message.Message, rdtype: str) -> list[str]:
    wanted = dns.rdatatype.from_text(rdtype)
    return sorted(
        rd.to_text() for rrset in response.answer if rrset.rdtype == wanted for rd in rrset
    )


def soa_in_authority(response: dns.message.Message) -> dns.rrset.RRset:
    assert len(response.authority) == 1
    soa = response.authority[0]
    assert soa.rdtype == dns.rdatatype.SOA
    assert soa.name == dns.name.from_text(ZONE)
    return soa


def query_wire(qname: str, rdtype: str, **kwargs: object) -> bytes:
    return dns.message.make_query(qname, rdtype, **kwargs).to_wire()  # type: ignore[arg-type]


def parse(reply: bytes | None) -> dns.message.Message:
    assert reply is not None
    return dns.message.from_wire(reply)


# --- over the network ---------------------------------------------------------------


def test_a_and_aaaa_answers(running: Running) -> None:
    for rdtype, expected in (("A", ["203.0.113.7"]), ("AAAA", ["2001:db8::7"])):
        response = udp(running, dns.message.make_query(f"home.{ZONE}", rdtype))
        assert response.rcode() == dns.rcode.NOERROR
        assert response.flags & dns.flags.AA
        assert response.flags & dns.flags.RD  # copied from the query
        assert not response.flags & dns.flags.RA
        assert records(response, rdtype) == expected
        assert [rrset.ttl for rrset in response.answer] == [60]
        assert response.answer[0].name == dns.name.from_text(f"home.{ZONE}")


def test_rd_is_copied_not_invented(running: Running) -> None:
    query = dns.message.make_query(f"home.{ZONE}", "A")
    query.flags &= ~dns.flags.RD
    response = udp(running, query)
    assert not response.flags & (dns.flags.RD | dns.flags.RA)
    assert response.flags & dns.flags.AA


def test_apex_soa_and_ns(running: Running) -> None:
    response = udp(running, dns.message.make_query(ZONE, "SOA"))
    assert response.flags & dns.flags.AA
    (rrset,) = response.answer
    assert rrset.ttl == 60
    (soa,) = rrset
    assert soa.mname == dns.name.from_text(f"ns.{ZONE}")
    assert soa.rname == dns.name.from_text(f"hostmaster.{ZONE}")
    assert soa.serial == 2024010101
    assert (soa.refresh, soa.retry, soa.expire, soa.minimum) == (
        SOA_REFRESH,
        SOA_RETRY,
        SOA_EXPIRE,
        60,
    )

    response = udp(running, dns.message.make_query(ZONE, "NS"))
    assert response.flags & dns.flags.AA
    assert records(response, "NS") == [f"ns.{ZONE}."]
    assert response.answer[0].ttl == 60
    glue = [(rrset.name.to_text(), rd.to_text()) for rrset in response.additional for rd in rrset]
    assert glue == [(f"ns.{ZONE}.", "127.0.0.1")]

    response = udp(running, dns.message.make_query(f"ns.{ZONE}", "A"))
    assert records(response, "A") == ["127.0.0.1"]


def test_apex_addresses_and_any(running: Running) -> None:
    running.zone.set(ZONE, "A", ("203.0.113.1",))
    response = udp(running, dns.message.make_query(ZONE, "A"))
    assert records(response, "A") == ["203.0.113.1"]
    # RFC 8482: ANY is answered with one RRset, over UDP and TCP alike.
    for ask in (udp, tcp):
        response = ask(running, dns.message.make_query(ZONE, "ANY"))
        types = [dns.rdatatype.to_text(rrset.rdtype) for rrset in response.answer]
        assert types == ["SOA"]
        response = ask(running, dns.message.make_query(f"home.{ZONE}", "ANY"))
        assert [rrset.rdtype for rrset in response.answer] == [dns.rdatatype.A]
        assert records(response, "A") == ["203.0.113.7"]


def test_serial_change_is_visible(running: Running) -> None:
    def serial() -> int:
        response = udp(running, dns.message.make_query(ZONE, "SOA"))
        return int(response.answer[0][0].serial)

    assert serial() == 2024010101
    running.zone.serial = 2024010102
    assert serial() == 2024010102


def test_record_change_is_visible(running: Running) -> None:
    running.zone.set(f"home.{ZONE}", "A", ("203.0.113.8",))
    assert records(udp(running, dns.message.make_query(f"home.{ZONE}", "A")), "A") == [
        "203.0.113.8"
    ]


def test_nxdomain(running: Running) -> None:
    for qname in (f"nope.{ZONE}", f"x.home.{ZONE}", f"c.a.b.{ZONE}"):
        response = udp(running, dns.message.make_query(qname, "A"))
        assert response.rcode() == dns.rcode.NXDOMAIN, qname
        assert response.flags & dns.flags.AA
        assert response.answer == []
        soa = soa_in_authority(response)
        assert soa.ttl == 60


def test_nodata_including_empty_non_terminal(running: Running) -> None:
    cases = [
        (f"v4only.{ZONE}", "AAAA"),  # has A, not AAAA
        (f"home.{ZONE}", "MX"),
        (f"home.{ZONE}", "SOA"),  # SOA only at the apex
        (f"b.{ZONE}", "A"),  # empty non-terminal above a.b
        (f"b.{ZONE}", "ANY"),
        (ZONE, "AAAA"),
    ]
    for qname, rdtype in cases:
        response = udp(running, dns.message.make_query(qname, rdtype))
        assert response.rcode() == dns.rcode.NOERROR, (qname, rdtype)
        assert response.flags & dns.flags.AA
        assert response.answer == []
        assert soa_in_authority(response).ttl == 60


def test_removed_name_becomes_nxdomain(running: Running) -> None:
    running.zone.set(f"v4only.{ZONE}", "A", ())
    response = udp(running, dns.message.make_query(f"v4only.{ZONE}", "A"))
    assert response.rcode() == dns.rcode.NXDOMAIN


def test_refused_outside_zones_and_other_classes(running: Running) -> None:
    for qname in ("example.test", "other.example", "xdyn.example.test", "."):
        response = udp(running, dns.message.make_query(qname, "A"))
        assert response.rcode() == dns.rcode.REFUSED, qname
        assert not response.flags & dns.flags.AA
        assert response.answer == []
    query = dns.message.make_query(f"home.{ZONE}", "A", rdclass=dns.rdataclass.CH)
    response = udp(running, query)
    assert response.rcode() == dns.rcode.REFUSED
    assert not response.flags & dns.flags.AA
    assert response.answer == []
    response = udp(running, dns.message.make_query("version.bind", "TXT", rdclass="CH"))
    assert response.rcode() == dns.rcode.REFUSED


def test_question_case_is_echoed(running: Running) -> None:
    qname = "HoMe.DyN.eXaMpLe.TeSt."
    query = dns.message.make_query(qname, "A")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(TIMEOUT)
        sock.sendto(query.to_wire(), (HOST, running.port))
        reply = sock.recv(65535)
    encoded = query.to_wire()[12:-4]  # the qname as sent
    assert reply[12 : 12 + len(encoded)] == encoded  # the question, byte for byte
    response = dns.message.from_wire(reply)
    assert response.question[0].name.labels == dns.name.from_text(qname).labels
    assert response.answer[0].name.labels == dns.name.from_text(qname).labels  # compressed
    assert records(response, "A") == ["203.0.113.7"]


def test_edns(running: Running) -> None:
    response = udp(running, dns.message.make_query(f"home.{ZONE}", "A", use_edns=0, payload=4096))
    assert response.edns == 0
    assert response.payload == 1232
    assert records(response, "A") == ["203.0.113.7"]

    response = udp(running, dns.message.make_query(f"home.{ZONE}", "A"))
    assert response.edns == -1  # no OPT without one in the query

    response = udp(running, dns.message.make_query(f"home.{ZONE}", "A", use_edns=1))
    assert response.rcode() == dns.rcode.BADVERS
    assert response.edns == 0
    assert response.answer == []


def test_truncation_then_tcp(running: Running) -> None:
    big = f"big.{ZONE}"
    running.zone.set(big, "A", tuple(f"192.0.2.{i}" for i in range(1, 41)))  # ~700 bytes
    query = dns.message.make_query(big, "A")
    response = udp(running, query)
    assert response.flags & dns.flags.TC
    assert response.answer == [] and response.authority == []
    assert response.question == query.question

    response = tcp(running, query)
    assert not response.flags & dns.flags.TC
    assert response.flags & dns.flags.AA
    assert len(records(response, "A")) == 40

    # With EDNS the same answer fits in a UDP reply.
    query = dns.message.make_query(big, "A", use_edns=0, payload=4096)
    response = udp(running, query)
    assert not response.flags & dns.flags.TC
    assert len(records(response, "A")) == 40


def read_framed(sock: socket.socket) -> bytes:
    def exactly(count: int) -> bytes:
        chunks = b""
        while len(chunks) < count:
            chunk = sock.recv(count - len(chunks))
            assert chunk, "connection closed"
            chunks += chunk
        return chunks

    (size,) = struct.unpack("!H", exactly(2))
    return exactly(size)


def framed(wire: bytes) -> bytes:
    return struct.pack("!H", len(wire)) + wire


def test_several_queries_on_one_tcp_connection(running: Running) -> None:
    names = [f"home.{ZONE}", f"v4only.{ZONE}", f"nope.{ZONE}", ZONE]
    queries = [dns.message.make_query(name, "A") for name in names]
    with socket.create_connection((HOST, running.port), timeout=TIMEOUT) as sock:
        # One after the other through dnspython ...
        for query in queries:
            response = dns.query.tcp(query, HOST, port=running.port, sock=sock, timeout=TIMEOUT)
            assert query.is_response(response)
        # ... and pipelined, all sent before reading any reply.
        sock.sendall(b"".join(framed(query.to_wire()) for query in queries))
        replies = [dns.message.from_wire(read_framed(sock)) for _ in queries]
    assert [reply.id for reply in replies] == [query.id for query in queries]
    assert [reply.rcode() for reply in replies] == [
        dns.rcode.NOERROR,
        dns.rcode.NOERROR,
        dns.rcode.NXDOMAIN,
        dns.rcode.NOERROR,
    ]
    assert records(replies[1], "A") == ["198.51.100.1"]


def test_idle_tcp_connection_is_closed(running: Running, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dnsserver, "TCP_IDLE_TIMEOUT", 0.2)
    # The server closes after 0.2 s; our 60 s only end a wait that never would.
    with socket.create_connection((HOST, running.port), timeout=60) as sock:
        assert sock.recv(10) == b""
    with socket.create_connection((HOST, running.port), timeout=60) as sock:
        sock.sendall(b"\x00\x40" + b"\x00" * 10)  # half a message, then silence
        assert sock.recv(10) == b""


def test_client_that_never_reads_is_dropped(
    running: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dnsserver, "TCP_IDLE_TIMEOUT", 0.2)
    query = framed(query_wire(f"many.{ZONE}", "ANY")) * 50  # ~40 kB of answers per send
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect((HOST, running.port))
        sock.setblocking(False)
        assert sent_until_dropped(sock, query), (
            "the server kept a connection whose replies nobody reads"
        )
    # And it still serves others.
    assert records(tcp(running, dns.message.make_query(f"home.{ZONE}", "A")), "A") == [
        "203.0.113.7"
    ]


def sent_until_dropped(sock: socket.socket, data: bytes, stuck: float = 60.0) -> bool:
    """Send ``data`` on the non-blocking ``sock`` again and again, reading nothing, each
    time the socket has room again (so as fast as the server reads): True once the server
    drops the connection, False when it neither reads on nor drops it for ``stuck`` s.

    How much the server answers before its buffers fill depends on the kernel's buffer
    sizes and how long that takes on the machine's load, so this waits for the drop
    itself; ``stuck`` only ends a wait that would otherwise never end.
    """
    poller = select.poll()
    poller.register(sock, select.POLLOUT)  # POLLERR and POLLHUP come anyway
    while True:
        try:
            sock.send(data)
        except BlockingIOError:
            if not poller.poll(stuck * 1000):
                return False
        except (ConnectionResetError, BrokenPipeError):
            return True


# Idle clients may keep a connection this long; close() is given HANG_BOUND s, so only
# waiting for them (a hang) reaches it, never a slow machine.
LONG_IDLE_TIMEOUT = 3600.0
HANG_BOUND = 60.0


def test_close_does_not_wait_for_idle_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dnsserver, "TCP_IDLE_TIMEOUT", LONG_IDLE_TIMEOUT)
    data, _ = make_data()

    async def scenario() -> None:
        server = make_server(data)
        await server.start()
        clients = []
        for _ in range(3):
            reader, writer = await asyncio.open_connection(HOST, server.port)
            writer.write(framed(query_wire(f"home.{ZONE}", "A")))
            size = int.from_bytes(await reader.readexactly(2), "big")
            await reader.readexactly(size)  # answered: the server serves this connection
            clients.append((reader, writer))
        # They send nothing more and do not close: the server would wait an hour for them.
        await asyncio.wait_for(server.close(), HANG_BOUND)
        for reader, writer in clients:
            assert not writer.is_closing()  # still connected on their side...
            # ...and the server has dropped them.
            assert await asyncio.wait_for(dropped(reader), HANG_BOUND)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    asyncio.run(scenario())


async def dropped(reader: asyncio.StreamReader) -> bool:
    """Whether the other end has closed or reset the connection: True at EOF or reset,
    False when it sends data instead."""
    try:
        return await reader.read(1) == b""
    except ConnectionResetError:
        return True


def test_garbage_does_not_kill_the_server(running: Running) -> None:
    rng = random.Random(1234)
    garbage = [b"", b"\x00", b"\xff" * 11, b"GET / HTTP/1.1\r\n\r\n"]
    garbage += [rng.randbytes(rng.randrange(1, 600)) for _ in range(200)]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(TIMEOUT)
        # In batches small enough for the socket buffer, each followed by a real query
        # whose answer must come (after any FORMERR replies to the garbage).
        for start in range(0, len(garbage), 20):
            for packet in garbage[start : start + 20]:
                sock.sendto(packet, (HOST, running.port))
            sentinel = dns.message.make_query(f"home.{ZONE}", "A")
            sock.sendto(sentinel.to_wire(), (HOST, running.port))
            while True:
                reply = sock.recv(65535)
                assert reply[2] & 0x80  # only replies ever come back
                if reply[:2] == sentinel.to_wire()[:2] and reply[3] & 0x0F == 0:
                    break
            assert records(dns.message.from_wire(reply), "A") == ["203.0.113.7"]
    # A malformed query with a header gets FORMERR with its id, over TCP as well.
    bad = b"\x12\x34\x01\x00" + b"\xff" * 16
    with socket.create_connection((HOST, running.port), timeout=TIMEOUT) as sock:
        sock.sendall(framed(bad))
        reply = read_framed(sock)
        assert reply[:2] == b"\x12\x34"
        assert reply[3] & 0x0F == dns.rcode.FORMERR
        sock.sendall(framed(query_wire(f"home.{ZONE}", "A")))  # the connection still works
        assert records(dns.message.from_wire(read_framed(sock)), "A") == ["203.0.113.7"]
    for packet in garbage[:20]:
        with socket.create_connection((HOST, running.port), timeout=TIMEOUT) as sock:
            sock.sendall(packet)
    assert records(udp(running, dns.message.make_query(f"home.{ZONE}", "A")), "A") == [
        "203.0.113.7"
    ]
    assert records(tcp(running, dns.message.make_query(f"home.{ZONE}", "A")), "A") == [
        "203.0.113.7"
    ]


def test_responses_get_no_reply(running: Running) -> None:
    not_a_query = dns.message.make_query(f"home.{ZONE}", "A")
    not_a_query.id = 1111
    not_a_query.flags |= dns.flags.QR
    query = dns.message.make_query(f"home.{ZONE}", "A")
    query.id = 2222
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(TIMEOUT)
        sock.sendto(not_a_query.to_wire(), (HOST, running.port))
        sock.sendto(query.to_wire(), (HOST, running.port))
        first = dns.message.from_wire(sock.recv(65535))
        assert first.id == 2222  # the response packet was dropped, not answered
        sock.settimeout(0.3)
        with pytest.raises(TimeoutError):
            sock.recv(65535)


def test_udp_and_tcp_share_the_port_and_close_releases_it() -> None:
    data, _ = make_data()

    async def scenario() -> int:
        server = make_server(data)
        await server.start()
        port = server.port
        assert port != 0
        await server.close()
        # Both sockets are free again: a new server can take the same port.
        again = make_server(data, port)
        await again.start()
        assert again.port == port
        await again.close()
        return port

    port = asyncio.run(scenario())
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, port))


# --- answer() directly --------------------------------------------------------------


def test_answer_drops_short_fragments_and_responses() -> None:
    data, _ = make_data()
    assert answer(data, b"", max_size=None) is None
    assert answer(data, b"\x12\x34\x01\x00" + b"\x00" * 7, max_size=None) is None
    response = dns.message.make_response(dns.message.make_query(f"home.{ZONE}", "A"))
    assert answer(data, response.to_wire(), max_size=None) is None
    assert answer(data, response.to_wire(), max_size=65535) is None


def test_answer_formerr() -> None:
    data, _ = make_data()
    # Header claims one question, body is cut short.
    wire = query_wire(f"home.{ZONE}", "A")
    reply = parse(answer(data, wire[:-3], max_size=None))
    assert reply.id == int.from_bytes(wire[:2], "big")
    assert reply.rcode() == dns.rcode.FORMERR
    assert reply.flags & dns.flags.QR
    assert not reply.flags & dns.flags.AA
    # A compression pointer pointing forward.
    wire = b"\xab\xcd\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x20\x00\x01\x00\x01"
    reply = parse(answer(data, wire, max_size=None))
    assert (reply.id, reply.rcode()) == (0xABCD, dns.rcode.FORMERR)
    # Trailing junk after the message.
    wire = query_wire(f"home.{ZONE}", "A") + b"junk"
    assert parse(answer(data, wire, max_size=None)).rcode() == dns.rcode.FORMERR
    # No question, and two questions.
    assert parse(answer(data, b"\x00\x07" + b"\x00" * 10, max_size=None)).rcode() == (
        dns.rcode.FORMERR
    )
    query = dns.message.make_query(f"home.{ZONE}", "A")
    query.question.append(dns.message.make_query(f"v4only.{ZONE}", "A").question[0])
    reply = parse(answer(data, query.to_wire(), max_size=None))
    assert reply.rcode() == dns.rcode.FORMERR
    assert reply.answer == []


def test_answer_opcodes() -> None:
    data, _ = make_data()
    for opcode, rcode in (
        (dns.opcode.UPDATE, dns.rcode.REFUSED),
        (dns.opcode.NOTIFY, dns.rcode.REFUSED),
        (dns.opcode.IQUERY, dns.rcode.NOTIMP),
        (dns.opcode.STATUS, dns.rcode.NOTIMP),
        (15, dns.rcode.NOTIMP),
    ):
        wire = bytearray(query_wire(ZONE, "SOA"))
        wire[2] = (wire[2] & 0x87) | (int(opcode) << 3)
        reply = parse(answer(data, bytes(wire), max_size=None))
        assert reply.rcode() == rcode, opcode
        assert reply.opcode() == opcode
        assert reply.id == int.from_bytes(wire[:2], "big")
        assert not reply.flags & dns.flags.AA
        assert reply.answer == []


def test_answer_refuses_zone_transfers() -> None:
    data, _ = make_data()
    for rdtype in ("AXFR", "IXFR"):
        reply = parse(answer(data, query_wire(ZONE, rdtype), max_size=65535))
        assert reply.rcode() == dns.rcode.REFUSED
        assert reply.answer == []


def test_answer_udp_size_limits() -> None:
    data, zone = make_data()
    big = f"big.{ZONE}"
    zone.set(big, "A", tuple(f"192.0.2.{i}" for i in range(1, 41)))  # ~700 bytes
    zone.set(big, "AAAA", tuple(f"2001:db8::{i:x}" for i in range(1, 61)))  # ~1.7 kB

    def run(rdtype: str, max_size: int | None, **kwargs: object) -> tuple[int, bool]:
        reply = answer(data, query_wire(big, rdtype, **kwargs), max_size=max_size)
        assert reply is not None
        return len(reply), bool(parse(reply).flags & dns.flags.TC)

    assert run("A", None)[1] is True  # 512 without EDNS
    assert run("A", None, use_edns=0, payload=100)[1] is True  # never below 512 ...
    assert run("A", None, use_edns=0, payload=1232)[1] is False
    size, truncated = run("AAAA", None, use_edns=0, payload=4096)
    assert truncated and size <= 1232  # ... and never above 1232 over UDP
    assert run("AAAA", 65535) == (run("AAAA", 65535)[0], False)  # TCP takes it all
    reply = parse(answer(data, query_wire(big, "AAAA"), max_size=65535))
    assert sum(len(rrset) for rrset in reply.answer) == 60


def test_answer_garbage_never_raises() -> None:
    data, _ = make_data()
    rng = random.Random(99)
    valid = query_wire(f"home.{ZONE}", "A", use_edns=0)
    for _ in range(2000):
        wire = bytearray(valid)
        for _ in range(rng.randrange(1, 6)):
            wire[rng.randrange(len(wire))] = rng.randrange(256)
        reply = answer(data, bytes(wire[: rng.randrange(len(wire) + 1)]), max_size=None)
        if reply is not None:
            assert len(reply) <= 1232
            assert reply[:2] == bytes(wire[:2])
            assert reply[2] & 0x80  # QR


def test_soa_timers_are_the_zones() -> None:
    data = AuthoritativeData()
    settings = ZoneSettings(name=ZONE, soa_refresh=900, soa_retry=120, soa_expire=2_419_200)
    data.add_zone(settings, serial=7)
    fast = FastPath(data, lambda wire: answer(data, wire, max_size=None))
    for name in (ZONE, f"nothing.{ZONE}"):
        wire = query_wire(name, "SOA")
        made = fast.reply(wire)
        assert made is not None
        for reply in (parse(made[0]), parse(answer(data, wire, max_size=65535))):
            (soa,) = (reply.answer or reply.authority)[0]
            assert (soa.serial, soa.refresh, soa.retry, soa.expire) == (7, 900, 120, 2_419_200)
