"""Backend ``builtin``: the server's own authoritative DNS (see ``dnsserver``).

Applying a change means updating the in-memory zone data that the DNS listener
answers from, so a change is served the moment it is applied. A change names the owner
of its records: a host's own name, its wildcard ``*.<fqdn>`` (A/AAAA) or
``_acme-challenge.<fqdn>`` (TXT), each stored at that name as it is written.
"""

from __future__ import annotations

from ..zonedata import AuthoritativeData
from .base import ZoneChange


class BuiltinBackend:
    name = "builtin"

    def __init__(self, data: AuthoritativeData) -> None:
        self.data = data

    async def start(self) -> None:
        return None

    async def apply(self, change: ZoneChange) -> None:
        data = self.data.zones[change.zone.name]
        for record in change.changes:
            data.set(record.fqdn, record.rtype, record.addresses)
        data.serial = change.serial

    def current(self, fqdn: str, rtype: str) -> tuple[str, ...]:
        """What is stored at the owner ``fqdn`` now (the reconciler compares with it): a
        wildcard's own records at ``*.<fqdn>``, never what it gives the names below."""
        zone = self.data.find_zone(fqdn)
        return zone.lookup(fqdn, rtype) if zone is not None else ()

    async def close(self) -> None:
        return None
