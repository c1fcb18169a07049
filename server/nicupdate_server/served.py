"""One built-in DNS for all the workers of a machine (``serve --workers N``).

Worker 0 serves the built-in DNS; the others answer HTTP only. A change that worker 2
stores must not be answered ``good`` before worker 0's DNS serves it, so:

* worker 0 (:class:`Announcer`) writes a ``dns.served`` row to the change log whenever
  its DNS has caught up: "everything up to change X is served" (X: the newest change it
  knows, its own or read from the log, taken while nothing was waiting to be applied);
* the other workers' ``builtin`` backend (:class:`RemoteBuiltin`) applies a change to a
  copy of the data only once the announced position reaches what the worker knew when
  the change was handed to it, so the reconciler confirms it then, as for any backend.

Rows carry the group's name (the supervisor's), so several machines sharing a database,
each with its own workers, do not confirm each other's DNS.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncConnection

from .backends import TransientBackendError, ZoneChange
from .backends.builtin import BuiltinBackend
from .changelog import Change, Kind, append
from .tasks import cancel
from .zonedata import AuthoritativeData

log = logging.getLogger("nicupdate.served")

# How long a worker waits for the DNS worker before the change is retried (backing off).
SERVED_WAIT = 5.0


class ServedPosition:
    """The newest change the group's DNS serves, as announced (other workers)."""

    def __init__(self) -> None:
        self.position = 0
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

    def announced(self, position: int) -> None:
        if position <= self.position:
            return
        self.position = position
        waiting = []
        for wanted, future in self._waiters:
            if wanted > position:
                waiting.append((wanted, future))
            elif not future.done():
                future.set_result(None)
        self._waiters = waiting

    async def reaches(self, position: int, timeout: float) -> bool:
        """Wait (at most ``timeout`` s) until the DNS serves change ``position``."""
        if self.position >= position:
            return True
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiter = (position, future)
        self._waiters.append(waiter)
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await future
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
        return self.position >= position


class RemoteBuiltin(BuiltinBackend):
    """``builtin`` in a process whose DNS runs elsewhere (the DNS process, or worker 0's):
    applied to a copy of the data once the DNS says it serves at least what this process
    knew."""

    def __init__(
        self,
        data: AuthoritativeData,
        served: ServedPosition,
        known: Callable[[], int],
        wake: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(data)
        self._served = served
        self._known = known  # the newest change this worker knows (stored or read)
        self._wake = wake  # tells the DNS process to read the change log now

    async def apply(self, change: ZoneChange) -> None:
        wanted = self._known()
        if self._served.position < wanted and self._wake is not None:
            self._wake()
        if not await self._served.reaches(wanted, SERVED_WAIT):
            raise TransientBackendError(
                f"the built-in DNS does not serve change {wanted} yet "
                f"(it serves {self._served.position})"
            )
        await super().apply(change)


class Announcer:
    """Worker 0: announces the position its DNS serves, soon after each change."""

    def __init__(
        self,
        group: str,
        origin: str,
        known: Callable[[], int],
        idle: Callable[[], bool],
        write: Callable[[Callable[[AsyncConnection], Awaitable[None]]], Awaitable[object]],
        interval: float,
    ) -> None:
        self._group = group
        self._origin = origin
        self._known = known
        self._idle = idle  # nothing marked for the built-in DNS waits to be applied
        self._write = write
        self._interval = interval
        self.announced = -1
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="nicupdate-served")

    def wake(self) -> None:
        self._wake.set()

    async def close(self) -> None:
        await cancel(self._task)
        self._task = None

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval):
                    await self._wake.wait()
            self._wake.clear()
            position = self._known()  # first: what is known now is applied if idle
            if position <= self.announced or not self._idle():
                continue
            try:
                await self._write(self._announce(position))
            except Exception as exc:  # the writer logs database failures
                log.debug("could not announce the DNS position: %s", exc)
                continue
            self.announced = position

    def _announce(self, position: int) -> Callable[[AsyncConnection], Awaitable[None]]:
        async def write(conn: AsyncConnection) -> None:
            change = Change(Kind.SERVED, self._group, {"position": position})
            await append(conn, [change], self._origin)

        return write
