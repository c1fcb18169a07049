"""Following the change log (:mod:`.changelog`) from this process's position.

Every server process reads the rows committed after the last one it saw and hands them
to be applied (:class:`~.follow.Follower`): what the CLI, other workers and other
instances changed reaches this process's memory one change at a time, never by a
reload of everything. On SQLite it looks every ``server.poll_interval`` (one indexed
query for rows after its position); on PostgreSQL a ``LISTEN`` connection wakes it at
each commit, and it looks every ``poll_interval`` too, in case a notification was lost
with its connection.

While it cannot read the log (the database is down or unreachable) the process cannot
know what others changed: :meth:`Feed.stale` says so, and the update service answers
``911`` instead of ``nochg`` until it has caught up again. When the rows it needs were
pruned (it was away for longer than the log keeps them), it reloads everything once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from . import changelog
from .changelog import Entry
from .store import describe_failure
from .tasks import cancel

log = logging.getLogger("nicupdate.feed")

# Not read for this many poll intervals (and at least STALE_MIN seconds): stale.
STALE_POLLS = 20
STALE_MIN = 1.0


class Feed:
    def __init__(
        self,
        engine: AsyncEngine,
        interval: float,
        apply: Callable[[list[Entry]], None],
        rebuild: Callable[[], Awaitable[int]],
    ) -> None:
        self._engine = engine
        self.interval = interval
        self._apply = apply
        self._rebuild = rebuild  # reloads everything; returns the position it reflects
        self.position = 0  # the id of the last row applied
        self.read_at = time.monotonic()  # the last successful read
        self.failure: str | None = None  # why the last read failed
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._listener: AsyncConnection | None = None
        self._postgres = engine.dialect.name == "postgresql"
        # Set whenever rows were read (other readers of the log, e.g. the webhooks, wait
        # on them instead of polling on their own).
        self.arrivals: list[asyncio.Event] = []

    def stale_after(self) -> float:
        return max(STALE_MIN, STALE_POLLS * self.interval)

    def stale(self) -> bool:
        """Whether this process's copy cannot be trusted: the last read of the log
        failed, or none worked for too long."""
        return self.failure is not None or time.monotonic() - self.read_at > self.stale_after()

    async def start(self, position: int) -> None:
        """Follow from ``position``: apply what came since, then keep following."""
        self.position = position
        await self.catch_up()
        self._task = asyncio.create_task(self._run(), name="nicupdate-feed")

    def locked(self) -> asyncio.Lock:
        """Held while rows are applied (``async with feed.locked():``)."""
        return self._lock

    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def close(self) -> None:
        await cancel(self._task)
        self._task = None
        await self._unlisten()

    def wake(self) -> None:
        self._wake.set()

    async def catch_up(self) -> int:
        """Read and apply every row committed so far; how many there were."""
        async with self._lock:
            total = 0
            while True:
                async with self._engine.connect() as conn:
                    entries = await changelog.read(conn, self.position)
                    missed = bool(entries) and await self._missed(conn, entries[0].id)
                if missed:
                    log.warning(
                        "the change log no longer has the changes after %d (this process "
                        "was away longer than it keeps them): reloading every host",
                        self.position,
                    )
                    self.position = await self._rebuild()
                    continue
                self.read_at = time.monotonic()
                if not entries:
                    return total
                self._apply(entries)
                self.position = entries[-1].id
                total += len(entries)
                for event in self.arrivals:
                    event.set()

    async def _missed(self, conn: AsyncConnection, first: int) -> bool:
        """Whether rows between the position and ``first`` were pruned (ids may also
        skip because a transaction rolled back: then the oldest row kept is older)."""
        if first == self.position + 1:
            return False
        return await changelog.oldest(conn) > self.position + 1

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval):
                    await self._wake.wait()
            self._wake.clear()
            try:
                if self._postgres and self._listener is None:
                    await self._listen()
                await self.catch_up()
            except Exception as exc:
                await self._unlisten()
                reason = describe_failure(exc)
                if self.failure is None:
                    if isinstance(exc, SQLAlchemyError | OSError | TimeoutError):
                        log.error(
                            "cannot read the change log (%s): updates are answered 911 "
                            "until it can again",
                            reason,
                        )
                    else:
                        log.exception("applying the change log failed; will try again")
                self.failure = reason
                continue
            if self.failure is not None:
                log.info("the change log is read again (at change %d)", self.position)
                self.failure = None

    async def _listen(self) -> None:
        conn = await self._engine.connect()
        try:
            raw = await conn.get_raw_connection()
            driver = raw.driver_connection
            await driver.add_listener(changelog.CHANNEL, self._notified)  # type: ignore[union-attr]
            driver.add_termination_listener(self._lost)  # type: ignore[union-attr]
        except BaseException:
            await conn.close()
            raise
        self._listener = conn

    def _notified(self, *_: object) -> None:
        self._wake.set()

    def _lost(self, *_: object) -> None:
        self._listener = None  # the next round listens again
        self._wake.set()

    async def _unlisten(self) -> None:
        conn, self._listener = self._listener, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.invalidate()  # never back to the pool: it listens
            with contextlib.suppress(Exception):
                await conn.close()
