"""The built-in DNS's listeners: UDP and TCP on one port, answers from memory.

UDP is read in batches straight from the socket (one wake-up of the event loop serves
every datagram waiting), answered by the fast path (:mod:`.wire`) or dnspython
(:mod:`.answer`), and rate limited (:mod:`.ratelimit`). TCP is for the replies that do
not fit, for resolvers sent there by a truncated reply, and later for zone transfers:
each address may hold :attr:`DnsSettings.tcp_per_source` connections of the
:attr:`DnsSettings.tcp_clients` there may be, so one source's idle connections never
shut out another's.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import dns.name
import dns.rcode
import dns.tsig

from ..config import DnsSettings
from ..rfc2136in.handover import is_update
from ..zonedata import AuthoritativeData
from .answer import TCP_MAX, Others, respond
from .ratelimit import DROP, SEND, ResponseRateLimit, truncated
from .wire import ANSWER, ERROR, FastPath

log = logging.getLogger("nicupdate.dns")

TCP_IDLE_TIMEOUT = 10.0  # seconds to wait for the next query (or a write) on a TCP connection
UDP_BATCH = 256  # datagrams answered per wake-up at most, so TCP and the feed get their turn
UDP_RECEIVE = 4096


# An UPDATE message's reply, from the server (:mod:`..rfc2136in.handover`): the message,
# its source address, and whether it came over TCP.
Update = Callable[[bytes, str, bool], Awaitable[bytes]]
# A zone transfer (AXFR, IXFR) or its refusal: the reply messages, from the process
# that knows the journal and the keys (:mod:`.process`); over TCP or not.
Transfer = Callable[[bytes, str, bool], AsyncIterator[bytes]]
_XFR_TYPES = (b"\x00\xfb", b"\x00\xfc")  # IXFR, AXFR


def is_transfer(wire: bytes) -> bool:
    """Whether ``wire`` is a QUERY whose (first) question asks for AXFR or IXFR."""
    if len(wire) < 17 or wire[2] & 0xF8 or wire[4:6] != b"\x00\x01":
        return False
    position = 12
    while position < len(wire) and 0 < wire[position] < 64:
        position += 1 + wire[position]
    return wire[position + 1 : position + 3] in _XFR_TYPES


class DnsServer:
    """Serves ``data`` on the bound sockets ``udp`` and ``tcp`` (one port)."""

    def __init__(
        self,
        data: AuthoritativeData,
        settings: DnsSettings,
        udp: socket.socket,
        tcp: socket.socket,
    ) -> None:
        self._data = data
        self.settings = settings
        self._udp = udp
        self._tcp_socket = tcp
        self.fast = FastPath(data, self._reference_udp)
        self.rate_limit = ResponseRateLimit(settings.rate_limit)
        # Set by the DNS process when it has secondaries ([dns.transfer]).
        self.keyring: dict[dns.name.Name, dns.tsig.Key] = {}
        self.others: Others = {}
        self.transfer: Transfer | None = None
        self.update: Update | None = None  # set by the DNS process
        # UPDATE messages' keys: queries signed with them are answered, signed.
        self.update_keys: dict[dns.name.Name, dns.tsig.Key] = {}
        # Told of each query refused for its TSIG signature: (query, source address).
        self.tsig_refused: Callable[[bytes, str], None] | None = None
        self._tcp: asyncio.Server | None = None
        self._clients: dict[asyncio.StreamWriter, asyncio.Task[Any]] = {}
        self._per_source: Counter[str] = Counter()
        self._closing = False
        self._reading = False
        self._transfers: set[asyncio.Future[None]] = set()
        self._updates: set[asyncio.Future[None]] = set()
        # Replies sent, by rcode (read by /metrics); TCP connections turned away.
        self.rcodes: Counter[int] = Counter()
        self.tcp_refused = 0

    def _reference(
        self, wire: bytes, max_size: int | None, source: str = ""
    ) -> tuple[bytes, dns.rcode.Rcode] | None:
        keyring = {**self.update_keys, **self.keyring} if self.update_keys else self.keyring
        replied = respond(self._data, wire, max_size=max_size, keyring=keyring, others=self.others)
        if replied is not None and replied[1] == dns.rcode.NOTAUTH and self.tsig_refused:
            self.tsig_refused(wire, source)
        return replied

    def _reference_udp(self, wire: bytes) -> bytes | None:
        replied = self._reference(wire, None)
        return None if replied is None else replied[0]

    @property
    def port(self) -> int:
        port: int = self._udp.getsockname()[1]
        return port

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._udp.setblocking(False)
        loop.add_reader(self._udp.fileno(), self._readable)
        self._reading = True
        self._tcp = await asyncio.start_server(self._serve_tcp, sock=self._tcp_socket)

    def configure(self, settings: DnsSettings) -> None:
        if settings.rate_limit != self.settings.rate_limit:
            self.rate_limit = ResponseRateLimit(settings.rate_limit)
        self.settings = settings

    async def close(self) -> None:
        self._closing = True
        if self._reading:
            asyncio.get_running_loop().remove_reader(self._udp.fileno())
            self._reading = False
        if self._tcp is not None:
            self._tcp.close()
            for writer in list(self._clients):
                writer.transport.abort()  # the handler sees EOF and ends
            await asyncio.gather(*self._clients.values(), return_exceptions=True)
            await self._tcp.wait_closed()
            self._tcp = None
        self._udp.close()

    # -- UDP -------------------------------------------------------------------------------

    def _readable(self) -> None:
        receive, send = self._udp.recvfrom, self._udp.sendto
        fast = self.fast.reply
        limit = self.rate_limit
        limiting = limit.enabled
        rcodes = self.rcodes
        now = time.monotonic()
        for _ in range(UDP_BATCH):
            try:
                wire, source = receive(UDP_RECEIVE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # ICMP errors of earlier replies surface here
                log.debug("UDP receive: %r", exc)
                continue
            try:
                made = fast(wire)
                if made is not None:
                    reply, kind, subject = made
                elif self.transfer is not None and is_transfer(wire):
                    self._udp_transfer(wire, source)
                    continue
                elif self.update is not None and is_update(wire):
                    self._udp_update(self.update, wire, source)
                    continue
                else:
                    replied = self._reference(wire, None, str(source[0]))
                    if replied is None:
                        continue
                    reply = replied[0]
                    kind = ERROR if replied[1] else ANSWER
                    subject = wire[12:76].lower()
                if limiting:
                    verdict = limit.check(source[0], kind, subject, now)
                    if verdict != SEND:
                        if verdict == DROP or made is None:
                            continue
                        reply = truncated(wire)
                send(reply, source)
                rcodes[reply[3] & 0x0F] += 1
            except (BlockingIOError, InterruptedError):
                pass  # the socket's buffer is full: UDP may drop
            except Exception:
                log.debug("dropped a UDP packet from %s", source, exc_info=True)

    def _udp_transfer(self, wire: bytes, source: Any) -> None:
        """An IXFR over UDP (answered with the SOA alone) or an AXFR (refused)."""
        assert self.transfer is not None
        transfer = self.transfer

        async def reply() -> None:
            async for message in transfer(wire, str(source[0]), False):
                self._udp.sendto(message, source)
                self.rcodes[message[3] & 0x0F] += 1
                break

        task = asyncio.ensure_future(reply())
        self._transfers.add(task)
        task.add_done_callback(self._transfers.discard)

    def _udp_update(self, update: Update, wire: bytes, source: Any) -> None:
        """An UPDATE message, answered when the server has (not rate limited: the
        handover bounds them)."""

        async def reply() -> None:
            message = await update(wire, str(source[0]), False)
            try:
                self._udp.sendto(message, source)
            except OSError:
                return  # the socket's buffer is full, or it is closed: UDP may drop
            self.rcodes[message[3] & 0x0F] += 1

        task = asyncio.ensure_future(reply())
        self._updates.add(task)
        task.add_done_callback(self._updates.discard)

    # -- TCP -------------------------------------------------------------------------------

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        source = str(peer[0]) if peer else "?"
        settings = self.settings
        if (
            self._closing
            or len(self._clients) >= settings.tcp_clients
            or self._per_source[source] >= settings.tcp_per_source
        ):
            self.tcp_refused += 1
            writer.transport.abort()
            return
        task = asyncio.current_task()
        assert task is not None
        self._clients[writer] = task
        self._per_source[source] += 1
        try:
            await self._queries(reader, writer, source)
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
            pass
        except Exception:
            log.debug("TCP connection failed", exc_info=True)
        finally:
            del self._clients[writer]
            self._per_source[source] -= 1
            if not self._per_source[source]:
                del self._per_source[source]
            writer.close()  # sends what is still buffered, unless the client never reads
            try:
                async with asyncio.timeout(TCP_IDLE_TIMEOUT):
                    await writer.wait_closed()
            except Exception:
                writer.transport.abort()

    async def _queries(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, source: str
    ) -> None:
        while True:
            async with asyncio.timeout(TCP_IDLE_TIMEOUT):
                size = int.from_bytes(await reader.readexactly(2), "big")
                wire = await reader.readexactly(size)
            if self.transfer is not None and is_transfer(wire):
                async for message in self.transfer(wire, source, True):
                    self.rcodes[message[3] & 0x0F] += 1
                    writer.write(len(message).to_bytes(2, "big") + message)
                    async with asyncio.timeout(TCP_IDLE_TIMEOUT):
                        await writer.drain()
                continue
            if self.update is not None and is_update(wire):
                reply = await self.update(wire, source, True)
                self.rcodes[reply[3] & 0x0F] += 1
                writer.write(len(reply).to_bytes(2, "big") + reply)
                async with asyncio.timeout(TCP_IDLE_TIMEOUT):
                    await writer.drain()
                continue
            replied = self._reference(wire, TCP_MAX, source)
            if replied is None:
                return  # a response or a fragment: the stream is not DNS queries
            reply, rcode = replied
            self.rcodes[int(rcode)] += 1
            writer.write(len(reply).to_bytes(2, "big") + reply)
            async with asyncio.timeout(TCP_IDLE_TIMEOUT):
                await writer.drain()
