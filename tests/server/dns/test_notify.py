"""NOTIFY as a secondary receives it: UDP responders on 127.0.0.1 that check the
signature with their keyring, acknowledge, drop the first tries, hold their answers,
or answer wrongly; the Notifier's counters and log lines as /metrics and an operator
see them."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdatatype
import dns.rrset
import dns.tsig
import pytest
from nicupdate_server.dns.notify import Notifier

T = TypeVar("T")
ZONE = "dyn.example.test"
HOST = "127.0.0.1"
KEY = dns.tsig.Key("notify-key.", base64.b64encode(b"notify secret, 32 bytes long!!!!").decode())
FAST = (0.05, 0.1, 0.2, 0.4, 0.8)  # the back-off, shortened for the tests


OPEN: list[Secondary] = []  # the responders of the running test, closed after it


def run(work: Callable[[], Awaitable[T]]) -> T:
    async def bounded() -> T:
        try:
            return await asyncio.wait_for(work(), 60)
        finally:
            for responder in OPEN:
                if responder.transport is not None:
                    responder.transport.close()
            OPEN.clear()
            await asyncio.sleep(0)  # the transports close on the next loop iteration

    return asyncio.run(bounded())


async def until(check: Callable[[], bool], timeout: float = 20.0) -> None:
    """Wait for ``check()`` (polled), or fail after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            raise AssertionError("the condition did not come true in time")
        await asyncio.sleep(0.005)


class Secondary(asyncio.DatagramProtocol):
    """A secondary's NOTIFY handling: checks the TSIG (with ``keyring``), then answers,
    unless told to drop the next ``drop`` NOTIFYs or to ``hold`` its answers."""

    def __init__(self, keyring: dict[dns.name.Name, dns.tsig.Key] | None = None) -> None:
        self.keyring = keyring
        self.received: list[dns.message.Message] = []
        self.drop = 0
        self.hold = False
        self.held: list[tuple[bytes, Any]] = []
        self.rcode = dns.rcode.NOERROR
        self.answer: Callable[[dns.message.Message], bytes] | None = None
        self.via: Secondary | None = None  # answer from this one's socket instead
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    @property
    def port(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])

    def datagram_received(self, data: bytes, addr: Any) -> None:
        message = dns.message.from_wire(data, keyring=self.keyring)  # raises if badly signed
        self.received.append(message)
        if self.drop:
            self.drop -= 1
            return
        if self.answer is not None:
            reply = self.answer(message)
        else:
            response = dns.message.make_response(message)
            response.flags |= dns.flags.AA
            response.set_rcode(self.rcode)
            reply = response.to_wire()
        if self.hold:
            self.held.append((reply, addr))
        else:
            transport = self.via.transport if self.via is not None else self.transport
            assert transport is not None
            transport.sendto(reply, addr)

    def release(self) -> None:
        assert self.transport is not None
        for reply, addr in self.held:
            self.transport.sendto(reply, addr)
        self.held.clear()


async def secondary(keyring: dict[dns.name.Name, dns.tsig.Key] | None = None) -> Secondary:
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_datagram_endpoint(
        lambda: Secondary(keyring), local_addr=(HOST, 0)
    )
    OPEN.append(protocol)
    return protocol


def soa_source(serials: dict[str, int]) -> Callable[[str], dns.rrset.RRset | None]:
    def soa(zone: str) -> dns.rrset.RRset | None:
        if zone not in serials:
            return None
        return dns.rrset.from_text(
            f"{zone}.", 60, "IN", "SOA", f"ns.{zone}. hostmaster.{zone}. {serials[zone]} 1 1 1 60"
        )

    return soa


def serial_in(message: dns.message.Message) -> int:
    [rrset] = message.answer
    assert rrset.rdtype == dns.rdatatype.SOA
    return int(rrset[0].serial)


