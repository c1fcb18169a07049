"""What the DNS process serves: the builtin zones, loaded once and then kept up to date
from the change log, row by row (the records of one host and the zone's new serial).

The DNS process holds no accounts or tokens, only names and records, and it writes
nothing: the rows it applies were committed by the server processes (or the CLI), in
log order, each carrying the whole record set of its host and its wildcard flag, so
applying one again or in a different round changes nothing. A host's records go to
every name it stands for (:mod:`..hostrecords`): its own, ``*.<host>`` when its
wildcard is on, ``_acme-challenge.<host>`` for its TXT records.
"""

from __future__ import annotations

import gc
import logging
from collections import defaultdict
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from .. import changelog
from ..changelog import Entry, Kind, records_of
from ..config import Config
from ..tables import hosts as _hosts
from ..tables import records as _records
from ..tables import zones as _zones
from ..zonedata import AuthoritativeData, Host, ZoneData

log = logging.getLogger("nicupdate.dns")

LOAD_BATCH = 10_000


class ServedZones:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.data = AuthoritativeData()
        # Told each zone whose serial rose, once per batch of rows (NOTIFY).
        self.on_serial: Callable[[str, int], None] = _nothing

    def _builtin(self, config: Config) -> dict[str, ZoneData]:
        return {zone.name: ZoneData(zone, 1) for zone in config.zones if "builtin" in zone.backends}

    async def load(self, conn: AsyncConnection, config: Config | None = None) -> int:
        """Load every builtin zone (of ``config``, when it changed) from the database;
        the position of the change log the loaded data reflects (apply what follows)."""
        config = config or self.config
        position = await changelog.newest(conn)
        zones = self._builtin(config)
        for name, serial in await conn.execute(select(_zones.c.name, _zones.c.serial)):
            if name in zones:
                zones[name].serial = serial
        # Host name -> its record set (the tuples go into the zone as they are).
        found: dict[str, dict[str, tuple[str, ...]]] = defaultdict(dict)
        wildcards: set[str] = set()
        query = (
            select(_hosts.c.fqdn, _hosts.c.wildcard, _records.c.rtype, _records.c.address)
            .select_from(_hosts.join(_records, _records.c.host_id == _hosts.c.id))
            .order_by(_hosts.c.id, _records.c.rtype, _records.c.address)
            .execution_options(yield_per=LOAD_BATCH)
        )
        gc.disable()
        try:
            async with conn.stream(query) as result:
                async for rows in result.partitions():
                    for fqdn, wildcard, rtype, value in rows:
                        records = found[fqdn]
                        records[rtype] = (*records.get(rtype, ()), value)
                        if wildcard:
                            wildcards.add(fqdn)
            by_zone: dict[str, list[Host]] = defaultdict(list)
            for fqdn, records in found.items():
                zone = config.zone_for(fqdn)
                if zone is None or zone.name not in zones or fqdn in config.reserved:
                    continue
                by_zone[zone.name].append((fqdn, records, fqdn in wildcards))
            for name, names in by_zone.items():
                zones[name].fill(names)
        finally:
            gc.enable()
        self.config = config
        self.data.zones = zones
        count = sum(len(found) for found in by_zone.values())
        log.info("DNS: %d zones, %d hosts with records", len(zones), count)
        return position

    def apply(self, entries: list[Entry]) -> None:
        """Serve what ``entries`` (in log order) changed."""
        zones = self.data.zones
        reserved = self.config.reserved
        raised: dict[str, int] = {}
        for entry in entries:
            if entry.kind not in (Kind.RECORDS, Kind.HOST_REMOVED):
                continue
            value = entry.value
            zone = zones.get(str(value.get("zone")))
            if zone is None:
                continue  # no records, or not a builtin zone
            if entry.subject not in reserved:
                if entry.kind == Kind.RECORDS:
                    zone.set_host(entry.subject, records_of(value), value.get("wildcard") is True)
                else:  # every name of the host loses its records
                    zone.set_host(entry.subject, {}, False)
            serial = value.get("serial")
            if serial is not None and int(serial) > zone.serial:
                zone.serial = raised[zone.name] = int(serial)
        for name, serial in raised.items():
            self.on_serial(name, serial)


def _nothing(zone: str, serial: int) -> None:
    pass
