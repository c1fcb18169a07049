"""NOTIFY (RFC 1996): telling the secondaries that a zone changed, so they transfer it
at once instead of at their next refresh.

:meth:`Notifier.changed` is called for every change applied (thousands a second under
load) and costs a dictionary update. Per zone and target at most one NOTIFY is in
flight, and they leave at most every :data:`INTERVAL` seconds: the first change of a
burst is announced at once, the changes that come meanwhile are coalesced into one
follow-up, sent once the first is answered and the interval has passed, and only if it
announces a newer serial than the first did (the SOA a NOTIFY carries is read when it
is sent). So a burst of changes costs each secondary a transfer or two a second, not
one per change. An unanswered NOTIFY is sent again after 1, 2, 4, 8 and 16 s, unless a
newer change comes meanwhile: then a fresh NOTIFY says that one (a secondary that was
down is back the moment it answers it). After the last try the target is given up on
until the next change, with one log line per target when it starts failing and one when
it answers again.

A NOTIFY looks like BIND's: opcode NOTIFY, AA, the zone's SOA as the question and the
current SOA record in the answer section, signed with the key when there is one. A
reply counts only with the id of the NOTIFY, QR set, opcode NOTIFY, from the target's
address and port, and (signed NOTIFY) a valid signature over ours; an error rcode or a
TSIG error from the target ends the tries at once (asking again would get the same).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import secrets
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import dns.exception
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdatatype
import dns.rrset
import dns.serial
import dns.tsig
from dns.rdtypes.ANY.SOA import SOA

_log = logging.getLogger("nicupdate.dns.notify")

RETRY_TIMEOUTS = (1.0, 2.0, 4.0, 8.0, 16.0)  # seconds to wait for each try's answer
# Seconds between two NOTIFY of one zone to one target, at least: a busy zone's changes
# reach a secondary within about this (and its transfer), in at most 1/INTERVAL
# transfers a second, however many changes there are.
INTERVAL = 0.1
Target = tuple[str, int]  # (IP address, port)
SoaSource = Callable[[str], dns.rrset.RRset | None]


@dataclass(slots=True)
class _Flight:
    """One (zone, target): whether a NOTIFY is on its way, and what came meanwhile."""

    task: asyncio.Task[None] | None = None
    wanted: int | None = None  # the newest serial changed() gave since the last send
    newer: asyncio.Event = field(default_factory=asyncio.Event)  # set with `wanted`
    sent_at: float = float("-inf")  # when the last NOTIFY left (the event loop's clock)


@dataclass(slots=True)
class _Waiter:
    target: Target
    mac: bytes
    reply: asyncio.Future[str | None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class _Endpoint(asyncio.DatagramProtocol):
    """One UDP socket of one address family; hands replies to the waiter of their id."""

    def __init__(self, notifier: Notifier) -> None:
        self.notifier = notifier
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)  # not a subclass

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.notifier._received(data, addr)

    def error_received(self, exc: Exception) -> None:
        _log.debug("NOTIFY socket: %r", exc)


def _same_address(host: str, other: str) -> bool:
    try:
        return ipaddress.ip_address(host.partition("%")[0]) == ipaddress.ip_address(
            other.partition("%")[0]
        )
    except ValueError:
        return False


def _label(target: Target) -> str:
    host, port = target
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Notifier:
    """Sends NOTIFY for changed zones to ``targets``, signed with ``key`` if given.

    ``soa`` gives a zone's current SOA record for the answer section (None: leave it
    empty). ``timeouts``: how long each try waits for its answer.
    """

    def __init__(
        self,
        targets: Iterable[Target],
        key: dns.tsig.Key | None = None,
        *,
        soa: SoaSource | None = None,
        timeouts: Sequence[float] = RETRY_TIMEOUTS,
        source: str | None = None,
        interval: float = INTERVAL,
    ) -> None:
        self.targets = tuple(dict.fromkeys(targets))
        # The address NOTIFY leaves from (secondaries accept it from their primary's
        # address): dns.listen's, unless that is a wildcard.
        self.source = source
        self.key = key
        self.soa = soa
        self.timeouts = tuple(timeouts)
        self.interval = interval
        # For /metrics: NOTIFY messages sent (tries included), answered with NOERROR,
        # and given up on (no answer to any try, or an error answer).
        self.sent = 0
        self.acknowledged = 0
        self.failed = 0
        self._flights: dict[tuple[str, Target], _Flight] = {}
        self._waiters: dict[int, _Waiter] = {}
        self._endpoints: dict[int, _Endpoint] = {}
        self._failing: set[Target] = set()
        self._closed = False

    async def start(self) -> None:
        """Open the UDP sockets (one per address family the targets use)."""
        loop = asyncio.get_running_loop()
        for family in sorted({_family(host) for host, _ in self.targets}):
            local = "::" if family == socket.AF_INET6 else "0.0.0.0"
            if self.source is not None and _family(self.source) == family:
                local = self.source
            _, endpoint = await loop.create_datagram_endpoint(
                lambda: _Endpoint(self), local_addr=(local, 0), family=family
            )
            self._endpoints[family] = endpoint

    def changed(self, zone: str, serial: int) -> None:
        """``zone`` (normal form) is now at ``serial``: notify every target."""
        if self._closed:
            return
        for target in self.targets:
            flight = self._flights.get((zone, target))
            if flight is None:
                flight = self._flights[(zone, target)] = _Flight()
            flight.wanted = serial
            flight.newer.set()
            if flight.task is None:
                flight.task = asyncio.create_task(
                    self._fly(zone, target, flight), name=f"notify {zone} {_label(target)}"
                )

    async def close(self) -> None:
        self._closed = True
        tasks = [flight.task for flight in self._flights.values() if flight.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for endpoint in self._endpoints.values():
            if endpoint.transport is not None:
                endpoint.transport.close()
        self._endpoints.clear()

    async def _fly(self, zone: str, target: Target, flight: _Flight) -> None:
        """NOTIFY until no newer change than the last one announced is waiting."""
        loop = asyncio.get_running_loop()
        try:
            announced: int | None = None
            while flight.wanted is not None and (
                announced is None or dns.serial.Serial(flight.wanted) > announced
            ):
                wait = flight.sent_at + self.interval - loop.time()
                if wait > 0:  # what comes meanwhile goes with the next one
                    await asyncio.sleep(wait)
                serial, flight.wanted = flight.wanted, None
                flight.newer.clear()
                flight.sent_at = loop.time()
                announced = await self._notify(zone, target, serial, flight.newer)
        except Exception:
            _log.exception("NOTIFY of %s to %s failed", zone, _label(target))
        finally:
            flight.task = None

    async def _notify(self, zone: str, target: Target, serial: int, newer: asyncio.Event) -> int:
        """One NOTIFY and its retries (until ``newer`` is set: a fresh one says more);
        the serial it announced."""
        message_id = secrets.randbelow(0x10000)
        while message_id in self._waiters:
            message_id = secrets.randbelow(0x10000)
        message, announced = self._message(message_id, zone, serial)
        wire = message.to_wire()  # signed once: each try sends the same bytes
        waiter = self._waiters[message_id] = _Waiter(target, message.mac or b"")
        endpoint = self._endpoints[_family(target[0])]
        changed = asyncio.ensure_future(newer.wait())
        try:
            for timeout in self.timeouts:
                assert endpoint.transport is not None
                endpoint.transport.sendto(wire, target)
                self.sent += 1
                await asyncio.wait(
                    (waiter.reply, changed), timeout=timeout, return_when="FIRST_COMPLETED"
                )
                if not waiter.reply.done():
                    if changed.done():
                        return announced  # unanswered, and there is news: say that
                    continue
                problem = waiter.reply.result()
                if problem is None:
                    self.acknowledged += 1
                    if target in self._failing:
                        self._failing.discard(target)
                        _log.info("NOTIFY to %s answered again (zone %s)", _label(target), zone)
                else:
                    self._failed(target, f"{zone}: {problem}")
                return announced
            tries = len(self.timeouts)
            self._failed(
                target, f"{zone}: no answer to {tries} tries; trying again at the next change"
            )
            return announced
        finally:
            changed.cancel()
            del self._waiters[message_id]

    def _failed(self, target: Target, why: str) -> None:
        self.failed += 1
        if target not in self._failing:
            self._failing.add(target)
            _log.warning("NOTIFY to %s failed: %s", _label(target), why)

    def _message(self, message_id: int, zone: str, serial: int) -> tuple[dns.message.Message, int]:
        message = dns.message.make_query(zone, dns.rdatatype.SOA)
        message.id = message_id
        message.set_opcode(dns.opcode.NOTIFY)
        message.flags = (message.flags | dns.flags.AA) & ~dns.flags.RD
        announced = serial & 0xFFFFFFFF
        soa = self.soa(zone) if self.soa is not None else None
        if soa is not None:
            message.answer = [soa]
            announced = int(cast(SOA, soa[0]).serial)
        if self.key is not None:
            message.use_tsig(self.key)
        return message, announced

    def _received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        """A datagram on one of our sockets: the answer to a NOTIFY, or ignored."""
        if len(data) < 12:
            return
        waiter = self._waiters.get(int.from_bytes(data[:2], "big"))
        if waiter is None or waiter.reply.done():
            return
        flags = int.from_bytes(data[2:4], "big")
        host, port = waiter.target
        if (
            not flags & dns.flags.QR
            or dns.opcode.from_flags(flags) != dns.opcode.NOTIFY
            or addr[1] != port
            or not _same_address(str(addr[0]), host)
        ):
            return
        try:
            reply = dns.message.from_wire(
                data,
                keyring=self.key if self.key is not None else None,
                request_mac=waiter.mac,
            )
        except dns.tsig.PeerError as exc:  # the target refused our signature
            waiter.reply.set_result(f"the target rejected the TSIG signature ({exc})")
            return
        except (dns.exception.DNSException, ValueError):
            return  # unsigned, badly signed or malformed: not the target's answer
        rcode = reply.rcode()
        if rcode != dns.rcode.NOERROR:
            waiter.reply.set_result(f"answered {dns.rcode.to_text(rcode)}")
        else:
            waiter.reply.set_result(None)


def _family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET
