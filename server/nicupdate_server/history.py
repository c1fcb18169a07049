"""The update history, and what ``host list`` says about each host, kept current.

Every answer a client got about one of its hosts, other than ``nochg``, is a row of
``update_log`` (``nicupdate-server host log``), with the answer line exactly as sent:

* a change: its answer (``good ...``, or ``911`` / ``dnserr`` when DNS did not confirm
  it in time or refused it) is known only after the change is stored, so its row is
  written here once it is sent, with the time the change was stored, and
  ``confirmed_at``, the moment every backend had the change: at once for ``good``, when
  DNS catches up for a ``911`` (an update of the row). A server killed in between
  (``kill -9``, a power cut) loses the rows of the changes it had just answered, never
  the changes;
* an address refused (``dnserr``) or a change the database refused to store (``911``):
  written by the writer (:mod:`.store`), with the reason in ``detail``;
* a repeat of an address that is stored but not yet in DNS (``good`` once DNS has it, or
  ``911``: one row a minute at most), and the ``abuse`` that blocks a host: written here.

``nochg`` answers get no row, they are counted (``host list``: NOCHG, LAST SEEN): a
router asking every 5 minutes would otherwise add 26,000 rows per host in 90 days, for
answers that changed nothing. Answers about no host of the caller's (``badauth``,
``nohost``, 429) are in the log's summaries, not here.

What ``host list`` reads follows the answers within a second: everything written here
(answers, confirmations, each host's last answer, last-seen time and ``nochg`` count,
and what DNS confirmed, the reconciler's state) rides in the next transaction of the
writer's group commit (:class:`~.store.Rider`), or, when no change comes, goes in one
transaction of its own :data:`FLUSH_DELAY` after the first of it. So neither ``nochg``
(answered from memory, some 15,000 a second) nor ``good`` pays a transaction here.

Rows older than ``server.history_days`` are deleted in the background, at most
:data:`PRUNE_BATCH` per transaction, with a pause between (0 keeps them forever).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection

from .config import Config
from .dyndns import Code
from .reconciler import Reconciler
from .state import HostEntry, State
from .store import (
    Flushed,
    HostUpdate,
    Stored,
    Writer,
    describe_failure,
    describe_records,
    flush_host_stats,
    parse_records,
)
from .tables import update_log as _log

log = logging.getLogger("nicupdate.history")

# What comes in is written this long after the first of it (one transaction for it all).
FLUSH_DELAY = 0.5
# After a failed write, the next try waits this long (the writer has logged why).
RETRY_DELAY = 1.0
# A client repeating an address that DNS does not have yet: one 911 row per this.
REPEAT_INTERVAL = 60.0
# After a restart, the 911 rows of this long before still get their confirmation time.
RESUME_WINDOW = timedelta(days=7)
# Rows and answers kept in memory while the database refuses writes.
MAX_PENDING = 10_000
# Old rows: looked for this often (and this long after start), deleted in batches.
PRUNE_INTERVAL = 600.0
PRUNE_BATCH = 1000
PRUNE_PAUSE = 0.05

# `host list`'s LAST RESULT for answers that do not say everything by themselves.
RESULT_LABELS = {
    Code.SERVER_ERROR: "911: stored, DNS pending",
    Code.DNSERR: "dnserr: refused by DNS",
}
APPLIED_LATER = "911: stored, applied by DNS later"


@dataclass(frozen=True, slots=True)
class _Waiting:
    """The history row of a stored change (found by host name and time), and the record
    sets it asked for: DNS confirms it when it serves them."""

    fqdn: str
    at: datetime  # with fqdn, finds the row
    families: Mapping[str, tuple[str, ...]]


@dataclass(slots=True)
class _Taken:
    """What one transaction writes (how many of each queue, from the front); removed
    from the queues once it is committed."""

    rows: int
    confirmations: int
    hosts: list[HostEntry]
    flushed: Flushed = field(default_factory=Flushed)


class Recorder:
    """Writes the history and the host statistics; see the module's docstring."""

    def __init__(
        self, config: Config, state: State, writer: Writer, reconciler: Reconciler
    ) -> None:
        # server.history_days (0: keep forever); a configuration reload may set it.
        self.history_days = config.server.history_days
        self._state = state
        self._writer = writer
        self._reconciler = reconciler
        self._rows: list[dict[str, Any]] = []  # new rows
        self._confirmations: list[dict[str, Any]] = []  # confirmed_at of answered rows
        self._lost = 0  # rows and answers dropped while the database refused writes
        self._dirty: dict[int, HostEntry] = {}  # hosts with something for `host list`
        self._waiting: dict[str, list[_Waiting]] = {}  # by name
        # Per host: when the last repeated 911 got a row, and how many came since.
        self._repeats: dict[int, tuple[float, int]] = {}
        self._wake = asyncio.Event()  # something to write
        self._hurry = asyncio.Event()  # ... that others wait for: now
        self._stopping = asyncio.Event()
        self._flushing = asyncio.Lock()
        self._taken: _Taken | None = None  # written by a transaction not committed yet
        self._tasks: list[asyncio.Task[None]] = []

    async def load(self, conn: AsyncConnection) -> None:
        """After a restart: the changes answered ``911`` before it wait for DNS again,
        so that their rows get the time DNS confirms them (see :meth:`resumed`)."""
        cutoff = datetime.now(UTC) - RESUME_WINDOW
        rows = await conn.execute(
            select(_log.c.fqdn, _log.c.at, _log.c.old_value, _log.c.new_value)
            .where(
                _log.c.answer == Code.SERVER_ERROR.value,
                _log.c.confirmed_at.is_(None),
                _log.c.at >= cutoff,
            )
            .order_by(_log.c.at)
        )
        for row in rows:
            # The families the change set, and those it emptied.
            old, new = parse_records(row.old_value), parse_records(row.new_value)
            self._wait(_Waiting(row.fqdn, row.at, {rtype: () for rtype in old} | new))

    def resumed(self) -> None:
        """The reconciler has compared DNS with the records (its start): what it does not
        have to apply is not waited for (when DNS got it is not known)."""
        behind = self._reconciler.behind
        for fqdn in [f for f in self._waiting if f not in behind]:
            del self._waiting[fqdn]

    def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._run(), name="nicupdate-history"))
        self._tasks.append(asyncio.create_task(self._prune_loop(), name="nicupdate-prune"))

    def healthy(self) -> bool:
        """Whether its writing and pruning tasks run (/healthz)."""
        return all(not task.done() for task in self._tasks)

    async def close(self) -> None:
        """Stop, and write what is left."""
        self._stopping.set()
        self._hurry.set()
        self._wake.set()
        for task in self._tasks:
            if task.get_name() == "nicupdate-prune":
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        await self.flush()

    # --- what the update service tells ------------------------------------------------

    def nochg(self, host: HostEntry) -> None:
        """A ``nochg`` answer: counted, with the time."""
        host.last_seen_at = time.time()
        host.nochg_pending += 1
        host.last_result = "nochg"
        self._dirty[host.id] = host
        self._wake.set()

    def hurry(self) -> None:
        """Write what is due at once (the reconciler's confirmations: other processes
        answer their requests from them), unless a transaction carries it first."""
        self._hurry.set()
        self._wake.set()

    def seen(self, host: HostEntry) -> None:
        """An answer whose row the writer wrote, with ``host.last_result`` set (``dnserr:
        REASON``, ``911: not stored``): write the result and the time."""
        host.last_seen_at = time.time()
        host.result_unsaved = True
        self._touch(host)

    def answered(
        self, change: HostUpdate, stored: Stored, code: Code, line: str, reason: str = ""
    ) -> None:
        """The answer ``line`` to a change that was stored."""
        host = change.host
        row = _Waiting(host.fqdn, stored.at, change.families)
        self._rows.append(
            {
                "at": stored.at,
                "fqdn": host.fqdn,
                "caller": change.caller,
                "user_agent": change.user_agent[:255],
                "old_value": stored.old,
                "new_value": stored.new,
                "answer": line[:255],
                "detail": reason,
                "confirmed_at": datetime.now(UTC) if code is Code.GOOD else self._register(row),
            }
        )
        self._limit(self._rows)
        self._result(host, code)

    def record(
        self,
        host: HostEntry,
        *,
        caller: str,
        user_agent: str,
        families: Mapping[str, tuple[str, ...]],
        code: Code,
        line: str,
        reason: str = "",
    ) -> None:
        """An answer that changed nothing but is not ``nochg``: a new row. A ``911`` to a
        client repeating an address DNS does not have yet gets one a minute at most: the
        911 takes no update token, and a client retrying in a loop would fill the table."""
        if code is Code.SERVER_ERROR:
            clock = time.monotonic()
            last, skipped = self._repeats.get(host.id, (-REPEAT_INTERVAL, 0))
            if clock - last < REPEAT_INTERVAL:
                self._repeats[host.id] = (last, skipped + 1)
                self._result(host, code)
                return
            self._repeats[host.id] = (clock, 0)
            if skipped:
                reason += f" (and {skipped} more like it in the minute before, not listed)"
        now = datetime.now(UTC)
        current = {rtype: host.addresses(rtype) for rtype in families}
        records = describe_records(current)
        confirmed_at = None
        if code is Code.GOOD:
            confirmed_at = now
        elif code is Code.SERVER_ERROR:  # the records are stored: DNS confirms them later
            confirmed_at = self._register(_Waiting(host.fqdn, now, current))
        self._rows.append(
            {
                "at": now,
                "fqdn": host.fqdn,
                "caller": caller,
                "user_agent": user_agent[:255],
                "old_value": records,
                "new_value": records,
                "answer": line[:255],
                "detail": reason,
                "confirmed_at": confirmed_at,
            }
        )
        self._limit(self._rows)
        if code is Code.ABUSE:  # the host's state, stored when it is blocked
            host.last_seen_at = time.time()
            self._touch(host)
        else:
            self._result(host, code)

    def confirmed(self, fqdn: str) -> None:
        """Every backend has the records of ``fqdn`` now (the reconciler calls this)."""
        host = self._state.hosts.get(fqdn)
        if host is not None:
            self._repeats.pop(host.id, None)
        if host is not None and host.last_result == RESULT_LABELS[Code.SERVER_ERROR]:
            host.last_result = APPLIED_LATER
            host.result_unsaved = True
            self._dirty[host.id] = host
        waiting = self._waiting.pop(fqdn, None)
        if waiting:
            now = datetime.now(UTC)
            self._confirmations.extend(
                {"f": entry.fqdn, "t": entry.at, "c": now}
                for entry in waiting
                if self._served(fqdn, entry.families)
            )
            self._limit(self._confirmations)
        self._wake.set()  # what DNS has: `host list`'s DNS column

    def _register(self, row: _Waiting) -> datetime | None:
        """Wait for DNS to confirm a change answered without it; or, if it has done so
        since, the time it is now."""
        if row.fqdn not in self._reconciler.behind:
            return datetime.now(UTC) if self._served(row.fqdn, row.families) else None
        self._wait(row)
        return None

    def _wait(self, row: _Waiting) -> None:
        waiting = self._waiting.setdefault(row.fqdn, [])
        # A change replaced by this one (other addresses for one of its families) never
        # gets its own confirmation; a repeat of the same addresses is confirmed with it.
        waiting[:] = [w for w in waiting if not _replaced(w.families, row.families)]
        waiting.append(row)

    def _served(self, fqdn: str, families: Mapping[str, tuple[str, ...]]) -> bool:
        return all(self._reconciler.desired(fqdn, t) == v for t, v in families.items())

    def _result(self, host: HostEntry, code: Code) -> None:
        host.last_result = RESULT_LABELS.get(code, code.value)
        host.last_seen_at = time.time()
        host.result_unsaved = True
        self._touch(host)

    def _touch(self, host: HostEntry) -> None:
        self._dirty[host.id] = host
        self._wake.set()

    def _limit(self, queue: list[dict[str, Any]]) -> None:
        # Only while the database refuses writes; never under a transaction that is
        # writing the front of the queue.
        if len(queue) > MAX_PENDING and self._taken is None:
            del queue[0]
            self._lost += 1

    # --- writing ----------------------------------------------------------------------

    async def _run(self) -> None:
        while not self._stopping.is_set():
            await self._wake.wait()
            with contextlib.suppress(TimeoutError):  # gather what comes meanwhile
                await asyncio.wait_for(self._hurry.wait(), FLUSH_DELAY)
            if self._stopping.is_set():
                return  # close() writes what is left
            self._wake.clear()
            self._hurry.clear()
            try:
                await self.flush()
            except (SQLAlchemyError, OSError) as exc:  # the writer has logged it
                log.debug("history not written (%s); trying again", describe_failure(exc))
                await asyncio.sleep(RETRY_DELAY)
                self._wake.set()
            except Exception:
                log.exception("could not write the update history; trying again")
                await asyncio.sleep(RETRY_DELAY)
                self._wake.set()

    async def flush(self) -> None:
        """Write what has come in, and what the reconciler has confirmed, now (in a
        transaction of its own, unless a batch of changes carries it meanwhile)."""
        async with self._flushing:
            if self.due():
                await self._writer.exclusive(self._carry)
        if self._lost:
            log.warning(
                "%d answer(s) are missing from the update history: more than %d came while "
                "the database refused writes",
                self._lost,
                MAX_PENDING,
            )
            self._lost = 0

    async def _carry(self, conn: AsyncConnection) -> None:
        """A transaction of its own, which the writer adds what is due to (store.Rider)."""

    # The store.Rider protocol: the writer's transactions carry what is written here.

    def due(self) -> bool:
        """Something to write, and no transaction carrying some of it yet."""
        pending = self._rows or self._confirmations or self._dirty
        return self._taken is None and bool(pending or self._reconciler.unsaved)

    async def write(self, conn: AsyncConnection) -> None:
        current = self._state.hosts
        taken = self._taken = _Taken(
            len(self._rows),
            len(self._confirmations),
            [h for h in self._dirty.values() if current.get(h.fqdn) is h],
        )
        if taken.rows:
            await conn.execute(insert(_log), self._rows[: taken.rows])
        if taken.confirmations:  # of rows written before, or above
            await conn.execute(
                update(_log)
                .where(
                    _log.c.fqdn == bindparam("f"),
                    _log.c.at == bindparam("t"),
                    _log.c.confirmed_at.is_(None),
                )
                .values(confirmed_at=bindparam("c")),
                self._confirmations[: taken.confirmations],
            )
        taken.flushed = await flush_host_stats(conn, self._state, taken.hosts)
        await self._reconciler.persist(conn)

    def committed(self) -> None:
        taken, self._taken = self._taken, None
        if taken is None:
            return
        taken.flushed.done()
        del self._rows[: taken.rows]
        del self._confirmations[: taken.confirmations]
        current = self._state.hosts
        for host_id, host in list(self._dirty.items()):
            fresh = current.get(host.fqdn) is host  # else replaced by a reload, written by it
            if not (fresh and (host.nochg_pending or host.result_unsaved)):
                del self._dirty[host_id]

    def failed(self) -> None:
        self._taken = None  # kept: written by the next transaction

    # --- pruning ----------------------------------------------------------------------

    async def _prune_loop(self) -> None:
        while True:
            await asyncio.sleep(PRUNE_INTERVAL)
            if self.history_days <= 0:
                continue
            try:
                await self.prune()
            except (SQLAlchemyError, OSError) as exc:
                log.warning("old history not deleted (%s); will try again", describe_failure(exc))
            except Exception:
                log.exception("old history not deleted; will try again")

    async def prune(self) -> int:
        """Delete the rows older than ``server.history_days``; how many there were."""
        days = self.history_days
        cutoff = datetime.now(UTC) - timedelta(days=days)
        total = batches = 0
        while True:  # ends: no row older than the cutoff is added meanwhile
            deleted: int = await self._writer.exclusive(lambda c: _delete_before(c, cutoff))
            total += deleted
            batches += 1
            if deleted < PRUNE_BATCH:
                break
            await asyncio.sleep(PRUNE_PAUSE)  # let the requests' commits through
        if total:
            log.info(
                "deleted %d history row(s) older than %d day(s) (server.history_days) "
                "in %d transaction(s)",
                total,
                days,
                batches,
            )
        return total


def _replaced(earlier: Mapping[str, tuple[str, ...]], later: Mapping[str, tuple[str, ...]]) -> bool:
    return any(rtype in later and later[rtype] != value for rtype, value in earlier.items())


async def _delete_before(conn: AsyncConnection, cutoff: datetime) -> int:
    oldest = select(_log.c.id).where(_log.c.at < cutoff).order_by(_log.c.at).limit(PRUNE_BATCH)
    result = await conn.execute(delete(_log).where(_log.c.id.in_(oldest)))
    return int(result.rowcount)
