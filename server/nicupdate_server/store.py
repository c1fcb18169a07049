"""The one writer: commits the desired state of hosts in shared transactions.

Requests hand their changes to :meth:`Writer.submit` and wait. A single task takes
whatever has queued, writes it in one transaction (group commit: one fsync for
many requests), updates the in-memory :class:`~.state.State`, tells the reconciler
which names changed (``on_commit``), and answers: the change is durable. Getting it
into DNS is the reconciler's job. Everything that changes the state goes through
this task, so it needs no locks.

When the database refuses a write (disk full, read-only file, database down), the
changes of that transaction are answered ``911`` and are *not* stored: the host keeps
its records, ``host list`` says "911: not stored", and the attempts are kept in memory
(a bounded number) and written to the history once the database takes writes again.
:attr:`Writer.failure` says why while it refuses them; :meth:`Writer.check_writes`
tries a small write to find out.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import Boolean, String, bindparam, case, delete, func, insert, select, update
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from . import tables
from .changelog import Change, Kind, append, records_value, take_order
from .config import ZoneSettings
from .dyndns import Code
from .hostrecords import RTYPES
from .state import HostEntry, State

log = logging.getLogger(__name__)

MAX_BATCH = 512
# Refused changes kept for the history while the database refuses writes.
MAX_UNRECORDED = 10_000
NOT_STORED = "911: not stored (the database refused the write)"
WRITE_PROBE = "write_probe"
_hosts = tables.hosts
_records = tables.records
_log = tables.update_log
_zones = tables.zones
_meta = tables.meta


def _ignore(seconds: float) -> None:
    pass


def describe_failure(exc: BaseException) -> str:
    """The database's own words for a failure (``database or disk is full``)."""
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        return str(exc.orig).splitlines()[0][:200] or type(exc.orig).__name__
    return (str(exc).splitlines() or [type(exc).__name__])[0][:200]


def next_serial(current: int, now: float | None = None) -> int:
    """A SOA serial that rises on every change and follows the clock when it can."""
    return max(current + 1, int(time.time() if now is None else now)) & 0xFFFFFFFF


def describe_records(records: Mapping[str, tuple[str, ...]]) -> str:
    """``A 203.0.113.7; AAAA 2001:db8::7``; families without addresses are left out."""
    return "; ".join(
        f"{rtype} {','.join(records[rtype])}" for rtype in sorted(records) if records[rtype]
    )


def describe_change(records: Mapping[str, tuple[str, ...]], wildcard: bool | None) -> str:
    """:func:`describe_records`, and ``wildcard on``/``off`` when that changed."""
    described = describe_records(records)
    if wildcard is None:
        return described
    flag = f"wildcard {'on' if wildcard else 'off'}"
    return f"{described}; {flag}" if described else flag


def parse_records(described: str) -> dict[str, tuple[str, ...]]:
    """The records :func:`describe_records` described."""
    out: dict[str, tuple[str, ...]] = {}
    for part in filter(None, (p.strip() for p in described.split(";"))):
        rtype, _, addresses = part.partition(" ")
        if rtype in RTYPES:  # not "wildcard on" (describe_change)
            out[rtype] = tuple(a for a in addresses.split(",") if a)
    return out


@dataclass(frozen=True, slots=True)
class HostUpdate:
    """What one request wants for one host."""

    host: HostEntry
    zone: ZoneSettings
    # The families to replace: "A"/"AAAA" -> new addresses; () removes them.
    families: Mapping[str, tuple[str, ...]]
    caller: str
    user_agent: str
    # Set for a refused request that is only logged (the answer, e.g. "dnserr: ...").
    refusal: str | None = None
    # Turn `*.<fqdn>` on or off; None: leave it as it is.
    wildcard: bool | None = None
    # The IPv6 prefix delegated to the host (``2001:db8:1:2::/64``), which the hosts that
    # follow it take; None: none was sent.
    prefix: str | None = None
    # The changes of those followers: written in the same transaction.
    followers: tuple[HostUpdate, ...] = ()


