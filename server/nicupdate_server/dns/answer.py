"""The built-in DNS's answers, built with dnspython: the reference for every reply.

:func:`respond` is a pure function from query bytes to reply bytes, shared by both
transports. Most queries are answered by the fast path (:mod:`.wire`), which must give
the same replies and leaves everything unusual to this module. The records come from
:class:`~..zonedata.AuthoritativeData` and are read at answer time, so a change (and its
new SOA serial) is visible to the very next query.

A name that does not exist, not even as an empty non-terminal, is answered from the
wildcard of its closest encloser when there is one (RFC 4592): the wildcard's records
with the query name as their owner, or NODATA when it has none of the type asked;
otherwise NXDOMAIN. A name that exists is never answered from a wildcard.

No reply over UDP is much larger than its query unless the question asks for the
records of a name (an amplifier needs no knowledge of the zone otherwise): UDP replies
are never padded (RFC 7830 pads only encrypted transports), ANY is answered with one
RRset (RFC 8482), and glue is left out when it would make a reply more than
:data:`AMPLIFICATION` times its query.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable, Mapping
from typing import Any

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
import dns.tsig
from dns.rdtypes.ANY.NS import NS as _NS_CLASS
from dns.rdtypes.ANY.SOA import SOA as _SOA_CLASS
from dns.rdtypes.ANY.TXT import TXT as _TXT_CLASS
from dns.rdtypes.IN.A import A as _A_CLASS
from dns.rdtypes.IN.AAAA import AAAA as _AAAA_CLASS

from ..zonedata import AuthoritativeData, ZoneData
from .records import tsig_error_reply

_log = logging.getLogger(__name__)

EDNS_PAYLOAD = 1232  # what we advertise and the most we send over UDP (DNS flag day 2020)
UDP_MIN = 512
TCP_MAX = 65535
AMPLIFICATION = 3  # glue is dropped from UDP replies larger than this many times the query
_HEADER = 12
# The labels of names in normal form, and the wildcard's (a query may name it).
_PLAIN_LABEL = re.compile(rb"[a-z0-9_-]+|\*")
_IN = dns.rdataclass.IN
_SOA_TYPE, _NS_TYPE = dns.rdatatype.SOA, dns.rdatatype.NS
_ADDRESS_TYPES = {dns.rdatatype.A: "A", dns.rdatatype.AAAA: "AAAA"}
# The types a host's names hold, in the order ANY takes the first of.
_HOST_TYPES = {**_ADDRESS_TYPES, dns.rdatatype.TXT: "TXT"}
# dnspython's rdata constructors are untyped; this table gives them a result type.
_RDATA: dict[dns.rdatatype.RdataType, Callable[..., dns.rdata.Rdata]] = {
    dns.rdatatype.A: _A_CLASS,
    dns.rdatatype.AAAA: _AAAA_CLASS,
    _NS_TYPE: _NS_CLASS,
    _SOA_TYPE: _SOA_CLASS,
    dns.rdatatype.TXT: _TXT_CLASS,
}


def header_reply(wire: bytes, rcode: dns.rcode.Rcode) -> bytes:
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
        zone.settings.soa_refresh,
        zone.settings.soa_retry,
        zone.settings.soa_expire,
        zone.ttl,
    )
    return _rrset(zone.name, zone.ttl, _SOA_TYPE, (fields,))


def _addresses(zone: ZoneData, name: str, rdtype: dns.rdatatype.RdataType) -> list[dns.rrset.RRset]:
    """The ``rdtype`` RRset (A, AAAA or TXT) stored at ``name``, if any."""
    found = zone.lookup(name, _HOST_TYPES[rdtype])
    if not found:
        return []
    if rdtype == dns.rdatatype.TXT:  # each value one character-string
        return [_rrset(name, zone.ttl, rdtype, tuple(((value,),) for value in found))]
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
    for host_type in _HOST_TYPES:
        if any_type or rdtype == host_type:
            found += _addresses(zone, name, host_type)
    return found[:1] if any_type else found  # RFC 8482: one RRset answers ANY


def _synthesized(
    zone: ZoneData, wildcard: str, qname: dns.name.Name, rdtype: dns.rdatatype.RdataType
) -> list[dns.rrset.RRset]:
    """The wildcard's RRsets of ``rdtype`` with the query name as their owner (RFC 4592
    §3.3.1), which the reply compresses to the question."""
    return [
        dns.rrset.from_rdata_list(qname, rrset.ttl, list(rrset))
        for rrset in _rrsets(zone, wildcard, rdtype)
    ]


def _glue(zone: ZoneData) -> list[dns.rrset.RRset]:
    """Addresses of the zone's own nameservers, for the additional section of NS answers."""
    return [
        rrset
        for ns in zone.settings.nameservers
        for t in _ADDRESS_TYPES
        for rrset in _addresses(zone, ns, t)
    ]


# Zones served for their SOA alone (the catalog zone: secondaries check its serial
# before they transfer it), by name: the SOA RRset now.
Others = Mapping[str, Callable[[], dns.rrset.RRset]]


