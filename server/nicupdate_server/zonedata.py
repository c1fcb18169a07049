"""The records the built-in authoritative DNS serves, held in memory.

The ``builtin`` backend writes here after the change is committed to the database;
``dnsserver`` reads from here. Names are in the normal form of :mod:`names`
(lower case, no trailing dot).

A zone may hold a million names, so each costs little: an entry in the table of each
record type it has, whose value is the tuple of addresses the server's state holds
(shared, not copied), and nothing else unless it lies below another name of the zone
(see ``_below``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from .config import SOA_EXPIRE, SOA_REFRESH, SOA_RETRY, ZoneSettings
from .names import in_zone

__all__ = ["SOA_EXPIRE", "SOA_REFRESH", "SOA_RETRY", "AuthoritativeData", "ZoneData"]
RTYPES = ("A", "AAAA")


def _by_type() -> dict[str, dict[str, tuple[str, ...]]]:
    return {rtype: {} for rtype in RTYPES}


@dataclass(slots=True)
class ZoneData:
    """One zone: its settings, SOA serial and the address records of its names."""

    settings: ZoneSettings
    serial: int
    # "A"/"AAAA" -> owner name -> its addresses; no empty tuples are kept.
    records: dict[str, dict[str, tuple[str, ...]]] = field(default_factory=_by_type)
    # For the names between the apex and a name with records (both left out): how many
    # names with records lie below each. Such a name exists (NODATA, not NXDOMAIN) even
    # when it has no records of its own (an empty non-terminal). Names right below the
    # apex, most hosts, add nothing here.
    _below: Counter[str] = field(default_factory=Counter)
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

    def _has_records(self, owner: str) -> bool:
        return owner in self.records["A"] or owner in self.records["AAAA"]

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

    def set(self, owner: str, rtype: str, addresses: tuple[str, ...]) -> None:
        """Replace the ``rtype`` records of ``owner``; an empty tuple removes them."""
        self.generation += 1
        by_owner = self.records[rtype]
        had_any = self._has_records(owner)
        if addresses:
            by_owner[owner] = addresses
        else:
            by_owner.pop(owner, None)
        has_any = self._has_records(owner)
        if has_any != had_any:
            self._count_below(owner, 1 if has_any else -1)

    def fill(self, names: Iterable[tuple[str, tuple[str, ...], tuple[str, ...]]]) -> None:
        """Serve ``names``: (owner, A addresses, AAAA addresses), for a zone being built
        (a million names in a fraction of a second; :meth:`set` takes longer)."""
        self.generation += 1
        a, aaaa = self.records["A"], self.records["AAAA"]
        apex = self.name
        for owner, v4, v6 in names:
            if owner in a or owner in aaaa:  # a nameserver's glue: replaced where given
                for rtype, addresses in (("A", v4), ("AAAA", v6)):
                    if addresses:
                        self.set(owner, rtype, addresses)
                continue
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
        return self.records[rtype].get(name, ())


class AuthoritativeData:
    """All zones the built-in DNS is authoritative for."""

    def __init__(self) -> None:
        self.zones: dict[str, ZoneData] = {}

    def add_zone(
        self,
        settings: ZoneSettings,
        serial: int,
        records: Iterable[tuple[str, tuple[str, ...], tuple[str, ...]]] = (),
    ) -> ZoneData:
        """Serve ``settings``' zone with ``records``: (owner, A addresses, AAAA addresses)."""
        zone = self.zones[settings.name] = ZoneData(settings, serial)
        zone.fill(records)
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
