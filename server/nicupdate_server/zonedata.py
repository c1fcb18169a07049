"""The records the built-in authoritative DNS serves, held in memory.

The ``builtin`` backend writes here after the change is committed to the database;
``dnsserver`` reads from here. Names are in the normal form of :mod:`names`
(lower case, no trailing dot).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .config import ZoneSettings
from .names import in_zone

SOA_REFRESH = 3600
SOA_RETRY = 600
SOA_EXPIRE = 86400


@dataclass(slots=True)
class ZoneData:
    """One zone: its settings, SOA serial and the address records of its names."""

    settings: ZoneSettings
    serial: int
    # owner name -> {"A": ("203.0.113.7",), "AAAA": (...)}; no empty tuples are kept.
    records: dict[str, dict[str, tuple[str, ...]]] = field(default_factory=dict)
    # How many names with records lie at or below each name (for NXDOMAIN vs NODATA).
    _below: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        for ns in self.settings.nameservers:
            if in_zone(ns, self.name) and ns != self.name:
                for address in self.settings.nameserver_addresses:
                    rtype = "A" if address.version == 4 else "AAAA"
                    current = self.records.get(ns, {}).get(rtype, ())
                    self.set(ns, rtype, (*current, str(address)))

    @property
    def name(self) -> str:
        return self.settings.name

    @property
    def ttl(self) -> int:
        return self.settings.ttl

    def _ancestors(self, owner: str) -> Iterable[str]:
        name = owner
        while True:
            yield name
            if name == self.name:
                return
            name = name.partition(".")[2]

    def set(self, owner: str, rtype: str, addresses: tuple[str, ...]) -> None:
        """Replace the ``rtype`` records of ``owner``; an empty tuple removes them."""
        entry = self.records.get(owner)
        had_any = bool(entry)
        if addresses:
            if entry is None:
                entry = self.records[owner] = {}
            entry[rtype] = addresses
        elif entry is not None:
            entry.pop(rtype, None)
            if not entry:
                del self.records[owner]
        has_any = owner in self.records
        if has_any != had_any:
            step = 1 if has_any else -1
            for name in self._ancestors(owner):
                self._below[name] += step
                if not self._below[name]:
                    del self._below[name]

    def exists(self, name: str) -> bool:
        """Whether ``name`` exists: the apex, a name with records, or an empty non-terminal."""
        return name == self.name or self._below[name] > 0

    def lookup(self, name: str, rtype: str) -> tuple[str, ...]:
        return self.records.get(name, {}).get(rtype, ())


class AuthoritativeData:
    """All zones the built-in DNS is authoritative for."""

    def __init__(self) -> None:
        self.zones: dict[str, ZoneData] = {}

    def add_zone(
        self,
        settings: ZoneSettings,
        serial: int,
        records: Iterable[tuple[str, Mapping[str, tuple[str, ...]]]] = (),
    ) -> ZoneData:
        """Serve ``settings``' zone with ``records``: (owner, {"A": (...), ...}) pairs."""
        zone = self.zones[settings.name] = ZoneData(settings, serial)
        for owner, by_type in records:
            for rtype, addresses in by_type.items():
                zone.set(owner, rtype, addresses)
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
