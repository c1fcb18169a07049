"""The change log as the outside sees it: the events of webhooks and ``/api/v1/changes``.

An event is one row of the log (:mod:`.changelog`) of a kind in
:data:`~.config.WEBHOOK_EVENTS`, as one JSON object, the same bytes for every reader::

    {"id": 42, "event": "records", "at": "2025-01-02T03:04:05.678901Z",
     "host": "home.dyn.example.com", "owner": "alice",
     "records": {"A": ["203.0.113.7"]}, "previous": {"A": ["203.0.113.6"]}}

``records`` events carry ``records`` and ``previous``; ``backend.error`` events
``backend``, ``message`` and ``permanent``. Nothing else of a row goes out: never a token
digest or a password hash, and never the ``user.*``, ``host.token`` or ``applied`` rows.

Whose host it is (``owner``, and who may read the event): ``host.added`` and
``host.removed`` rows say it themselves. For the other rows the owner is the host's as
this process holds it (:class:`~.state.State`), unless a ``host.removed`` row of the same
name follows in the rows read together (the host has gone since: its owner then), or,
for a host gone from memory, the first ``host.removed`` of its name after the row. A
reader of old rows may thus see an event of a name that was removed and added again
by another owner attributed to the new owner when the removal lies beyond the rows read
together (:data:`~.changelog.READ_BATCH`).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from .auth import Principal
from .changelog import Entry, Kind
from .config import WEBHOOK_EVENTS
from .state import State
from .tables import changes as _changes

KINDS = frozenset(WEBHOOK_EVENTS)
_OWNED_BY_ROW = frozenset({Kind.HOST_ADDED.value, Kind.HOST_REMOVED.value})
_EXTRA: dict[str, tuple[str, ...]] = {
    Kind.RECORDS.value: ("records", "previous"),
    Kind.BACKEND_ERROR.value: ("backend", "message", "permanent"),
}


@dataclass(frozen=True, slots=True)
class Event:
    """One event: its JSON ``body``, and whose host it is about."""

    id: int
    kind: str
    host: str
    owner: str | None
    owner_id: int | None  # None: known by name only (a removed host)
    host_id: int | None
    body: bytes

    def visible_to(self, principal: Principal) -> bool:
        """Whether ``principal`` may update (and so see) the event's host."""
        if principal.host_id is not None:
            return self.host_id == principal.host_id
        if self.owner_id is not None:
            return self.owner_id == principal.user_id
        return self.owner is not None and self.owner == principal.name


def timestamp(at: datetime) -> str:
    """ISO 8601 in UTC: ``2025-01-02T03:04:05.678901Z``."""
    return at.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class _Owner:
    name: str | None
    user_id: int | None
    host_id: int | None


class Events:
    """Turns rows of the log into events, with their hosts' owners."""

    def __init__(self, state: State) -> None:
        self._state = state
        self._names: dict[int, str] = {}  # user id -> name, rebuilt when it is out of date

    async def describe(
        self, conn: AsyncConnection, entries: Sequence[Entry], kinds: Collection[str] = KINDS
    ) -> list[Event]:
        """The events of ``entries`` (in log order) whose kinds are in ``kinds``."""
        after = _later_removals(entries)
        gone: dict[str, tuple[int, _Owner | None]] = {}  # name -> its next removal
        events = []
        for index, entry in enumerate(entries):
            if entry.kind not in kinds or entry.kind not in KINDS:
                continue
            owner = after[index] if index in after else self._owner(entry)
            if owner is None:  # a host gone from memory: its removal, further on
                known = gone.get(entry.subject)
                if known is None or known[0] <= entry.id:
                    known = gone[entry.subject] = await _removal_after(
                        conn, entry.subject, entry.id
                    )
                owner = known[1]
            events.append(_event(entry, owner or _Owner(None, None, None)))
        return events

    def _owner(self, entry: Entry) -> _Owner | None:
        value = entry.value
        if entry.kind in _OWNED_BY_ROW:
            owner_id = value.get("owner_id")
            return _Owner(
                value.get("owner") or None,
                int(owner_id) if owner_id is not None else None,
                int(value["id"]) if "id" in value else None,
            )
        host = self._state.hosts.get(entry.subject)
        if host is None:
            return None
        return _Owner(self._name_of(host.owner_id), host.owner_id, host.id)

    def _name_of(self, user_id: int) -> str | None:
        name = self._names.get(user_id)
        user = self._state.users.get(name) if name is not None else None
        if user is None or user.id != user_id:
            self._names = {user.id: user.name for user in self._state.users.values()}
            name = self._names.get(user_id)
        return name


def _later_removals(entries: Sequence[Entry]) -> dict[int, _Owner]:
    """For each row (by index) about a host removed further on in ``entries``: that
    removal's owner."""
    found: dict[int, _Owner] = {}
    pending: dict[str, _Owner] = {}  # name -> the owner of its next removal
    for index in range(len(entries) - 1, -1, -1):
        entry = entries[index]
        if entry.kind == Kind.HOST_REMOVED.value:
            pending[entry.subject] = _removed_owner(entry.value)
            continue
        if entry.kind == Kind.HOST_ADDED.value:
            pending.pop(entry.subject, None)  # rows before it are of an earlier host
            continue
        owner = pending.get(entry.subject)
        if owner is not None:
            found[index] = owner
    return found


def _removed_owner(value: dict[str, Any]) -> _Owner:
    return _Owner(value.get("owner") or None, None, int(value["id"]) if "id" in value else None)


async def _removal_after(conn: AsyncConnection, fqdn: str, after: int) -> tuple[int, _Owner | None]:
    """The id and owner of the first removal of ``fqdn`` after row ``after`` (none: the
    newest id it may be, and None)."""
    row = (
        await conn.execute(
            select(_changes.c.id, _changes.c.value)
            .where(
                _changes.c.kind == Kind.HOST_REMOVED.value,
                _changes.c.subject == fqdn,
                _changes.c.id > after,
            )
            .order_by(_changes.c.id)
            .limit(1)
        )
    ).first()
    if row is None:
        return (1 << 62, None)
    return (int(row.id), _removed_owner(json.loads(row.value)))


def _event(entry: Entry, owner: _Owner) -> Event:
    body: dict[str, Any] = {
        "id": entry.id,
        "event": entry.kind,
        "at": timestamp(entry.at),
        "host": entry.subject,
        "owner": owner.name,
    }
    value = entry.value
    for key in _EXTRA.get(entry.kind, ()):
        body[key] = value.get(key, {} if key in ("records", "previous") else None)
    encoded = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    return Event(
        entry.id, entry.kind, entry.subject, owner.name, owner.user_id, owner.host_id, encoded
    )
