"""acme-dns accounts: credentials that may set one host's ``_acme-challenge`` TXT records.

The operator makes them (``acme add``, :mod:`.admin`); acme-dns's ``/register`` is
closed. They are made as acme-dns makes them: the user name and the subdomain are random
UUIDs, the password (``X-Api-Key``) 40 random URL-safe characters. The database keeps
the password's SHA-256, as for a host token: a long random secret needs no slow hash.

An update reads its account from the database (:func:`find`). Updates are rare (a
certificate every 60 days or so), and so an account made or removed by the CLI counts
at once in every process, without the change log.
"""

from __future__ import annotations

import hmac
import secrets
import string
import uuid
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from ..auth import token_digest
from ..tables import acme_accounts, hosts
from .protocol import KEY_LENGTH

ALPHABET = string.ascii_letters + string.digits + "-_"


def new_password() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(KEY_LENGTH))


def new_name() -> str:
    """A user name or a subdomain: a random UUID, as acme-dns makes them."""
    return str(uuid.uuid4())


@dataclass(frozen=True, slots=True)
class Account:
    """An account, as an update needs it: whose key it takes, and for which host."""

    username: str
    key_digest: str = field(repr=False)
    subdomain: str
    host_id: int
    fqdn: str

    def accepts(self, key: str) -> bool:
        return hmac.compare_digest(token_digest(key), self.key_digest)


async def find(engine: AsyncEngine, username: str) -> Account | None:
    """The account named ``username`` (canonical: :func:`.protocol.canonical_username`)."""
    query = (
        select(acme_accounts.c.key_digest, acme_accounts.c.subdomain, hosts.c.id, hosts.c.fqdn)
        .join_from(acme_accounts, hosts, acme_accounts.c.host_id == hosts.c.id)
        .where(acme_accounts.c.username == username)
    )
    async with engine.connect() as conn:
        row = (await conn.execute(query)).first()
    if row is None:
        return None
    digest, subdomain, host_id, fqdn = row
    return Account(username, digest, subdomain, host_id, fqdn)


@dataclass(frozen=True, slots=True)
class Registration:
    """What acme-dns's ``/register`` answers and ``acme add`` prints: what an ACME
    client's acme-dns account file holds."""

    username: str
    password: str = field(repr=False)
    fulldomain: str
    subdomain: str

    def as_json(self) -> dict[str, object]:
        """In acme-dns's order, with no source restriction (``allowfrom``)."""
        return {
            "username": self.username,
            "password": self.password,
            "fulldomain": self.fulldomain,
            "subdomain": self.subdomain,
            "allowfrom": [],
        }
