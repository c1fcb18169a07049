"""IXFR's differences read back from a real change log (SQLite, the project's schema):
grouped by serial, a batch of hosts under one serial as one step, removals, and None
wherever the log cannot tell (pruned past the client's serial, a row without
``previous``). Also the ``host.removed`` row the CLI writes, with the records it had.

The helpers here (a database, a writer of change-log rows, and a follower that applies
them to the served data as the DNS process does) are shared with test_transfer.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from nicupdate_server import changelog, db
from nicupdate_server.admin import Admin
from nicupdate_server.changelog import Change, Kind
from nicupdate_server.config import load_config
from nicupdate_server.dns.journal import Diff, zone_diffs
from nicupdate_server.tables import hosts as hosts_table
from nicupdate_server.tables import records as records_table
from nicupdate_server.tables import zones as zones_table
from nicupdate_server.zonedata import ZoneData
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.server.conftest import write_config

T = TypeVar("T")
ZONE = "dyn.example.test"
OTHER_ZONE = "public.example.net"
Records = dict[str, list[str]]


def run(work: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(work, timeout)

    return asyncio.run(bounded())


async def make_engine(directory: Path) -> AsyncEngine:
    """A SQLite database at the schema's head revision (the project's migrations)."""
    url = f"sqlite+aiosqlite:///{directory / 'state.db'}"
    engine = db.create_engine(url)
    await db.ensure_schema(engine, url)
    return engine


@dataclass(frozen=True)
class Row:
    """One host's change: its new records and those it had (None: leave ``previous`` out),
    and its wildcard flag after and before (written only when on, as the server does)."""

    fqdn: str
    records: Records
    previous: Records | None = field(default_factory=dict)
    removed: bool = False
    wildcard: bool = False
    previous_wildcard: bool = False

    def change(self, zone: str, serial: int) -> Change:
        value: dict[str, Any] = {"zone": zone, "serial": serial}
        if self.previous is not None:
            value["previous"] = self.previous
        if self.previous_wildcard:
            value["previous_wildcard"] = True
        if self.removed:
            value.update(id=1, owner="alice")
            return Change(Kind.HOST_REMOVED, self.fqdn, value)
        value["records"] = self.records
        if self.wildcard:
            value["wildcard"] = True
        return Change(Kind.RECORDS, self.fqdn, value)


class ChangeLog:
    """Writes change-log rows as the server's writer does: one commit, one zone serial."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def commit(
        self, serial: int, rows: Sequence[Row], zone: str = ZONE, at: datetime | None = None
    ) -> list[int]:
        async with self.engine.begin() as conn:
            return await changelog.append(
                conn, [row.change(zone, serial) for row in rows], "test", at
            )

    async def diffs(self, since: int, upto: int, zone: str = ZONE) -> list[Diff] | None:
        async with self.engine.connect() as conn:
            return await zone_diffs(conn, zone, since, upto)

    async def prune(self, before: int) -> None:
        async with self.engine.begin() as conn:
            await changelog.prune(conn, before, timedelta(0), 1_000_000)


def apply(zone: ZoneData, rows: Sequence[Row], serial: int) -> None:
    """What the DNS process does with a commit's rows: each host's records, the serial."""
    for row in rows:
        records = {} if row.removed else row.records
        record_set = {rtype: tuple(values) for rtype, values in records.items()}
        zone.set_host(row.fqdn, record_set, row.wildcard and not row.removed)
    zone.serial = serial


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[AsyncEngine]:
    made = run(make_engine(tmp_path))
    yield made
    run(made.dispose())


def host(name: str) -> str:
    return f"{name}.{ZONE}"


def test_versions_grouped_by_serial_with_a_batch_as_one_step(engine: AsyncEngine) -> None:
    log = ChangeLog(engine)

    async def scenario() -> tuple[list[Diff] | None, list[Diff] | None, list[Diff] | None]:
        await log.commit(100, [Row(host("a"), {"A": ["192.0.2.1"]})])
        await log.commit(7, [Row(f"x.{OTHER_ZONE}", {"A": ["198.51.100.1"]})], zone=OTHER_ZONE)
        await log.commit(
            101,
            [
                Row(host("a"), {"A": ["192.0.2.2"], "AAAA": ["2001:db8::2"]}, {"A": ["192.0.2.1"]}),
                Row(host("b"), {"A": ["192.0.2.3"]}),
                Row(host("a"), {"AAAA": ["2001:db8::2"]}, {"A": ["192.0.2.2"]}),  # same commit
            ],
        )
        ids = await log.commit(102, [Row(host("b"), {}, {"A": ["192.0.2.3"]}, removed=True)])
        newest = ids[-1]
        return (
            await log.diffs(100, newest),
            await log.diffs(101, newest),
            await log.diffs(102, newest),
        )

    from_100, from_101, from_102 = run(scenario())
    assert from_100 == [
        Diff(
            100,
            101,
            deleted=[(host("a"), "A", "192.0.2.1")],
            added=[(host("a"), "AAAA", "2001:db8::2"), (host("b"), "A", "192.0.2.3")],
        ),
        Diff(101, 102, deleted=[(host("b"), "A", "192.0.2.3")], added=[]),
    ]
    assert from_100 is not None and from_101 == from_100[1:]
    assert from_102 == []  # the client is at the newest version