def _resolve(
    data: AuthoritativeData,
    query: dns.message.Message,
    response: dns.message.Message,
    others: Others | None,
) -> None:
    """Fill ``response`` for a well-formed single-question QUERY."""
    question = query.question[0]
    if question.rdclass != _IN or question.rdtype in (dns.rdatatype.AXFR, dns.rdatatype.IXFR):
        response.set_rcode(dns.rcode.REFUSED)
        return
    name, complete = _normalize(question.name)
    zone = data.find_zone(name) if name else None
    if zone is None:
        soa = others.get(name) if others and complete else None
        if soa is not None and question.rdtype == _SOA_TYPE:
            response.flags |= dns.flags.AA
            response.answer = [soa()]
        else:
            response.set_rcode(dns.rcode.REFUSED)
        return
    response.flags |= dns.flags.AA
    if complete and zone.exists(name):
        response.answer = _rrsets(zone, name, question.rdtype)
    else:
        # It does not exist: its parent (or the part of it we could store) leads to
        # the closest encloser, whose wildcard answers if it has one.
        wildcard = zone.wildcard(name.partition(".")[2] if complete else name)
        if wildcard is None:
            response.set_rcode(dns.rcode.NXDOMAIN)
            response.authority = [_soa(zone)]
            return
        response.answer = _synthesized(zone, wildcard, question.name, question.rdtype)
    if not response.answer:
        response.authority = [_soa(zone)]  # NODATA
    elif question.rdtype == dns.rdatatype.NS:
        response.additional = _glue(zone)


def _render(response: dns.message.Message, limit: int, query_size: int | None) -> bytes:
    """The reply in at most ``limit`` bytes: without glue, else truncated (TC, no records).

    Over UDP (``query_size`` given) glue also goes when the reply would be more than
    :data:`AMPLIFICATION` times the query."""
    try:
        wire: bytes = response.to_wire(max_size=limit)
        if query_size is None or len(wire) <= AMPLIFICATION * query_size or not response.additional:
            return wire
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


def _tsig_refusal(
    wire: bytes, problem: Exception, keyring: Mapping[dns.name.Name, dns.tsig.Key] | None
) -> bytes:
    """NOTAUTH with the TSIG error (RFC 8945 §5.2): BADKEY, BADSIG or BADTIME."""
    if isinstance(problem, dns.message.UnknownTSIGKey):
        error = dns.rcode.BADKEY
    elif isinstance(problem, dns.tsig.BadTime):
        error = dns.rcode.BADTIME
    else:
        error = dns.rcode.BADSIG
    try:
        query = dns.message.from_wire(wire, keyring=False)
        key = (keyring or {}).get(query.keyname) if query.keyname is not None else None
        return tsig_error_reply(query, error, key)
    except Exception:  # too broken to say more
        return header_reply(wire, dns.rcode.NOTAUTH)


def answer(
    data: AuthoritativeData,
    wire: bytes,
    *,
    max_size: int | None,
    keyring: Mapping[dns.name.Name, dns.tsig.Key] | None = None,
) -> bytes | None:
    """The reply to the DNS message ``wire``, or ``None`` when nothing must be sent.

    ``max_size`` caps the reply: ``None`` applies the UDP rules (512 bytes without
    EDNS, else the client's payload size within 512..1232); TCP passes ``TCP_MAX``.
    Nothing is sent back to responses (QR set) or to fragments shorter than a header.
    """
    replied = respond(data, wire, max_size=max_size, keyring=keyring)
    return None if replied is None else replied[0]


def respond(
    data: AuthoritativeData,
    wire: bytes,
    *,
    max_size: int | None,
    keyring: Mapping[dns.name.Name, dns.tsig.Key] | None = None,
    others: Others | None = None,
) -> tuple[bytes, dns.rcode.Rcode] | None:
    """:func:`answer`, with the rcode of the reply.

    A query signed with a key of ``keyring`` (a secondary's SOA check) gets a reply
    signed with it; any other signed query NOTAUTH."""
    if len(wire) < _HEADER or wire[2] & 0x80:
        return None
    opcode = dns.opcode.from_flags(int.from_bytes(wire[2:4], "big"))
    if opcode not in (dns.opcode.QUERY, dns.opcode.UPDATE, dns.opcode.NOTIFY):
        return header_reply(wire, dns.rcode.NOTIMP), dns.rcode.NOTIMP
    try:
        query = dns.message.from_wire(wire, keyring=dict(keyring or {}))
    except (dns.message.UnknownTSIGKey, dns.tsig.BadSignature, dns.tsig.BadTime) as exc:
        return _tsig_refusal(wire, exc, keyring), dns.rcode.NOTAUTH
    except Exception as exc:  # dnspython raises many kinds on malformed input
        _log.debug("malformed DNS message: %r", exc)
        return header_reply(wire, dns.rcode.FORMERR), dns.rcode.FORMERR
    response = dns.message.make_response(query, our_payload=EDNS_PAYLOAD, pad=0)
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
            _resolve(data, query, response, others)
        except Exception:
            _log.exception("internal error answering %s", query.question[0])
            response = dns.message.make_response(query, our_payload=EDNS_PAYLOAD, pad=0)
            response.set_rcode(dns.rcode.SERVFAIL)
    return _render(response, limit, len(wire) if max_size is None else None), response.rcode()
