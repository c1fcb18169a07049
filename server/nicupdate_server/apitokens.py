"""Bearer tokens of the REST API (``/api/v1``): made with ``token add`` or in the web UI,
shown once, kept as SHA-256 digests.

A token acts for its user, narrowed by its scope: some hosts only (by name), reading
only, or only the ``_acme-challenge`` TXT records of the hosts (a certificate client's
token); until it expires or is revoked. Account passwords never work on the API.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from .admin import AdminError, utc
from .auth import new_token
from .names import InvalidName, normalize_fqdn
from .tables import api_tokens, users
from .tables import hosts as hosts_table

PREFIX = "nu_"  # tokens start with it: a secret scanner (or a person) knows one
MAX_EXPIRY_DAYS = 3650
MAX_TOKENS_PER_USER = 100
_NAME = re.compile(r"^[\w .@+-]{1,64}$")
# A token as issued: the prefix and 43 characters of URL-safe base64 (256 bits).
_SHAPE = re.compile(r"^nu_[A-Za-z0-9_-]{20,128}$")
# last_used_at is written at most this often per token (a busy script costs no writes).
USED_RESOLUTION = timedelta(minutes=1)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Scope:
    """What a token may do beyond acting for its user."""

    hosts: tuple[str, ...] | None = None  # None: every host of its user
    read_only: bool = False
    acme_only: bool = False  # only the hosts' _acme-challenge TXT records

    def may_see(self, fqdn: str) -> bool:
        return self.hosts is None or fqdn in self.hosts

    def words(self) -> str:
        """``read-only, hosts: a.example.net``; ``full`` for no limit."""
        parts = []
        if self.read_only:
            parts.append("read-only")
        if self.acme_only:
            parts.append("acme TXT only")
        if self.hosts is not None:
            parts.append("hosts: " + ", ".join(self.hosts))
        return "; ".join(parts) or "full"


@dataclass(frozen=True, slots=True)
class TokenRow:
    """A token as listed (never its secret)."""

    id: int
    user: str
    name: str
    scope: Scope
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None

    def expired(self, now: datetime | None = None) -> bool:
        return self.expires_at is not None and self.expires_at <= (now or datetime.now(UTC))


@dataclass(frozen=True, slots=True)
class Bearer:
    """Who an accepted token acts for."""

    token_id: int
    user_id: int
    user: str
    admin: bool
    scope: Scope
    expires_at: datetime | None = None


def _hosts_text(names: tuple[str, ...] | None) -> str | None:
    return None if names is None else ",".join(names)


def _hosts_of(text: str | None) -> tuple[str, ...] | None:
    return None if text is None else tuple(name for name in text.split(",") if name)


def check_token_name(name: str) -> str:
    name = name.strip()
    if not _NAME.match(name):
        raise AdminError(f"token name {name[:70]!r}: 1-64 letters, digits, spaces and . _ @ + -")
    return name


class ApiTokens:
    """The tokens, on the database (the CLI and the server alike)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def add(
        self,
        user: str,
        name: str,
        *,
        hosts: Sequence[str] | None = None,
        read_only: bool = False,
        acme_only: bool = False,
        expires_days: int | None = None,
        expires_at: datetime | None = None,
    ) -> tuple[str, TokenRow]:
        """A new token for ``user``: its secret (shown once) and its row. ``expires_at``
        (a time) overrides ``expires_days``."""
        name = check_token_name(name)
        if expires_days is not None and not 1 <= expires_days <= MAX_EXPIRY_DAYS:
            raise AdminError(f"--expires {expires_days}: between 1 and {MAX_EXPIRY_DAYS} days")
        names: tuple[str, ...] | None = None
        if hosts is not None:
            try:
                names = tuple(sorted({normalize_fqdn(host) for host in hosts}))
            except InvalidName as exc:
                raise AdminError(str(exc)) from None
            if not names:
                raise AdminError("--host: name at least one host, or none for every host")
        now = datetime.now(UTC)
        expires = now + timedelta(days=expires_days) if expires_days is not None else None
        if expires_at is not None:
            expires = expires_at
        secret = PREFIX + new_token()
        async with self._engine.begin() as conn:
            owner = (
                await conn.execute(select(users.c.id).where(users.c.name == user))
            ).scalar_one_or_none()
            if owner is None:
                raise AdminError(f"no user named {user!r} (see: user list)")
            if names is not None:
                rows = await conn.execute(
                    select(hosts_table.c.fqdn, hosts_table.c.owner_id).where(
                        hosts_table.c.fqdn.in_(names)
                    )
                )
                owned = {fqdn for fqdn, owner_id in rows if owner_id == owner}
                missing = [fqdn for fqdn in names if fqdn not in owned]
                if missing:
                    raise AdminError(f"--host {missing[0]}: no host of {user} by that name")
            count = len(
                (
                    await conn.execute(select(api_tokens.c.id).where(api_tokens.c.user_id == owner))
                ).all()
            )
            if count >= MAX_TOKENS_PER_USER:
                raise AdminError(
                    f"{user} has {count} API tokens, the most allowed: revoke one first"
                )
            result = await conn.execute(
                api_tokens.insert().values(
                    user_id=owner,
                    name=name,
                    digest=digest(secret),
                    hosts=_hosts_text(names),
                    read_only=read_only,
                    acme_only=acme_only,
                    created_at=now,
                    expires_at=expires,
                )
            )
            key = result.inserted_primary_key
            assert key is not None
            token_id = int(key[0])
        scope = Scope(names, read_only, acme_only)
        return secret, TokenRow(token_id, user, name, scope, now, expires, None)

    async def list(self, user: str | None = None) -> list[TokenRow]:
        """Every token (of ``user``), oldest first."""
        query = (
            select(api_tokens, users.c.name.label("user_name"))
            .join(users, users.c.id == api_tokens.c.user_id)
            .order_by(api_tokens.c.id)
        )
        if user is not None:
            query = query.where(users.c.name == user)
        async with self._engine.connect() as conn:
            return [
                TokenRow(
                    row.id,
                    row.user_name,
                    row.name,
                    Scope(_hosts_of(row.hosts), row.read_only, row.acme_only),
                    utc(row.created_at),
                    None if row.expires_at is None else utc(row.expires_at),
                    None if row.last_used_at is None else utc(row.last_used_at),
                )
                for row in await conn.execute(query)
            ]

    async def revoke(self, token_id: int, user: str | None = None) -> bool:
        """Revoke a token (only ``user``'s, when given); false if there is none."""
        query = delete(api_tokens).where(api_tokens.c.id == token_id)
        if user is not None:
            owner = select(users.c.id).where(users.c.name == user).scalar_subquery()
            query = query.where(api_tokens.c.user_id == owner)
        async with self._engine.begin() as conn:
            return bool((await conn.execute(query)).rowcount)

    async def check(self, secret: str) -> Bearer | None:
        """Who ``secret`` acts for; None if it is no live token (unknown, expired, or
        its account is disabled)."""
        if not _SHAPE.match(secret):
            return None
        wanted = digest(secret)
        now = datetime.now(UTC)
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    select(
                        api_tokens,
                        users.c.name.label("user_name"),
                        users.c.is_admin,
                        users.c.disabled_at,
                    )
                    .join(users, users.c.id == api_tokens.c.user_id)
                    .where(api_tokens.c.digest == wanted)
                )
            ).first()
            if row is None or not hmac.compare_digest(row.digest, wanted):
                return None
            if row.disabled_at is not None:
                return None
            if row.expires_at is not None and utc(row.expires_at) <= now:
                return None
            if row.last_used_at is None or now - utc(row.last_used_at) >= USED_RESOLUTION:
                await conn.execute(
                    update(api_tokens).where(api_tokens.c.id == row.id).values(last_used_at=now)
                )
                await conn.commit()
        scope = Scope(_hosts_of(row.hosts), row.read_only, row.acme_only)
        # An admin's token scoped to hosts or reading is no admin's token.
        admin = bool(row.is_admin) and scope.hosts is None and not scope.acme_only
        expires = None if row.expires_at is None else utc(row.expires_at)
        return Bearer(row.id, row.user_id, row.user_name, admin, scope, expires)
