"""Signed-in browsers: rows of ``web_sessions``, found by the cookie's digest.

The cookie ``nicupdate_session`` carries a random id (256 bits); the table keeps its
SHA-256, so a copy of the database signs no one in. A session ends when it is signed
out, after :data:`IDLE` without a request, :data:`LIFETIME` after sign-in, when its
account is disabled (``admin.set_disabled`` deletes its rows; :meth:`Sessions.find`
also refuses a disabled account's), and when the password changes (the other sessions
of the account: ``Manager.end_sessions``). A session signed in with the password but
not yet with its TOTP code (``pending``) lives :data:`PENDING_LIFETIME` and opens
nothing but the code's page.

``seen_at`` is written at most once per :data:`SEEN_RESOLUTION`: browsing costs no write
per page.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from ..admin import utc
from ..tables import users, web_sessions

COOKIE = "nicupdate_session"
IDLE = timedelta(hours=12)
LIFETIME = timedelta(days=7)
PENDING_LIFETIME = timedelta(minutes=10)
SEEN_RESOLUTION = timedelta(minutes=1)


def digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True, slots=True)
class Session:
    """A live session and the account it is for (as the database has it now)."""

    digest: str
    user_id: int
    user: str
    admin: bool
    totp: bool
    csrf: str
    pending: bool  # the TOTP code is still to come
    created_at: datetime

    def __repr__(self) -> str:  # never the digest or the CSRF token
        return f"Session(user={self.user!r}, pending={self.pending})"


class Sessions:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def start(self, user_id: int, *, pending: bool) -> str:
        """A new session for ``user_id``: the cookie's value (shown to no one else).
        Expired rows of everyone go at the same time."""
        session_id = secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        lifetime = PENDING_LIFETIME if pending else LIFETIME
        async with self._engine.begin() as conn:
            await conn.execute(
                delete(web_sessions).where(
                    or_(web_sessions.c.expires_at <= now, web_sessions.c.seen_at <= now - IDLE)
                )
            )
            await conn.execute(
                web_sessions.insert().values(
                    digest=digest(session_id),
                    user_id=user_id,
                    csrf=secrets.token_urlsafe(32),
                    pending_totp=pending,
                    created_at=now,
                    seen_at=now,
                    expires_at=now + lifetime,
                )
            )
        return session_id

    async def find(self, session_id: str | None) -> Session | None:
        """The live session of a cookie's value; None if there is none (unknown,
        expired, or its account disabled), and an expired one is deleted."""
        if not session_id or len(session_id) > 100:
            return None
        key = digest(session_id)
        now = datetime.now(UTC)
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    select(
                        web_sessions,
                        users.c.name,
                        users.c.is_admin,
                        users.c.disabled_at,
                        users.c.totp_secret,
                    )
                    .join(users, users.c.id == web_sessions.c.user_id)
                    .where(web_sessions.c.digest == key)
                )
            ).first()
            if row is None:
                return None
            seen = utc(row.seen_at)
            if utc(row.expires_at) <= now or seen <= now - IDLE or row.disabled_at is not None:
                await conn.execute(delete(web_sessions).where(web_sessions.c.digest == key))
                await conn.commit()
                return None
            if now - seen >= SEEN_RESOLUTION:
                await conn.execute(
                    update(web_sessions).where(web_sessions.c.digest == key).values(seen_at=now)
                )
                await conn.commit()
        return Session(
            key,
            row.user_id,
            row.name,
            bool(row.is_admin),
            row.totp_secret is not None,
            row.csrf,
            bool(row.pending_totp),
            utc(row.created_at),
        )

    async def complete(self, session: Session) -> None:
        """The TOTP code came: the session opens everything, for :data:`LIFETIME`."""
        now = datetime.now(UTC)
        async with self._engine.begin() as conn:
            await conn.execute(
                update(web_sessions)
                .where(web_sessions.c.digest == session.digest)
                .values(pending_totp=False, seen_at=now, expires_at=now + LIFETIME)
            )

    async def end(self, session_id: str | None) -> None:
        """Sign out: the row goes."""
        if session_id:
            async with self._engine.begin() as conn:
                await conn.execute(
                    delete(web_sessions).where(web_sessions.c.digest == digest(session_id))
                )