@dataclass(frozen=True, slots=True)
class Stored:
    """A committed change, for its history row, which ``history.Recorder`` writes once
    the change is answered: when it was stored (with the host's name, the row's key: the
    changes of a batch are a microsecond apart), and the records before and after."""

    at: datetime
    old: str
    new: str


@dataclass(frozen=True, slots=True)
class Outcome:
    code: Code
    reason: str = ""
    stored: Stored | None = None
    # The outcomes of the change's followers (HostUpdate.followers), in their order.
    followers: tuple[Outcome, ...] = ()


@dataclass(slots=True)
class _Planned:
    update: HostUpdate
    future: asyncio.Future[Outcome]
    old: dict[str, tuple[str, ...]] = field(default_factory=dict)
    new: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # The host's whole record set after this change (the change log's value).
    after: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # Its wildcard flag before and after; its new IPv6 prefix, when that changed.
    wildcard_before: bool = False
    wildcard_after: bool = False
    prefix: str | None = None
    outcome: Outcome | None = None
    stored: Stored | None = None
    change_id: int = 0  # its row in the change log

    @property
    def changed(self) -> bool:
        """Whether it changes what the host stands for in DNS (or its prefix)."""
        return bool(self.new) or self.wildcard_before != self.wildcard_after or bool(self.prefix)


class Rider(Protocol):
    """Work the writer's transactions carry for someone else (the update history and
    the hosts' statistics, ``history.Recorder``): when it is ``due()``, ``write`` adds
    its statements to the next transaction, a batch of changes or an exclusive one, so
    that it costs no transaction of its own under load. ``committed`` or ``failed``
    follows every transaction of the writer (whether ``write`` took part in it or not),
    in the writer's task, before anything else is written."""

    def due(self) -> bool: ...

    async def write(self, conn: AsyncConnection) -> None: ...

    def committed(self) -> None: ...

    def failed(self) -> None: ...


_Exclusive = Callable[[AsyncConnection], Awaitable[Any]]
_Item = tuple[HostUpdate | _Exclusive, "asyncio.Future[Any]"]


