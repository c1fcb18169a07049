"""``acme add|list|remove``: the acme-dns accounts, as the CLI manages them.

They are rows of ``acme_accounts`` and nothing else: the server reads an account from
the database at each update (:mod:`.accounts`), so a new account works at once and a
removed one stops at once, without a change-log row. Removing a host removes its
accounts (the database cascades).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Row, Select, delete, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from ..admin import AdminError, utc
from ..auth import token_digest
from ..hostrecords import acme_name
from ..names import InvalidName, normalize_fqdn
from ..tables import acme_accounts, hosts, users
from .accounts import Registration, new_name, new_password
from .protocol import canonical_username


@dataclass(frozen=True, slots=True)
class AccountRow:
    username: str
    fqdn: str  # the host whose `_acme-challenge` TXT records it sets
    owner: str  # the host's owner
    subdomain: str
    created_at: datetime


def _accounts() -> Select[int, str, str, str, str, datetime]:
    """Every account with its host and owner, by host and age; the first column is its id."""
    return (
        select(
            acme_accounts.c.id,
            acme_accounts.c.username,
            hosts.c.fqdn,
            users.c.name,
            acme_accounts.c.subdomain,
            acme_accounts.c.created_at,
        )
        .join_from(acme_accounts, hosts, acme_accounts.c.host_id == hosts.c.id)
        .join(users, hosts.c.owner_id == users.c.id)
        .order_by(hosts.c.fqdn, acme_accounts.c.created_at, acme_accounts.c.id)
    )


def _row(row: Row[int, str, str, str, str, datetime]) -> AccountRow:
    _, username, fqdn, owner, subdomain, created = row
    return AccountRow(username, fqdn, owner, subdomain, utc(created))


class AcmeAdmin:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    def _fqdn(self, text: str) -> str:
        try:
            return normalize_fqdn(text)
        except InvalidName as exc:
            raise AdminError(str(exc)) from None

    async def add_account(self, fqdn_text: str) -> Registration:
        """A new account for the host ``fqdn_text``: its password is in the answer only."""
        fqdn = self._fqdn(fqdn_text)
        registration = Registration(new_name(), new_password(), acme_name(fqdn), new_name())
        async with self._engine.begin() as conn:
            host_id = await conn.scalar(select(hosts.c.id).where(hosts.c.fqdn == fqdn))
            if host_id is None:
                raise AdminError(f"no host named {fqdn!r} (see: host list; add it: host add)")
            await conn.execute(
                insert(acme_accounts).values(
                    host_id=host_id,
                    username=registration.username,
                    key_digest=token_digest(registration.password),
                    subdomain=registration.subdomain,
                    created_at=datetime.now(UTC),
                )
            )
        return registration

    async def list_accounts(self, owner: str | None = None) -> list[AccountRow]:
        """Every account, by host; only those of ``owner``'s hosts if given."""
        query = _accounts()
        async with self._engine.connect() as conn:
            if owner is not None:
                if await conn.scalar(select(users.c.id).where(users.c.name == owner)) is None:
                    raise AdminError(f"no user named {owner!r} (see: user list)")
                query = query.where(users.c.name == owner)
            return [_row(row) for row in await conn.execute(query)]

    async def remove_accounts(self, name: str) -> list[AccountRow]:
        """Remove the account with user name ``name``, or every account of the host
        ``name``; the accounts removed."""
        username = canonical_username(name)
        if username is not None:
            query = _accounts().where(acme_accounts.c.username == username)
        else:
            query = _accounts().where(hosts.c.fqdn == self._fqdn(name))
        async with self._engine.begin() as conn:
            rows = (await conn.execute(query)).all()
            if not rows:
                what = "user name" if username is not None else "host"
                raise AdminError(f"no acme-dns account with {what} {name!r} (see: acme list)")
            ids = [row[0] for row in rows]
            await conn.execute(delete(acme_accounts).where(acme_accounts.c.id.in_(ids)))
        return [_row(row) for row in rows]
