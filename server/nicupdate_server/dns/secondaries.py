"""The built-in DNS as a primary for real secondaries (``[dns.transfer]``).

What :mod:`.transfer`, :mod:`.notify` and :mod:`.catalog` do, put to work in the DNS
process: the key from ``tsig_key_file`` (or ``tsig_secret_file``) signs transfers,
NOTIFY and the answers to the secondaries' signed SOA checks; a change of a zone's
serial read from the change log is announced to every ``notify`` target (coalesced:
one NOTIFY per burst); the catalog zone lists the builtin zones, so a zone added to
the configuration reaches BIND and Knot secondaries without touching theirs.

A transfer is rendered from one snapshot of the zone, taken while no rows of the change
log are being applied: the feed applies everything committed so far before it lets
go, so a snapshot never holds part of one commit (several hosts can share one serial).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable

import dns.message
import dns.rcode
import dns.tsig
from sqlalchemy.ext.asyncio import AsyncEngine

from ..config import TransferSettings, parse_endpoint
from ..feed import Feed
from ..logsummary import LogSummary
from ..zonedata import AuthoritativeData
from .answer import header_reply
from .catalog import CatalogZone
from .journal import Diff, zone_diffs
from .notify import Notifier
from .server import DnsServer
from .transfer import REFUSED_KIND, Transfers
from .tsig import transfer_key

log = logging.getLogger("nicupdate.dns")

# How far back an IXFR may read the log: past this, the whole zone is cheaper.
JOURNAL_ROWS = 100_000


class Secondaries:
    def __init__(
        self,
        settings: TransferSettings,
        data: AuthoritativeData,
        engine: AsyncEngine,
        feed: Feed,
        listen_host: str,
        summary_interval: float,
    ) -> None:
        self.settings = settings
        self._engine = engine
        self._feed = feed
        self.key = transfer_key(settings)
        self.catalog = CatalogZone(settings.catalog, list(data.zones)) if settings.catalog else None
        self.summary = LogSummary(log, summary_interval)
        self.transfers = Transfers(
            data,
            {self.key.name: self.key},
            settings.allow,
            self._journal,
            lambda: feed.position,
            self.catalog,
            self.summary,
        )
        wildcard = listen_host in ("0.0.0.0", "::", "")
        self.notifier = Notifier(
            [parse_endpoint(target, 53) for target in settings.notify],
            self.key,
            soa=self.transfers.soa,
            source=None if wildcard else listen_host,
        )

    async def start(self, server: DnsServer, zones: Iterable[str]) -> None:
        server.keyring = {self.key.name: self.key}
        server.transfer = self.respond
        server.tsig_refused = self.tsig_refused
        if self.catalog is not None:
            server.others = {self.catalog.name: self.catalog.soa}
            server.fast.others = {self.catalog.name}
        await self.notifier.start()
        self.loaded(zones)

    async def close(self, server: DnsServer) -> None:
        server.keyring = {}
        server.transfer = None
        server.tsig_refused = None
        server.others = {}
        server.fast.others = ()
        await self.notifier.close()
        self.summary.close()

    def changed(self, zone: str, serial: int) -> None:
        """A zone's serial rose: tell the secondaries."""
        self.notifier.changed(zone, serial)

    def loaded(self, zones: Iterable[str]) -> None:
        """The zones were (re)loaded: tell the secondaries about each, and about the
        catalog if its members changed."""
        names = list(zones)
        for name in names:
            soa = self.transfers.soa(name)
            if soa is not None:
                self.notifier.changed(name, int(soa[0].serial))
        if self.catalog is not None and self.catalog.set_members(names):
            log.info("catalog zone %s: %d zones", self.catalog.name, len(names))
        if self.catalog is not None:
            self.notifier.changed(self.catalog.name, self.catalog.serial)

    def tsig_refused(self, wire: bytes, source: str) -> None:
        """A signed query (a secondary's SOA check) whose key or signature is wrong."""
        try:
            query = dns.message.from_wire(wire, keyring=False)
            zone = query.question[0].name.to_text(omit_final_dot=True).lower()
            key = query.keyname.to_text(omit_final_dot=True) if query.keyname else "?"
        except Exception:
            zone, key = "?", "?"
        self.summary.note(
            REFUSED_KIND,
            source,
            f"{zone}: query signed with TSIG key {key}: unknown key, bad signature or clock",
            logging.WARNING,
        )

    async def _journal(self, zone: str, since: int, upto: int) -> list[Diff] | None:
        async with self._engine.connect() as conn:
            return await zone_diffs(conn, zone, since, upto, max_rows=JOURNAL_ROWS)

    async def respond(self, wire: bytes, source: str, tcp: bool) -> AsyncIterator[bytes]:
        """The replies to a transfer request: the first (where the snapshot is taken)
        while the feed applies nothing."""
        try:
            query = dns.message.from_wire(wire, keyring=False)
        except Exception:  # dnspython raises many kinds on malformed input
            yield header_reply(wire, dns.rcode.FORMERR)
            return
        replies = self.transfers.respond(query, source, tcp)
        async with self._feed.locked():
            pass  # the feed is between two reads of the log (never half through a commit)
        first = await anext(replies, None)  # the snapshot, before anything else runs
        if first is None:
            return
        yield first
        async for reply in replies:
            yield reply
