"""Backend ``builtin``: the server's own authoritative DNS (see ``dnsserver``).

Applying a change means updating the in-memory zone data that the DNS listener
answers from, so a change is served the moment it is applied.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ..config import ZoneSettings
from ..zonedata import AuthoritativeData
from .base import ZoneChange


class BuiltinBackend:
    name = "builtin"

    def __init__(self, data: AuthoritativeData) -> None:
        self.data = data

    def load_zone(
        self,
        zone: ZoneSettings,
        serial: int,
        records: Iterable[tuple[str, Mapping[str, tuple[str, ...]]]],
    ) -> None:
        """Serve ``zone`` with the records the database holds for it."""
        data = self.data.add_zone(zone, serial)
        for fqdn, by_type in records:
            for rtype, addresses in by_type.items():
                data.set(fqdn, rtype, addresses)

    async def start(self) -> None:
        return None

    async def apply(self, change: ZoneChange) -> None:
        data = self.data.zones[change.zone.name]
        for record in change.changes:
            data.set(record.fqdn, record.rtype, record.addresses)
        data.serial = change.serial

    async def close(self) -> None:
        return None
