"""The service layer of the REST API (``restapi/``) and the web UI (``web/``).

Both act for someone: an :class:`Actor` (a signed-in account, or an API token's user
narrowed by the token's scope). :class:`Manager` checks what the actor may do, then
makes the change the way the CLI does (:class:`~.admin.Admin`: the database and the
change log in one transaction) and lets this process apply it before it answers, so
the next request, here or in a ``/nic/update``, sees it. Addresses set by hand go
through :meth:`~.updates.UpdateService.change`, the durable path of every update:
answered once DNS has them.

Errors are :class:`ManageError` subclasses, each with an HTTP status and a message
that says what to fix.
"""

from __future__ import annotations

import asyncio
import ipaddress
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import delete, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from .addresses import UnusableAddress, check_usable
from .admin import (
    Admin,
    AdminError,
    Clash,
    Following,
    HistoryRow,
    HostRow,
    Missing,
    UserRow,
    check_password,
    history_row,
    utc,
)
from .apitokens import ApiTokens, Scope, TokenRow
from .auth import Authenticator, verify_password
from .config import Config
from .dyndns import Code, Credentials
from .names import InvalidName, normalize_fqdn
from .state import State
from .tables import update_log, users, web_sessions

if TYPE_CHECKING:
    from .reconciler import Reconciler
    from .updates import UpdateService

HISTORY_PAGE = 50
MAX_ADDRESSES = 20
MAX_HISTORY_PAGE = 500


class ManageError(Exception):
    """Refused: ``status`` is the HTTP status, ``code`` a word for scripts."""

    status = 422
    code = "invalid"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class NotFound(ManageError):
    status = 404
    code = "not_found"


class Forbidden(ManageError):
    status = 403
    code = "forbidden"


class Conflict(ManageError):
    status = 409
    code = "conflict"


class Locked(ManageError):
    """The caller's source is locked out after failed logins: try after ``retry_after``."""

    status = 429
    code = "locked_out"

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Unavailable(ManageError):
    """The database or DNS cannot take the change now; try again later."""

    status = 503
    code = "unavailable"


@dataclass(frozen=True, slots=True)
class Actor:
    """Who asks: an account (``admin`` only for a full-scope admin) and its scope."""

    user_id: int
    name: str
    admin: bool = False
    scope: Scope = field(default_factory=Scope)
    # When the actor's API token expires (None: a session, or a token without expiry).
    expires_at: datetime | None = None

    def may_see(self, fqdn: str) -> bool:
        return self.scope.may_see(fqdn)


@dataclass(frozen=True, slots=True)
class Account:
    id: int
    name: str
    admin: bool
    disabled: bool
    totp: bool
    created_at: datetime


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """Newest first; ``next``: pass it as ``before`` for older rows (None: no more)."""

    fqdn: str
    rows: list[HistoryRow]
    next: int | None


@dataclass(frozen=True, slots=True)
class BackendStatus:
    name: str
    pending: int
    errors: list[str]


@dataclass(frozen=True, slots=True)
class ServerStatus:
    healthy: bool
    problems: list[str]
    backends: list[BackendStatus]
    users: int
    hosts: int
    figures: dict[str, float]  # a few of /metrics' (requests, answers, failed logins)


@dataclass(frozen=True, slots=True)
class Changed:
    """The outcome of addresses set by hand: the dyndns2 word (good, nochg, dnserr,
    911) and why, when it is not good or nochg."""

    code: str
    reason: str

    @property
    def ok(self) -> bool:
        return self.code in (Code.GOOD.value, Code.NOCHG.value)


def _fqdn(text: str, what: str = "fqdn") -> str:
    try:
        return normalize_fqdn(text)
    except InvalidName as exc:
        raise ManageError(str(exc), field=what) from None