def test_a_signed_notify_with_the_soa_reaches_every_target() -> None:
    async def scenario() -> tuple[list[Secondary], Notifier]:
        targets = [await secondary({KEY.name: KEY}), await secondary({KEY.name: KEY})]
        notifier = Notifier(
            [(HOST, t.port) for t in targets], KEY, soa=soa_source({ZONE: 42}), timeouts=FAST
        )
        await notifier.start()
        notifier.changed(ZONE, 42)
        await until(lambda: notifier.acknowledged == 2)
        await notifier.close()
        return targets, notifier

    targets, notifier = run(scenario)
    for target in targets:
        [message] = target.received
        assert message.opcode() == dns.opcode.NOTIFY
        assert message.flags & dns.flags.AA and not message.flags & dns.flags.QR
        assert message.question[0].name == dns.name.from_text(ZONE)
        assert message.question[0].rdtype == dns.rdatatype.SOA
        assert serial_in(message) == 42
        assert message.had_tsig and message.keyname == KEY.name  # checked on receipt
    assert (notifier.sent, notifier.acknowledged, notifier.failed) == (2, 2, 0)


def test_a_burst_of_changes_becomes_two_notifies() -> None:
    """The first change's NOTIFY, and one more with the last serial: fresh, since the
    first is unanswered and there is news (a burst in one go is one), and no sooner than
    the interval after the first."""
    serials = {ZONE: 1}

    async def scenario() -> tuple[Secondary, Notifier]:
        target = await secondary()
        target.hold = True
        notifier = Notifier([(HOST, target.port)], soa=soa_source(serials), timeouts=(10.0,))
        await notifier.start()
        notifier.changed(ZONE, 1)
        await until(lambda: len(target.held) == 1)  # the first NOTIFY is out, unanswered
        for serial in range(2, 1001):
            serials[ZONE] = serial
            notifier.changed(ZONE, serial)
            if serial % 100 == 0:
                await asyncio.sleep(0)  # the changes come over some time
        target.hold = False
        target.release()  # the first one's answer comes late: it no longer counts
        await until(lambda: notifier.acknowledged == 1)
        await until(lambda: len(target.received) == notifier.sent)
        await notifier.close()
        return target, notifier

    target, notifier = run(scenario)
    assert [serial_in(message) for message in target.received] == [1, 1000]
    assert (notifier.sent, notifier.acknowledged) == (2, 1)


def test_a_change_already_announced_sends_nothing_more() -> None:
    serials = {ZONE: 7}

    async def scenario() -> tuple[Secondary, Notifier]:
        target = await secondary()
        target.hold = True
        notifier = Notifier([(HOST, target.port)], soa=soa_source(serials), timeouts=(10.0,))
        await notifier.start()
        notifier.changed(ZONE, 6)  # the NOTIFY carries the SOA as it is when sent: 7
        await until(lambda: len(target.held) == 1)
        notifier.changed(ZONE, 7)
        target.hold = False
        target.release()
        await until(lambda: notifier.acknowledged == 1)
        await until(lambda: len(target.received) == notifier.sent)
        await notifier.close()
        return target, notifier

    target, notifier = run(scenario)
    assert [serial_in(message) for message in target.received] == [7]
    assert notifier.sent == 1


def test_unanswered_notifies_are_retried_then_given_up_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="nicupdate.dns.notify")

    async def scenario() -> tuple[Secondary, Notifier, list[int]]:
        target = await secondary()
        notifier = Notifier([(HOST, target.port)], timeouts=FAST)
        await notifier.start()
        counts = []
        target.drop = 2
        notifier.changed(ZONE, 1)
        await until(lambda: notifier.acknowledged == 1)
        counts.append(notifier.sent)  # 3: two dropped, the third answered
        target.drop = 10**6
        notifier.changed(ZONE, 2)
        await until(lambda: notifier.failed == 1)
        counts.append(notifier.sent)  # 3 + 5 tries
        notifier.changed(ZONE, 3)
        await until(lambda: notifier.failed == 2)
        target.drop = 0
        notifier.changed(ZONE, 4)
        await until(lambda: notifier.acknowledged == 2)
        await notifier.close()
        return target, notifier, counts

    target, notifier, counts = run(scenario)
    assert counts == [3, 8]
    assert notifier.sent == 14
    # Every try of one NOTIFY is the same message (same id): a late answer still counts.
    assert len({message.id for message in target.received[3:8]}) == 1
    lines = [r.getMessage() for r in caplog.records if r.name == "nicupdate.dns.notify"]
    label = f"{HOST}:{target.port}"
    assert lines == [
        f"NOTIFY to {label} failed: {ZONE}: no answer to 5 tries; trying again at the next change",
        f"NOTIFY to {label} answered again (zone {ZONE})",
    ]
    assert [r.levelno for r in caplog.records if r.name == "nicupdate.dns.notify"] == [
        logging.WARNING,
        logging.INFO,
    ]