class Writer:
    def __init__(
        self,
        engine: AsyncEngine,
        state: State,
        on_commit: Callable[[Iterable[str]], None] = lambda names: None,
        *,
        origin: str = "",
        shared: bool = False,
    ) -> None:
        self._engine = engine
        self.state = state
        # This process's name in the change log (its rows are applied here already),
        # and the id of the newest row it wrote.
        self.origin = origin
        self.last_change_id = 0
        # Other processes may write records too (workers, PostgreSQL instances): the
        # families a batch does not write are read back for its change-log rows.
        self.shared = shared
        self._on_commit = on_commit
        self._queue: asyncio.Queue[_Item | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        # Why the database refuses writes, while it does (None: the last write worked).
        self.failure: str | None = None
        self.checked_at = 0.0  # time.monotonic() of the last write that told us
        # History rows of changes that could not be stored, oldest first.
        self.unrecorded: deque[dict[str, Any]] = deque(maxlen=MAX_UNRECORDED)
        self.unrecorded_lost = 0
        self._checking = asyncio.Lock()
        self.rider: Rider | None = None
        # Told the seconds of each committed transaction, BEGIN to COMMIT (/metrics).
        self.on_write: Callable[[float], None] = _ignore

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="nicupdate-writer")

    async def close(self) -> None:
        if self._task is not None:
            await self._queue.put(None)
            await self._task
            self._task = None

    async def submit(self, host_update: HostUpdate) -> Outcome:
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        await self._queue.put((host_update, future))
        return await future

    async def exclusive(self, work: _Exclusive) -> Any:
        """Run ``work(connection)`` in the writer task, between batches, then commit."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        await self._queue.put((work, future))
        return await future

    async def _run(self) -> None:
        stopping = False
        while not stopping:
            first = await self._queue.get()
            items: list[_Item] = []
            if first is None:
                stopping = True
            else:
                items.append(first)
            while not self._queue.empty() and len(items) < MAX_BATCH:
                item = self._queue.get_nowait()
                if item is None:
                    stopping = True
                else:
                    items.append(item)
            batch: list[tuple[HostUpdate, asyncio.Future[Outcome]]] = []
            for work, future in items:
                if isinstance(work, HostUpdate):
                    batch.extend(_with_followers(work, future))
                    continue
                await self._batch(batch)
                batch = []
                await self._exclusive(work, future)
            await self._batch(batch)

    async def _exclusive(self, work: _Exclusive, future: asyncio.Future[Any]) -> None:
        started = time.perf_counter()
        try:
            async with self._engine.begin() as conn:
                await take_order(conn)
                result = await work(conn)
                if self.rider is not None and self.rider.due():
                    await self._ride(self.rider, conn)
        except Exception as exc:  # handed to the waiting caller
            if self.rider is not None:
                self.rider.failed()
            if isinstance(exc, SQLAlchemyError | OSError):
                self._failed(exc)
            if not future.done():
                future.set_exception(exc)
        else:
            if self.rider is not None:
                self.rider.committed()
            self.on_write(time.perf_counter() - started)
            if not future.done():
                future.set_result(result)

    def _failed(self, exc: BaseException) -> None:
        reason = describe_failure(exc)
        if self.failure is None:
            log.error(
                "the database refuses writes (%s): changes are answered 911 and not stored "
                "until it takes them again",
                reason,
            )
        self.failure = reason
        self.checked_at = time.monotonic()

    def _worked(self) -> None:
        if self.failure is not None:
            log.info("the database takes writes again")
        self.failure = None
        self.checked_at = time.monotonic()

    async def check_writes(self) -> str | None:
        """Try a small write, with the history kept while writes failed; return
        :attr:`failure` (``None``: the database takes writes)."""
        async with self._checking:  # one check at a time: each row is written once
            return await self._check_writes()

    async def _check_writes(self) -> str | None:
        rows = list(self.unrecorded)
        try:
            await self.exclusive(lambda conn: self._probe(conn, rows))
        except (SQLAlchemyError, OSError):
            return self.failure  # recorded by _exclusive
        for _ in rows:
            self.unrecorded.popleft()
        if rows:
            log.info("%d change(s) that were not stored added to the history", len(rows))
        if self.unrecorded_lost:
            log.warning(
                "%d change(s) that were not stored are missing from the history (more "
                "than %d while the database refused writes)",
                self.unrecorded_lost,
                MAX_UNRECORDED,
            )
            self.unrecorded_lost = 0
        self._worked()
        return None

    async def _probe(self, conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
        if rows:  # `host list`'s "911: not stored" is the rider's, in this transaction
            await conn.execute(insert(_log), rows)
        stamp = int(time.time())
        result = await conn.execute(
            update(_meta).where(_meta.c.key == WRITE_PROBE).values(value=stamp)
        )
        if result.rowcount == 0:
            await conn.execute(insert(_meta).values(key=WRITE_PROBE, value=stamp))

    def _plan(self, batch: list[tuple[HostUpdate, asyncio.Future[Outcome]]]) -> list[_Planned]:
        overlay: dict[int, dict[str, tuple[str, ...]]] = {}
        flags: dict[int, tuple[bool, str | None]] = {}  # host id -> wildcard, prefix
        plans = []
        for host_update, future in batch:
            plan = _Planned(host_update, future)
            plans.append(plan)
            if host_update.refusal is not None:
                continue
            host = host_update.host
            current = overlay.setdefault(host.id, host.records())
            for rtype, addresses in host_update.families.items():
                before = current.get(rtype, ())
                if before != addresses:
                    plan.old[rtype] = before
                    plan.new[rtype] = addresses
                    current[rtype] = addresses
            wildcard, prefix = flags.get(host.id, (host.wildcard, host.prefix))
            plan.wildcard_before = wildcard
            if host_update.wildcard is not None:
                wildcard = host_update.wildcard
            plan.wildcard_after = wildcard
            if host_update.prefix is not None and host_update.prefix != prefix:
                plan.prefix = prefix = host_update.prefix
            flags[host.id] = (wildcard, prefix)
            if not plan.changed:
                plan.outcome = Outcome(Code.NOCHG)
            plan.after = dict(current)
        return plans

    async def _batch(self, batch: list[tuple[HostUpdate, asyncio.Future[Outcome]]]) -> None:
        if not batch:
            return
        plans = self._plan(batch)
        writes = [p for p in plans if p.changed or p.update.refusal is not None]
        now = datetime.now(UTC)
        serials: dict[str, tuple[int, int]] = {}  # zone -> its serial before, after
        if writes:
            rider = self.rider if self.rider is not None and self.rider.due() else None
            started = time.perf_counter()
            try:
                async with self._engine.begin() as conn:
                    await take_order(conn)
                    serials = await self._write(conn, writes, now)
                    if rider is not None:
                        rider = await self._ride(rider, conn)
                    logged = [p for p in writes if p.changed]
                    ids = await append(conn, _changes(logged, serials), self.origin, now)
                    for plan, change_id in zip(logged, ids, strict=True):
                        plan.change_id = change_id
                    if ids:
                        self.last_change_id = max(self.last_change_id, ids[-1])
            except (SQLAlchemyError, OSError) as exc:
                if rider is not None:
                    rider.failed()
                self._failed(exc)
                log.debug("%d change(s) not stored, answered 911: %s", len(writes), self.failure)
                for plan in writes:
                    plan.outcome = Outcome(Code.SERVER_ERROR, f"not stored: {self.failure}")
                self._keep_unrecorded(writes, now)
                serials = {}
            else:
                if rider is not None:
                    rider.committed()
                self.on_write(time.perf_counter() - started)
                self._worked()
        self._remember(plans, {zone: after for zone, (_, after) in serials.items()}, now)
        changed = [p.update.host.fqdn for p in plans if p.changed and p.outcome is None]
        if changed:
            self._on_commit(changed)
        for plan in plans:
            if not plan.future.done():
                plan.future.set_result(plan.outcome or Outcome(Code.GOOD, "", plan.stored))

    async def _ride(self, rider: Rider, conn: AsyncConnection) -> Rider | None:
        """The rider's statements in a transaction; a bug in them must not cost the
        transaction's own work (a failing database does: it fails it all)."""
        try:
            await rider.write(conn)
        except (SQLAlchemyError, OSError):
            raise
        except Exception:
            log.exception("could not add the update history to a transaction")
            rider.failed()
            return None
        return rider

    async def _write(
        self,
        conn: AsyncConnection,
        writes: list[_Planned],
        now: datetime,
    ) -> dict[str, tuple[int, int]]:
        """Write a batch; the SOA serial of each zone it changed, before and after."""
        # One statement per kind of write for the whole batch: each is one round trip.
        replaced = [
            {"host": plan.update.host.id, "type": rtype} for plan in writes for rtype in plan.new
        ]
        if replaced:
            await conn.execute(
                delete(_records).where(
                    _records.c.host_id == bindparam("host"), _records.c.rtype == bindparam("type")
                ),
                replaced,
            )
        rows = [
            {"host_id": plan.update.host.id, "rtype": rtype, "address": address}
            for plan in writes
            for rtype, addresses in plan.new.items()
            for address in addresses
        ]
        if rows:
            await conn.execute(insert(_records), rows)
        # A refusal is answered already: its history row now. A change's row is written
        # with its answer, once it is sent (history.Recorder).
        refusals = [_history_row(p, now) for p in writes if p.update.refusal is not None]
        if refusals:
            await conn.execute(insert(_log), refusals)
        for index, plan in enumerate(p for p in writes if p.changed):
            at = now + timedelta(microseconds=index)
            toggled = plan.wildcard_before != plan.wildcard_after
            plan.stored = Stored(
                at,
                describe_change(plan.old, plan.wildcard_before if toggled else None),
                describe_change(plan.new, plan.wildcard_after if toggled else None),
            )
        changed = [p for p in writes if p.changed]
        if changed:  # last_result is the answer, written once it is sent
            await conn.execute(
                update(_hosts)
                .where(_hosts.c.id == bindparam("host"))
                .values(last_update_at=bindparam("at")),
                [{"host": p.update.host.id, "at": now} for p in changed],
            )
        flagged = [p for p in changed if p.prefix or p.wildcard_before != p.wildcard_after]
        if flagged:
            await conn.execute(
                update(_hosts)
                .where(_hosts.c.id == bindparam("host"))
                .values(  # None: as it is (another process may have changed it)
                    wildcard=func.coalesce(bindparam("wildcard", type_=Boolean), _hosts.c.wildcard),
                    ipv6_prefix=func.coalesce(
                        bindparam("prefix", type_=String), _hosts.c.ipv6_prefix
                    ),
                ),
                [
                    {
                        "host": p.update.host.id,
                        "wildcard": None
                        if p.wildcard_before == p.wildcard_after
                        else p.wildcard_after,
                        "prefix": p.prefix,
                    }
                    for p in flagged
                ],
            )
        if changed and self.shared:
            await _read_untouched(conn, changed)
        if changed:
            await _read_wildcards(conn, changed)
        zones = sorted({p.update.zone.name for p in changed})
        return {zone: await bump_serial(conn, zone) for zone in zones}

    def _keep_unrecorded(self, writes: list[_Planned], now: datetime) -> None:
        for plan in writes:
            if len(self.unrecorded) == self.unrecorded.maxlen:
                self.unrecorded_lost += 1
            row = _history_row(plan, now)
            if plan.update.refusal is None:
                row.update(answer=Code.SERVER_ERROR.value, detail=f"not stored: {self.failure}")
            self.unrecorded.append(row)

    def _remember(self, plans: list[_Planned], serials: Mapping[str, int], now: datetime) -> None:
        for plan in plans:
            host = plan.update.host
            if plan.update.refusal is not None:
                host.last_result = plan.update.refusal
                continue
            if plan.outcome is not None:  # nochg, or the database failed
                if plan.outcome.code is Code.SERVER_ERROR:
                    host.last_result = NOT_STORED
                    host.result_unsaved = True
                continue
            if plan.change_id < host.revision:
                continue  # a newer change (another process's) is applied already
            host.set_records(plan.after)
            if plan.wildcard_after != host.wildcard or plan.prefix:
                host.change_extra(wildcard=plan.wildcard_after, prefix=plan.prefix or host.prefix)
            host.last_result = "good"
            host.revision = plan.change_id
        for zone, serial in serials.items():
            self.state.set_serial(zone, serial)