def check_addresses(
    families: Mapping[str, Sequence[str]], *, public_only: bool = False
) -> dict[str, tuple[str, ...]]:
    """``{"A": [...], "AAAA": [...]}`` checked: addresses of the family that a host may
    point at (as ``/nic/update`` checks them; ``public_only``: the zone's setting)."""
    checked: dict[str, tuple[str, ...]] = {}
    for rtype, values in families.items():
        if rtype not in ("A", "AAAA"):
            raise ManageError(f"{rtype}: only A and AAAA addresses are set by hand", field=rtype)
        version = 4 if rtype == "A" else 6
        addresses = []
        for value in values:
            try:
                address = ipaddress.ip_address(str(value).strip())
            except ValueError:
                raise ManageError(
                    f"{rtype}: {str(value)[:60]!r} is not an IP address", field=rtype
                ) from None
            if address.version != version:
                raise ManageError(f"{rtype}: {address} is not an IPv{version} address", field=rtype)
            try:
                check_usable(address, public_only=public_only)
            except UnusableAddress as exc:
                raise ManageError(f"{rtype}: {exc}", field=rtype) from None
            addresses.append(str(address))
        if len(set(addresses)) > MAX_ADDRESSES:
            raise ManageError(f"{rtype}: at most {MAX_ADDRESSES} addresses", field=rtype)
        checked[rtype] = tuple(sorted(set(addresses)))
    return checked


