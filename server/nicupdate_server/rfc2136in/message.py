"""An UPDATE message, parsed into typed parts and checked as RFC 2136 says (pure).

dnspython reads the wire (and checks the TSIG signature); this module reads what it
made: the zone section (§3.1), the prerequisites (§2.4, §3.2) and the update section's
prescan (§3.4.1), each refusal a :class:`Rejected` with the RFC's rcode: FORMERR for a
malformed message, NOTZONE for a name outside the zone. What the prerequisites find and
what the changes may do are :mod:`.prereqs`' and :mod:`.policy`'s.

Names are kept in the server's normal form (lower case, no trailing dot); a label no
stored name can have stays escaped (``\\000``), so it simply matches nothing.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.update

_META = frozenset(
    {
        dns.rdatatype.ANY,
        dns.rdatatype.AXFR,
        dns.rdatatype.IXFR,
        dns.rdatatype.MAILA,
        dns.rdatatype.MAILB,
        dns.rdatatype.OPT,
        dns.rdatatype.TSIG,
        dns.rdatatype.TKEY,
    }
)


class Rejected(Exception):
    """The message is answered ``rcode`` as a whole; ``reason`` is for the log."""

    def __init__(self, rcode: dns.rcode.Rcode, reason: str) -> None:
        super().__init__(reason)
        self.rcode = rcode
        self.reason = reason


class Condition(enum.Enum):
    """The five kinds of prerequisite (RFC 2136 §2.4)."""

    RRSET_EXISTS = "RRset exists"  # value independent
    RRSET_EQUALS = "RRset exists with these values"  # value dependent
    RRSET_ABSENT = "RRset does not exist"
    NAME_IN_USE = "name is in use"
    NAME_NOT_IN_USE = "name is not in use"


@dataclass(frozen=True, slots=True)
class Prerequisite:
    condition: Condition
    name: str
    rdtype: dns.rdatatype.RdataType  # ANY for the name conditions
    values: frozenset[dns.rdata.Rdata] = frozenset()  # RRSET_EQUALS: the whole RRset


class Action(enum.Enum):
    """What one record of the update section does (RFC 2136 §2.5)."""

    ADD = "add to an RRset"
    DELETE_RRSET = "delete an RRset"
    DELETE_NAME = "delete all RRsets from a name"
    DELETE_RR = "delete an RR from an RRset"


@dataclass(frozen=True, slots=True)
class Change:
    action: Action
    name: str
    rdtype: dns.rdatatype.RdataType  # ANY for DELETE_NAME
    value: dns.rdata.Rdata | None = None  # ADD and DELETE_RR


@dataclass(frozen=True, slots=True)
class Update:
    zone: str
    prerequisites: tuple[Prerequisite, ...]
    changes: tuple[Change, ...]

    def names(self) -> set[str]:
        """Every name the message is about."""
        return {p.name for p in self.prerequisites} | {c.name for c in self.changes}


def text(name: dns.name.Name) -> str:
    """``name`` in the server's normal form."""
    return name.to_text(omit_final_dot=True).lower()


def zone_of(message: dns.update.UpdateMessage) -> tuple[dns.name.Name, dns.rdataclass.RdataClass]:
    """The zone section's one record: the zone's name and class (§3.1.1; FORMERR)."""
    if len(message.zone) != 1 or message.zone[0].rdtype != dns.rdatatype.SOA:
        raise Rejected(dns.rcode.FORMERR, "the zone section must hold one SOA question")
    return message.zone[0].name, message.zone[0].rdclass


def _rdata(rrset: dns.rrset.RRset) -> dns.rdata.Rdata | None:
    """The record's data: dnspython reads one record per RRset in an UPDATE message."""
    if len(rrset) > 1:
        raise Rejected(dns.rcode.FORMERR, "several records in one RRset")
    return next(iter(rrset), None)


def _name(
    rrset: dns.rrset.RRset, origin: dns.name.Name, inside: Callable[[str], bool], section: str
) -> str:
    name = text(rrset.name)
    if not rrset.name.is_subdomain(origin) or not inside(name):
        raise Rejected(dns.rcode.NOTZONE, f"{section}: {name} is outside zone {text(origin)}")
    return name