async def _read_wildcards(conn: AsyncConnection, changed: list[_Planned]) -> None:
    """The wildcard flag of each change that does not set it, as the database has it:
    ``host set --wildcard`` (another process) may have changed it since this one heard,
    and the change log's row must say what DNS should serve."""
    kept = {p.update.host.id: p for p in changed if p.wildcard_before == p.wildcard_after}
    if not kept:
        return
    result = await conn.execute(
        select(_hosts.c.id, _hosts.c.wildcard).where(_hosts.c.id.in_(sorted(kept)))
    )
    stored = {host_id: wildcard for host_id, wildcard in result}
    for plan in changed:
        if plan.wildcard_before == plan.wildcard_after and plan.update.host.id in stored:
            plan.wildcard_before = plan.wildcard_after = bool(stored[plan.update.host.id])


def _with_followers(
    work: HostUpdate, future: asyncio.Future[Outcome]
) -> list[tuple[HostUpdate, asyncio.Future[Outcome]]]:
    """A change and its followers' changes, for one batch: ``future`` gets the change's
    outcome with theirs once all of them have one."""
    if not work.followers:
        return [(work, future)]
    loop = asyncio.get_running_loop()
    own: asyncio.Future[Outcome] = loop.create_future()
    theirs: list[asyncio.Future[Outcome]] = [loop.create_future() for _ in work.followers]

    def done(_: object) -> None:
        if own.done() and all(f.done() for f in theirs) and not future.done():
            outcome = own.result()
            future.set_result(replace(outcome, followers=tuple(f.result() for f in theirs)))

    for each in (own, *theirs):
        each.add_done_callback(done)
    return [(work, own), *zip(work.followers, theirs, strict=True)]


