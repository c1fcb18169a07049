"""Account and host administration, as the CLI does it.

Every change appends what it changed to the change log (:mod:`.changelog`) in the
same transaction; running servers apply it from there (PostgreSQL wakes them at once,
SQLite within ``server.poll_interval``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from .addresses import in_prefix
from .auth import hash_password, new_token, token_digest
from .changelog import Change, Kind, append, new_origin, records_value, take_order
from .config import Config
from .hostrecords import derived_host, describe_key, expand
from .models import Host, Record, UpdateLog, User, Zone
from .names import InvalidName, normalize_fqdn
from .store import next_serial, records_row
from .tables import applied, sync_errors, web_sessions

_USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$")
MIN_PASSWORD = 8


class AdminError(Exception):
    """A request the CLI refuses; the message says why and what to do."""


class Missing(AdminError):
    """No user or host by that name."""


class Clash(AdminError):
    """It exists already, or something still depends on it (a user's hosts)."""


def check_interface_id(text: str, prefix_length: int) -> str:
    """An interface id as given (``::1234:5678:9abc:def0``), checked against the prefix
    length it completes; in its short form."""
    if not 1 <= prefix_length <= 127:
        raise AdminError(f"--prefix-length {prefix_length}: between 1 and 127 (usually 64)")
    try:
        iid = ipaddress.IPv6Address(text.strip())
    except ValueError:
        raise AdminError(
            f"--interface-id {text[:60]!r} is not an IPv6 interface id (like ::1234:5678:9abc:def0)"
        ) from None
    if not int(iid) & ((1 << (128 - prefix_length)) - 1):
        raise AdminError(
            f"--interface-id {iid}: its last {128 - prefix_length} bits are all zero, "
            "which is the prefix itself"
        )
    return str(iid)


@dataclass(frozen=True, slots=True)
class UserRow:
    name: str
    hosts: int
    created_at: datetime
    admin: bool = False
    disabled_at: datetime | None = None
    totp: bool = False  # two-factor sign-in to the web UI is on


@dataclass(frozen=True, slots=True)
class HostRow:
    fqdn: str
    owner: str
    records: dict[str, tuple[str, ...]]
    last_update_at: datetime | None
    last_result: str | None
    last_seen_at: datetime | None
    nochg_count: int
    blocked_at: datetime | None
    # Per backend that has not confirmed the desired records: the record types waiting.
    pending: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # Per backend: its last error for this host, until an apply succeeds.
    errors: dict[str, str] = field(default_factory=dict)
    wildcard: bool = False
    # The IPv6 prefix its last update delegated; whose prefix it follows, and how.
    ipv6_prefix: str | None = None
    follows: str | None = None
    interface_id: str | None = None
    prefix_length: int | None = None
    # The hosts that follow its prefix.
    followers: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Following:
    """Whose IPv6 prefix a host follows: ``leader`` None follows no one."""

    leader: str | None
    interface_id: str | None = None
    prefix_length: int | None = None


@dataclass(frozen=True, slots=True)
class HistoryRow:
    """One answer of the update history (times in UTC)."""

    at: datetime
    caller: str
    user_agent: str
    old: str  # "A 203.0.113.7; AAAA 2001:db8::7"
    new: str
    answer: str  # as sent
    detail: str
    confirmed_at: datetime | None
    id: int = 0  # the row's, for paging


def history_row(entry: Any) -> HistoryRow:
    """A row of ``update_log`` (an ORM object or a Core row) as a :class:`HistoryRow`."""
    return HistoryRow(
        utc(entry.at),
        entry.caller,
        entry.user_agent,
        entry.old_value,
        entry.new_value,
        entry.answer,
        entry.detail,
        None if entry.confirmed_at is None else utc(entry.confirmed_at),
        entry.id,
    )


@dataclass(frozen=True, slots=True)
class History:
    fqdn: str
    rows: list[HistoryRow]  # oldest first
    exists: bool  # False: a removed host, whose history is kept until it is pruned
    nochg_count: int = 0


def _user_change(user: User) -> Change:
    value = {"id": user.id, "password_hash": user.password_hash}
    if user.disabled_at is not None:
        value["disabled"] = True
    return Change(Kind.USER_ADDED, user.name, value)


def utc(value: datetime) -> datetime:
    """A time read from the database, in UTC (SQLite gives it without a zone)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def check_user_name(name: str) -> None:
    if not _USER_NAME.match(name):
        raise AdminError(
            f"{name!r} is not a valid user name: 1-64 characters, letters, digits and ._@+-"
        )


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise AdminError(f"the password is too short: use at least {MIN_PASSWORD} characters")
    if any(ch in password for ch in "\r\n\x00"):
        raise AdminError("the password contains a line break or NUL character")


class Admin:
    def __init__(self, engine: AsyncEngine, config: Config) -> None:
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._config = config
        self.origin = new_origin("cli")

    async def _ordered(self, session: AsyncSession) -> None:
        """Write after every other writer of the database, not beside it (PostgreSQL)."""
        await take_order(await session.connection())

    async def _log(self, session: AsyncSession, *changes: Change) -> None:
        """Append ``changes`` to the change log; the last thing before the commit."""
        await session.flush()
        await append(await session.connection(), changes, self.origin)

    async def _user(self, session: AsyncSession, name: str) -> User:
        user = await session.scalar(select(User).where(User.name == name))
        if user is None:
            raise Missing(f"no user named {name!r} (see: user list)")
        return user

    async def _host(self, session: AsyncSession, fqdn: str) -> Host:
        host = await session.scalar(select(Host).where(Host.fqdn == self._fqdn(fqdn)))
        if host is None:
            raise Missing(f"no host named {fqdn!r} (see: host list)")
        return host

    def _fqdn(self, text: str) -> str:
        try:
            return normalize_fqdn(text)
        except InvalidName as exc:
            raise AdminError(str(exc)) from None

    async def add_user(self, name: str, password: str, *, admin: bool = False) -> None:
        check_user_name(name)
        check_password(password)
        hashed = await asyncio.to_thread(hash_password, password)  # not on the event loop
        async with self._sessions.begin() as session:
            await self._ordered(session)
            if await session.scalar(select(User.id).where(User.name == name)) is not None:
                raise Clash(f"user {name!r} already exists (change it with: user passwd)")
            now = datetime.now(UTC)
            user = User(
                name=name,
                password_hash=hashed,
                created_at=now,
                updated_at=now,
                is_admin=admin,
            )
            session.add(user)
            await session.flush()
            await self._log(session, _user_change(user))

    async def set_password(self, name: str, password: str) -> None:
        check_password(password)
        hashed = await asyncio.to_thread(hash_password, password)
        async with self._sessions.begin() as session:
            await self._ordered(session)
            user = await self._user(session, name)
            user.password_hash = hashed
            user.updated_at = datetime.now(UTC)
            await self._log(session, _user_change(user))

    async def set_admin(self, name: str, admin: bool) -> bool:
        """Make ``name`` an admin or not; false if it already was as asked."""
        async with self._sessions.begin() as session:
            user = await self._user(session, name)
            if user.is_admin == admin:
                return False
            user.is_admin = admin
            user.updated_at = datetime.now(UTC)
            return True

    async def clear_totp(self, name: str) -> bool:
        """Turn off ``name``'s two-factor sign-in (a lost phone); false if it was off."""
        async with self._sessions.begin() as session:
            user = await self._user(session, name)
            if user.totp_secret is None:
                return False
            user.totp_secret = user.totp_step = None
            user.updated_at = datetime.now(UTC)
            return True

    async def set_disabled(self, name: str, disabled: bool) -> bool:
        """Disable an account (it, its hosts' tokens and its API tokens are refused
        everywhere, its web sessions end) or enable it again; false if it already was."""
        async with self._sessions.begin() as session:
            await self._ordered(session)
            user = await self._user(session, name)
            if (user.disabled_at is not None) == disabled:
                return False
            now = datetime.now(UTC)
            user.disabled_at = now if disabled else None
            user.updated_at = now
            if disabled:
                await session.execute(delete(web_sessions).where(web_sessions.c.user_id == user.id))
            await self._log(session, _user_change(user))
            return True

    async def list_users(self) -> list[UserRow]:
        async with self._sessions() as session:
            rows = await session.execute(
                select(
                    User.name,
                    func.count(Host.id),
                    User.created_at,
                    User.is_admin,
                    User.disabled_at,
                    User.totp_secret.is_not(None),
                )
                .outerjoin(Host, Host.owner_id == User.id)
                .group_by(User.id)
                .order_by(User.name)
            )
            return [
                UserRow(name, count, utc(created), bool(admin), disabled and utc(disabled), totp)
                for name, count, created, admin, disabled, totp in rows
            ]

    async def remove_user(self, name: str, *, with_hosts: bool) -> int:
        async with self._sessions.begin() as session:
            await self._ordered(session)
            user = await self._user(session, name)
            hosts = (await session.scalars(select(Host).where(Host.owner_id == user.id))).all()
            if hosts and not with_hosts:
                raise Clash(
                    f"user {name!r} owns {len(hosts)} host(s): remove them first, "
                    "or pass --with-hosts to remove them too"
                )
            removed = await self._remove_hosts(session, hosts)
            await session.delete(user)
            await self._log(session, *removed, Change(Kind.USER_REMOVED, name, {"id": user.id}))
            return len(hosts)

    async def add_host(
        self,
        fqdn_text: str,
        owner: str,
        *,
        wildcard: bool = False,
        following: Following | None = None,
    ) -> str:
        fqdn = self._fqdn(fqdn_text)
        if derived_host(fqdn) is not None:
            raise AdminError(
                f"{fqdn} cannot be a host: names starting with _acme-challenge hold the TXT "
                "records of the host below them"
            )
        zone = self._config.zone_for(fqdn)
        if zone is None:
            zones = ", ".join(z.name for z in self._config.zones) or "none"
            raise AdminError(f"{fqdn} is in no configured zone (zones: {zones})")
        if fqdn in self._config.reserved:
            raise AdminError(
                f"{fqdn} cannot be a host: it is {self._config.reserved[fqdn]}, which an "
                "update would replace; pick another name"
            )
        token = new_token()
        async with self._sessions.begin() as session:
            await self._ordered(session)
            user = await self._user(session, owner)
            if await session.scalar(select(Host.id).where(Host.fqdn == fqdn)) is not None:
                raise Clash(f"host {fqdn} already exists")
            host = Host(
                fqdn=fqdn,
                owner_id=user.id,
                token_digest=token_digest(token),
                created_at=datetime.now(UTC),
                nochg_count=0,
                wildcard=wildcard,
            )
            session.add(host)
            await session.flush()
            added: dict[str, Any] = {
                "id": host.id,
                "owner": user.name,
                "owner_id": user.id,
                "token_digest": host.token_digest,
                "wildcard": wildcard,
            }
            changes = [Change(Kind.HOST_ADDED, fqdn, added)]
            if following is not None:
                added.update(await self._follow(session, host, following))
                changes += await self._follower_records(session, host)
            await self._log(session, *changes)
        return token

    async def set_host(
        self, fqdn_text: str, *, wildcard: bool | None = None, following: Following | None = None
    ) -> list[str]:
        """Turn a host's wildcard on or off, or change whose prefix it follows; what
        changed, in words."""
        done: list[str] = []
        async with self._sessions.begin() as session:
            await self._ordered(session)
            host = await self._host(session, fqdn_text)
            changes: list[Change] = []
            settings: dict[str, Any] = {}
            if wildcard is not None and wildcard != host.wildcard:
                before = host.wildcard
                host.wildcard = wildcard
                settings["wildcard"] = wildcard
                done.append(f"wildcard {'on' if wildcard else 'off'}")
                records = await self._records(session, host.id)
                if records.get("A") or records.get("AAAA"):  # *.<fqdn> changes in DNS
                    changes.append(
                        await self._records_change(session, host, records, records, before)
                    )
            if following is not None:
                settings.update(await self._follow(session, host, following))
                done.append(
                    f"follows {following.leader}" if following.leader else "follows no host"
                )
                changes += await self._follower_records(session, host)
            if settings:
                changes.insert(0, Change(Kind.HOST_SETTINGS, host.fqdn, settings))
                await self._log(session, *changes)
        return done

    async def _follow(
        self, session: AsyncSession, host: Host, following: Following
    ) -> dict[str, Any]:
        """Make ``host`` follow ``following.leader``'s prefix (checked); the row's value."""
        if following.leader is None:
            host.follows_id = host.interface_id = host.prefix_length = None
            return {"follows": None}
        leader = await self._host(session, following.leader)
        if leader.id == host.id:
            raise AdminError(f"{host.fqdn} cannot follow itself")
        if leader.owner_id != host.owner_id:
            raise AdminError(f"{leader.fqdn} belongs to another user: a host follows its owner's")
        if leader.follows_id is not None:
            raise AdminError(f"{leader.fqdn} follows another host itself; follow that one")
        interface_id = following.interface_id or host.interface_id
        if interface_id is None:
            raise AdminError("--interface-id is needed (the machine's, e.g. ::1234:5678:9abc:def0)")
        length = following.prefix_length or host.prefix_length or 64
        interface_id = check_interface_id(interface_id, length)
        host.follows_id, host.interface_id, host.prefix_length = leader.id, interface_id, length
        return {"follows": leader.id, "interface_id": interface_id, "prefix_length": length}

    async def _follower_records(self, session: AsyncSession, host: Host) -> list[Change]:
        """A follower's AAAA record from its leader's last prefix, if it has one."""
        if host.follows_id is None or host.interface_id is None:
            return []
        leader = await session.get(Host, host.follows_id)
        if leader is None or leader.ipv6_prefix is None:
            return []
        address = str(in_prefix(leader.ipv6_prefix, host.interface_id, host.prefix_length or 64))
        records = await self._records(session, host.id)
        if records.get("AAAA") == (address,):
            return []
        await session.execute(
            delete(Record).where(Record.host_id == host.id, Record.rtype == "AAAA")
        )
        session.add(Record(host_id=host.id, rtype="AAAA", address=address))
        after = {**records, "AAAA": (address,)}
        return [await self._records_change(session, host, records, after, host.wildcard)]

    async def _records(self, session: AsyncSession, host_id: int) -> dict[str, tuple[str, ...]]:
        rows = await session.execute(
            select(Record.rtype, Record.address)
            .where(Record.host_id == host_id)
            .order_by(Record.rtype, Record.address)
        )
        records: dict[str, tuple[str, ...]] = {}
        for rtype, address in rows:
            records[rtype] = (*records.get(rtype, ()), address)
        return records

    async def _records_change(
        self,
        session: AsyncSession,
        host: Host,
        before: dict[str, tuple[str, ...]],
        after: dict[str, tuple[str, ...]],
        wildcard_before: bool,
    ) -> Change:
        """The zone's serial raised, and the ``records`` row of a change made here."""
        zone = self._config.zone_for(host.fqdn)
        name = zone.name if zone is not None else ""
        zone_row = await session.get(Zone, name)
        had = zone_row.serial if zone_row is not None else 0
        serial = next_serial(had)
        if zone_row is not None:
            zone_row.serial = serial
        host.last_update_at = datetime.now(UTC)
        value = records_row(after, before, (host.wildcard, wildcard_before), name, (had, serial))
        return Change(Kind.RECORDS, host.fqdn, value)

    async def rotate_token(self, fqdn_text: str) -> str:
        token = new_token()
        async with self._sessions.begin() as session:
            await self._ordered(session)
            host = await self._host(session, fqdn_text)
            host.token_digest = token_digest(token)
            digest = {"token_digest": host.token_digest}
            await self._log(session, Change(Kind.HOST_TOKEN, host.fqdn, digest))
        return token

    async def unblock_host(self, fqdn_text: str) -> bool:
        """Let a host blocked for abuse update again; false if it was not blocked."""
        async with self._sessions.begin() as session:
            await self._ordered(session)
            host = await self._host(session, fqdn_text)
            if host.blocked_at is None:
                return False
            host.blocked_at = None
            host.last_result = "unblocked"
            await self._log(session, Change(Kind.HOST_UNBLOCKED, host.fqdn, {}))
            return True

    async def reserved_hosts(self) -> list[tuple[str, str]]:
        """Hosts whose names cannot be hosts (made before that was refused), with why."""
        async with self._sessions() as session:
            names = await session.scalars(
                select(Host.fqdn).where(Host.fqdn.in_(list(self._config.reserved)))
            )
            return [(fqdn, self._config.reserved[fqdn]) for fqdn in names]

    async def remove_host(self, fqdn_text: str) -> None:
        async with self._sessions.begin() as session:
            await self._ordered(session)
            host = await self._host(session, fqdn_text)
            await self._log(session, *await self._remove_hosts(session, [host]))

    async def _remove_hosts(self, session: AsyncSession, hosts: Sequence[Host]) -> list[Change]:
        """Delete ``hosts``; their ``host.removed`` changes, with the zone serials."""
        touched: set[str] = set()
        had: dict[int, dict[str, list[str]]] = {}  # the records each host takes along
        for host in hosts:
            rows = await session.execute(
                select(Record.rtype, Record.address)
                .where(Record.host_id == host.id)
                .order_by(Record.rtype, Record.address)
            )
            for rtype, address in rows:
                had.setdefault(host.id, {}).setdefault(rtype, []).append(address)
            zone = self._config.zone_for(host.fqdn)
            if host.id in had and zone is not None:
                touched.add(zone.name)
            await session.delete(host)
        serials: dict[str, int] = {}
        before: dict[str, int] = {}
        for name in touched:  # the records vanish from DNS: the zone changes
            zone_row = await session.get(Zone, name)
            if zone_row is not None:
                before[name] = zone_row.serial
                zone_row.serial = serials[name] = next_serial(zone_row.serial)
        changes = []
        for host in hosts:
            zone = self._config.zone_for(host.fqdn)
            owner = await session.get(User, host.owner_id)
            value: dict[str, object] = {"id": host.id, "owner": owner.name if owner else ""}
            if zone is not None and zone.name in serials:
                previous = records_value(had.get(host.id, {}))
                value.update(
                    zone=zone.name,
                    serial=serials[zone.name],
                    since=before[zone.name],
                    previous=previous,
                )
                if host.wildcard:
                    value["previous_wildcard"] = True
            changes.append(Change(Kind.HOST_REMOVED, host.fqdn, value))
        return changes

    async def host_history(
        self, fqdn_text: str, *, since: datetime | None = None, limit: int | None = None
    ) -> History:
        """The newest ``limit`` answers (all if None) since ``since``, oldest first."""
        fqdn = self._fqdn(fqdn_text)
        async with self._sessions() as session:
            host = await session.scalar(select(Host).where(Host.fqdn == fqdn))
            query = select(UpdateLog).where(UpdateLog.fqdn == fqdn)
            if since is not None:
                query = query.where(UpdateLog.at >= since)
            query = query.order_by(UpdateLog.at.desc(), UpdateLog.id.desc()).limit(limit)
            entries = list(await session.scalars(query))
            if host is None and not entries:
                any_row = await session.scalar(select(UpdateLog.id).where(UpdateLog.fqdn == fqdn))
                if any_row is None:
                    raise AdminError(
                        f"no host named {fqdn_text!r} and no history of one (see: host list)"
                    )
            rows = [history_row(entry) for entry in reversed(entries)]
            return History(fqdn, rows, host is not None, host.nochg_count if host else 0)

    async def list_hosts(
        self, *, owner: str | None = None, fqdns: Sequence[str] | None = None
    ) -> list[HostRow]:
        """Every host, or ``owner``'s, or those named ``fqdns`` (names as stored)."""
        async with self._sessions() as session:
            query = select(Host, User.name).join(User, Host.owner_id == User.id)
            if owner is not None:
                query = query.where(User.name == owner)
            if fqdns is not None:
                query = query.where(Host.fqdn.in_(list(fqdns)))
            hosts = list(await session.execute(query.order_by(Host.fqdn)))
            some = owner is not None or fqdns is not None  # not every host: filter by name
            names = {host.fqdn for host, _ in hosts}
            owners = list({key[0] for fqdn in names for key in expand(fqdn, {}, True)} | names)
            records_query = select(Record.host_id, Record.rtype, Record.address)
            applied_query = select(applied)
            errors_query = select(sync_errors)
            if some:
                records_query = records_query.where(
                    Record.host_id.in_([host.id for host, _ in hosts])
                )
                applied_query = applied_query.where(applied.c.fqdn.in_(owners))
                errors_query = errors_query.where(sync_errors.c.fqdn.in_(list(names)))
            records: dict[int, dict[str, tuple[str, ...]]] = {}
            for host_id, rtype, address in await session.execute(
                records_query.order_by(Record.host_id, Record.rtype, Record.address)
            ):
                by_type = records.setdefault(host_id, {})
                by_type[rtype] = (*by_type.get(rtype, ()), address)
            confirmed: dict[tuple[str, str], dict[str, tuple[str, ...]]] = {}
            for entry in await session.execute(applied_query):
                by_type = confirmed.setdefault((entry.backend, entry.fqdn), {})
                by_type[entry.rtype] = tuple(a for a in entry.addresses.split(",") if a)
            errors: dict[str, dict[str, str]] = {}
            for problem in await session.execute(errors_query):
                kind = "refused" if problem.permanent else f"{problem.attempts} attempt(s)"
                errors.setdefault(problem.fqdn, {})[problem.backend] = (
                    f"{problem.message} ({kind}, {problem.at:%Y-%m-%d %H:%M})"
                )
            by_id = {host.id: host.fqdn for host, _ in hosts}
            followers: dict[int, list[str]] = {}
            following: list[tuple[str, int | None]] = [(h.fqdn, h.follows_id) for h, _ in hosts]
            if some:  # a host's followers need not be among the hosts listed
                following = list(
                    await session.execute(
                        select(Host.fqdn, Host.follows_id)
                        .where(Host.follows_id.in_(list(by_id)))
                        .order_by(Host.fqdn)
                    )
                )
            for follower, leader_id in following:
                if leader_id is not None:
                    followers.setdefault(leader_id, []).append(follower)
            rows = []
            for host, owner in hosts:
                desired = records.get(host.id, {})
                rows.append(
                    HostRow(
                        host.fqdn,
                        owner,
                        desired,
                        host.last_update_at,
                        host.last_result,
                        host.last_seen_at,
                        host.nochg_count,
                        host.blocked_at,
                        self._pending(host.fqdn, desired, host.wildcard, confirmed),
                        errors.get(host.fqdn, {}),
                        host.wildcard,
                        host.ipv6_prefix,
                        await self._name_of(session, by_id, host.follows_id),
                        host.interface_id,
                        host.prefix_length,
                        tuple(followers.get(host.id, ())),
                    )
                )
            return rows

    async def _name_of(
        self, session: AsyncSession, known: dict[int, str], host_id: int | None
    ) -> str | None:
        if host_id is None:
            return None
        if host_id not in known:  # a leader outside the hosts listed
            known[host_id] = await session.scalar(select(Host.fqdn).where(Host.id == host_id)) or ""
        return known[host_id] or None

    def _pending(
        self,
        fqdn: str,
        desired: dict[str, tuple[str, ...]],
        wildcard: bool,
        applied: dict[tuple[str, str], dict[str, tuple[str, ...]]],
    ) -> dict[str, tuple[str, ...]]:
        """Record types each persistent backend still lacks (builtin is always current):
        ``A``, ``AAAA``, ``*.A`` (its wildcard's), ``_acme-challenge.TXT``."""
        zone = self._config.zone_for(fqdn)
        pending: dict[str, tuple[str, ...]] = {}
        wanted = expand(fqdn, desired, wildcard)
        for backend in zone.backends if zone is not None else ():
            if backend == "builtin":
                continue
            waiting = tuple(
                describe_key(fqdn, owner, rtype)
                for (owner, rtype), values in wanted.items()
                if values != applied.get((backend, owner), {}).get(rtype, ())
            )
            if waiting:
                pending[backend] = waiting
        return pending
