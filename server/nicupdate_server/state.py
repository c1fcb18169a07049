"""The running server's view of accounts, hosts and their records.

The database is the source of truth. The server holds a copy so that the common
answer (``nochg`` for an authenticated client) needs no database round trip:
the writer updates the copy after each commit, and :meth:`State.load` rebuilds it
when the CLI has changed accounts or hosts (``meta.admin_revision`` rose).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from .tables import hosts as _hosts
from .tables import meta as _meta
from .tables import records as _records
from .tables import users as _users
from .tables import zones as _zones

ADMIN_REVISION = "admin_revision"


@dataclass(slots=True)
class UserEntry:
    id: int
    name: str
    password_hash: str


@dataclass(slots=True)
class HostEntry:
    id: int
    fqdn: str
    owner_id: int
    token_digest: str | None
    # "A"/"AAAA" -> addresses as text, sorted; no empty tuples.
    records: dict[str, tuple[str, ...]] = field(default_factory=dict)
    last_update_at: datetime | None = None
    last_result: str | None = None
    # nochg answers not yet written to the database, and when (time.time()) the last one was.
    nochg_pending: int = 0
    last_seen_at: float | None = None
    # last_result changed after the commit (a stored change DNS did not confirm in time).
    result_unsaved: bool = False
    # Answers `abuse` until its owner clears it (`host unblock`).
    blocked: bool = False


@dataclass(slots=True)
class State:
    users: dict[str, UserEntry] = field(default_factory=dict)
    hosts: dict[str, HostEntry] = field(default_factory=dict)
    zone_serials: dict[str, int] = field(default_factory=dict)
    admin_revision: int = 0

    @classmethod
    async def load(cls, conn: AsyncConnection) -> State:
        state = cls()
        for user in await conn.execute(select(_users.c.id, _users.c.name, _users.c.password_hash)):
            state.users[user.name] = UserEntry(user.id, user.name, user.password_hash)
        by_id: dict[int, HostEntry] = {}
        hosts = await conn.execute(
            select(
                _hosts.c.id,
                _hosts.c.fqdn,
                _hosts.c.owner_id,
                _hosts.c.token_digest,
                _hosts.c.last_update_at,
                _hosts.c.last_result,
                _hosts.c.blocked_at,
            )
        )
        for row in hosts:
            entry = HostEntry(
                row.id,
                row.fqdn,
                row.owner_id,
                row.token_digest,
                last_update_at=row.last_update_at,
                last_result=row.last_result,
                blocked=row.blocked_at is not None,
            )
            state.hosts[row.fqdn] = by_id[row.id] = entry
        records = await conn.execute(
            select(_records.c.host_id, _records.c.rtype, _records.c.address).order_by(
                _records.c.host_id, _records.c.rtype, _records.c.address
            )
        )
        for record in records:
            host = by_id.get(record.host_id)
            if host is not None:
                host.records[record.rtype] = (*host.records.get(record.rtype, ()), record.address)
        for zone in await conn.execute(select(_zones.c.name, _zones.c.serial)):
            state.zone_serials[zone.name] = zone.serial
        state.admin_revision = await read_admin_revision(conn)
        return state


async def read_admin_revision(conn: AsyncConnection) -> int:
    result = await conn.execute(select(_meta.c.value).where(_meta.c.key == ADMIN_REVISION))
    return result.scalar_one_or_none() or 0