def prerequisites(
    message: dns.update.UpdateMessage, origin: dns.name.Name, inside: Callable[[str], bool]
) -> tuple[Prerequisite, ...]:
    """The prerequisite section (§3.2.5): the value-dependent records of one name and
    type are gathered into one RRset, to be compared whole."""
    found: list[Prerequisite] = []
    gathered: dict[tuple[str, dns.rdatatype.RdataType], set[dns.rdata.Rdata]] = {}
    zone_class = message.zone[0].rdclass
    for rrset in message.prerequisite:
        if rrset.ttl != 0:
            raise Rejected(dns.rcode.FORMERR, "a prerequisite's TTL must be 0")
        name = _name(rrset, origin, inside, "prerequisite")
        rdtype = rrset.rdtype
        value = _rdata(rrset)
        if rrset.deleting in (dns.rdataclass.ANY, dns.rdataclass.NONE):
            if value is not None:
                raise Rejected(dns.rcode.FORMERR, "a class ANY or NONE prerequisite has data")
            exists = rrset.deleting == dns.rdataclass.ANY
            if rdtype == dns.rdatatype.ANY:
                condition = Condition.NAME_IN_USE if exists else Condition.NAME_NOT_IN_USE
            elif rdtype in _META:
                raise Rejected(dns.rcode.FORMERR, f"a prerequisite of type {rdtype.name}")
            else:
                condition = Condition.RRSET_EXISTS if exists else Condition.RRSET_ABSENT
            found.append(Prerequisite(condition, name, rdtype))
        elif rrset.rdclass == zone_class and rrset.deleting is None:
            if value is None or rdtype in _META:
                raise Rejected(dns.rcode.FORMERR, "a value-dependent prerequisite without data")
            gathered.setdefault((name, rdtype), set()).add(value)
        else:
            raise Rejected(dns.rcode.FORMERR, "a prerequisite of another class")
    for (name, rdtype), values in gathered.items():
        found.append(Prerequisite(Condition.RRSET_EQUALS, name, rdtype, frozenset(values)))
    return tuple(found)


def changes(
    message: dns.update.UpdateMessage, origin: dns.name.Name, inside: Callable[[str], bool]
) -> tuple[Change, ...]:
    """The update section, prescanned (§3.4.1.3): FORMERR or NOTZONE before any change."""
    found: list[Change] = []
    zone_class = message.zone[0].rdclass
    for rrset in message.update:
        name = _name(rrset, origin, inside, "update")
        rdtype = rrset.rdtype
        value = _rdata(rrset)
        if rrset.deleting == dns.rdataclass.ANY:
            meta = rdtype in _META and rdtype != dns.rdatatype.ANY
            if rrset.ttl != 0 or value is not None or meta:
                raise Rejected(dns.rcode.FORMERR, "a class ANY deletion with a TTL or meta type")
            action = Action.DELETE_NAME if rdtype == dns.rdatatype.ANY else Action.DELETE_RRSET
            found.append(Change(action, name, rdtype))
        elif rrset.deleting == dns.rdataclass.NONE:
            if rrset.ttl != 0 or value is None or rdtype in _META:
                raise Rejected(dns.rcode.FORMERR, "a class NONE deletion with a TTL or meta type")
            found.append(Change(Action.DELETE_RR, name, rdtype, value))
        elif rrset.rdclass == zone_class and rrset.deleting is None:
            if value is None or rdtype in _META:
                raise Rejected(dns.rcode.FORMERR, f"an addition of type {rdtype.name}")
            found.append(Change(Action.ADD, name, rdtype, value))
        else:
            raise Rejected(dns.rcode.FORMERR, "an update record of another class")
    return tuple(found)


def parse(
    message: dns.update.UpdateMessage, zone: dns.name.Name, inside: Callable[[str], bool]
) -> Update:
    """The message for ``zone`` (its zone section's name), whose names must be ``inside``
    it (not in a zone of their own below it)."""
    return Update(text(zone), prerequisites(message, zone, inside), changes(message, zone, inside))
