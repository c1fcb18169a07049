"""Password checks: a bounded queue, fair between sources, run on a few threads.

A password hash costs tens of milliseconds of CPU, so checks run on ``workers``
threads of their own and wait in a queue for them. That queue cannot be starved:

* it holds at most ``max_pending`` checks, and each source at most
  ``max_per_source``; past either, a new check is refused at once
  (:class:`ChecksBusy`, answered HTTP 429 with ``Retry-After``);
* sources with fewer failed logins go first (``standing``, from the guess counters),
  and sources of equal standing take turns (round robin): a flood makes a router's
  check wait for the checks already running, not for the flood. When the queue is
  full, a check from a source of better standing takes the place of the newest check
  of the worst-standing source, which is refused;
* the threads run at a low CPU priority (nice 10), so that when the CPU is short,
  answering requests gets about nine tenths of it and hashing the rest;
* a check whose client has gone (it closed its side of the connection) while it
  waited is dropped (:class:`CheckDropped`) instead of costing a hash for nobody:
  when its turn comes while others wait, or when the queue is full and a new check
  needs its place. (A client that only half-closed, as ``nc -N`` does, looks the same;
  it is still checked when nobody else waits, and gets 429 otherwise.)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

# Until a check has been timed: what one argon2id hash costs on a small machine.
INITIAL_COST = 0.03


# Hashing threads run at a low CPU priority (Linux: per thread): when the machine is
# busy, answering requests comes first (CFS weights 1024 : 110) but hashes still move,
# at about a tenth of a CPU, also beside other busy processes.
HASH_NICE = 10


def _lower_priority() -> None:
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), HASH_NICE)
    except (AttributeError, OSError):
        pass  # not on this platform: the hashes share the CPU evenly


class ChecksBusy(Exception):
    """Too many password checks are waiting; try again after ``retry_after`` seconds."""

    def __init__(self, retry_after: float, reason: str) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class CheckDropped(Exception):
    """The client went away while its check waited; nobody needs the answer."""


@dataclass(slots=True)
class _Job:
    source: str
    work: Callable[[], bool]
    gone: Callable[[], bool]
    future: asyncio.Future[bool] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class PasswordChecks:
    def __init__(
        self,
        *,
        workers: int,
        max_pending: int,
        max_per_source: int,
        standing: Callable[[str], int] = lambda source: 0,
    ) -> None:
        self._workers = workers
        self._standing = standing  # lower goes first: failed logins of the source
        self._max_pending = max_pending
        self._max_per_source = max_per_source
        self._executor = ThreadPoolExecutor(
            workers, thread_name_prefix="nicupdate-hash", initializer=_lower_priority
        )
        self._waiting: OrderedDict[str, deque[_Job]] = OrderedDict()
        self._pending = 0
        self._running = 0
        self._cost = INITIAL_COST  # seconds per check, a moving average
        self._closed = False

    def configure(self, *, workers: int, max_pending: int, max_per_source: int) -> None:
        """New bounds (a reload). Another number of threads takes a new pool; checks on
        the old one finish there."""
        self._max_pending = max_pending
        self._max_per_source = max_per_source
        if workers != self._workers:
            old, self._workers = self._executor, workers
            self._executor = ThreadPoolExecutor(
                workers, thread_name_prefix="nicupdate-hash", initializer=_lower_priority
            )
            old.shutdown(wait=False)
        while self._running < self._workers and (job := self._next()) is not None:
            self._start(job)

    @property
    def pending(self) -> int:
        """Checks waiting for a thread."""
        return self._pending

    @property
    def running(self) -> int:
        """Checks on a thread now."""
        return self._running

    def retry_after(self) -> float:
        """About how long the checks waiting now will take."""
        return max(1.0, (self._pending + self._running) * self._cost / self._workers)

    def submit(
        self, source: str, work: Callable[[], bool], gone: Callable[[], bool]
    ) -> asyncio.Future[bool]:
        """Queue ``work()`` for a hashing thread; the future gets its result when
        ``source``'s turn comes and the work is done.

        Raises :class:`ChecksBusy` at once (no future is made) when the queue or the
        source's share of it is full. The future gets :class:`CheckDropped` when
        ``gone()`` is true by the time its turn comes while others wait. Cancelling
        the future takes the check out of the queue.
        """
        if self._closed:
            raise ChecksBusy(1.0, "the server is shutting down")
        if self._running < self._workers and not self._pending:
            job = _Job(source, work, gone)
            self._start(job)
            return job.future
        if self._pending >= self._max_pending:
            self._drop_gone()
            if self._pending >= self._max_pending and not self._make_room_for(source):
                raise ChecksBusy(self.retry_after(), f"{self._pending} password checks waiting")
        queue = self._waiting.get(source)
        if queue is not None and len(queue) >= self._max_per_source:
            self._drop_gone(source)
            queue = self._waiting.get(source)
            if queue is not None and len(queue) >= self._max_per_source:
                raise ChecksBusy(self.retry_after(), f"{len(queue)} checks from {source} waiting")
        job = _Job(source, work, gone)
        if queue is None:
            queue = self._waiting[source] = deque()
        queue.append(job)
        self._pending += 1
        job.future.add_done_callback(
            lambda future: self._forget(job) if future.cancelled() else None
        )
        return job.future

    async def run(self, source: str, work: Callable[[], bool], gone: Callable[[], bool]) -> bool:
        """:meth:`submit`, and wait for the result."""
        return await self.submit(source, work, gone)

    def _drop_gone(self, source: str | None = None) -> None:
        """Make room: drop the waiting checks (of ``source``) whose clients have gone."""
        for name in [source] if source is not None else list(self._waiting):
            queue = self._waiting.get(name)
            if queue is None:
                continue
            for job in [job for job in queue if job.future.done() or job.gone()]:
                queue.remove(job)
                self._pending -= 1
                if not job.future.done():
                    job.future.set_exception(CheckDropped())
            if not queue:
                del self._waiting[name]

    def _make_room_for(self, source: str) -> bool:
        """Refuse the newest check of the worst-standing source, if ``source`` stands
        better; return whether there is room now."""
        worst = max(self._waiting, key=self._standing)
        if self._standing(worst) <= self._standing(source):
            return False
        queue = self._waiting[worst]
        job = queue.pop()
        self._pending -= 1
        if not queue:
            del self._waiting[worst]
        if not job.future.done():
            job.future.set_exception(ChecksBusy(self.retry_after(), "made room for another source"))
        return True

    def _forget(self, job: _Job) -> None:
        queue = self._waiting.get(job.source)
        if queue is not None and job in queue:
            queue.remove(job)
            self._pending -= 1
            if not queue:
                del self._waiting[job.source]

    def _next(self) -> _Job | None:
        while self._waiting:
            source = min(self._waiting, key=self._standing)  # the first of the best
            queue = self._waiting[source]
            job = queue.popleft()
            self._pending -= 1
            del self._waiting[source]
            if queue:  # its next check waits for the other sources' turns
                self._waiting[source] = queue
            if job.future.done():
                continue
            if job.gone() and self._pending:
                job.future.set_exception(CheckDropped())
                continue
            return job
        return None

    def _start(self, job: _Job) -> None:
        self._running += 1
        started = time.perf_counter()
        done = asyncio.get_running_loop().run_in_executor(self._executor, job.work)

        def finished(outcome: asyncio.Future[bool]) -> None:
            self._running -= 1
            self._cost = 0.8 * self._cost + 0.2 * (time.perf_counter() - started)
            if not job.future.done():
                if outcome.cancelled():  # not by us: answer as a refused check would be
                    job.future.set_exception(ChecksBusy(1.0, "the server is shutting down"))
                elif (error := outcome.exception()) is not None:
                    job.future.set_exception(error)
                else:
                    job.future.set_result(outcome.result())
            if not self._closed:
                following = self._next()
                if following is not None:
                    self._start(following)

        done.add_done_callback(finished)

    def close(self) -> None:
        """Refuse every waiting check (the server is stopping); running ones finish,
        including those handed to the pool whose thread has not picked them up yet."""
        self._closed = True
        for queue in self._waiting.values():
            for job in queue:
                if not job.future.done():
                    job.future.set_exception(ChecksBusy(1.0, "the server is shutting down"))
        self._waiting.clear()
        self._pending = 0
        with contextlib.suppress(RuntimeError):
            self._executor.shutdown(wait=False)