class Manager:
    def __init__(
        self,
        *,
        engine: AsyncEngine,
        config: Config,
        state: Callable[[], State],
        service: UpdateService,
        authenticator: Authenticator,
        catch_up: Callable[[], Awaitable[object]],
        reconciler: Reconciler | None = None,
        health: Callable[[], Awaitable[list[str]]] | None = None,
        figures: Callable[[], dict[str, float]] | None = None,
    ) -> None:
        self.engine = engine
        self.config = config
        self._state = state
        self.service = service
        self.authenticator = authenticator
        self._catch_up = catch_up
        self._reconciler = reconciler
        self._health = health
        self._figures = figures
        self.admin = Admin(engine, config)
        self.tokens = ApiTokens(engine)

    @classmethod
    def of_runtime(cls, runtime: object) -> Manager:
        """The manager of a running server (:class:`~.runtime.Runtime`)."""
        from .runtime import Runtime

        assert isinstance(runtime, Runtime)
        metrics = runtime.metrics
        return cls(
            engine=runtime.engine,
            config=runtime.config,
            state=lambda: runtime.state,
            service=runtime.service,
            authenticator=runtime.authenticator,
            catch_up=runtime.feed.catch_up,
            reconciler=runtime.reconciler,
            health=runtime.health,
            figures=metrics.figures if metrics is not None else None,
        )

    async def _done(self) -> None:
        """Apply what was just committed here, before answering."""
        await self._catch_up()

    # Accounts ---------------------------------------------------------------------------

    async def account(self, user_id: int) -> Account | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(users).where(users.c.id == user_id))).first()
        if row is None:
            return None
        return Account(
            row.id,
            row.name,
            bool(row.is_admin),
            row.disabled_at is not None,
            row.totp_secret is not None,
            utc(row.created_at),
        )

    async def check_password(self, name: str, password: str, source: str) -> Account | None:
        """The account whose name and password these are (None: wrong, or disabled),
        counted and locked out like any login. Raises :class:`~.auth.LoginThrottled`."""
        principal = await self.authenticator.authenticate(
            Credentials(name, password), lambda: source
        )
        if principal is None or principal.user_id is None:
            if principal is not None:  # a host name and its token: no account
                self.authenticator.failed(source, name)
            return None
        account = await self.account(principal.user_id)
        if account is None or account.disabled:
            return None
        return account

    async def change_password(self, actor: Actor, current: str, new: str, *, source: str) -> None:
        """A new password, given the current one. A wrong current password counts as a
        failed login from ``source`` (a stolen session or token must not guess it at
        leisure), and a locked-out source is refused (:class:`Locked`)."""
        self._writes(actor)
        wait = self.authenticator.limiter.locked(source, actor.name)
        if wait > 0:
            raise Locked(
                f"too many failed logins from your address: try again in {math.ceil(wait)} s", wait
            )
        async with self.engine.connect() as conn:
            stored = (
                await conn.execute(select(users.c.password_hash).where(users.c.id == actor.user_id))
            ).scalar_one_or_none()
        if stored is None or not await asyncio.to_thread(verify_password, current, stored):
            self.authenticator.failed(source, actor.name)
            raise Forbidden("the current password is wrong", field="current_password")
        try:
            check_password(new)
        except AdminError as exc:
            raise ManageError(str(exc), field="new_password") from None
        await self._admin(self.admin.set_password(actor.name, new))

    async def totp_secret(self, user_id: int) -> tuple[str | None, int | None]:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(users.c.totp_secret, users.c.totp_step).where(users.c.id == user_id)
                )
            ).first()
        return (row.totp_secret, row.totp_step) if row is not None else (None, None)

    async def set_totp(self, user_id: int, secret: str | None) -> None:
        """Turn TOTP sign-in on (with ``secret``, base32) or off."""
        async with self.engine.begin() as conn:
            await conn.execute(
                update(users)
                .where(users.c.id == user_id)
                .values(totp_secret=secret, totp_step=None, updated_at=datetime.now(UTC))
            )

    async def take_totp_step(self, user_id: int, step: int) -> bool:
        """Mark TOTP time step ``step`` used; false if it (or a later one) was already:
        a code is good once."""
        async with self.engine.begin() as conn:
            result = await conn.execute(
                update(users)
                .where(users.c.id == user_id)
                .where((users.c.totp_step.is_(None)) | (users.c.totp_step < step))
                .values(totp_step=step)
            )
            return bool(result.rowcount)

    # Hosts ------------------------------------------------------------------------------

    def _sees(self, actor: Actor, row: HostRow) -> bool:
        return (actor.admin or row.owner == actor.name) and actor.may_see(row.fqdn)

    async def hosts(self, actor: Actor, *, every: bool = False) -> list[HostRow]:
        """The actor's hosts (an admin's ``every``: all hosts), as its scope allows."""
        if every and actor.admin:
            rows = await self.admin.list_hosts()
        else:
            rows = await self.admin.list_hosts(owner=actor.name)
        return [row for row in rows if actor.may_see(row.fqdn)]

    async def host(self, actor: Actor, fqdn_text: str) -> HostRow:
        fqdn = _fqdn(fqdn_text)
        rows = await self.admin.list_hosts(fqdns=[fqdn])
        if not rows or not self._sees(actor, rows[0]):
            raise NotFound(f"no host {fqdn} of yours (list them: GET /api/v1/hosts)")
        return rows[0]

    def _writes(self, actor: Actor) -> None:
        if actor.scope.read_only:
            raise Forbidden("this token is read-only: use a token without --read-only")

    def _full(self, actor: Actor) -> None:
        self._writes(actor)
        if actor.scope.acme_only:
            raise Forbidden("this token may only set _acme-challenge TXT records")

    async def _admin(self, work: Awaitable[object]) -> None:
        try:
            await work
        except Missing as exc:
            raise NotFound(str(exc)) from None
        except Clash as exc:
            raise Conflict(str(exc)) from None
        except AdminError as exc:
            raise ManageError(str(exc)) from None
        except SQLAlchemyError as exc:
            raise Unavailable(f"the database refused the change: {type(exc).__name__}") from None
        await self._done()

    async def add_host(
        self,
        actor: Actor,
        fqdn_text: str,
        *,
        owner: str | None = None,
        wildcard: bool = False,
        following: Following | None = None,
    ) -> str:
        """Add a host (an admin may give it to ``owner``); its update token, once."""
        self._full(actor)
        if actor.scope.hosts is not None:
            raise Forbidden("this token is limited to some hosts: it cannot add hosts")
        if owner is not None and owner != actor.name and not actor.admin:
            raise Forbidden("only an admin adds hosts for another user")
        fqdn = _fqdn(fqdn_text)
        token: list[str] = []

        async def add() -> None:
            token.append(
                await self.admin.add_host(
                    fqdn, owner or actor.name, wildcard=wildcard, following=following
                )
            )

        await self._admin(add())
        return token[0]

    async def remove_host(self, actor: Actor, fqdn_text: str) -> None:
        self._full(actor)
        row = await self.host(actor, fqdn_text)
        await self._admin(self.admin.remove_host(row.fqdn))

    async def rotate_token(self, actor: Actor, fqdn_text: str) -> str:
        self._full(actor)
        row = await self.host(actor, fqdn_text)
        token: list[str] = []

        async def rotate() -> None:
            token.append(await self.admin.rotate_token(row.fqdn))

        await self._admin(rotate())
        return token[0]

    async def set_host(
        self,
        actor: Actor,
        fqdn_text: str,
        *,
        wildcard: bool | None = None,
        following: Following | None = None,
    ) -> HostRow:
        self._full(actor)
        row = await self.host(actor, fqdn_text)
        if following is not None and following.leader is not None:
            await self.host(actor, following.leader)  # one of the actor's own
        await self._admin(self.admin.set_host(row.fqdn, wildcard=wildcard, following=following))
        return await self.host(actor, row.fqdn)

    async def set_records(
        self,
        actor: Actor,
        fqdn_text: str,
        families: Mapping[str, Sequence[str]],
        *,
        caller: str,
        user_agent: str,
    ) -> Changed:
        """Set (or with ``()`` clear) a host's A, AAAA or TXT records by hand, through
        the update path: answered once DNS has them."""
        self._writes(actor)
        if actor.scope.acme_only and set(families) - {"TXT"}:
            raise Forbidden("this token may only set _acme-challenge TXT records")
        row = await self.host(actor, fqdn_text)
        zone = self.config.zone_for(row.fqdn)
        addresses = {k: v for k, v in families.items() if k != "TXT"}
        wanted = check_addresses(addresses, public_only=zone is not None and zone.public_only)
        if "TXT" in families:
            wanted["TXT"] = tuple(str(value) for value in families["TXT"])
        host = self._state().hosts.get(row.fqdn)
        if host is None:
            raise Unavailable(f"{row.fqdn} is not loaded yet; try again in a second")
        outcome = await self.service.change(host, wanted, caller=caller, user_agent=user_agent)
        return Changed(outcome.code.value, outcome.reason)

    async def history(
        self, actor: Actor, fqdn_text: str, *, before: int | None = None, limit: int = HISTORY_PAGE
    ) -> HistoryPage:
        row = await self.host(actor, fqdn_text)
        if not 1 <= limit <= MAX_HISTORY_PAGE:
            raise ManageError(f"limit {limit}: between 1 and {MAX_HISTORY_PAGE}", field="limit")
        query = select(update_log).where(update_log.c.fqdn == row.fqdn)
        if before is not None:
            query = query.where(update_log.c.id < before)
        query = query.order_by(update_log.c.id.desc()).limit(limit + 1)
        async with self.engine.connect() as conn:
            found = list(await conn.execute(query))
        entries = [history_row(entry) for entry in found[:limit]]
        more = len(found) > limit
        return HistoryPage(row.fqdn, entries, entries[-1].id if more and entries else None)

    # API tokens -------------------------------------------------------------------------

    async def api_tokens(self, actor: Actor) -> list[TokenRow]:
        return await self.tokens.list(actor.name)

    async def add_api_token(
        self,
        actor: Actor,
        name: str,
        *,
        hosts: Sequence[str] | None = None,
        read_only: bool = False,
        acme_only: bool = False,
        expires_days: int | None = None,
    ) -> tuple[str, TokenRow]:
        """A new token for the actor, never wider than the actor's own scope, nor living
        longer than the actor's token."""
        self._writes(actor)
        scope = actor.scope
        expires_at = None
        if actor.expires_at is not None:
            if expires_days is not None:
                wanted = datetime.now(UTC) + timedelta(days=expires_days)
                expires_at = min(wanted, actor.expires_at)
            else:
                expires_at = actor.expires_at
        if scope.hosts is not None:
            hosts = list(scope.hosts if hosts is None else hosts)
            outside = [h for h in hosts if _fqdn(h, "hosts") not in scope.hosts]
            if outside:
                raise Forbidden(f"{outside[0]}: outside this token's hosts")
        try:
            return await self.tokens.add(
                actor.name,
                name,
                hosts=hosts,
                read_only=read_only,
                acme_only=acme_only or scope.acme_only,
                expires_days=expires_days,
                expires_at=expires_at,
            )
        except AdminError as exc:
            raise ManageError(str(exc)) from None

    async def revoke_api_token(self, actor: Actor, token_id: int) -> None:
        self._writes(actor)
        if not await self.tokens.revoke(token_id, actor.name):
            raise NotFound(f"no API token {token_id} of yours (list them: GET /api/v1/tokens)")

    # Users (admins) -----------------------------------------------------------------------

    def _admin_only(self, actor: Actor) -> None:
        if not actor.admin:
            raise Forbidden("only an admin may do this")

    async def users(self, actor: Actor) -> list[UserRow]:
        self._admin_only(actor)
        return await self.admin.list_users()

    async def add_user(
        self, actor: Actor, name: str, password: str, *, admin: bool = False
    ) -> None:
        self._admin_only(actor)
        self._writes(actor)
        await self._admin(self.admin.add_user(name, password, admin=admin))

    async def set_user(
        self, actor: Actor, name: str, *, disabled: bool | None = None, admin: bool | None = None
    ) -> UserRow:
        self._admin_only(actor)
        self._writes(actor)
        if name == actor.name and (disabled or admin is False):
            raise Conflict("you cannot disable yourself or take your own admin rights")
        if disabled is not None:
            await self._admin(self.admin.set_disabled(name, disabled))
        if admin is not None:
            await self._admin(self.admin.set_admin(name, admin))
        for row in await self.admin.list_users():
            if row.name == name:
                return row
        raise NotFound(f"no user named {name!r}")

    async def remove_user(self, actor: Actor, name: str, *, with_hosts: bool) -> int:
        self._admin_only(actor)
        self._writes(actor)
        if name == actor.name:
            raise Conflict("you cannot remove yourself")
        removed: list[int] = []

        async def remove() -> None:
            removed.append(await self.admin.remove_user(name, with_hosts=with_hosts))

        await self._admin(remove())
        return removed[0]

    async def status(self, actor: Actor) -> ServerStatus:
        self._admin_only(actor)
        problems = await self._health() if self._health is not None else []
        backends: list[BackendStatus] = []
        if self._reconciler is not None:
            stuck = self._reconciler.stuck()
            for name, pending in sorted(self._reconciler.pending_counts().items()):
                backends.append(BackendStatus(name, pending, stuck.get(name, [])[:50]))
        state = self._state()
        figures = self._figures() if self._figures is not None else {}
        return ServerStatus(
            not problems, problems, backends, len(state.users), len(state.hosts), figures
        )

    # Web sessions -----------------------------------------------------------------------

    async def end_sessions(self, user_id: int, *, keep: str | None = None) -> None:
        """End the user's web sessions (but the one whose digest is ``keep``)."""
        query = delete(web_sessions).where(web_sessions.c.user_id == user_id)
        if keep is not None:
            query = query.where(web_sessions.c.digest != keep)
        async with self.engine.begin() as conn:
            await conn.execute(query)