def test_only_rows_up_to_the_position_count(engine: AsyncEngine) -> None:
    log = ChangeLog(engine)

    async def scenario() -> tuple[list[Diff] | None, list[Diff] | None]:
        await log.commit(10, [Row(host("a"), {"A": ["192.0.2.1"]})])
        [applied] = await log.commit(
            11, [Row(host("a"), {"A": ["192.0.2.2"]}, {"A": ["192.0.2.1"]})]
        )
        await log.commit(12, [Row(host("a"), {"A": ["192.0.2.3"]}, {"A": ["192.0.2.2"]})])
        return await log.diffs(10, applied), await log.diffs(12, applied)

    upto_applied, ahead = run(scenario())
    assert upto_applied == [
        Diff(10, 11, [(host("a"), "A", "192.0.2.1")], [(host("a"), "A", "192.0.2.2")])
    ]
    assert ahead is None  # serial 12 is not among the rows up to the position


def test_the_since_version_says_what_a_secondary_has(engine: AsyncEngine) -> None:
    """A row's ``previous`` is what its writer replaced; the rows of the client's own
    version say exactly what the client holds, and win."""
    log = ChangeLog(engine)

    async def scenario() -> list[Diff] | None:
        await log.commit(20, [Row(host("a"), {"A": ["192.0.2.9"]})])
        [newest] = await log.commit(
            21,
            [Row(host("a"), {"A": ["192.0.2.10"]}, {"A": ["192.0.2.1"]})],  # stale previous
        )
        return await log.diffs(20, newest)

    assert run(scenario()) == [
        Diff(20, 21, [(host("a"), "A", "192.0.2.9")], [(host("a"), "A", "192.0.2.10")])
    ]


def test_none_when_the_log_does_not_reach_back(engine: AsyncEngine) -> None:
    log = ChangeLog(engine)
    past = datetime.now(UTC) - timedelta(hours=1)

    async def scenario() -> tuple[list[Diff] | None, list[Diff] | None, list[Diff] | None]:
        first = await log.commit(30, [Row(host("a"), {"A": ["192.0.2.1"]})], at=past)
        await log.commit(31, [Row(host("a"), {"A": ["192.0.2.2"]}, {"A": ["192.0.2.1"]})])
        [newest] = await log.commit(
            32, [Row(host("a"), {"A": ["192.0.2.3"]}, {"A": ["192.0.2.2"]})]
        )
        reachable = await log.diffs(31, newest)
        await log.prune(first[-1] + 1)  # serial 30's row goes
        return reachable, await log.diffs(30, newest), await log.diffs(29, newest)

    reachable, pruned, unknown = run(scenario())
    assert reachable is not None and [d.new_serial for d in reachable] == [32]
    assert pruned is None
    assert unknown is None


def test_none_when_a_row_lacks_previous(engine: AsyncEngine) -> None:
    log = ChangeLog(engine)

    async def scenario() -> tuple[list[Diff] | None, list[Diff] | None]:
        await log.commit(40, [Row(host("a"), {"A": ["192.0.2.1"]})])
        await log.commit(41, [Row(host("b"), {"A": ["192.0.2.2"]}, previous=None)])  # an old row
        [newest] = await log.commit(42, [Row(host("a"), {}, {"A": ["192.0.2.1"]})])
        return await log.diffs(40, newest), await log.diffs(41, newest)

    across_it, after_it = run(scenario())
    assert across_it is None
    assert after_it == [Diff(41, 42, [(host("a"), "A", "192.0.2.1")], [])]


def test_the_clis_host_removed_row_carries_the_records_it_had(
    tmp_path: Path, engine: AsyncEngine
) -> None:
    config = load_config(write_config(tmp_path), environ={})
    fqdn = host("gone")

    async def scenario() -> tuple[dict[str, Any], list[Diff] | None]:
        admin = Admin(engine, config)
        await admin.add_user("alice", "alice-password-1")
        await admin.add_host(fqdn, "alice")
        async with engine.begin() as conn:  # what the server's writer stores for an update
            ident = (
                await conn.execute(select(hosts_table.c.id).where(hosts_table.c.fqdn == fqdn))
            ).scalar_one()
            await conn.execute(
                records_table.insert(),
                [
                    {"host_id": ident, "rtype": "A", "address": "192.0.2.7"},
                    {"host_id": ident, "rtype": "AAAA", "address": "2001:db8::7"},
                ],
            )
            await conn.execute(zones_table.insert().values(name=ZONE, serial=50))
        # The records as the server's writer would have logged them (serial 50).
        await ChangeLog(engine).commit(
            50, [Row(fqdn, {"A": ["192.0.2.7"], "AAAA": ["2001:db8::7"]})]
        )
        await admin.remove_host(fqdn)
        async with engine.connect() as conn:
            rows = await changelog.read(conn, 0)
            removed = next(row for row in rows if row.kind == Kind.HOST_REMOVED.value)
            diffs = await zone_diffs(conn, ZONE, 50, rows[-1].id)
        return removed.value, diffs

    value, diffs = run(scenario())
    assert value["previous"] == {"A": ["192.0.2.7"], "AAAA": ["2001:db8::7"]}
    assert value["zone"] == ZONE
    serial = value["serial"]
    assert diffs == [
        Diff(50, serial, [(fqdn, "A", "192.0.2.7"), (fqdn, "AAAA", "2001:db8::7")], [])
    ]
