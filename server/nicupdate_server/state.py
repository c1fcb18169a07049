"""The running server's view of accounts, hosts and their records.

The database is the source of truth. The server holds a copy so that the common
answer (``nochg`` for an authenticated client) needs no database round trip:
:meth:`State.load` reads it at start, this process's writer updates it after each
commit, and the change log (:mod:`.feed`) brings what other processes changed (the
CLI, other workers and instances), one change at a time.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from .tables import hosts as _hosts
from .tables import records as _records
from .tables import users as _users
from .tables import zones as _zones

# Rows of hosts and their records read at a time by State.load.
LOAD_BATCH = 10_000


@dataclass(slots=True)
class UserEntry:
    id: int
    name: str
    password_hash: str


@dataclass(slots=True)
class HostExtra:
    """What few hosts have (a million hosts would pay for each field otherwise)."""

    # `*.<fqdn>` carries its A and AAAA records too.
    wildcard: bool = False
    # TXT records at `_acme-challenge.<fqdn>`, newest last.
    txt: tuple[str, ...] = ()
    # The IPv6 prefix its last update delegated (``2001:db8:1:2::/64``).
    prefix: str | None = None
    # The host whose prefix it follows (its id), with its own interface id and the
    # prefix length it takes from that prefix.
    follows: int | None = None
    interface_id: str | None = None
    prefix_length: int | None = None

    def empty(self) -> bool:
        return self == _NO_EXTRA


_NO_EXTRA = HostExtra()


@dataclass(slots=True)
class HostEntry:
    """One host. A server holds a million of them: what is here costs a million times,
    so the records are two tuples rather than a dictionary of them."""

    id: int
    fqdn: str
    owner_id: int
    # The SHA-256 of its update token (the database keeps it as hex); None: no token.
    token_digest: bytes | None
    # Its A and AAAA records: addresses as text, sorted; () when it has none.
    a: tuple[str, ...] = ()
    aaaa: tuple[str, ...] = ()
    last_result: str | None = None
    # nochg answers not yet written to the database, and when (time.time()) the last one was.
    nochg_pending: int = 0
    last_seen_at: float | None = None
    # last_result changed after the commit (a stored change DNS did not confirm in time).
    result_unsaved: bool = False
    # Answers `abuse` until its owner clears it (`host unblock`).
    blocked: bool = False
    # The id of the newest change-log row applied to it (older ones are skipped).
    revision: int = 0
    # Wildcard, TXT records, IPv6 prefix and what it follows; None: none of them.
    extra: HostExtra | None = None

    @property
    def wildcard(self) -> bool:
        return self.extra is not None and self.extra.wildcard

    @property
    def txt(self) -> tuple[str, ...]:
        return self.extra.txt if self.extra is not None else ()

    @property
    def prefix(self) -> str | None:
        return self.extra.prefix if self.extra is not None else None

    def change_extra(self, **fields: object) -> None:
        """Set fields of :attr:`extra` (made when needed, dropped when it holds nothing)."""
        extra = self.extra or HostExtra()
        for name, value in fields.items():
            setattr(extra, name, value)
        self.extra = None if extra.empty() else extra

    def addresses(self, rtype: str) -> tuple[str, ...]:
        """The values of its ``rtype`` records ("A", "AAAA" or "TXT")."""
        if rtype == "A":
            return self.a
        if rtype == "AAAA":
            return self.aaaa
        if rtype == "TXT":
            return self.txt
        raise ValueError(f"no records of type {rtype!r} are kept")

    def records(self) -> dict[str, tuple[str, ...]]:
        """Its records, "A"/"AAAA"/"TXT" -> values, without the types it has none of (a
        new dictionary: changing it changes nothing here)."""
        records = {}
        if self.a:
            records["A"] = self.a
        if self.aaaa:
            records["AAAA"] = self.aaaa
        if self.extra is not None and self.extra.txt:
            records["TXT"] = self.extra.txt
        return records

    def set_records(self, records: Mapping[str, tuple[str, ...]]) -> None:
        """Replace all its records: "A"/"AAAA"/"TXT" -> values (a type left out: none)."""
        self.a = tuple(records.get("A", ()))
        self.aaaa = tuple(records.get("AAAA", ()))
        txt = tuple(records.get("TXT", ()))
        if txt or self.extra is not None:
            self.change_extra(txt=txt)


def parse_digest(stored: str | None) -> bytes | None:
    """A token digest as the database and the change log keep it (hex) -> in memory."""
    return None if stored is None else bytes.fromhex(stored)


@dataclass(slots=True)
class State:
    users: dict[str, UserEntry] = field(default_factory=dict)
    hosts: dict[str, HostEntry] = field(default_factory=dict)
    zone_serials: dict[str, int] = field(default_factory=dict)
    # The names of the hosts blocked for abuse (counted without a pass over every host).
    blocked: set[str] = field(default_factory=set)
    # Who follows whose IPv6 prefix: a host's id -> the names of its followers.
    followers: dict[int, set[str]] = field(default_factory=dict)
    # The ids of the disabled accounts: they and their hosts' tokens are refused.
    disabled: set[int] = field(default_factory=set)

    def set_user(self, user: UserEntry, *, disabled: bool = False) -> None:
        self.users[user.name] = user
        if disabled:
            self.disabled.add(user.id)
        else:
            self.disabled.discard(user.id)

    def set_follows(self, host: HostEntry, leader: int | None, **settings: object) -> None:
        """Make ``host`` follow the prefix of the host with id ``leader`` (None: none)."""
        old = host.extra.follows if host.extra is not None else None
        if old is not None:
            names = self.followers.get(old)
            if names is not None:
                names.discard(host.fqdn)
                if not names:
                    del self.followers[old]
        host.change_extra(follows=leader, **settings)
        if leader is not None:
            self.followers.setdefault(leader, set()).add(host.fqdn)

    def followers_of(self, host: HostEntry) -> list[HostEntry]:
        """The hosts that follow ``host``'s IPv6 prefix, by name."""
        names = self.followers.get(host.id)
        if not names:
            return []
        found = (self.hosts.get(name) for name in sorted(names))
        return [f for f in found if f is not None and f.extra is not None]

    def forget_host(self, host: HostEntry) -> None:
        """``host`` is gone: it follows no one (its followers keep their settings, as the
        database's ``ON DELETE SET NULL`` leaves them following no one)."""
        self.set_follows(host, None)
        self.blocked.discard(host.fqdn)
        for name in self.followers.pop(host.id, ()):
            follower = self.hosts.get(name)
            if follower is not None:
                follower.change_extra(follows=None)

    def set_blocked(self, host: HostEntry, blocked: bool) -> None:
        host.blocked = blocked
        if blocked:
            self.blocked.add(host.fqdn)
        else:
            self.blocked.discard(host.fqdn)

    def set_serial(self, zone: str, serial: int) -> None:
        """A zone's SOA serial, which only rises (changes may come in any order)."""
        if serial > self.zone_serials.get(zone, 0):
            self.zone_serials[zone] = serial

    @classmethod
    async def load(cls, conn: AsyncConnection) -> State:
        """Every account, host and zone serial (a million hosts with a token and an
        address each: some 4 seconds and 480 MB on SQLite)."""
        state = cls()
        columns = (_users.c.id, _users.c.name, _users.c.password_hash, _users.c.disabled_at)
        for user in await conn.execute(select(*columns)):
            entry = UserEntry(user.id, user.name, user.password_hash)
            state.set_user(entry, disabled=user.disabled_at is not None)
        for zone in await conn.execute(select(_zones.c.name, _zones.c.serial)):
            state.zone_serials[zone.name] = zone.serial
        with _collector_paused():
            await _load_hosts(conn, state)
        return state


