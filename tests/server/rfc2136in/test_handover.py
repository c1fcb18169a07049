"""The DNS process's side: UPDATE messages wait for the server, bounded in number and time."""

from __future__ import annotations

import asyncio
from typing import Any

import dns.message
import dns.rcode
import dns.update
import pytest
from nicupdate_server.rfc2136in import handover
from nicupdate_server.rfc2136in.handover import Handover, is_update


def update_wire() -> bytes:
    update = dns.update.UpdateMessage("dyn.example.test")
    update.replace("home", 60, "A", "198.51.100.1")
    return bytes(update.to_wire())


def rcode(reply: bytes) -> dns.rcode.Rcode:
    return dns.message.from_wire(reply).rcode()


def test_only_update_requests_are_handed_over() -> None:
    assert is_update(update_wire())
    query = dns.message.make_query("home.dyn.example.test", "A")
    assert not is_update(query.to_wire())
    reply = dns.message.make_response(dns.message.from_wire(update_wire()))
    assert not is_update(reply.to_wire())  # a response (QR set)


def test_the_servers_reply_is_sent_and_a_late_one_is_servfail(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(handover, "MARGIN", 0.2)
    sent: list[dict[str, Any]] = []

    async def run() -> tuple[bytes, bytes]:
        waiting = Handover(sent.append, lambda: 0.0)
        answered = asyncio.ensure_future(waiting.reply(update_wire(), "192.0.2.1", False))
        while not sent:
            await asyncio.sleep(0)
        made = dns.message.make_response(dns.message.from_wire(sent[0]["wire"]))
        waiting.replied({"updated": sent[0]["update"], "reply": made.to_wire()})
        late = await waiting.reply(update_wire(), "192.0.2.1", True)  # nobody answers
        waiting.replied({"updated": sent[1]["update"], "reply": b"too late"})  # ignored
        return await answered, late

    answered, late = asyncio.run(run())
    assert rcode(answered) == dns.rcode.NOERROR
    assert rcode(late) == dns.rcode.SERVFAIL
    assert [m["source"] for m in sent] == ["192.0.2.1", "192.0.2.1"]
    assert [m["tcp"] for m in sent] == [False, True]


def test_too_many_waiting_are_refused_per_source_and_in_all(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(handover, "PER_SOURCE", 2)
    monkeypatch.setattr(handover, "IN_ALL", 3)
    sent: list[dict[str, Any]] = []

    async def run() -> list[dns.rcode.Rcode]:
        waiting = Handover(sent.append, lambda: 30.0)
        sources = ["192.0.2.1", "192.0.2.1", "192.0.2.1", "2001:db8::1", "2001:db8::2"]
        replies = [asyncio.ensure_future(waiting.reply(update_wire(), s, False)) for s in sources]
        while len(sent) < 3:
            await asyncio.sleep(0)
        for message in sent:
            made = dns.message.make_response(dns.message.from_wire(message["wire"]))
            waiting.replied({"updated": message["update"], "reply": made.to_wire()})
        return [rcode(reply) for reply in await asyncio.gather(*replies)]

    # The third of one address is refused; so is the fifth, as three wait in all.
    assert asyncio.run(run()) == [
        dns.rcode.NOERROR,
        dns.rcode.NOERROR,
        dns.rcode.REFUSED,
        dns.rcode.NOERROR,
        dns.rcode.REFUSED,
    ]


def test_a_server_that_takes_no_updates_has_them_refused() -> None:
    sent: list[dict[str, Any]] = []

    async def run() -> bytes:
        waiting = Handover(sent.append, lambda: 30.0)
        answered = asyncio.ensure_future(waiting.reply(update_wire(), "192.0.2.1", False))
        while not sent:
            await asyncio.sleep(0)
        waiting.replied({"updated": sent[0]["update"], "reply": None})
        return await answered

    assert rcode(asyncio.run(run())) == dns.rcode.REFUSED
