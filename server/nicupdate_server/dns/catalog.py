"""A catalog zone (RFC 9432, schema version 2) listing the builtin zones.

A secondary that follows the catalog (BIND's ``catalog-zones``, Knot's
``catalog-role: interpret``, NSD 4.9's ``catalog-member-pattern``) serves every zone
listed in it without being configured zone by zone: add a ``[[zones]]`` table here and
the secondaries pick it up. The catalog holds, below its name::

    @                   SOA   invalid. invalid. SERIAL ...
    @                   NS    invalid.
    version             TXT   "2"
    <id>.zones          PTR   <member>.

``<id>`` is the first 16 bytes of the SHA-256 of the member's name in wire form (lower
case), in hex: the same for a member across restarts and on every machine, which the
RFC asks for (a new id would make a secondary drop and re-add the zone, §5.4).

The serial follows the clock, as the zones' serials do (``store.next_serial``): at
start it is the time, and when the membership changes it becomes the time or the old
serial + 1, whichever is later. Deriving it from the members' serials instead would
fail both ways: removing the member with the highest serial would lower it, and adding
a member changes none of them. The clock costs one needless transfer of this small
zone per restart and holds across restarts as long as the clock does not go back by
more than the time between them, the assumption the zones' serials make too.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable
from typing import cast

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from dns.rdtypes.ANY.SOA import SOA

from ..zonedata import SOA_EXPIRE, SOA_REFRESH, SOA_RETRY
from .records import make_rdata, name_wire

VERSION = "2"
TTL = 0  # RFC 9432 §4: the TTLs are not used; 0 keeps resolvers from caching them
_INVALID = dns.name.from_text("invalid.")


def member_id(member: str) -> str:
    """The unique label of ``member`` (a zone name, normal form) in the catalog."""
    wire = name_wire(dns.name.from_text(member.lower()))
    return hashlib.sha256(wire).hexdigest()[:32]


def _clock() -> int:
    return int(time.time()) & 0xFFFFFFFF


class CatalogZone:
    """The catalog zone ``name`` of ``members`` (zone names in normal form)."""

    def __init__(self, name: str, members: Iterable[str], *, now: int | None = None) -> None:
        self.name = name.lower().rstrip(".")
        self.origin = dns.name.from_text(self.name)
        self.members: tuple[str, ...] = tuple(sorted(set(members)))
        self.serial = _clock() if now is None else now
        self.ttl = TTL

    def set_members(self, members: Iterable[str], *, now: int | None = None) -> bool:
        """Serve ``members`` from now on; whether they differ (and the serial rose)."""
        members = tuple(sorted(set(members)))
        if members == self.members:
            return False
        self.members = members
        self.serial = max(self.serial + 1, _clock() if now is None else now) & 0xFFFFFFFF
        return True

    def soa_rdata(self) -> SOA:
        fields = (_INVALID, _INVALID, self.serial, SOA_REFRESH, SOA_RETRY, SOA_EXPIRE, self.ttl)
        return cast(SOA, make_rdata(dns.rdatatype.SOA, *fields))

    def soa(self) -> dns.rrset.RRset:
        """The SOA record (an SOA query's answer; the NOTIFY of a membership change)."""
        return dns.rrset.from_rdata(self.origin, self.ttl, self.soa_rdata())

    def records(self) -> list[tuple[str, dns.rdata.Rdata]]:
        """Every record but the SOA, as (owner in normal form, rdata), apex first."""
        found: list[tuple[str, dns.rdata.Rdata]] = [
            (self.name, make_rdata(dns.rdatatype.NS, _INVALID)),
            (f"version.{self.name}", make_rdata(dns.rdatatype.TXT, [VERSION.encode()])),
        ]
        found.extend(
            (
                f"{member_id(member)}.zones.{self.name}",
                make_rdata(dns.rdatatype.PTR, dns.name.from_text(member)),
            )
            for member in self.members
        )
        return found

    def rrsets(self) -> list[dns.rrset.RRset]:
        """The whole zone as RRsets, SOA first (to answer queries for its names)."""
        found = [self.soa()]
        for owner, rdata in self.records():
            found.append(dns.rrset.from_rdata(dns.name.from_text(owner), self.ttl, rdata))
        return found
