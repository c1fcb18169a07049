"""What a key may change, and what the update section does to the hosts' record sets.

A key may change the records of the hosts it may update (an account key: its owner's;
a host key: that host) and no others: A and AAAA at the host's name, TXT at
``_acme-challenge.<host>`` (ACME DNS-01), nothing else. ``*.<host>`` is not a key's to
change (it carries the host's own addresses while ``host set --wildcard on``), nor is
any other name or type; a host blocked for abuse takes no change. Each of those is
REFUSED, whether the host exists or not.

The changes then act on the record set of each host (RFC 2136 §3.4.2), in order:
adding a value to an RRset, deleting one value, an RRset, or every RRset of a name.
Addresses must be usable (as for a dyndns2 update: no loopback, and public ones only in
a ``public_only`` zone); a TXT value is one character-string of 1 to 255 characters of
an ACME token (:func:`~..hostrecords.valid_txt`). A host keeps its newest
:data:`~..hostrecords.MAX_TXT` TXT values, as acme-dns does: one more drops the oldest.
TTLs are ignored: the zone's TTL is served.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

import dns.rcode
import dns.rdatatype
from dns.rdtypes.ANY.TXT import TXT
from dns.rdtypes.IN.A import A
from dns.rdtypes.IN.AAAA import AAAA

from ..addresses import UnusableAddress, check_usable
from ..config import ZoneSettings
from ..hostrecords import ACME_LABEL, MAX_TXT, RTYPES, RecordSet, derived_host, valid_txt
from ..state import HostEntry
from .keys import UpdateKey
from .message import Action, Change, Rejected
from .prereqs import Stored

_TYPES_AT_HOST = {dns.rdatatype.A: ("A",), dns.rdatatype.AAAA: ("AAAA",)}
_TYPES_AT_ACME = {dns.rdatatype.TXT: ("TXT",)}


@dataclass(frozen=True, slots=True)
class Target:
    """The host one change acts on, and which of its record types."""

    host: HostEntry
    rtypes: tuple[str, ...]


def may_update(key: UpdateKey, host: HostEntry) -> bool:
    if key.host_id is not None:
        return host.id == key.host_id
    return host.owner_id == key.owner_id


def target(key: UpdateKey, change: Change, stored: Stored) -> Target:
    """What ``change`` acts on, if ``key`` may make it (raises REFUSED otherwise)."""
    name = change.name
    host = stored.host(name)
    if host is not None:
        allowed = _TYPES_AT_HOST
        what = "only A and AAAA records at a host's name"
    else:
        derived = derived_host(name)
        host = stored.host(derived[1]) if derived is not None else None
        if derived is None or derived[0] != ACME_LABEL or host is None:
            if derived is not None and host is not None:
                raise Rejected(
                    dns.rcode.REFUSED,
                    f"{name}: the wildcard follows the host's own addresses "
                    "(`host set --wildcard`); keys do not change it",
                )
            raise Rejected(dns.rcode.REFUSED, f"{name}: not a host's name that this key may update")
        allowed = _TYPES_AT_ACME
        what = "only TXT records at _acme-challenge.<host>"
    if not may_update(key, host):
        raise Rejected(dns.rcode.REFUSED, f"{name}: not a host's name that this key may update")
    if host.blocked:
        raise Rejected(dns.rcode.REFUSED, f"{host.fqdn} is blocked for abuse (host unblock)")
    if change.action is Action.DELETE_NAME:
        return Target(host, tuple(rtype for types in allowed.values() for rtype in types))
    rtypes = allowed.get(change.rdtype)
    if rtypes is None:
        raise Rejected(dns.rcode.REFUSED, f"{name} {change.rdtype.name}: {what}")
    return Target(host, rtypes)


def value_of(change: Change, zone: ZoneSettings) -> str:
    """The stored form of an ADD's or DELETE_RR's value (an address as Python writes it,
    a TXT value unquoted); REFUSED for a value no host may have."""
    value = change.value
    if isinstance(value, A | AAAA):
        address = ipaddress.ip_address(value.address)
        if change.action is Action.ADD:
            try:
                check_usable(address, public_only=zone.public_only)
            except UnusableAddress as exc:
                raise Rejected(dns.rcode.REFUSED, f"{change.name}: {exc}") from None
        return str(address)
    if isinstance(value, TXT):
        if len(value.strings) != 1:
            raise Rejected(dns.rcode.REFUSED, f"{change.name}: a TXT value must be one string")
        text = value.strings[0].decode("latin-1")
        if not valid_txt(text):
            raise Rejected(
                dns.rcode.REFUSED,
                f"{change.name}: a TXT value must be 1-255 characters of "
                "A-Z a-z 0-9 _-=+/.:@ (an ACME token)",
            )
        return text
    raise AssertionError(f"no value of type {change.rdtype.name} gets here")


def apply(
    changes: Iterable[tuple[Change, Target]], zone: ZoneSettings
) -> dict[str, tuple[HostEntry, RecordSet]]:
    """The record sets of the hosts the changes act on, after them (by host name; a host
    whose records do not change is there too, with its records as they are)."""
    after: dict[str, tuple[HostEntry, RecordSet]] = {}
    for change, where in changes:
        host = where.host
        records = after.setdefault(host.fqdn, (host, host.records()))[1]
        if change.action in (Action.DELETE_NAME, Action.DELETE_RRSET):
            for rtype in where.rtypes:
                records.pop(rtype, None)
            continue
        (rtype,) = where.rtypes
        value = value_of(change, zone)
        values = records.get(rtype, ())
        if change.action is Action.ADD and value not in values:
            values = (*values, value)
        elif change.action is Action.DELETE_RR:
            values = tuple(v for v in values if v != value)
        if rtype == "TXT":
            values = values[-MAX_TXT:]  # newest last
        else:
            values = tuple(sorted(values))
        if values:
            records[rtype] = values
        else:
            records.pop(rtype, None)
    return after


def changed_types(host: HostEntry, records: RecordSet) -> dict[str, tuple[str, ...]]:
    """The record sets of ``host`` that ``records`` replaces (a type it lost: ())."""
    return {
        rtype: records.get(rtype, ())
        for rtype in RTYPES
        if records.get(rtype, ()) != host.addresses(rtype)
    }