def test_only_the_targets_own_answer_counts() -> None:
    """Answers with another id, without QR, with another opcode, badly signed, or not
    DNS at all are not the answer: the NOTIFY is retried and finally given up."""
    wrong_key = dns.tsig.Key(KEY.name, base64.b64encode(b"not the notify secret").decode())

    def wrong(kind: int, message: dns.message.Message) -> bytes:
        response = dns.message.make_response(message)
        if kind == 0:
            response.id ^= 1
        elif kind == 1:
            response.flags &= ~dns.flags.QR
        elif kind == 2:
            response.set_opcode(dns.opcode.QUERY)
        elif kind == 3:
            response.use_tsig(wrong_key)
        else:
            return response.to_wire()[:11]
        return response.to_wire()

    async def scenario() -> tuple[Notifier, int]:
        target = await secondary({KEY.name: KEY})
        notifier = Notifier([(HOST, target.port)], KEY, timeouts=FAST)
        await notifier.start()
        kinds = iter(range(5))
        target.answer = lambda message: wrong(next(kinds), message)
        notifier.changed(ZONE, 1)
        await until(lambda: notifier.failed == 1)
        first_round = notifier.acknowledged
        target.answer = None
        notifier.changed(ZONE, 2)
        await until(lambda: notifier.acknowledged == 1)
        await notifier.close()
        return notifier, first_round

    notifier, first_round = run(scenario)
    assert first_round == 0
    assert (notifier.sent, notifier.failed) == (6, 1)


def test_an_answer_from_another_port_is_not_the_answer() -> None:
    async def scenario() -> Notifier:
        target = await secondary()
        target.via = await secondary()
        notifier = Notifier([(HOST, target.port)], timeouts=FAST[:2])
        await notifier.start()
        notifier.changed(ZONE, 1)
        await until(lambda: notifier.failed == 1)
        await notifier.close()
        return notifier

    notifier = run(scenario)
    assert (notifier.sent, notifier.acknowledged, notifier.failed) == (2, 0, 1)


def test_an_error_answer_ends_the_tries(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="nicupdate.dns.notify")

    async def scenario() -> tuple[Secondary, Notifier]:
        target = await secondary()
        target.rcode = dns.rcode.REFUSED
        notifier = Notifier([(HOST, target.port)], timeouts=FAST)
        await notifier.start()
        notifier.changed(ZONE, 1)
        await until(lambda: notifier.failed == 1)
        await notifier.close()
        return target, notifier

    target, notifier = run(scenario)
    assert (notifier.sent, notifier.acknowledged, notifier.failed) == (1, 0, 1)
    assert f"NOTIFY to {HOST}:{target.port} failed: {ZONE}: answered REFUSED" in caplog.text


def test_steady_changes_get_one_notify_per_interval() -> None:
    """Changes coming all the time (a busy zone) are announced at most every interval:
    the first at once, then the newest at each turn."""
    serials = {ZONE: 1}

    async def scenario() -> tuple[Secondary, Notifier, float, float]:
        target = await secondary()
        notifier = Notifier(
            [(HOST, target.port)], soa=soa_source(serials), timeouts=FAST, interval=0.2
        )
        await notifier.start()
        loop = asyncio.get_running_loop()
        started = loop.time()
        notifier.changed(ZONE, 1)
        await until(lambda: len(target.received) == 1)
        first = loop.time() - started
        serial = 1
        while loop.time() - started < 1.0:  # a change every 10 ms for a second
            serial += 1
            serials[ZONE] = serial
            notifier.changed(ZONE, serial)
            await asyncio.sleep(0.01)
        await until(lambda: serial_in(target.received[-1]) == serial)
        elapsed = loop.time() - started
        await until(lambda: notifier.acknowledged == len(target.received))
        await notifier.close()
        return target, notifier, first, elapsed

    target, notifier, first, elapsed = run(scenario)
    assert first < 0.2  # the first change is not held back
    sent = [serial_in(message) for message in target.received]
    assert sent == sorted(sent) and sent[0] == 1
    assert len(sent) <= elapsed / 0.2 + 2  # not one per change (there were ~100)
    assert notifier.acknowledged == len(sent)
