"""``key add|list|remove``: the TSIG keys of UPDATE messages, as the CLI manages them.

They are rows of ``tsig_keys`` and nothing else: a running server reads a key it does
not know when a message names it, and checks that a key is still there before it
applies a message signed with it (:mod:`.keys`), so no change-log row is needed.
Removing an account removes its keys, removing a host its host keys (the database
cascades).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Select, delete, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from ..admin import AdminError, utc
from ..names import InvalidName, normalize_fqdn
from ..tables import hosts, tsig_keys, users
from .keys import ALGORITHMS, DEFAULT_ALGORITHM, KeyNameError, key_clause, key_name, new_secret


@dataclass(frozen=True, slots=True)
class KeyRow:
    """A key as ``key list`` shows it: never its secret."""

    name: str
    owner: str
    host: str | None  # None: every host of its owner
    algorithm: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class NewKey:
    row: KeyRow
    clause: str  # the key clause with its secret: printed once, kept nowhere else

    def __repr__(self) -> str:
        return f"NewKey({self.row!r})"


def _keys() -> Select[str, str, str | None, str, datetime]:
    return (
        select(
            tsig_keys.c.name,
            users.c.name,
            hosts.c.fqdn,
            tsig_keys.c.algorithm,
            tsig_keys.c.created_at,
        )
        .join_from(tsig_keys, users, tsig_keys.c.owner_id == users.c.id)
        .outerjoin(hosts, tsig_keys.c.host_id == hosts.c.id)
        .order_by(users.c.name, tsig_keys.c.name)
    )


class KeyAdmin:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def add_key(
        self, name_text: str, owner: str, host: str | None, algorithm: str = DEFAULT_ALGORITHM
    ) -> NewKey:
        """A new key of ``owner`` (for its host ``host`` alone, if given)."""
        try:
            name = key_name(name_text)
        except KeyNameError as exc:
            raise AdminError(str(exc)) from None
        if algorithm not in ALGORITHMS:
            known = ", ".join(ALGORITHMS)
            raise AdminError(f"unknown algorithm {algorithm!r} (use one of {known})")
        fqdn = None
        if host is not None:
            try:
                fqdn = normalize_fqdn(host)
            except InvalidName as exc:
                raise AdminError(str(exc)) from None
        secret = new_secret(algorithm)
        now = datetime.now(UTC)
        async with self._engine.begin() as conn:
            owner_id = await conn.scalar(select(users.c.id).where(users.c.name == owner))
            if owner_id is None:
                raise AdminError(f"no user named {owner!r} (see: user list)")
            host_id = None
            if fqdn is not None:
                found = (
                    await conn.execute(
                        select(hosts.c.id, hosts.c.owner_id).where(hosts.c.fqdn == fqdn)
                    )
                ).first()
                if found is None:
                    raise AdminError(f"no host named {fqdn!r} (see: host list; add it: host add)")
                if found.owner_id != owner_id:
                    raise AdminError(f"host {fqdn} is not {owner}'s (see: host list)")
                host_id = found.id
            taken = await conn.scalar(select(tsig_keys.c.id).where(tsig_keys.c.name == name))
            if taken is not None:
                raise AdminError(f"a key named {name!r} exists already (see: key list)")
            await conn.execute(
                insert(tsig_keys).values(
                    name=name,
                    owner_id=owner_id,
                    host_id=host_id,
                    algorithm=algorithm,
                    secret=base64.b64encode(secret).decode("ascii"),
                    created_at=now,
                )
            )
        row = KeyRow(name, owner, fqdn, algorithm, now)
        return NewKey(row, key_clause(name, algorithm, secret))

    async def list_keys(self, owner: str | None = None) -> list[KeyRow]:
        """Every key, by owner and name; only ``owner``'s if given."""
        query = _keys()
        async with self._engine.connect() as conn:
            if owner is not None:
                if await conn.scalar(select(users.c.id).where(users.c.name == owner)) is None:
                    raise AdminError(f"no user named {owner!r} (see: user list)")
                query = query.where(users.c.name == owner)
            rows = (await conn.execute(query)).all()
        return [KeyRow(key, who, host, kind, utc(at)) for key, who, host, kind, at in rows]

    async def remove_key(self, name_text: str) -> KeyRow:
        """Remove the key ``name_text``; the key removed."""
        try:
            name = key_name(name_text)
        except KeyNameError as exc:
            raise AdminError(str(exc)) from None
        async with self._engine.begin() as conn:
            row = (await conn.execute(_keys().where(tsig_keys.c.name == name))).first()
            if row is None:
                raise AdminError(f"no key named {name!r} (see: key list)")
            await conn.execute(delete(tsig_keys).where(tsig_keys.c.name == name))
        key, who, fqdn, algorithm, at = row
        return KeyRow(key, who, fqdn, algorithm, utc(at))
