"""The records the built-in authoritative DNS serves, held in memory.

The ``builtin`` backend writes here after the change is committed to the database;
``dnsserver`` reads from here. Names are in the normal form of :mod:`names`
(lower case, no trailing dot).

A zone may hold a million names, so each costs little: an entry in the table of each
record type it has, whose value is the tuple of values the server's state holds
(shared, not copied), and nothing else unless it lies below another name of the zone
(see ``_below``).

Owner names are stored as they are written: a host's wildcard is the name
``*.<fqdn>`` with the host's A and AAAA records, its ACME tokens the TXT records of
``_acme-challenge.<fqdn>`` (:mod:`.hostrecords` says which names a host stands for).
:meth:`ZoneData.lookup` gives what is stored at a name; which wildcard answers a name
that does not exist (RFC 4592) is :meth:`ZoneData.wildcard`'s to say.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .config import SOA_EXPIRE, SOA_REFRESH, SOA_RETRY, ZoneSettings
from .hostrecords import WILDCARD_LABEL, expand
from .names import in_zone

__all__ = ["SOA_EXPIRE", "SOA_REFRESH", "SOA_RETRY", "AuthoritativeData", "ZoneData"]
RTYPES = ("A", "AAAA", "TXT")
_WILDCARD_PREFIX = WILDCARD_LABEL + "."

# A host as a zone is built from it: (its name, its record set "A"/"AAAA"/"TXT" ->
# values, whether `*.<name>` carries its addresses too).
Host = tuple[str, Mapping[str, tuple[str, ...]], bool]


def _by_type() -> dict[str, dict[str, tuple[str, ...]]]:
    return {rtype: {} for rtype in RTYPES}


@dataclass(slots=True)
class ZoneData:
    """One zone: its settings, SOA serial and the records of its names."""

    settings: ZoneSettings
    serial: int
    # "A"/"AAAA"/"TXT" -> owner name -> its values; no empty tuples are kept.
    records: dict[str, dict[str, tuple[str, ...]]] = field(default_factory=_by_type)
    # For the names between the apex and a name with records (both left out): how many
    # names with records lie below each. Such a name exists (NODATA, not NXDOMAIN) even
    # when it has no records of its own (an empty non-terminal). Names right below the
    # apex, most hosts, add nothing here.
    _below: Counter[str] = field(default_factory=Counter)
    # The names whose wildcard child (`*.<name>`) has records: the closest enclosers
    # that answer for the names below them that do not exist. Empty in most zones.
    _wildcards: set[str] = field(default_factory=set)
    # Rises with every change of the records (answers kept by the DNS's fast path are
    # good while it and the serial stay the same).
    generation: int = 0

    def __post_init__(self) -> None:
        for ns in self.settings.nameservers:
            if in_zone(ns, self.name) and ns != self.name:
                for address in self.settings.nameserver_addresses:
                    rtype = "A" if address.version == 4 else "AAAA"
                    self.set(ns, rtype, (*self.lookup(ns, rtype), str(address)))

    @property
    def name(self) -> str:
        return self.settings.name

    @property
    def ttl(self) -> int:
        return self.settings.ttl

    @property
    def has_wildcards(self) -> bool:
        return bool(self._wildcards)

    def _has_records(self, owner: str) -> bool:
        records = self.records
        return owner in records["A"] or owner in records["AAAA"] or owner in records["TXT"]

    def _count_below(self, owner: str, step: int) -> None:
        """``owner`` got its first record (``step`` 1) or lost its last one (-1)."""
        if owner == self.name:
            return
        name = owner.partition(".")[2]
        while name and name != self.name:
            self._below[name] += step
            if not self._below[name]:
                del self._below[name]
            name = name.partition(".")[2]

    def set(self, owner: str, rtype: str, values: tuple[str, ...]) -> None:
        """Replace the ``rtype`` records of ``owner``; an empty tuple removes them."""
        self.generation += 1
        by_owner = self.records[rtype]
        had_any = self._has_records(owner)
        if values:
            by_owner[owner] = values
        else:
            by_owner.pop(owner, None)
        has_any = self._has_records(owner)
        if has_any != had_any:
            self._count_below(owner, 1 if has_any else -1)
            if owner.startswith(_WILDCARD_PREFIX):
                if has_any:
                    self._wildcards.add(owner[len(_WILDCARD_PREFIX) :])
                else:
                    self._wildcards.discard(owner[len(_WILDCARD_PREFIX) :])

    def set_host(self, fqdn: str, records: Mapping[str, tuple[str, ...]], wildcard: bool) -> None:
        """Serve a host's record set at every name it stands for (its own, its wildcard,
        its ACME name); what it no longer has there goes."""
        for (owner, rtype), values in expand(fqdn, records, wildcard).items():
            self.set(owner, rtype, values)

    def fill(self, hosts: Iterable[Host]) -> None:
        """Serve ``hosts`` (see :data:`Host`), for a zone being built (a million hosts in
        a fraction of a second; :meth:`set_host` takes longer, and hosts with a wildcard
        or TXT records go through it)."""
        self.generation += 1
        a, aaaa = self.records["A"], self.records["AAAA"]
        apex = self.name
        for owner, records, wildcard in hosts:
            if wildcard or records.get("TXT") or owner in a or owner in aaaa:
                # Only what it has: a nameserver's glue is replaced where given.
                for (name, rtype), values in expand(owner, records, wildcard).items():
                    if values:
                        self.set(name, rtype, values)
                continue
            v4 = records.get("A")
            v6 = records.get("AAAA")
            if v4:
                a[owner] = v4
            if v6:
                aaaa[owner] = v6
            if (v4 or v6) and owner.partition(".")[2] != apex:
                self._count_below(owner, 1)

    def exists(self, name: str) -> bool:
        """Whether ``name`` exists: the apex, a name with records, or an empty non-terminal."""
        return name == self.name or name in self._below or self._has_records(name)

    def lookup(self, name: str, rtype: str) -> tuple[str, ...]:
        """The ``rtype`` values stored at ``name`` (a wildcard's at ``*.x``)."""
        return self.records[rtype].get(name, ())

    def wildcard(self, ancestor: str) -> str | None:
        """The wildcard whose records answer a name that does not exist (RFC 4592 §3.3.1),
        or ``None`` (NXDOMAIN): ``*.<closest encloser>``, when that has records.

        ``ancestor`` is the query name's parent, or for a name with a label no stored
        name has, its longest suffix that could be stored; the closest encloser is the
        nearest of it and its ancestors that exists (an empty non-terminal too). So a
        wildcard answers only for names below its parent that have no existing name
        between them and it: ``x.nas.home`` takes ``*.nas.home`` or nothing when
        ``nas.home`` exists, never ``*.home``.
        """
        if not self._wildcards:
            return None
        name = ancestor
        while not self.exists(name):
            name = name.partition(".")[2]
            if not name:
                return None  # not in this zone
        return _WILDCARD_PREFIX + name if name in self._wildcards else None


class AuthoritativeData:
    """All zones the built-in DNS is authoritative for."""

    def __init__(self) -> None:
        self.zones: dict[str, ZoneData] = {}

    def add_zone(self, settings: ZoneSettings, serial: int, hosts: Iterable[Host] = ()) -> ZoneData:
        """Serve ``settings``' zone with ``hosts``: (name, record set, wildcard) each."""
        zone = self.zones[settings.name] = ZoneData(settings, serial)
        zone.fill(hosts)
        return zone

    def find_zone(self, name: str) -> ZoneData | None:
        """The most specific zone containing ``name`` (normal form), or ``None``."""
        candidate = name
        while candidate:
            zone = self.zones.get(candidate)
            if zone is not None:
                return zone
            candidate = candidate.partition(".")[2]
        return None
