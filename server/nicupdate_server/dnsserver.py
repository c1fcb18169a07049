"""The built-in authoritative DNS server: UDP and TCP on one port, answers from memory.

:func:`answer` holds the whole DNS logic (a pure function from query bytes to reply
bytes) and is shared by both transports; :class:`DnsServer` only moves bytes. The
records come from :class:`~.zonedata.AuthoritativeData` and are read at answer time,
so a change (and its new SOA serial) is visible to the very next query.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from collections import Counter
from collections.abc import Callable
from typing import Any, cast

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from dns.rdtypes.ANY.NS import NS as _NS_CLASS
from dns.rdtypes.ANY.SOA import SOA as _SOA_CLASS
from dns.rdtypes.IN.A import A as _A_CLASS
from dns.rdtypes.IN.AAAA import AAAA as _AAAA_CLASS

from .zonedata import SOA_EXPIRE, SOA_REFRESH, SOA_RETRY, AuthoritativeData, ZoneData

_log = logging.getLogger(__name__)

EDNS_PAYLOAD = 1232  # what we advertise and the most we send over UDP (DNS flag day 2020)
UDP_MIN = 512
TCP_MAX = 65535
TCP_IDLE_TIMEOUT = 10.0  # seconds to wait for the next query (or a write) on a TCP connection
TCP_MAX_CLIENTS = 256
_HEADER = 12
_PLAIN_LABEL = re.compile(rb"[a-z0-9_-]+")  # the characters of names in normal form
_IN = dns.rdataclass.IN
_SOA_TYPE, _NS_TYPE = dns.rdatatype.SOA, dns.rdatatype.NS
_ADDRESS_TYPES = {dns.rdatatype.A: "A", dns.rdatatype.AAAA: "AAAA"}
# dnspython's rdata constructors are untyped; this table gives them a result type.
_RDATA: dict[dns.rdatatype.RdataType, Callable[..., dns.rdata.Rdata]] = {
    dns.rdatatype.A: _A_CLASS,
    dns.rdatatype.AAAA: _AAAA_CLASS,
    _NS_TYPE: _NS_CLASS,
    _SOA_TYPE: _SOA_CLASS,
}


def _header_reply(wire: bytes, rcode: dns.rcode.Rcode) -> bytes:
    """A bare reply header (no sections) with the query's id, opcode and RD bit."""
    flags = int.from_bytes(wire[2:4], "big") & (0x7800 | dns.flags.RD)
    return wire[:2] + (flags | dns.flags.QR | int(rcode)).to_bytes(2, "big") + bytes(8)


@functools.lru_cache(maxsize=1024)
def _name(text: str) -> dns.name.Name:
    return dns.name.from_text(text)


def _normalize(qname: dns.name.Name) -> tuple[str, bool]:
    """The normal form of the longest suffix of ``qname`` that can be in our data.

    The flag tells whether that suffix is all of ``qname``; when it is not, the name
    has a label no stored name can have, so it can only be absent from its zone.
    """
    labels = [label.lower() for label in qname.labels if label]
    start = len(labels)
    while start and _PLAIN_LABEL.fullmatch(labels[start - 1]):
        start -= 1
    return b".".join(labels[start:]).decode("ascii"), start == 0


@functools.lru_cache(maxsize=4096)
def _rrset(
    owner: str, ttl: int, rdtype: dns.rdatatype.RdataType, values: tuple[tuple[Any, ...], ...]
) -> dns.rrset.RRset:
    """An RRset from the constructor arguments of its rdatas; never modify the result.

    Cached because answers repeat and dnspython is slow to build RRsets. The owner is
    in normal form; in the reply it is compressed to the question, so it keeps the
    client's spelling (0x20).
    """
    make = _RDATA[rdtype]
    rdatas = [make(_IN, rdtype, *args) for args in values]
    return dns.rrset.from_rdata_list(_name(owner), ttl, rdatas)


def _soa(zone: ZoneData) -> dns.rrset.RRset:
    fields = (
        _name(zone.settings.nameservers[0]),
        _name(zone.settings.soa_rname),
        zone.serial & 0xFFFFFFFF,  # RFC 1982 serial arithmetic wraps
        SOA_REFRESH,
        SOA_RETRY,
        SOA_EXPIRE,
        zone.ttl,
    )
    return _rrset(zone.name, zone.ttl, _SOA_TYPE, (fields,))


