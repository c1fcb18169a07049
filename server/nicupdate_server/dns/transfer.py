"""Zone transfers to secondaries: AXFR (RFC 5936) and IXFR (RFC 1995), TSIG-signed.

:class:`Transfers` is what the data plane's TCP and UDP handlers call for an AXFR or
IXFR question: :meth:`Transfers.respond` yields the reply messages (wire form, no TCP
length prefix). The handler parses the query with ``keyring=False`` so that a signed
query reaches this module unchecked, and the answer to a bad signature can be the one
RFC 8945 asks for (NOTAUTH with the TSIG error) rather than a parse failure.

Who gets a transfer: a query over TCP, from an address in ``allow``, signed with a key
of the keyring. Anything else is REFUSED (the key is unknown or the signature wrong:
NOTAUTH, BADKEY or BADSIG, unsigned as RFC 8945 §5.3.2 says) and noted once per source
and interval in the log. Over UDP, an IXFR is answered with the current SOA alone, the
reply RFC 1995 §2 gives when the differences do not fit, which sends the client to TCP;
an AXFR over UDP gets FORMERR, as BIND and Knot answer it (RFC 1034 §4.3.5 and RFC
5936 §4.2 define AXFR over TCP only).

Consistency: every answer is rendered from one snapshot of the zone, taken before the
first ``await``: shallow copies of its record tables, its serial, and the position
in the change log that data reflects. The journal is asked for the differences up to
that position only, and the differences it gives are checked against the snapshot
(applied backwards, each added record must be there and each deleted one absent) before
they are sent, so a secondary never gets a version that mixes two states. When they do
not hold, or the log does not reach back, or they are larger than the zone, the IXFR
is answered with the whole zone (RFC 1995 §4). Renders yield to the event loop between
messages; a message is at most 64 KiB and holds as many records as fit.

The records are those the zone serves at their owner names: a host's wildcard goes as
the records of ``*.<host>``, its ACME tokens as the TXT records of
``_acme-challenge.<host>``; a secondary answers for the wildcard as we do (RFC 4592).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import struct
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import cast

import dns.edns
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
import dns.serial
import dns.tsig
from dns.rdtypes.ANY.SOA import SOA

from ..logsummary import LogSummary
from ..zonedata import AuthoritativeData, ZoneData
from .catalog import CatalogZone
from .journal import Diff, Record
from .records import (
    Owners,
    host_records,
    make_rdata,
    name_wire,
    rdata_record,
    soa_rdata,
    soa_rrset,
    tsig_error_reply,
    with_serial,
)

_log = logging.getLogger("nicupdate.dns.transfer")

Journal = Callable[[str, int, int], Awaitable[list[Diff] | None]]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_MESSAGE = 65535
EDNS_PAYLOAD = 1232
FUDGE = 300
REFUSED_KIND = "zone transfer refused"
_HEADER = struct.Struct("!HHHHHH")
_RR_FIXED = struct.Struct("!HHIH")
_OPT = b"\x00" + _RR_FIXED.pack(dns.rdatatype.OPT, EDNS_PAYLOAD, 0, 0)
_IN = dns.rdataclass.IN
_XFR_TYPES = (dns.rdatatype.AXFR, dns.rdatatype.IXFR)
# dnspython's signing function is untyped: (wire, key, rdata, time, request MAC,
# context, multi) -> (signed TSIG rdata, context for the next message).
_sign = cast(Callable[..., tuple[dns.rdata.Rdata, object]], dns.tsig.sign)


@dataclass(slots=True)
class _Snapshot:
    """One version of a zone, as everything in one transfer is taken from it."""

    name: str
    serial: int
    ttl: int
    soa: SOA
    position: int
    other: list[tuple[str, dns.rdata.Rdata]]  # apex NS, the catalog's records...
    tables: dict[str, dict[str, tuple[str, ...]]] = field(default_factory=dict)
    glue: frozenset[str] = frozenset()  # names whose addresses are configured glue

    @property
    def size(self) -> int:
        """A lower bound of the number of records (an RRset has one at least)."""
        return 1 + len(self.other) + sum(len(table) for table in self.tables.values())

    def records(self, owners: Owners) -> Iterator[bytes]:
        """Every record but the SOA, in wire form."""
        for owner, rdata in self.other:
            yield rdata_record(owners.wire(owner), self.ttl, rdata)
        for rtype, table in self.tables.items():
            for owner, values in table.items():
                yield from host_records(owners.wire(owner), rtype, self.ttl, values)


def _zone_snapshot(zone: ZoneData, position: int, records: bool) -> _Snapshot:
    """``zone`` now; its names and addresses only when ``records`` is true (an IXFR
    client that is up to date gets the SOA alone, and a million names take 0.1 s to
    copy)."""
    settings = zone.settings
    glue = frozenset(
        ns
        for ns in settings.nameservers
        if settings.nameserver_addresses and ns.endswith("." + zone.name)
    )
    return _Snapshot(
        zone.name,
        zone.serial & 0xFFFFFFFF,
        zone.ttl,
        soa_rdata(zone),
        position,
        [
            (zone.name, make_rdata(dns.rdatatype.NS, dns.name.from_text(ns)))
            for ns in settings.nameservers
        ],
        {rtype: dict(table) for rtype, table in zone.records.items()} if records else {},
        glue,
    )


def _catalog_snapshot(catalog: CatalogZone) -> _Snapshot:
    return _Snapshot(
        catalog.name, catalog.serial, catalog.ttl, catalog.soa_rdata(), 0, catalog.records()
    )


class _Refusal(Exception):
    """A query answered with one error message (already rendered)."""

    def __init__(self, reply: bytes) -> None:
        super().__init__()
        self.reply = reply


class _Signer:
    """Writes the messages of one answer: header, question, records, OPT, TSIG.

    Each message carries the question (so owner names can point at it). With a key,
    each message is signed: the first over the request's MAC, the next ones over the
    previous message's MAC (RFC 8945 §5.3.1), which dnspython's context carries.
    """

    def __init__(self, query: dns.message.Message, key: dns.tsig.Key | None, limit: int) -> None:
        question = query.question[0]
        self._id = query.id
        self._flags = dns.flags.QR | dns.flags.AA | (query.flags & dns.flags.RD)
        self._question = name_wire(question.name) + struct.pack(
            "!HH", question.rdtype, question.rdclass
        )
        self._opt = _OPT if query.edns == 0 else b""
        self._key = key
        self._request_mac = (query.mac or b"") if key is not None else b""
        self._ctx: object | None = None
        reserve = 0
        if key is not None:
            reserve = len(name_wire(key.name)) + len(name_wire(key.algorithm)) + 10 + 16 + 64 + 6
        self.budget = limit - 12 - len(self._question) - len(self._opt) - reserve

    def message(self, records: list[bytes]) -> bytes:
        header = _HEADER.pack(self._id, self._flags, 1, len(records), 0, 1 if self._opt else 0)
        body = header + self._question + b"".join(records) + self._opt
        if self._key is None:
            return body
        template = make_rdata(
            dns.rdatatype.TSIG,
            self._key.algorithm,
            0,
            FUDGE,
            b"",
            self._id,
            0,
            b"",
        )
        signed, self._ctx = _sign(
            body, self._key, template, int(time.time()), self._request_mac, self._ctx, True
        )
        rdata = signed.to_wire()
        assert rdata is not None
        tsig = (
            name_wire(self._key.name)
            + _RR_FIXED.pack(dns.rdatatype.TSIG, dns.rdataclass.ANY, 0, len(rdata))
            + rdata
        )
        additional = (1 if self._opt else 0) + 1
        return body[:10] + additional.to_bytes(2, "big") + body[12:] + tsig


def _simple(query: dns.message.Message, rcode: dns.rcode.Rcode) -> bytes:
    """An error reply, signed when ``query`` was validly signed."""
    response = dns.message.make_response(query, our_payload=EDNS_PAYLOAD)
    response.set_rcode(rcode)
    return bytes(response.to_wire())


class Transfers:
    """Answers AXFR and IXFR for the zones of ``data`` and for ``catalog``."""

    def __init__(
        self,
        data: AuthoritativeData,
        keyring: Mapping[dns.name.Name, dns.tsig.Key],
        allow: Iterable[Network],
        journal: Journal,
        position: Callable[[], int],
        catalog: CatalogZone | None,
        summary: LogSummary,
        *,
        max_message: int = MAX_MESSAGE,
    ) -> None:
        self.data = data
        self.keyring = dict(keyring)
        self.allow = tuple(allow)
        self.journal = journal
        self.position = position
        self.catalog = catalog
        self.summary = summary
        self.max_message = max_message
        # Answers by kind ("axfr", "ixfr", "ixfr-full", "current", "refused"): /metrics.
        self.counts: Counter[str] = Counter()

    def soa(self, zone: str) -> dns.rrset.RRset | None:
        """The current SOA record of ``zone`` (normal form), for NOTIFY; None: not ours."""
        data = self.data.zones.get(zone)
        if data is not None:
            return soa_rrset(data)
        if self.catalog is not None and zone == self.catalog.name:
            return self.catalog.soa()
        return None

    async def respond(
        self, query: dns.message.Message, source: str, tcp: bool
    ) -> AsyncIterator[bytes]:
        """The reply messages to ``query`` (an AXFR or IXFR question) from ``source``."""
        try:
            signed, key, snapshot, since = self._admit(query, source, tcp)
        except _Refusal as refusal:
            self.counts["refused"] += 1
            yield refusal.reply
            return
        signer = _Signer(signed, key, self.max_message if tcp else EDNS_PAYLOAD)
        owners = Owners(snapshot.name)
        soa = rdata_record(owners.wire(snapshot.name), snapshot.ttl, snapshot.soa)
        if since is not None and (
            not tcp or dns.serial.Serial(since) >= snapshot.serial
        ):  # up to date, or over UDP: the SOA alone (RFC 1995 §2 and §4)
            self.counts["current"] += 1
            yield signer.message([soa])
            return
        kind = "axfr"
        if since is not None:
            diffs = await self._diffs(snapshot, since)
            if diffs is not None:
                self.counts["ixfr"] += 1
                async for message in self._messages(signer, self._ixfr(snapshot, owners, diffs)):
                    yield message
                _log.info(
                    "IXFR of %s to %s: serial %d to %d, %d changes",
                    snapshot.name,
                    source,
                    since,
                    snapshot.serial,
                    sum(len(diff.deleted) + len(diff.added) for diff in diffs),
                )
                return
            kind = "ixfr-full"
        self.counts[kind] += 1
        records = _framed(soa, snapshot.records(owners))
        async for message in self._messages(signer, records):
            yield message
        _log.info(
            "%s of %s to %s: serial %d, the whole zone",
            "AXFR" if kind == "axfr" else "IXFR",
            snapshot.name,
            source,
            snapshot.serial,
        )

    # -- admission ---------------------------------------------------------------------

    def _admit(
        self, query: dns.message.Message, source: str, tcp: bool
    ) -> tuple[dns.message.Message, dns.tsig.Key | None, _Snapshot, int | None]:
        """The checks, then the snapshot; no ``await`` in here (see the module's doc).

        Returns the validated query, its key, the snapshot and the IXFR client's
        serial (None for AXFR), or raises :class:`_Refusal` with the reply."""
        if query.opcode() != dns.opcode.QUERY:
            raise _Refusal(_simple(query, dns.rcode.NOTIMP))
        if (
            len(query.question) != 1
            or query.question[0].rdtype not in _XFR_TYPES
            or query.question[0].rdclass != _IN
        ):
            raise _Refusal(_simple(query, dns.rcode.FORMERR))
        question = query.question[0]
        zone_name = question.name.to_text(omit_final_dot=True).lower()
        signed, key = self._authenticate(query, source, zone_name)
        if key is None:
            self._refuse(source, zone_name, "not signed with a TSIG key")
            raise _Refusal(_simple(signed, dns.rcode.REFUSED))
        if not self._allowed(source):
            self._refuse(source, zone_name, "address not in the allowed networks")
            raise _Refusal(_simple(signed, dns.rcode.REFUSED))
        zone = self.data.zones.get(zone_name)
        if zone is None and (self.catalog is None or zone_name != self.catalog.name):
            self._refuse(source, zone_name, "not a zone served here")
            raise _Refusal(_simple(signed, dns.rcode.NOTAUTH))
        since: int | None = None
        if question.rdtype == dns.rdatatype.IXFR:
            since = _client_serial(signed, question.name)
            if since is None:
                raise _Refusal(_simple(signed, dns.rcode.FORMERR))
        elif not tcp:
            raise _Refusal(_simple(signed, dns.rcode.FORMERR))
        if zone is not None:
            current = since is not None and (
                not tcp or dns.serial.Serial(since) >= zone.serial & 0xFFFFFFFF
            )
            snapshot = _zone_snapshot(zone, self.position(), records=not current)
        else:
            assert self.catalog is not None
            snapshot = _catalog_snapshot(self.catalog)
        return signed, key, snapshot, since

    def _authenticate(
        self, query: dns.message.Message, source: str, zone: str
    ) -> tuple[dns.message.Message, dns.tsig.Key | None]:
        """The query with its signature checked against the keyring, and its key (None:
        unsigned); a wrong signature raises :class:`_Refusal` with NOTAUTH."""
        if not query.had_tsig:
            return query, None
        name = query.keyname
        assert name is not None
        shown = name.to_text(omit_final_dot=True)
        ours = self.keyring.get(name)
        if isinstance(query.keyring, dns.tsig.Key):  # checked by the parser already
            if ours is None or ours != query.keyring:
                self._refuse(source, zone, f"key {shown} is not a transfer key")
                raise _Refusal(_simple(query, dns.rcode.REFUSED))
            return query, ours
        if query.wire is None:
            raise _Refusal(tsig_error_reply(query, dns.rcode.BADSIG, None))
        try:
            checked = dns.message.from_wire(query.wire, keyring=self.keyring)
        except dns.message.UnknownTSIGKey:
            self._refuse(source, zone, f"unknown TSIG key {shown}")
            raise _Refusal(tsig_error_reply(query, dns.rcode.BADKEY, None)) from None
        except (dns.tsig.BadAlgorithm, dns.tsig.BadKey):
            self._refuse(source, zone, f"TSIG key {shown} with another algorithm")
            raise _Refusal(tsig_error_reply(query, dns.rcode.BADKEY, None)) from None
        except dns.tsig.BadTime:
            self._refuse(source, zone, f"TSIG time outside {FUDGE} s (key {shown})")
            raise _Refusal(tsig_error_reply(query, dns.rcode.BADTIME, ours)) from None
        except dns.tsig.BadSignature:
            self._refuse(source, zone, f"bad TSIG signature (key {shown})")
            raise _Refusal(tsig_error_reply(query, dns.rcode.BADSIG, None)) from None
        except dns.exception.DNSException:
            raise _Refusal(_simple(query, dns.rcode.FORMERR)) from None
        return checked, ours

    def _allowed(self, source: str) -> bool:
        try:
            address = ipaddress.ip_address(source.partition("%")[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.allow)

    def _refuse(self, source: str, zone: str, reason: str) -> None:
        self.summary.note(REFUSED_KIND, source, f"{zone}: {reason}", logging.WARNING)

    # -- IXFR ---------------------------------------------------------------------------

    async def _diffs(self, snapshot: _Snapshot, since: int) -> list[Diff] | None:
        """The journal's differences from ``since`` to the snapshot, if they can be sent."""
        if snapshot.name not in self.data.zones:
            return None  # the catalog: small, always sent whole
        try:
            diffs = await self.journal(snapshot.name, since, snapshot.position)
        except Exception:
            _log.exception("IXFR of %s: the change log could not be read", snapshot.name)
            return None
        if diffs is None:
            return None
        problem = _check(snapshot, since, diffs)
        if problem is not None:
            _log.info(
                "IXFR of %s from serial %d: %s; sending the zone", snapshot.name, since, problem
            )
            return None
        return diffs

    def _ixfr(self, snapshot: _Snapshot, owners: Owners, diffs: list[Diff]) -> Iterator[bytes]:
        """RFC 1995 §4's condensed form: the new SOA, per version the old SOA, what it
        deleted, its new SOA, what it added; the new SOA again."""
        apex = owners.wire(snapshot.name)
        newest = rdata_record(apex, snapshot.ttl, snapshot.soa)
        yield newest
        for diff in diffs:
            yield rdata_record(apex, snapshot.ttl, with_serial(snapshot.soa, diff.old_serial))
            yield from _records(owners, snapshot.ttl, diff.deleted)
            yield rdata_record(apex, snapshot.ttl, with_serial(snapshot.soa, diff.new_serial))
            yield from _records(owners, snapshot.ttl, diff.added)
        yield newest

    # -- messages -----------------------------------------------------------------------

    async def _messages(self, signer: _Signer, records: Iterator[bytes]) -> AsyncIterator[bytes]:
        """``records`` cut into messages of at most ``max_message`` bytes; between two
        messages other tasks run (a million names take a few seconds to write)."""
        batch: list[bytes] = []
        size = 0
        for record in records:
            if size + len(record) > signer.budget and batch:
                yield signer.message(batch)
                await asyncio.sleep(0)
                batch, size = [], 0
            batch.append(record)
            size += len(record)
        yield signer.message(batch)


def _framed(soa: bytes, records: Iterator[bytes]) -> Iterator[bytes]:
    yield soa
    yield from records
    yield soa


def _records(owners: Owners, ttl: int, records: list[Record]) -> Iterator[bytes]:
    for owner, rtype, value in records:
        yield from host_records(owners.wire(owner), rtype, ttl, (value,))


def _check(snapshot: _Snapshot, since: int, diffs: list[Diff]) -> str | None:
    """Why ``diffs`` cannot take a secondary from ``since`` to the snapshot; None: they can.

    Applied backwards from the snapshot, every record a version added must be there and
    every record it deleted absent; then applying them forwards from the state this
    gives ends exactly at the snapshot. Names whose addresses are configured glue are
    left to a full transfer: the log knows the host's records, not the glue they hid.
    """
    expected = since & 0xFFFFFFFF
    changes = 0
    for diff in diffs:
        if diff.old_serial & 0xFFFFFFFF != expected:
            return f"the versions do not follow each other at serial {expected}"
        expected = diff.new_serial & 0xFFFFFFFF
        changes += len(diff.deleted) + len(diff.added)
    if expected != snapshot.serial:
        return f"the change log reaches serial {expected}, not {snapshot.serial}"
    if changes > snapshot.size:
        return f"{changes} changes, more than the zone's records"
    state: dict[tuple[str, str], set[str]] = {}

    def now(owner: str, rtype: str) -> set[str]:
        key = (owner, rtype)
        found = state.get(key)
        if found is None:
            found = state[key] = set(snapshot.tables.get(rtype, {}).get(owner, ()))
        return found

    for diff in reversed(diffs):
        for owner, rtype, value in diff.added:
            if owner in snapshot.glue:
                return f"{owner} has configured glue"
            held = now(owner, rtype)
            if value not in held:
                return f"{owner} {rtype} {value} was added but is not served"
            held.remove(value)
        for owner, rtype, value in diff.deleted:
            if owner in snapshot.glue:
                return f"{owner} has configured glue"
            held = now(owner, rtype)
            if value in held:
                return f"{owner} {rtype} {value} was deleted but is served"
            held.add(value)
    return None


def _client_serial(query: dns.message.Message, name: dns.name.Name) -> int | None:
    """The serial of the SOA an IXFR query carries in its authority section."""
    for rrset in query.authority:
        if rrset.rdtype == dns.rdatatype.SOA and rrset.name == name and len(rrset):
            soa = cast(SOA, rrset[0])
            return int(soa.serial)
    return None
