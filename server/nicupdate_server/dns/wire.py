"""The fast path: most replies written straight from the query's bytes.

A typical query (one question of class IN, no EDNS or plain EDNS version 0, a name of
ordinary labels) for an address or a TXT record, or for a name that does not exist, is
answered here without dnspython: the reply is the query's header and question (so the
client's spelling of the name, 0x20, comes back) followed by records whose owner names
point at the question. That holds for the records a wildcard gives a name that does
not exist (RFC 4592) too: their owner is the query name. Questions about the apex
(SOA, NS, ANY) have the same answer for every query of one shape, so the reference
answer (:mod:`.answer`) is kept per zone until the serial changes. Everything else,
and every reply that would not fit, returns ``None`` and goes to :mod:`.answer`; the
tests hold both to the same replies.

:func:`fast_reply` also says what kind of reply it wrote, for rate limiting, and what
it counts it by: an answer by its question, but an answer a wildcard made by the
wildcard's (as BIND does: a flood of random names below it is one account).
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable, Container

from ..zonedata import AuthoritativeData, ZoneData
from .answer import EDNS_PAYLOAD, UDP_MIN

# Kinds of reply, as response rate limiting counts them.
ANSWER, NODATA, NXDOMAIN, ERROR = "responses", "nodata", "nxdomains", "errors"

_QR_AA = 0x8400
_KEPT_FLAGS = 0x0110  # RD and CD are copied from the query
_NOERROR, _NXDOMAIN, _REFUSED = 0, 3, 5
_A, _NS, _SOA, _TXT, _AAAA, _OPT, _ANY = 1, 2, 6, 16, 28, 41, 255
_LABEL_CHARS = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789_-")
_TTL_LENGTH = struct.Struct("!IH")
_SOA_NUMBERS = struct.Struct("!IIIII")
_COUNTS = struct.Struct("!HHHHH")  # flags, then the four section counts
_OPT_RR = b"\x00" + struct.pack("!HHIH", _OPT, EDNS_PAYLOAD, 0, 0)
_OPT_RR_DO = b"\x00" + struct.pack("!HHIH", _OPT, EDNS_PAYLOAD, 0x8000, 0)
_TYPE_BYTES = {_A: b"\x00\x01\x00\x01", _AAAA: b"\x00\x1c\x00\x01"}
_FAMILY = {_A: socket.AF_INET, _AAAA: socket.AF_INET6}
_RTYPES = {_A: "A", _AAAA: "AAAA", _TXT: "TXT"}  # the types a host's names hold
_TXT_HEAD = b"\xc0\x0c\x00\x10\x00\x01"  # owner: the question; type TXT, class IN

ANSWERS_KEPT = 100_000
# An answer kept by the fast path: its zone, the zone's generation and serial, the
# reply's flags (RD and CD come from each query), and the reply after the id and the
# question (the counts first), its kind and rate-limiting subject.
Kept = tuple[ZoneData, int, int, int, bytes, str, bytes]


def question_name(question: bytes) -> str:
    """The name of a well-formed question (wire form, name and type and class) in
    normal form."""
    labels = []
    position = 0
    while question[position]:
        end = position + 1 + question[position]
        labels.append(question[position + 1 : end])
        position = end
    return b".".join(labels).lower().decode("ascii")


# A reference answer, by its question: (the zone and its serial when made, the reply
# without its id). A reloaded zone is a new object.
Cached = tuple[ZoneData, int, bytes]


def _name_wire(name: str) -> bytes:
    return b"".join(bytes([len(label)]) + label.encode() for label in name.split(".")) + b"\0"


def _compressed(name: str, zone: str, pointer: bytes) -> bytes:
    """``name`` in wire form, ending in ``pointer`` when it lies in ``zone``."""
    if name == zone:
        return pointer
    if name.endswith("." + zone):
        return _name_wire(name[: -len(zone) - 1])[:-1] + pointer
    return _name_wire(name)


class FastPath:
    """Replies from :class:`AuthoritativeData`, with what the fast path keeps per zone."""

    def __init__(self, data: AuthoritativeData, reference: Callable[[bytes], bytes | None]) -> None:
        self.data = data
        self._reference = reference  # a UDP reply from dnspython, for the apex cache
        self._apex: dict[bytes, Cached] = {}  # by lower-cased question and EDNS shape
        self._soa: dict[tuple[str, int], tuple[int, bytes]] = {}  # (zone, offset) -> serial, RR
        self.others: Container[str] = ()  # names only the reference answers (the catalog)
        self._answers: dict[bytes, Kept] = {}

    def _soa_rr(self, zone: ZoneData, offset: int) -> bytes:
        """The zone's SOA record, owner and names pointing into the question at ``offset``."""
        key = (zone.name, offset)
        serial = zone.serial & 0xFFFFFFFF
        kept = self._soa.get(key)
        if kept is not None and kept[0] == serial:
            return kept[1]
        if len(self._soa) > 4096:
            self._soa.clear()
        pointer = (0xC000 | offset).to_bytes(2, "big")
        settings = zone.settings
        rdata = (
            _compressed(settings.nameservers[0], zone.name, pointer)
            + _compressed(settings.soa_rname, zone.name, pointer)
            + _SOA_NUMBERS.pack(
                serial, settings.soa_refresh, settings.soa_retry, settings.soa_expire, zone.ttl
            )
        )
        rr = pointer + b"\x00\x06\x00\x01" + _TTL_LENGTH.pack(zone.ttl, len(rdata)) + rdata
        self._soa[key] = (serial, rr)
        return rr

    def reply(self, wire: bytes) -> tuple[bytes, str, bytes] | None:
        """The UDP reply to ``wire``, its kind and what rate limiting counts it by (the
        question for answers, the zone for NXDOMAIN); ``None``: ask :mod:`.answer`.

        Answers (not NXDOMAIN nor a wildcard's: a flood of random names would only churn
        them) are kept by their question in lower case and the query's EDNS shape, while
        their zone's records and serial stay the same: a repeated question costs a
        dictionary look-up."""
        if len(wire) < 17 or wire[4:10] != b"\x00\x01\x00\x00\x00\x00" or wire[2] & 0xFA:
            return None
        additional = wire[10:12]
        if additional == b"\x00\x00":
            question, shape, limit = wire[12:], b"-", UDP_MIN
        elif (
            additional == b"\x00\x01"
            and wire[-11:-8] == b"\x00\x00\x29"  # an OPT record, version 0, no options
            and wire[-2:] == b"\x00\x00"
            and not wire[-5]
        ):
            question = wire[12:-11]
            shape = b"D" if wire[-4] & 0x80 else b"E"
            limit = max(UDP_MIN, min(int.from_bytes(wire[-8:-6], "big"), EDNS_PAYLOAD))
        else:
            return self._make(wire)
        key = question.lower() + shape
        kept = self._answers.get(key)
        if kept is not None:
            zone, generation, serial, head, tail, kind, subject = kept
            if (
                zone.generation == generation
                and zone.serial == serial
                and self.data.zones.get(zone.name) is zone
                and 4 + len(question) + len(tail) <= limit
            ):
                flags = (head | ((wire[2] << 8 | wire[3]) & _KEPT_FLAGS)).to_bytes(2, "big")
                return wire[:2] + flags + tail[:8] + question + tail[8:], kind, subject
        made = self._make(wire)
        if made is None or made[1] not in (ANSWER, NODATA) or made[2] != key[:-1]:
            return made  # NXDOMAIN and a wildcard's answers (counted by it) are not kept
        zone_found = self.data.find_zone(question_name(question))
        if zone_found is not None:
            if len(self._answers) >= ANSWERS_KEPT:
                self._answers.clear()
            reply = made[0]
            head = (reply[2] << 8 | reply[3]) & ~_KEPT_FLAGS
            tail = reply[4:12] + reply[12 + len(question) :]
            self._answers[key] = (
                zone_found,
                zone_found.generation,
                zone_found.serial,
                head,
                tail,
                made[1],
                made[2],
            )
        return made

    def _make(self, wire: bytes) -> tuple[bytes, str, bytes] | None:
        size = len(wire)
        if size < 17 or wire[2] & 0xFA or wire[4:10] != b"\x00\x01\x00\x00\x00\x00":
            return None  # a response, another opcode, TC set, not one question
        additional = wire[10:12]
        labels: list[bytes] = []
        position = 12
        length = wire[12]
        while length:
            if length > 63:
                return None  # compression or an extended label
            end = position + 1 + length
            labels.append(wire[position + 1 : end])
            position = end
            if position >= size:
                return None
            length = wire[position]
        question_end = position + 5
        if question_end > size or wire[position + 3 : question_end] != b"\x00\x01":
            return None  # truncated, or not class IN
        qtype = (wire[position + 1] << 8) | wire[position + 2]
        if qtype in (0, _OPT) or 127 < qtype < 255:
            return None  # meta types (AXFR, IXFR...) are for the reference
        if additional == b"\x00\x00":
            if question_end != size:
                return None
            opt = b""
            limit = UDP_MIN
            plain = True
        elif additional == b"\x00\x01":
            # One OPT record: root owner, version 0, options framed exactly.
            if size < question_end + 11 or wire[question_end : question_end + 3] != b"\x00\x00\x29":
                return None
            if (
                wire[question_end + 6]
                or question_end
                + 11
                + int.from_bytes(wire[question_end + 9 : question_end + 11], "big")
                != size
            ):
                return None
            cursor = question_end + 11
            while cursor < size:
                if cursor + 4 > size:
                    return None
                cursor += 4 + int.from_bytes(wire[cursor + 2 : cursor + 4], "big")
            if cursor != size:
                return None
            plain = size == question_end + 11  # no EDNS options
            opt = _OPT_RR_DO if wire[question_end + 7] & 0x80 else _OPT_RR
            payload = int.from_bytes(wire[question_end + 3 : question_end + 5], "big")
            limit = max(UDP_MIN, min(payload, EDNS_PAYLOAD))
        else:
            return None
        lowered = b".".join(labels).lower()
        if lowered.count(b".") != len(labels) - 1 or not _LABEL_CHARS.issuperset(
            lowered.replace(b".", b"")
        ):
            return None  # unusual characters: the reference knows what they mean
        name = lowered.decode("ascii")
        zone = self.data.find_zone(name)
        flags = (wire[2] << 8 | wire[3]) & _KEPT_FLAGS
        question = wire[12:question_end]
        if zone is None:
            if name in self.others:
                return None
            counts = _COUNTS.pack(0x8000 | flags | _REFUSED, 1, 0, 0, 1 if opt else 0)
            return wire[:2] + counts + question + opt, ERROR, b""
        if name == zone.name and qtype in (_SOA, _NS, _ANY):
            if not plain:
                return None  # the glue kept depends on the query's size
            return self._apex_reply(wire, zone, question, opt, flags, limit)
        offset = 12 + len(question) - 4 - len(zone.name) - 2  # the zone's name in the question
        rtype = _RTYPES.get(qtype)
        if rtype is not None:
            found = zone.lookup(name, rtype)
            if found:
                return _records(wire, question, qtype, zone.ttl, found, flags, opt, limit)
        if qtype == _ANY:
            return None
        if zone.exists(name):
            rcode, kind, counted = _NOERROR, NODATA, question.lower()
        else:
            wildcard = zone.wildcard(name.partition(".")[2]) if zone.has_wildcards else None
            if wildcard is None:
                rcode, kind, counted = _NXDOMAIN, NXDOMAIN, zone.name.encode()
            else:  # RFC 4592: the wildcard's records, or NODATA; counted by the wildcard
                counted = _name_wire(wildcard) + question[-4:]
                found = zone.lookup(wildcard, rtype) if rtype is not None else ()
                if found:
                    made = _records(wire, question, qtype, zone.ttl, found, flags, opt, limit)
                    return None if made is None else (made[0], ANSWER, counted)
                rcode, kind = _NOERROR, NODATA
        counts = _COUNTS.pack(_QR_AA | flags | rcode, 1, 0, 1, 1 if opt else 0)
        return wire[:2] + counts + question + self._soa_rr(zone, offset) + opt, kind, counted

    def _apex_reply(
        self, wire: bytes, zone: ZoneData, question: bytes, opt: bytes, flags: int, limit: int
    ) -> tuple[bytes, str, bytes] | None:
        """SOA, NS or ANY at the apex: the reference answer to the same question, kept
        until the serial changes, with this query's id, flags and spelling."""
        key = question.lower() + opt
        kept = self._apex.get(key)
        serial = zone.serial
        if kept is None or kept[0] is not zone or kept[1] != serial:
            if len(self._apex) > 1024:
                self._apex.clear()
            counts = _COUNTS.pack(0, 1, 0, 0, 1 if opt else 0)
            made = self._reference(b"\x00\x00" + counts + key)
            if made is None or made[3] & 0x0F:
                return None
            kept = self._apex[key] = (zone, serial, made[2:])
        reply = kept[2]
        if len(reply) + 2 > limit:
            return None
        head = ((reply[0] << 8 | reply[1]) | flags).to_bytes(2, "big")
        reply = wire[:2] + head + reply[2:10] + question + reply[10 + len(question) :]
        return reply, ANSWER, question.lower()


def _records(
    wire: bytes,
    question: bytes,
    qtype: int,
    ttl: int,
    found: tuple[str, ...],
    flags: int,
    opt: bytes,
    limit: int,
) -> tuple[bytes, str, bytes] | None:
    """An answer of ``found`` (A, AAAA or TXT values) owned by the question; ``None``
    when it would not fit in ``limit`` bytes (the reference truncates it)."""
    if qtype == _TXT:
        records = b""
        for value in found:
            text = value.encode()  # as dnspython writes a str: one character-string
            if len(text) > 255:
                return None
            records += _TXT_HEAD + _TTL_LENGTH.pack(ttl, len(text) + 1) + bytes((len(text),)) + text
    else:
        family = _FAMILY[qtype]
        head = b"\xc0\x0c" + _TYPE_BYTES[qtype]
        length = 4 if qtype == _A else 16
        ttl_length = _TTL_LENGTH.pack(ttl, length)
        records = b"".join(
            head + ttl_length + socket.inet_pton(family, address) for address in found
        )
    counts = _COUNTS.pack(_QR_AA | flags, 1, len(found), 0, 1 if opt else 0)
    reply = wire[:2] + counts + question + records + opt
    if len(reply) > limit:
        return None
    return reply, ANSWER, question.lower()