def _addresses(zone: ZoneData, name: str, rdtype: dns.rdatatype.RdataType) -> list[dns.rrset.RRset]:
    found = zone.lookup(name, _ADDRESS_TYPES[rdtype])
    if not found:
        return []
    return [_rrset(name, zone.ttl, rdtype, tuple((address,) for address in found))]


def _rrsets(zone: ZoneData, name: str, rdtype: dns.rdatatype.RdataType) -> list[dns.rrset.RRset]:
    """The RRsets of ``rdtype`` (all of them for ANY) at ``name``."""
    found: list[dns.rrset.RRset] = []
    any_type = rdtype == dns.rdatatype.ANY
    if name == zone.name:
        if any_type or rdtype == _SOA_TYPE:
            found.append(_soa(zone))
        if any_type or rdtype == _NS_TYPE:
            targets = tuple((_name(ns),) for ns in zone.settings.nameservers)
            found.append(_rrset(name, zone.ttl, _NS_TYPE, targets))
    for address_type in _ADDRESS_TYPES:
        if any_type or rdtype == address_type:
            found += _addresses(zone, name, address_type)
    return found


def _glue(zone: ZoneData) -> list[dns.rrset.RRset]:
    """Addresses of the zone's own nameservers, for the additional section of NS answers."""
    return [
        rrset
        for ns in zone.settings.nameservers
        for t in _ADDRESS_TYPES
        for rrset in _addresses(zone, ns, t)
    ]


def _resolve(
    data: AuthoritativeData, query: dns.message.Message, response: dns.message.Message
) -> None:
    """Fill ``response`` for a well-formed single-question QUERY."""
    question = query.question[0]
    if question.rdclass != _IN or question.rdtype in (dns.rdatatype.AXFR, dns.rdatatype.IXFR):
        response.set_rcode(dns.rcode.REFUSED)
        return
    name, complete = _normalize(question.name)
    zone = data.find_zone(name) if name else None
    if zone is None:
        response.set_rcode(dns.rcode.REFUSED)
        return
    response.flags |= dns.flags.AA
    if not complete or not zone.exists(name):
        response.set_rcode(dns.rcode.NXDOMAIN)
        response.authority = [_soa(zone)]
        return
    response.answer = _rrsets(zone, name, question.rdtype)
    if not response.answer:
        response.authority = [_soa(zone)]  # NODATA
    elif question.rdtype == dns.rdatatype.NS:
        response.additional = _glue(zone)


def _render(response: dns.message.Message, limit: int) -> bytes:
    """The reply in at most ``limit`` bytes: without glue, else truncated (TC, no records)."""
    try:
        return response.to_wire(max_size=limit)
    except dns.exception.TooBig:
        pass
    if response.additional:
        response.additional = []
        try:
            return response.to_wire(max_size=limit)
        except dns.exception.TooBig:
            pass
    response.flags |= dns.flags.TC
    response.answer = []
    response.authority = []
    return response.to_wire(max_size=limit)


def answer(data: AuthoritativeData, wire: bytes, *, max_size: int | None) -> bytes | None:
    """The reply to the DNS message ``wire``, or ``None`` when nothing must be sent.

    ``max_size`` caps the reply: ``None`` applies the UDP rules (512 bytes without
    EDNS, else the client's payload size within 512..1232); TCP passes ``TCP_MAX``.
    Nothing is sent back to responses (QR set) or to fragments shorter than a header.
    """
    replied = respond(data, wire, max_size=max_size)
    return None if replied is None else replied[0]