async def _read_untouched(conn: AsyncConnection, changed: list[_Planned]) -> None:
    """Complete each change's record set with the families the batch did not write, as
    the database has them: another process (a worker, an instance) may have changed them
    since this one heard of it, and the change log's row must say what DNS should serve."""
    touched: dict[int, set[str]] = defaultdict(set)
    for plan in changed:
        touched[plan.update.host.id].update(plan.new)
    result = await conn.execute(
        select(_records.c.host_id, _records.c.rtype, _records.c.address)
        .where(_records.c.host_id.in_(sorted(touched)))
        .order_by(_records.c.host_id, _records.c.rtype, _records.c.address)
    )
    stored: dict[int, dict[str, tuple[str, ...]]] = defaultdict(dict)
    for host_id, rtype, address in result:
        stored[host_id][rtype] = (*stored[host_id].get(rtype, ()), address)
    for plan in changed:
        host_id = plan.update.host.id
        for rtype in RTYPES:
            if rtype not in touched[host_id]:
                plan.after[rtype] = stored[host_id].get(rtype, ())


async def bump_serial(
    conn: AsyncConnection, zone: str, now: float | None = None
) -> tuple[int, int]:
    """Raise ``zone``'s SOA serial in the database (:func:`next_serial`, computed there:
    processes sharing the database never give two changes one serial); the serial it
    had and the new one. Zones are bumped in name order, so that two transactions never
    wait on each other. (The writers' order lock makes the two statements one step.)"""
    stamp = int(time.time() if now is None else now)
    had = (await conn.execute(select(_zones.c.serial).where(_zones.c.name == zone))).scalar()
    raised = case((_zones.c.serial + 1 > stamp, _zones.c.serial + 1), else_=stamp)
    result = await conn.execute(
        update(_zones).where(_zones.c.name == zone).values(serial=raised).returning(_zones.c.serial)
    )
    serial = result.scalar_one_or_none()
    if serial is None:
        serial = next_serial(0, stamp)
        await conn.execute(insert(_zones).values(name=zone, serial=serial))
    return int(had or 0), int(serial)


