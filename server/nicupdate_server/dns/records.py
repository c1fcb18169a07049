"""A zone's records as zone transfers and NOTIFY send them.

:func:`soa_rdata` is the one place the SOA's fields are decided (the answers, the
transfers and the NOTIFY messages all take it from here, so a secondary never sees two
versions of one serial). The rest writes resource records straight into wire form:
a transfer of a million names must not build a million dnspython objects (about 35 µs
each, against 1-2 µs here). Owner names are compressed to a pointer at the question,
which every message of a transfer carries (RFC 5936 §2.2.1 allows it), so a host's
record costs its own labels and two bytes.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable
from typing import cast

import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.tsig
from dns.rdtypes.ANY.NS import NS as _NS
from dns.rdtypes.ANY.PTR import PTR as _PTR
from dns.rdtypes.ANY.SOA import SOA
from dns.rdtypes.ANY.TSIG import TSIG as _TSIG
from dns.rdtypes.ANY.TXT import TXT as _TXT

from ..zonedata import ZoneData

QUESTION_POINTER = b"\xc0\x0c"  # the question's name, right after the 12-byte header
_TYPE_CLASS = {
    "A": struct.pack("!HH", dns.rdatatype.A, dns.rdataclass.IN),
    "AAAA": struct.pack("!HH", dns.rdatatype.AAAA, dns.rdataclass.IN),
}
_TYPE_CLASS_TXT = struct.pack("!HH", dns.rdatatype.TXT, dns.rdataclass.IN)
_FAMILY = {"A": socket.AF_INET, "AAAA": socket.AF_INET6}
_TTL_LENGTH = struct.Struct("!IH")
# dnspython's rdata constructors are untyped; this table gives them a result type.
_RDATA: dict[dns.rdatatype.RdataType, Callable[..., dns.rdata.Rdata]] = {
    dns.rdatatype.NS: _NS,
    dns.rdatatype.PTR: _PTR,
    dns.rdatatype.SOA: SOA,
    dns.rdatatype.TSIG: _TSIG,
    dns.rdatatype.TXT: _TXT,
}
_TYPE_CLASS_TTL_LENGTH = struct.Struct("!HHIH")


def make_rdata(rdtype: dns.rdatatype.RdataType, *fields: object) -> dns.rdata.Rdata:
    """An rdata of ``rdtype`` (class ANY for TSIG, else IN) from its fields."""
    rdclass = dns.rdataclass.ANY if rdtype == dns.rdatatype.TSIG else dns.rdataclass.IN
    return _RDATA[rdtype](rdclass, rdtype, *fields)


def name_wire(name: dns.name.Name) -> bytes:
    """``name`` (absolute) in wire form, uncompressed."""
    wire = name.to_wire()
    assert wire is not None
    return wire


def soa_rdata(zone: ZoneData, serial: int | None = None) -> SOA:
    """The SOA of ``zone``: the first nameserver as MNAME, the configured RNAME, the
    zone's serial (or ``serial``: an IXFR's older versions) and timers; the zone's TTL
    is also the negative-caching TTL (MINIMUM)."""
    settings = zone.settings
    return cast(
        SOA,
        make_rdata(
            dns.rdatatype.SOA,
            dns.name.from_text(settings.nameservers[0]),
            dns.name.from_text(settings.soa_rname),
            (zone.serial if serial is None else serial) & 0xFFFFFFFF,  # RFC 1982 wraps
            settings.soa_refresh,
            settings.soa_retry,
            settings.soa_expire,
            zone.ttl,
        ),
    )


def soa_rrset(zone: ZoneData) -> dns.rrset.RRset:
    """The zone's SOA record, as the answer of a NOTIFY carries it."""
    return dns.rrset.from_rdata(dns.name.from_text(zone.name), zone.ttl, soa_rdata(zone))


def with_serial(soa: SOA, serial: int) -> SOA:
    """``soa`` at another version of its zone."""
    return cast(SOA, soa.replace(serial=serial & 0xFFFFFFFF))


class Owners:
    """Owner names of one zone in wire form, compressed to the question (the apex).

    Every owner is written as its labels below the apex and a pointer; names outside
    the zone (never the case for the data we hold) are written in full.
    """

    def __init__(self, apex: str) -> None:
        self._suffix = "." + apex
        self._cut = len(apex) + 1
        self._apex = apex

    def wire(self, owner: str) -> bytes:
        if owner == self._apex:
            return QUESTION_POINTER
        if owner.endswith(self._suffix):
            relative = owner[: -self._cut]
            tail = QUESTION_POINTER
        else:
            relative, tail = owner, b"\x00"
        return (
            b"".join(bytes((len(label),)) + label.encode("ascii") for label in relative.split("."))
            + tail
        )


def host_records(owner: bytes, rtype: str, ttl: int, values: tuple[str, ...]) -> list[bytes]:
    """The ``rtype`` ("A", "AAAA" or "TXT") records of one owner (in wire form, see
    :class:`Owners`); a TXT value is one character-string."""
    if rtype == "TXT":
        head = owner + _TYPE_CLASS_TXT
        records = []
        for value in values:
            text = value.encode()
            records.append(head + _TTL_LENGTH.pack(ttl, len(text) + 1) + bytes((len(text),)) + text)
        return records
    family = _FAMILY[rtype]
    addresses = values
    head = owner + _TYPE_CLASS[rtype]
    length = 4 if rtype == "A" else 16
    ttl_length = _TTL_LENGTH.pack(ttl, length)
    return [head + ttl_length + socket.inet_pton(family, address) for address in addresses]


def rdata_record(owner: bytes, ttl: int, rdata: dns.rdata.Rdata) -> bytes:
    """Any record, its rdata uncompressed (only a handful per transfer: SOA, NS...)."""
    data = rdata.to_wire()
    assert data is not None
    return owner + _TYPE_CLASS_TTL_LENGTH.pack(rdata.rdtype, rdata.rdclass, ttl, len(data)) + data


def tsig_error_reply(query: dns.message.Message, error: int, key: dns.tsig.Key | None) -> bytes:
    """NOTAUTH with a TSIG error (RFC 8945 §5.2): unsigned for BADKEY and BADSIG,
    signed for BADTIME (with our time in Other Data, so the client can tell the skew)."""
    response = dns.message.make_response(query, our_payload=1232)
    response.set_rcode(dns.rcode.NOTAUTH)
    assert query.tsig is not None
    theirs = query.tsig[0]
    now = int(time.time())
    if error == dns.rcode.BADTIME and key is not None:
        response.use_tsig(
            key, tsig_error=error, other_data=now.to_bytes(6, "big"), original_id=query.id
        )
        response.request_mac = theirs.mac
    else:
        rdata = make_rdata(
            dns.rdatatype.TSIG,
            theirs.algorithm,
            now,
            theirs.fudge,
            b"",
            query.id,
            error,
            b"",
        )
        response.tsig = dns.rrset.from_rdata(query.tsig.name, 0, rdata)
    return bytes(response.to_wire())
