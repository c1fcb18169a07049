"""The change log: every change to accounts, hosts and their records, in commit order.

Whoever changes the durable state (the server's group commit, the CLI, the reconciler's
confirmations) appends rows here in the same transaction as the change itself
(:func:`append`), so a row exists if and only if its change was committed. Each row
says what changed (``kind``), of what (``subject``: a host or user name) and its new
value (JSON), and which process wrote it (``origin``). Rows are numbered in commit
order: on SQLite by its one writer at a time, on PostgreSQL by a transaction-scoped
advisory lock (:func:`take_order`) that every writing transaction takes at its start and
holds until its commit, so no reader can see id 11 and later find a 10 committed after
it, and writers on several instances never interleave their rows.

Readers tail it from their own position (:mod:`.feed` in every server process; the
webhooks and ``GET /api/v1/changes`` outside): read the rows after the last id seen,
apply them, remember the last id. PostgreSQL also gets ``NOTIFY`` on
:data:`CHANNEL` at each commit, so listeners wake at once.

Kinds and their values (names normal form, addresses sorted as the server stores them):

=================  ===========================================================
``user.added``     ``{"id", "password_hash"}`` (also a changed password: the same)
``user.removed``   ``{"id"}`` (its hosts' ``host.removed`` come before)
``host.added``     ``{"id", "owner", "owner_id", "token_digest"}``
``host.token``     ``{"token_digest"}`` (a rotated token)
``host.removed``   ``{"id", "owner", "zone", "serial", "since", "previous"}`` (all but
                   the first two: if it had records; ``previous``: those records)
``host.blocked``   ``{}`` (answers ``abuse``); ``host.unblocked`` ``{}``
``records``        ``{"records": {"A": [...]}, "previous": {...}, "zone", "serial",
                   "since"}``: ``since`` is the zone's serial before the commit (IXFR)
``applied``        ``{"backend", "records"}``: what a backend confirmed for the host
``backend.error``  ``{"backend", "message", "permanent"}``
``dns.served``     ``{"position"}``: a machine's DNS worker serves every change up to
                   it (subject: the group of workers, :mod:`.served`)
=================  ===========================================================

Secrets never go in: password hashes and token digests are one-way, and the feed given
to the outside (webhooks, the API) leaves out the ``user.*`` rows and the digests.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import delete, func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from .tables import changes as _changes
from .tables import feed_positions as _positions

# PostgreSQL: the NOTIFY channel, and the advisory lock that orders the appends.
CHANNEL = "nicupdate_changes"
ORDER_LOCK = 0x6E69_6375_7064  # "nicupd"
READ_BATCH = 2000


class Kind(StrEnum):
    USER_ADDED = "user.added"
    USER_REMOVED = "user.removed"
    HOST_ADDED = "host.added"
    HOST_TOKEN = "host.token"
    HOST_REMOVED = "host.removed"
    HOST_BLOCKED = "host.blocked"
    HOST_UNBLOCKED = "host.unblocked"
    HOST_SETTINGS = "host.settings"
    RECORDS = "records"
    APPLIED = "applied"
    BACKEND_ERROR = "backend.error"
    SERVED = "dns.served"


@dataclass(frozen=True, slots=True)
class Change:
    """One row to append."""

    kind: Kind
    subject: str
    value: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Entry:
    """One row read back."""

    id: int
    at: datetime
    kind: str
    subject: str
    value: dict[str, Any]
    origin: str


def new_origin(role: str) -> str:
    """A name for this process's rows, unique among every process sharing the database:
    ``serve@host:pid:random``."""
    return f"{role}@{socket.gethostname()[:32]}:{os.getpid()}:{secrets.token_hex(3)}"


def records_value(records: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    return {rtype: list(records[rtype]) for rtype in sorted(records) if records[rtype]}


def records_of(value: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    """The records of a ``records`` or ``applied`` value: no empty families."""
    raw = value.get("records") or {}
    return {str(rtype): tuple(addresses) for rtype, addresses in raw.items() if addresses}


def _encode(value: Mapping[str, Any]) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


async def take_order(conn: AsyncConnection) -> None:
    """PostgreSQL: hold the order lock for the rest of ``conn``'s transaction, from its
    start. Every transaction that appends takes it first, so that writers on several
    processes run one at a time: a change computed from what a process holds in memory
    is written whole after the one before it (never interleaved with it row by row),
    and two writers never wait on each other's rows. SQLite has one writer anyway."""
    if conn.dialect.name == "postgresql":
        await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ORDER_LOCK})


async def append(
    conn: AsyncConnection, changes: Iterable[Change], origin: str, at: datetime | None = None
) -> list[int]:
    """Add ``changes`` to the log in ``conn``'s transaction, the last statement before
    the commit (on PostgreSQL it holds the order lock until then); their ids."""
    now = at or datetime.now(UTC)
    rows = [
        {
            "at": now,
            "kind": change.kind.value,
            "subject": change.subject,
            "value": _encode(change.value),
            "origin": origin,
        }
        for change in changes
    ]
    if not rows:
        return []
    await take_order(conn)  # held already if taken first, as it should be
    result = await conn.execute(
        insert(_changes).returning(_changes.c.id, sort_by_parameter_order=True), rows
    )
    ids = [int(row_id) for row_id in result.scalars()]
    if conn.dialect.name == "postgresql":
        await conn.execute(text("SELECT pg_notify(:channel, '')"), {"channel": CHANNEL})
    return ids


async def newest(conn: AsyncConnection) -> int:
    """The id of the newest row (0: none yet)."""
    return int((await conn.execute(select(func.max(_changes.c.id)))).scalar() or 0)


async def oldest(conn: AsyncConnection) -> int:
    """The id of the oldest row kept (0: none)."""
    return int((await conn.execute(select(func.min(_changes.c.id)))).scalar() or 0)


async def read(conn: AsyncConnection, after: int, limit: int = READ_BATCH) -> list[Entry]:
    """The rows after id ``after``, oldest first, at most ``limit``."""
    result = await conn.execute(
        select(_changes).where(_changes.c.id > after).order_by(_changes.c.id).limit(limit)
    )
    return [
        Entry(
            row.id,
            row.at if row.at.tzinfo else row.at.replace(tzinfo=UTC),
            row.kind,
            row.subject,
            json.loads(row.value),
            row.origin,
        )
        for row in result
    ]


async def slowest_reader(conn: AsyncConnection) -> int | None:
    """The position of the durable reader furthest behind (None: there is none)."""
    result = await conn.execute(select(func.min(_positions.c.position)))
    value = result.scalar()
    return None if value is None else int(value)


async def prune(conn: AsyncConnection, before: int, older_than: timedelta, limit: int) -> int:
    """Delete at most ``limit`` rows with an id below ``before`` that are older than
    ``older_than``; the number deleted."""
    cutoff = datetime.now(UTC) - older_than
    ids = select(_changes.c.id).where(_changes.c.id < before, _changes.c.at < cutoff)
    result = await conn.execute(
        delete(_changes).where(_changes.c.id.in_(ids.order_by(_changes.c.id).limit(limit)))
    )
    return int(result.rowcount or 0)