def _changes(writes: list[_Planned], serials: Mapping[str, tuple[int, int]]) -> list[Change]:
    """The change log's rows of a batch: each change's record set, in order, with the
    zone's serial before the batch (``since``) and after it (IXFR reads them)."""
    return [
        Change(
            Kind.RECORDS,
            plan.update.host.fqdn,
            records_row(
                plan.after,
                {**plan.after, **plan.old},
                (plan.wildcard_after, plan.wildcard_before),
                plan.update.zone.name,
                serials[plan.update.zone.name],
                plan.prefix,
            ),
        )
        for plan in writes
    ]


def records_row(
    records: Mapping[str, tuple[str, ...]],
    previous: Mapping[str, tuple[str, ...]],
    wildcard: tuple[bool, bool],
    zone: str,
    serials: tuple[int, int],
    prefix: str | None = None,
) -> dict[str, Any]:
    """The value of a ``records`` row of the change log: the host's record set and
    wildcard flag after the change and before it (``previous``), the zone's serial
    before (``since``) and after. ``prefix``: the IPv6 prefix the change delegated."""
    value: dict[str, Any] = {
        "records": records_value(records),
        "previous": records_value(previous),
        "zone": zone,
        "serial": serials[1],
        "since": serials[0],
    }
    if wildcard[0]:
        value["wildcard"] = True
    if wildcard[1]:
        value["previous_wildcard"] = True
    if prefix:
        value["prefix"] = prefix
    return value


