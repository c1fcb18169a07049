"""Response rate limiting and the per-source TCP cap: a flood from one network gets
almost nothing, and never costs another network its answers."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from ipaddress import ip_network

import dns.flags
import dns.message
import dns.query
import dns.rcode
import pytest
from nicupdate_server.config import DnsSettings, RateLimitSettings
from nicupdate_server.dns.control import bind
from nicupdate_server.dns.ratelimit import DROP, SEND, SLIP, ResponseRateLimit, truncated
from nicupdate_server.dns.server import DnsServer
from nicupdate_server.dns.wire import ANSWER, ERROR, NXDOMAIN

from tests.server.dns.test_server import HOST, ZONE, make_data

OTHER = "127.0.1.1"  # loopback is a /8: this is another /24 than 127.0.0.1
NAME = f"home.{ZONE}".encode()


def limiter(**settings: object) -> ResponseRateLimit:
    return ResponseRateLimit(RateLimitSettings(**settings))  # type: ignore[arg-type]


def flood(
    limit: ResponseRateLimit, source: str, count: int, seconds: float, **kw: object
) -> list[int]:
    kind = str(kw.get("kind", ANSWER))
    subject = kw.get("subject", NAME)
    start = float(kw.get("start", 1000.0))  # type: ignore[arg-type]
    return [
        limit.check(source, kind, subject, start + i * seconds / count)  # type: ignore[arg-type]
        for i in range(count)
    ]


def test_one_source_gets_its_rate_and_every_second_extra_reply_truncated() -> None:
    limit = limiter(responses_per_second=20, slip=2)
    verdicts = flood(limit, "192.0.2.1", 3000, 1.0)
    assert 20 <= verdicts.count(SEND) <= 41  # the first second's credit and what it earns
    assert verdicts.count(SEND) / len(verdicts) <= 0.05
    assert abs(verdicts.count(SLIP) - verdicts.count(DROP)) <= 1  # slip 2: every other
    # Its neighbours in the /24 share its account; another network does not.
    assert limit.check("192.0.2.200", ANSWER, NAME, 1001.0) != SEND
    assert limit.check("192.0.3.1", ANSWER, NAME, 1001.0) == SEND
    # Another name is another account.
    assert limit.check("192.0.2.1", ANSWER, b"other", 1001.0) == SEND
    assert (limit.dropped, limit.slipped) == (verdicts.count(DROP) + 1, verdicts.count(SLIP))


def test_a_flood_stays_limited_and_ends_within_the_window() -> None:
    limit = limiter(responses_per_second=10, window=5, slip=0)
    flood(limit, "192.0.2.1", 1000, 10.0)  # 100 q/s for 10 s: deep in debt
    assert limit.check("192.0.2.1", ANSWER, NAME, 1011.0) == DROP  # slip 0: drop all
    assert limit.check("192.0.2.1", ANSWER, NAME, 1011.0 + 5.5) == SEND  # the window passed


def test_nxdomains_count_by_zone_and_errors_by_source() -> None:
    limit = limiter(responses_per_second=5)
    zone = ZONE.encode()
    names = [limit.check("192.0.2.1", NXDOMAIN, zone, 1000.0) for _ in range(50)]
    assert names.count(SEND) == 5  # 50 different random names, one zone
    errors = [limit.check("192.0.2.1", ERROR, b"", 1000.0) for _ in range(50)]
    assert errors.count(SEND) == 5


def test_settings_per_kind_exempt_and_log_only() -> None:
    limit = limiter(responses_per_second=0, nxdomains_per_second=2)
    assert flood(limit, "192.0.2.1", 100, 0.1).count(SEND) == 100  # answers: not limited
    assert flood(limit, "192.0.2.1", 10, 0.1, kind=NXDOMAIN, subject=b"z").count(SEND) == 2
    limit = limiter(responses_per_second=1, exempt_clients=(ip_network("192.0.2.0/24"),))
    assert flood(limit, "192.0.2.9", 100, 0.1).count(SEND) == 100
    assert flood(limit, "198.51.100.9", 100, 0.1).count(SEND) == 1
    limit = limiter(responses_per_second=1, log_only=True)
    assert flood(limit, "192.0.2.9", 100, 0.1).count(SEND) == 100
    assert limit.dropped + limit.slipped == 0
    assert not limiter(responses_per_second=0).enabled


def test_ipv6_sources_group_by_prefix() -> None:
    limit = limiter(responses_per_second=1, ipv6_prefix_length=56, slip=0)
    assert limit.check("2001:db8:0:1::1", ANSWER, NAME, 1000.0) == SEND
    assert limit.check("2001:db8:0:2::1", ANSWER, NAME, 1000.0) == DROP  # the same /56
    assert limit.check("2001:db8:1::1", ANSWER, NAME, 1000.0) == SEND


def test_the_table_is_bounded() -> None:
    limit = limiter(responses_per_second=1, max_table_size=100)
    for i in range(5000):
        limit.check(f"10.{i // 256 % 256}.{i % 256}.1", ANSWER, NAME, 1000.0 + i / 1000)
    assert len(limit._accounts) <= 100


def test_the_truncated_reply_is_no_larger_than_the_query() -> None:
    query = dns.message.make_query(f"Home.{ZONE}", "A", use_edns=0, payload=4096)
    query.flags |= dns.flags.CD
    wire = query.to_wire()
    reply = truncated(wire)
    assert len(reply) < len(wire)
    parsed = dns.message.from_wire(reply)
    assert parsed.id == query.id
    assert parsed.flags & dns.flags.TC and parsed.flags & dns.flags.QR
    assert parsed.flags & dns.flags.RD and parsed.flags & dns.flags.CD
    assert parsed.question == query.question and not parsed.answer


# --- over the network -------------------------------------------------------------


@pytest.fixture
def limited() -> Iterator[DnsServer]:
    """A DNS server with BIND-like limits: 5 identical answers a second, slip 2."""
    data, _ = make_data()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    udp, tcp = bind(HOST, 0)
    settings = DnsSettings(rate_limit=RateLimitSettings(responses_per_second=5, slip=2))
    server = DnsServer(data, settings, udp, tcp)
    try:
        asyncio.run_coroutine_threadsafe(server.start(), loop).result(5)
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(server.close(), loop).result(15)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


def test_a_flood_is_answered_sparingly_and_another_source_fully(limited: DnsServer) -> None:
    query = dns.message.make_query(f"home.{ZONE}", "A")
    attacker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    attacker.bind((HOST, 0))
    attacker.settimeout(5)
    attacker.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sent = 0
    for round_ in range(6):
        for _ in range(100):
            attacker.sendto(query.to_wire(), (HOST, limited.port))
            sent += 1
        # The server reads its socket in order: once another network's query is
        # answered, every query of the flood so far has been handled (and the socket's
        # buffer never overflows, so none is lost before the server sees it).
        reply = dns.query.udp(
            query, HOST, port=limited.port, source=f"127.0.{2 + round_}.1", timeout=5
        )
        assert (
            reply.rcode() == dns.rcode.NOERROR and reply.answer and not reply.flags & dns.flags.TC
        )
    for _ in range(5):  # the first other network got its answers all along
        reply = dns.query.udp(query, HOST, port=limited.port, source=OTHER, timeout=5)
        assert reply.answer and not reply.flags & dns.flags.TC
    attacker.setblocking(False)
    full = cut = 0
    while True:
        try:
            reply = dns.message.from_wire(attacker.recv(4096))
        except BlockingIOError:
            break
        if reply.flags & dns.flags.TC:
            assert not reply.answer
            cut += 1
        else:
            full += 1
    attacker.close()
    assert sent == 600
    assert full <= 0.05 * sent
    assert abs(cut - (sent - full) / 2) <= 2
    # A truncated reply sends a real resolver to TCP, where it is answered.
    reply = dns.query.tcp(query, HOST, port=limited.port, timeout=5)
    assert reply.answer


def test_idle_tcp_connections_from_one_source_do_not_shut_out_another(limited: DnsServer) -> None:
    idle: list[socket.socket] = []
    try:
        for _ in range(400):
            sock = socket.create_connection((HOST, limited.port), timeout=5)
            idle.append(sock)
        query = dns.message.make_query(f"home.{ZONE}", "A")
        for _ in range(20):
            reply = dns.query.tcp(query, HOST, port=limited.port, source=OTHER, timeout=5)
            assert reply.answer
        # Beyond its 16 the first source's connections were closed at once (in order:
        # the server accepts them as they come); its first 16 stay open.
        for sock in idle[16:]:
            sock.settimeout(5)
            try:
                assert sock.recv(1) == b""
            except ConnectionResetError:
                pass
        for sock in idle[:16]:
            sock.setblocking(False)
            with pytest.raises(BlockingIOError):
                sock.recv(1)
        assert limited.tcp_refused == 400 - 16
    finally:
        for sock in idle:
            sock.close()