def respond(
    data: AuthoritativeData, wire: bytes, *, max_size: int | None
) -> tuple[bytes, dns.rcode.Rcode] | None:
    """:func:`answer`, with the rcode of the reply."""
    if len(wire) < _HEADER or wire[2] & 0x80:
        return None
    opcode = dns.opcode.from_flags(int.from_bytes(wire[2:4], "big"))
    if opcode not in (dns.opcode.QUERY, dns.opcode.UPDATE, dns.opcode.NOTIFY):
        return _header_reply(wire, dns.rcode.NOTIMP), dns.rcode.NOTIMP
    try:
        query = dns.message.from_wire(wire)
    except dns.message.UnknownTSIGKey:
        # We know no TSIG keys.
        return _header_reply(wire, dns.rcode.NOTAUTH), dns.rcode.NOTAUTH
    except Exception as exc:  # dnspython raises many kinds on malformed input
        _log.debug("malformed DNS message: %r", exc)
        return _header_reply(wire, dns.rcode.FORMERR), dns.rcode.FORMERR
    response = dns.message.make_response(query, our_payload=EDNS_PAYLOAD)
    response.flags |= query.flags & dns.flags.CD
    if query.edns >= 0:
        response.ednsflags |= query.ednsflags & dns.flags.DO
    if max_size is None:
        limit = UDP_MIN if query.edns < 0 else max(UDP_MIN, min(query.payload, EDNS_PAYLOAD))
    else:
        limit = max_size
    if opcode != dns.opcode.QUERY:
        response.set_rcode(dns.rcode.REFUSED)  # no dynamic updates, we are the only primary
    elif query.edns > 0:
        response.set_rcode(dns.rcode.BADVERS)
    elif len(query.question) != 1:
        response.set_rcode(dns.rcode.FORMERR)
    else:
        try:
            _resolve(data, query, response)
        except Exception:
            _log.exception("internal error answering %s", query.question[0])
            response = dns.message.make_response(query, our_payload=EDNS_PAYLOAD)
            response.set_rcode(dns.rcode.SERVFAIL)
    return _render(response, limit), response.rcode()


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, data: AuthoritativeData, rcodes: Counter[dns.rcode.Rcode]) -> None:
        self._data = data
        self._rcodes = rcodes
        self._transport: asyncio.DatagramTransport | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        try:
            replied = respond(self._data, data, max_size=None)
            if replied is not None and self._transport is not None:
                self._transport.sendto(replied[0], addr)
                self._rcodes[replied[1]] += 1
        except Exception:
            _log.debug("dropped a UDP packet from %s", addr, exc_info=True)

    def error_received(self, exc: Exception) -> None:
        _log.debug("UDP socket error: %r", exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


class DnsServer:
    """Serves ``data`` over UDP and TCP on ``host:port`` (port 0: any free port, same for both)."""

    def __init__(self, data: AuthoritativeData, host: str, port: int) -> None:
        self._data = data
        self._host = host
        self._port = port
        self._udp: asyncio.DatagramTransport | None = None
        self._udp_protocol: _UdpProtocol | None = None
        self._tcp: asyncio.Server | None = None
        self._clients: dict[asyncio.StreamWriter, asyncio.Task[Any]] = {}
        self._closing = False
        # Replies sent, by rcode, over UDP and TCP (read by /metrics).
        self.rcodes: Counter[dns.rcode.Rcode] = Counter()

    @property
    def port(self) -> int:
        """The bound port (after :meth:`start`)."""
        return self._port

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        attempts = 5 if self._port == 0 else 1
        for attempt in range(attempts):
            transport, protocol = await loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self._data, self.rcodes), local_addr=(self._host, self._port)
            )
            port: int = transport.get_extra_info("sockname")[1]
            try:
                self._tcp = await asyncio.start_server(self._serve_tcp, self._host, port)
            except OSError:
                transport.close()
                await protocol.closed
                if attempt == attempts - 1:
                    raise
                continue
            self._udp, self._udp_protocol, self._port = transport, protocol, port
            _log.info("DNS listening on %s port %d (UDP and TCP)", self._host, port)
            return

    async def close(self) -> None:
        self._closing = True
        if self._tcp is not None:
            self._tcp.close()
            for writer in list(self._clients):
                writer.transport.abort()  # the handler sees EOF and ends
            await asyncio.gather(*self._clients.values(), return_exceptions=True)
            await self._tcp.wait_closed()
            self._tcp = None
        if self._udp is not None and self._udp_protocol is not None:
            self._udp.close()
            await self._udp_protocol.closed
            self._udp = self._udp_protocol = None

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._closing or len(self._clients) >= TCP_MAX_CLIENTS:
            writer.close()
            return
        task = asyncio.current_task()
        assert task is not None
        self._clients[writer] = task
        try:
            while True:
                async with asyncio.timeout(TCP_IDLE_TIMEOUT):
                    size = int.from_bytes(await reader.readexactly(2), "big")
                    wire = await reader.readexactly(size)
                replied = respond(self._data, wire, max_size=TCP_MAX)
                if replied is None:
                    break  # a response or a fragment: the stream is not DNS queries
                reply, rcode = replied
                self.rcodes[rcode] += 1
                writer.write(len(reply).to_bytes(2, "big") + reply)
                async with asyncio.timeout(TCP_IDLE_TIMEOUT):
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
            pass
        except Exception:
            _log.debug("TCP connection failed", exc_info=True)
        finally:
            del self._clients[writer]
            writer.close()  # sends what is still buffered, unless the client never reads
            try:
                async with asyncio.timeout(TCP_IDLE_TIMEOUT):
                    await writer.wait_closed()
            except Exception:
                writer.transport.abort()