def _history_row(plan: _Planned, now: datetime) -> dict[str, Any]:
    """The update log's row of a refusal (``dnserr: REASON``), or of a change the
    database refused (whose answer the caller sets)."""
    answer, _, detail = (plan.update.refusal or "").partition(": ")
    return {
        "at": now,
        "fqdn": plan.update.host.fqdn,
        "caller": plan.update.caller,
        "user_agent": plan.update.user_agent[:255],
        "old_value": describe_records(plan.old),
        "new_value": describe_records(plan.new),
        "answer": answer[:255],
        "detail": detail,
    }


def block_host(host: HostEntry, origin: str) -> _Exclusive:
    """Work for :meth:`Writer.exclusive`: store that a host answers ``abuse``."""

    async def block(conn: AsyncConnection) -> None:
        await conn.execute(
            update(_hosts)
            .where(_hosts.c.id == host.id)
            .values(blocked_at=datetime.now(UTC), last_result="abuse")
        )
        await append(conn, [Change(Kind.HOST_BLOCKED, host.fqdn, {})], origin)

    return block


@dataclass(slots=True)
class Flushed:
    """Host statistics written by :func:`flush_host_stats`; :meth:`done` once committed."""

    hosts: list[tuple[HostEntry, int, str | None]] = field(default_factory=list)

    def done(self) -> None:
        """Forget what was written (not what came in since)."""
        for host, count, result in self.hosts:
            host.nochg_pending = max(0, host.nochg_pending - count)
            if host.last_result == result:
                host.result_unsaved = False

    def __len__(self) -> int:
        return len(self.hosts)


async def flush_host_stats(
    conn: AsyncConnection, state: State, hosts: Iterable[HostEntry] | None = None
) -> Flushed:
    """Write the nochg counts, last-seen times and answers gathered in memory (of
    ``hosts``, or of every host).

    They stay marked unwritten until the caller calls ``done()`` on the result after
    the commit: if it fails, they are written next time."""
    candidates = list(state.hosts.values() if hosts is None else hosts)
    seen = [host for host in candidates if host.nochg_pending]
    answered = [h for h in candidates if h.result_unsaved and not h.nochg_pending]
    if seen:
        await conn.execute(
            update(_hosts)
            .where(_hosts.c.id == bindparam("host"))
            .values(
                last_seen_at=bindparam("seen"),
                last_result=bindparam("result"),
                nochg_count=_hosts.c.nochg_count + bindparam("count"),
            ),
            [
                {
                    "host": host.id,
                    "seen": datetime.fromtimestamp(host.last_seen_at or time.time(), UTC),
                    "result": host.last_result,
                    "count": host.nochg_pending,
                }
                for host in seen
            ],
        )
    if answered:
        await conn.execute(
            update(_hosts)
            .where(_hosts.c.id == bindparam("host"))
            .values(
                last_result=bindparam("result"),
                last_seen_at=func.coalesce(
                    bindparam("seen", type_=_hosts.c.last_seen_at.type), _hosts.c.last_seen_at
                ),
            ),
            [
                {
                    "host": host.id,
                    "result": host.last_result,
                    "seen": None
                    if host.last_seen_at is None
                    else datetime.fromtimestamp(host.last_seen_at, UTC),
                }
                for host in answered
            ],
        )
    return Flushed([(h, h.nochg_pending, h.last_result) for h in (*seen, *answered)])


async def ensure_zones(conn: AsyncConnection, zones: list[ZoneSettings]) -> None:
    """Give every configured zone a row (and so a serial) in the database."""
    existing = set((await conn.execute(select(_zones.c.name))).scalars())
    missing = [z.name for z in zones if z.name not in existing]
    if missing:  # another process (a worker, an instance) may add them at the same time
        from sqlalchemy.dialects import postgresql, sqlite

        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        serial = next_serial(0)
        await conn.execute(
            dialect.insert(_zones).on_conflict_do_nothing(),
            [{"name": n, "serial": serial} for n in missing],
        )