async def _load_hosts(conn: AsyncConnection, state: State) -> None:
    """Every host with its records: one query, read in batches as it streams in.

    What many hosts share is held once: their owner's id and their last result."""
    owner_ids = {user.id: user.id for user in state.users.values()}
    results: dict[str | None, str | None] = {}
    query = (
        select(
            _hosts.c.id,
            _hosts.c.fqdn,
            _hosts.c.owner_id,
            _hosts.c.token_digest,
            _hosts.c.last_result,
            _hosts.c.blocked_at.is_not(None),
            _hosts.c.wildcard,
            _hosts.c.ipv6_prefix,
            _hosts.c.follows_id,
            _hosts.c.interface_id,
            _hosts.c.prefix_length,
            _records.c.rtype,
            _records.c.address,
        )
        .select_from(_hosts.outerjoin(_records, _records.c.host_id == _hosts.c.id))
        .order_by(_hosts.c.id, _records.c.rtype, _records.c.address)
        .execution_options(yield_per=LOAD_BATCH)
    )
    hosts = state.hosts
    host: HostEntry | None = None
    async with conn.stream(query) as result:
        async for rows in result.partitions():
            for row in rows:
                host_id, fqdn, owner_id, digest, last_result, blocked, *extra = row[:11]
                rtype, address = row[11:]
                if host is None or host.id != host_id:  # the first row of the next host
                    host = hosts[fqdn] = HostEntry(
                        host_id,
                        fqdn,
                        owner_ids.setdefault(int(owner_id), owner_id),
                        parse_digest(digest),
                        last_result=results.setdefault(last_result, last_result),
                        blocked=blocked,
                    )
                    if blocked:
                        state.blocked.add(fqdn)
                    wildcard, prefix, follows, interface_id, length = extra
                    if wildcard or prefix:
                        host.change_extra(wildcard=bool(wildcard), prefix=prefix)
                    if follows is not None:
                        state.set_follows(
                            host, follows, interface_id=interface_id, prefix_length=length
                        )
                if rtype == "A":
                    host.a = (*host.a, address)
                elif rtype == "AAAA":
                    host.aaaa = (*host.aaaa, address)
                elif rtype == "TXT":
                    host.change_extra(txt=(*host.txt, address))


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Without the cyclic garbage collector: its passes over the objects a load makes,
    none of which it could free, took a third of a million hosts' load time."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
