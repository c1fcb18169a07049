"""IXFR's differences, read from the change log (RFC 1995's journal, without a journal).

Every change of a builtin zone's records is a row of the change log (:mod:`..changelog`):
``records`` carries a host's whole new record set and the one it had (``previous``),
``host.removed`` the records that leave with the host (``previous``); both carry the
zone and the zone's new SOA serial. One commit gives all its rows of a zone one
serial (a batch of updates, a removed account's hosts), and serials rise with the
rows' ids. So the versions of a zone between two serials are the rows in between,
grouped by serial: :func:`zone_diffs` returns one :class:`Diff` per version.

Reaching back: the log is pruned from its oldest row on, never in the middle. A row
of the zone with the client's serial ``since``, or one whose commit raised the serial
from ``since`` (its ``since``: a zone that was quiet longer than the log keeps rows, or
one never changed since it was created), proves that every later row is still there;
without one we cannot tell what changed, and answer ``None`` (the caller then sends
the whole zone). The caller answers a client at the current serial itself.

What a secondary holds at ``since`` for a host is the record set of the host's
newest row up to ``since``. The rows of the ``since`` version give it exactly; for
other hosts the first later row's ``previous`` tells it (what the writer replaced).
A row without ``previous`` (written before it was logged) makes the answer ``None``.

A row is about one host, but its records live at several names: each record set is
expanded with :func:`..hostrecords.expand` (its ``wildcard`` flag, ``previous_wildcard``
for ``previous``; a row without the key had none), so a wildcard turned on or off, or
a changed ACME token, is a difference at ``*.<host>`` or ``_acme-challenge.<host>``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Iterable, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

import dns.serial
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from ..changelog import Kind
from ..hostrecords import RTYPES, expand
from ..tables import changes as _changes

READ_BATCH = 2000
_KINDS = (Kind.RECORDS.value, Kind.HOST_REMOVED.value)

Record = tuple[str, str, str]  # (owner name, its type: "A", "AAAA" or "TXT", one value)
# Every (owner, type) a host stands for -> its values (:func:`..hostrecords.expand`).
Names = dict[tuple[str, str], tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class Diff:
    """One version step of a zone: what the step from ``old_serial`` to ``new_serial``
    deleted and added (each record once; none both deleted and added)."""

    old_serial: int
    new_serial: int
    deleted: list[Record] = field(default_factory=list)
    added: list[Record] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Row:
    id: int
    kind: str
    host: str
    serial: int
    records: Names
    previous: Names | None
    since: int | None  # the zone's serial before the row's commit


def _names(host: str, raw: Any, wildcard: Any) -> Names:
    """The records at every name of ``host`` for a row's record set and wildcard flag."""
    records = {}
    if isinstance(raw, Mapping):
        records = {
            str(rtype): tuple(str(value) for value in values)
            for rtype, values in raw.items()
            if rtype in RTYPES and values
        }
    return expand(host, records, wildcard is True)


def _parse(row: Any, zone: str) -> _Row | None:
    try:
        value = json.loads(row.value)
    except ValueError:
        return None
    if not isinstance(value, dict) or value.get("zone") != zone or value.get("serial") is None:
        return None
    host = row.subject
    removed = row.kind == Kind.HOST_REMOVED.value
    return _Row(
        int(row.id),
        row.kind,
        host,
        int(value["serial"]) & 0xFFFFFFFF,
        _names(host, {} if removed else value.get("records"), value.get("wildcard")),
        _names(host, value["previous"], value.get("previous_wildcard"))
        if "previous" in value
        else None,
        int(value["since"]) & 0xFFFFFFFF if value.get("since") is not None else None,
    )


async def _rows_back(conn: AsyncConnection, zone: str, upto_id: int) -> AsyncGenerator[Any, None]:
    """The zone's rows from ``upto_id`` back, newest first, a batch at a time."""
    cursor = upto_id + 1
    # A cheap filter in the database (the values are JSON with sorted keys and no
    # spaces, changelog._encode); each row is checked again once parsed.
    marker = json.dumps({"zone": zone}, separators=(",", ":"))[1:-1]
    while True:
        result = await conn.execute(
            select(_changes.c.id, _changes.c.kind, _changes.c.subject, _changes.c.value)
            .where(
                _changes.c.id < cursor,
                _changes.c.kind.in_(_KINDS),
                _changes.c.value.contains(marker, autoescape=True),
            )
            .order_by(_changes.c.id.desc())
            .limit(READ_BATCH)
        )
        rows = result.all()
        if not rows:
            return
        for row in rows:
            yield row
        cursor = rows[-1].id


async def zone_diffs(
    conn: AsyncConnection, zone: str, since: int, upto_id: int, *, max_rows: int | None = None
) -> list[Diff] | None:
    """The differences of ``zone`` from serial ``since`` to the version the log's rows
    up to id ``upto_id`` made, oldest first; ``None`` when the log cannot tell them
    (it was pruned past ``since``, a row lacks ``previous``, or more than ``max_rows``
    rows would be needed). An empty list: nothing after ``since`` up to ``upto_id``."""
    since &= 0xFFFFFFFF
    later: list[_Row] = []  # newest first, serial after `since`
    at_since: list[_Row] = []
    async with aclosing(_rows_back(conn, zone, upto_id)) as rows:
        async for raw in rows:
            row = _parse(raw, zone)
            if row is None:
                continue
            if row.serial == since:
                at_since.append(row)
                continue
            if at_since or dns.serial.Serial(row.serial) < since:
                break  # past the `since` version (or it never was in the log)
            later.append(row)
            if max_rows is not None and len(later) > max_rows:
                return None
    if not at_since and not any(row.since == since for row in later):
        return None  # neither a row of the `since` version nor one that follows it
    known: dict[str, Names] = {}
    for row in reversed(at_since):  # oldest first: the newest row of a host wins
        known[row.host] = row.records
    return _diffs(since, reversed(later), known)


def _diffs(since: int, rows: Iterable[_Row], known: dict[str, Names]) -> list[Diff] | None:
    """Group ``rows`` (oldest first) by serial into diffs, ``known`` holding each host's
    records at ``since`` where the rows of that version said them."""
    diffs: list[Diff] = []
    old_serial = since
    group: list[_Row] = []
    for row in rows:
        if group and row.serial != group[0].serial:
            diff = _diff(old_serial, group, known)
            if diff is None:
                return None
            diffs.append(diff)
            old_serial = group[0].serial
            group = []
        group.append(row)
    if group:
        diff = _diff(old_serial, group, known)
        if diff is None:
            return None
        diffs.append(diff)
    return diffs


def _diff(old_serial: int, rows: Sequence[_Row], known: dict[str, Names]) -> Diff | None:
    """One version: per host, its records before its first row and after its last."""
    before: dict[str, Names] = {}
    for row in rows:
        if row.host not in before:
            had = known.get(row.host, row.previous)
            if had is None:
                return None
            before[row.host] = had
        known[row.host] = row.records
    diff = Diff(old_serial, rows[0].serial)
    for host, had in before.items():
        has = known[host]
        for (owner, rtype), values in has.items():  # every name and type of the host
            old, new = set(had.get((owner, rtype), ())), set(values)
            diff.deleted.extend((owner, rtype, value) for value in sorted(old - new))
            diff.added.extend((owner, rtype, value) for value in sorted(new - old))
    return diff
