"""The DNS process's side of UPDATE messages: hand each to the server, wait, reply.

The DNS process neither checks keys nor changes records. It sends an UPDATE message
over its control socket as ``{"update": ID, "wire": BYTES, "source": ADDRESS, "tcp":
BOOL}`` and the server answers ``{"updated": ID, "reply": BYTES}`` (``None``: the server
takes no UPDATE messages, answered REFUSED), which the process sends to the client.

Bounded, so that neither a client nor a stuck server can hold the DNS process: at most
:data:`PER_SOURCE` messages of one source (an IPv4 address, an IPv6 /64) and
:data:`IN_ALL` in all wait for their replies, further ones are REFUSED at once; and each
waits at most ``server.apply_deadline`` + :data:`MARGIN` seconds for the server (the
server answers SERVFAIL itself when DNS does not confirm in time), then SERVFAIL
(unsigned: only the server holds the keys).
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
from collections import Counter
from collections.abc import Callable
from typing import Any

import dns.rcode

from ..dns.answer import header_reply
from ..throttle import source_of

PER_SOURCE = 4
IN_ALL = 64
MARGIN = 3.0  # seconds the server may take past its own deadline


def is_update(wire: bytes) -> bool:
    """Whether ``wire`` is an UPDATE request (QR clear, opcode 5)."""
    return len(wire) >= 12 and wire[2] & 0xF8 == 0x28


def _source(address: str) -> str:
    try:
        return source_of(ipaddress.ip_address(address.partition("%")[0]))
    except ValueError:
        return address


class Handover:
    """UPDATE messages waiting for the server's replies."""

    def __init__(self, send: Callable[[dict[str, Any]], None], deadline: Callable[[], float]):
        self._send = send
        self._deadline = deadline  # server.apply_deadline, as configured now
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[bytes | None]] = {}
        self._per_source: Counter[str] = Counter()
        self.rcodes: Counter[int] = Counter()  # replies sent, by rcode (for /metrics)

    async def reply(self, wire: bytes, address: str, tcp: bool) -> bytes:
        """The reply to the UPDATE message ``wire`` from ``address``."""
        source = _source(address)
        if len(self._waiting) >= IN_ALL or self._per_source[source] >= PER_SOURCE:
            reply = header_reply(wire, dns.rcode.REFUSED)
        else:
            reply = await self._handed_over(wire, address, source, tcp)
        self.rcodes[reply[3] & 0x0F] += 1
        return reply

    async def _handed_over(self, wire: bytes, address: str, source: str, tcp: bool) -> bytes:
        number = next(self._ids)
        future: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
        self._waiting[number] = future
        self._per_source[source] += 1
        try:
            self._send({"update": number, "wire": wire, "source": address, "tcp": tcp})
            async with asyncio.timeout(self._deadline() + MARGIN):
                reply = await future
        except TimeoutError:
            return header_reply(wire, dns.rcode.SERVFAIL)
        finally:
            del self._waiting[number]
            self._per_source[source] -= 1
            if not self._per_source[source]:
                del self._per_source[source]
        return header_reply(wire, dns.rcode.REFUSED) if reply is None else reply

    def replied(self, message: dict[str, Any]) -> None:
        """The server's ``{"updated": ID, "reply": ...}`` (one no longer awaited: ignored)."""
        future = self._waiting.get(message["updated"])
        if future is not None and not future.done():
            future.set_result(message["reply"])

    def stats(self) -> dict[str, Any]:
        return {"update_rcodes": dict(self.rcodes)}
