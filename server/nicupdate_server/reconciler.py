"""The reconciler: gets the desired records into every backend, and keeps them there.

The database holds what each name should have (``records``, the desired state) and
what each backend has confirmed (``applied``). Where they differ a change is pending.
One worker per backend and zone takes the pending names, waits ``coalesce_window``
for more (and takes whatever queued while its previous message was in flight), and
applies them in messages of at most ``max_batch`` changes: the latest desired value
always wins, because the change is computed when it is sent.

* Transient errors (unreachable, timeout, SERVFAIL) back off, doubling with jitter up
  to ``retry_max``, and retry until the backend confirms; nothing is dropped.
* Permanent errors (refused, bad key) are split down to the names that cause them;
  those names are not retried until a new request or ``reconcile`` asks again.
* Requests wait (``confirm``) until their change is confirmed, an error is known, or
  ``apply_deadline`` passes: ``good``, ``dnserr`` or ``911`` (stored, will be applied).
* Drift repair reads the records back from a backend and re-applies where DNS differs.

Confirmed state is written to the database soon after (``persist``, riding the next
transaction), with an ``applied`` or ``backend.error`` row in the change log: losing it
in a crash only means applying the same change again, which is harmless.

Several processes on one database (workers, instances): each (backend, zone) is
reconciled by the one process that holds its lease (:mod:`.leases`); the others keep
their copy of what the backend has from the change log (:meth:`Reconciler.remote_applied`)
and answer their own waiting requests from it. ``builtin`` is each process's own DNS
data: every process that serves DNS applies it itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, cast

from sqlalchemy import Table, delete, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from .backends import (
    Backend,
    PermanentBackendError,
    RecordChange,
    TransientBackendError,
    ZoneChange,
)
from .changelog import Change, Kind, append, records_value
from .config import Config, ZoneSettings
from .dyndns import Code
from .hostrecords import describe_key, expand, host_of, keyed, owners, unkeyed
from .state import HostEntry, State
from .store import Outcome
from .tables import applied as _applied
from .tables import sync_errors as _errors

if TYPE_CHECKING:
    from .leases import Leases

log = logging.getLogger("nicupdate.reconcile")

ROUTE_CACHE_SIZE = 100_000  # names whose zone and backends are remembered
RETRY_AFTER_CAP = 3600.0  # a longer Retry-After is taken as an hour
TAKEOVER_SLICE = 5000  # names compared between two looks at the event loop

Key = tuple[str, str]  # (owner name, rtype): a host's, its wildcard's, its TXT's
Route = tuple[str, ZoneSettings]  # (backend name, zone)


class Readable(Protocol):
    async def read(
        self, zone: ZoneSettings, names: Collection[str]
    ) -> Mapping[Key, tuple[str, ...]]: ...


@dataclass(slots=True)
class Problem:
    """The last error a backend gave for a name."""

    message: str
    permanent: bool
    attempts: int
    at: float


@dataclass(slots=True)
class DriftReport:
    backend: str
    checked: int = 0
    repaired: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass(slots=True)
class _Worker:
    backend: str
    zone: ZoneSettings
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    dirty: set[str] = field(default_factory=set)
    failures: int = 0
    retry_at: float = 0.0
    busy: bool = False
    task: asyncio.Task[None] | None = None
    # Held by this process (:mod:`.leases`); None: local, always this process's job.
    lease: str | None = None
    active: bool = True


class InMemory(Protocol):
    """A backend whose records are in this process (``builtin``): it is asked directly
    what it serves, and it is rebuilt from ``records`` at start, so it keeps no rows."""

    def current(self, fqdn: str, rtype: str) -> tuple[str, ...]: ...


def keeps_applied(backend: Backend) -> bool:
    return not hasattr(backend, "current")


class Reconciler:
    def __init__(self, config: Config, state: State, backends: Mapping[str, Backend]) -> None:
        self.config = config
        self.state = state
        self.backends = backends
        self.applied: dict[str, dict[Key, tuple[str, ...]]] = defaultdict(dict)
        self.problems: dict[tuple[str, str], Problem] = {}
        # Kept only for names some backend has not confirmed yet (``behind``): an idle
        # server with many hosts holds nothing here.
        self.generation: dict[str, int] = {}
        self.confirmed: dict[tuple[str, str], int] = {}  # (backend, fqdn) -> generation
        self.behind: set[str] = set()
        self._waiters: dict[str, list[tuple[int, asyncio.Future[Outcome]]]] = defaultdict(list)
        self._workers: dict[tuple[str, str], _Worker] = {}
        self._unsaved_applied: dict[tuple[str, str, str], tuple[str, ...]] = {}
        self._unsaved_problems: dict[tuple[str, str], Problem | None] = {}
        self._drift_tasks: list[asyncio.Task[None]] = []
        self._random = random.Random()
        self._route_cache: dict[str, list[Route]] = {}  # the configuration does not change
        self._routes_by_zone: dict[str, list[Route]] = {}
        # Told each name whose records every backend has now (the update history).
        self.on_confirmed: Callable[[str], None] = _nothing
        # Told, per backend, how many seconds after it was stored a change reached it;
        # and the errors the backends gave, per (backend, permanent) (both for /metrics).
        self.on_applied: Callable[[str, float], None] = _nothing_applied
        self.failures: Counter[tuple[str, bool]] = Counter()
        self._stored_at: dict[str, float] = {}  # names behind: when their change was stored
        # This process's name in the change log, and the leases of its jobs (None: it
        # is the only process, every job is its own).
        self.origin = ""
        self.leases: Leases | None = None
        # Told when confirmations or errors wait to be written (other processes wait
        # for them: written soon, not in a second).
        self.on_unsaved: Callable[[], None] = _nothing_unsaved
        self._unsaved_events: dict[tuple[str, str], Problem] = {}

    # --- start, stop, state ---------------------------------------------------------------

    async def load(self, conn: AsyncConnection) -> None:
        """Read what the backends have confirmed, and the last errors, from the database."""
        self.applied.clear()
        if not any(keeps_applied(backend) for backend in self.backends.values()):
            return  # only builtin: nothing of it is kept in the database
        for row in await conn.execute(select(_applied)):
            addresses = tuple(a for a in row.addresses.split(",") if a)
            self.applied[row.backend][(row.fqdn, row.rtype)] = addresses
        for row in await conn.execute(select(_errors)):
            at = row.at.timestamp() if row.at else time.time()
            self.problems[(row.backend, row.fqdn)] = Problem(
                row.message, row.permanent, row.attempts, at
            )

    def start(self, *, retry_refused: bool = False) -> None:
        """Start the workers and the drift checks, and resume everything pending."""
        for zone in self.config.zones:
            for backend in self._backends_of(zone):
                if backend not in self.backends:  # `reconcile` runs without the builtin one
                    continue
                key = (backend, zone.name)
                worker = self._workers[key] = _Worker(backend, zone)
                if self.leases is not None and keeps_applied(self.backends[backend]):
                    worker.lease = lease_name(backend, zone.name)
                    worker.active = self.leases.holds(worker.lease)
                worker.task = asyncio.create_task(
                    self._work(worker), name=f"nicupdate-apply-{backend}-{zone.name}"
                )
        for name, instance in self.backends.items():
            interval = float(getattr(instance, "drift_check_interval", 0) or 0)
            if interval > 0 and hasattr(instance, "read") and self._zones_of(name):
                self._drift_tasks.append(
                    asyncio.create_task(self._drift_loop(name, interval), name=f"drift-{name}")
                )
        self.refresh(retry_refused=retry_refused)

    async def close(self) -> None:
        tasks = [w.task for w in self._workers.values() if w.task] + self._drift_tasks
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._workers.clear()
        self._drift_tasks.clear()

    def reconfigure(self, config: Config, backends: Mapping[str, Backend]) -> None:
        """Zones or backends changed (a reload): between :meth:`close` and :meth:`start`.
        What a removed backend still lacks stays in the database."""
        self.config = config
        self.backends = backends
        self._route_cache.clear()
        self._routes_by_zone.clear()

    def healthy(self) -> bool:
        tasks = [w.task for w in self._workers.values() if w.task] + self._drift_tasks
        return all(not task.done() for task in tasks)

    def refresh(self, *, retry_refused: bool = False) -> None:
        """Compare desired and applied (at start, and after the state was read again).

        Only the backends that keep what they confirmed (``applied``) can be behind: the
        in-memory ones (builtin) were just built from the same state. So the names
        compared are those such a backend has or should have records of, and those that
        were behind (their waiting requests are answered). Names a backend refused are
        left alone unless ``retry_refused``.
        """
        kept = {name for name, backend in self.backends.items() if keeps_applied(backend)}
        behind = set(self.behind)
        names = dict.fromkeys(behind)
        if kept:
            for backend in kept:
                names.update(dict.fromkeys(host_of(owner) for owner, _ in self.applied[backend]))
            hosts = self.state.hosts.items()
            names.update(
                dict.fromkeys(fqdn for fqdn, host in hosts if host.a or host.aaaa or host.extra)
            )
        self.behind.clear()
        for fqdn in names:
            routes = self._find_routes(fqdn)  # not remembered: there may be a million
            if fqdn in behind or any(backend in kept for backend, _ in routes):
                self._mark(fqdn, bump=retry_refused, routes=routes)
        self._stored_at = {f: t for f, t in self._stored_at.items() if f in self.behind}

    def desired(self, fqdn: str, rtype: str) -> tuple[str, ...]:
        """The values the host ``fqdn`` should have of ``rtype`` (its record set's)."""
        host = self.state.hosts.get(fqdn)
        return host.addresses(rtype) if host is not None else ()

    def pending(self, backend: str, fqdn: str) -> dict[Key, tuple[str, ...]]:
        """The record sets ``backend`` still lacks for the host ``fqdn``: (owner, rtype)
        -> wanted values."""
        instance = self.backends[backend]
        applied = self.applied[backend] if keeps_applied(instance) else None
        lacking: dict[Key, tuple[str, ...]] = {}
        for key, wanted in _desired(fqdn, self.state.hosts.get(fqdn)).items():
            if applied is not None:
                have = applied.get(key, ())
            else:
                have = cast(InMemory, instance).current(*key)
            if wanted != have:
                lacking[key] = wanted
        return lacking

    # --- marking and confirming -------------------------------------------------------------

    def mark(self, fqdns: Iterable[str]) -> None:
        """The desired records of ``fqdns`` changed (committed): get them applied."""
        now = time.monotonic()
        for fqdn in fqdns:
            self._mark(fqdn, bump=True)
            if fqdn in self.behind:
                self._stored_at[fqdn] = now

    def _mark(self, fqdn: str, *, bump: bool, routes: list[Route] | None = None) -> None:
        if bump:
            self.generation[fqdn] = self.generation.get(fqdn, 0) + 1
        generation = self.generation.get(fqdn, 0)
        if routes is None:
            routes = self._routes(fqdn)
        waiting = [(b, zone) for b, zone in routes if self.pending(b, fqdn)]
        if waiting:
            self.behind.add(fqdn)
        for backend, zone in routes:
            if (backend, zone) not in waiting:
                if waiting:
                    self.confirmed[(backend, fqdn)] = generation
                continue
            problem = self.problems.get((backend, fqdn))
            if problem is not None and problem.permanent and not bump:
                continue  # refused before: only a new request or `reconcile` tries again
            worker = self._workers.get((backend, zone.name))
            if worker is not None:
                worker.dirty.add(fqdn)
                worker.wake.set()
        self._settle(fqdn)

    async def confirm(self, fqdn: str, deadline: float) -> Outcome:
        """Wait until every backend has the current desired records of ``fqdn``."""
        generation = self.generation.get(fqdn, 0)
        if self._is_confirmed(fqdn, generation):
            return Outcome(Code.GOOD)
        now = time.monotonic()
        for backend, zone in self._routes(fqdn):
            worker = self._workers.get((backend, zone.name))
            if worker is not None and worker.retry_at > now and fqdn in worker.dirty:
                problem = self.problems.get((backend, fqdn))
                return _unavailable(problem.message if problem else "DNS is unavailable")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Outcome] = loop.create_future()
        self._waiters[fqdn].append((generation, future))
        reason = f"not confirmed by DNS within {deadline:g} s"
        timer = loop.call_later(deadline, _expire, future, reason)
        try:
            return await future
        finally:
            timer.cancel()
            waiting = self._waiters.get(fqdn)
            if waiting is not None:
                waiting[:] = [(g, f) for g, f in waiting if f is not future]
                if not waiting:
                    del self._waiters[fqdn]

    def _is_confirmed(self, fqdn: str, generation: int) -> bool:
        if fqdn not in self.behind:
            return True
        return all(
            self.confirmed.get((backend, fqdn), -1) >= generation
            for backend, _ in self._routes(fqdn)
        )

    def _settle(self, fqdn: str, failure: Outcome | None = None) -> None:
        """Answer the requests waiting on ``fqdn`` that can be answered now."""
        if fqdn in self.behind and self._is_confirmed(fqdn, self.generation.get(fqdn, 0)):
            self.behind.discard(fqdn)
            self._stored_at.pop(fqdn, None)
            for backend, _ in self._routes(fqdn):
                self.confirmed.pop((backend, fqdn), None)
            self.on_confirmed(fqdn)
        waiting = self._waiters.get(fqdn)
        if waiting:
            for generation, future in waiting:
                if future.done():
                    continue
                if self._is_confirmed(fqdn, generation):
                    future.set_result(Outcome(Code.GOOD))
                elif failure is not None:
                    future.set_result(failure)
        elif fqdn not in self.behind:
            self.generation.pop(fqdn, None)

    # --- the workers ------------------------------------------------------------------------

    async def _work(self, worker: _Worker) -> None:
        backend = self.backends[worker.backend]
        window = float(getattr(backend, "coalesce_window", 0.0) or 0.0)
        max_batch = max(1, int(getattr(backend, "max_batch", 1000) or 1000))
        while True:
            await worker.wake.wait()
            worker.wake.clear()
            delay = worker.retry_at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if window > 0:
                await asyncio.sleep(window)
            names, worker.dirty = worker.dirty, set()
            if not worker.active:
                continue  # another process reconciles it; on takeover all is compared
            worker.busy = True
            try:
                await self._apply_names(worker, backend, sorted(names), max_batch)
            except Exception:  # a bug must not stop the worker: keep the names pending
                log.exception("%s: unexpected error while applying", worker.backend)
                worker.dirty |= names
                self._backoff(worker)
            finally:
                worker.busy = False

    async def _apply_names(
        self, worker: _Worker, backend: Backend, names: list[str], max_batch: int
    ) -> None:
        batch: list[tuple[str, int, dict[Key, tuple[str, ...]]]] = []
        size = 0
        for position, fqdn in enumerate(names):
            wanted = self.pending(worker.backend, fqdn)
            generation = self.generation.get(fqdn, 0)
            if not wanted:
                self.confirmed[(worker.backend, fqdn)] = generation
                self._settle(fqdn)
                continue
            if batch and size + len(wanted) > max_batch:
                if not await self._apply_batch(worker, backend, batch):
                    self._postpone(worker, names[position:])
                    return
                batch, size = [], 0
            batch.append((fqdn, generation, wanted))
            size += len(wanted)
        if batch:
            await self._apply_batch(worker, backend, batch)

    async def _apply_batch(
        self,
        worker: _Worker,
        backend: Backend,
        batch: list[tuple[str, int, dict[Key, tuple[str, ...]]]],
    ) -> bool:
        """Apply one message's worth; False when the backend is unavailable (backing off)."""
        changes = [
            RecordChange(owner, rtype, addresses)  # type: ignore[arg-type]
            for _, _, wanted in batch
            for (owner, rtype), addresses in wanted.items()
        ]
        serial = self.state.zone_serials.get(worker.zone.name, 1)
        try:
            await backend.apply(ZoneChange(worker.zone, serial, changes))
        except TransientBackendError as exc:
            log.warning("%s: DNS unavailable, will retry: %s", worker.backend, exc)
            for fqdn, _, _ in batch:
                worker.dirty.add(fqdn)
                self._problem(worker.backend, fqdn, str(exc), permanent=False)
                self._settle(fqdn, _unavailable(str(exc)))
            self._backoff(worker, at_least=exc.retry_after or 0.0)
            return False
        except PermanentBackendError as exc:
            if exc.every_name:  # not about these names: all of them are refused, say it once
                log.error("%s: DNS refused %d name(s): %s", worker.backend, len(batch), exc)
                for fqdn, _, _ in batch:
                    self._problem(worker.backend, fqdn, str(exc), permanent=True)
                    self._settle(fqdn, Outcome(Code.DNSERR, str(exc)))
                return True
            if len(batch) > 1:  # find the names that cause it; the others go through
                half = len(batch) // 2
                first = await self._apply_batch(worker, backend, batch[:half])
                return await self._apply_batch(worker, backend, batch[half:]) and first
            fqdn = batch[0][0]
            log.error("%s: DNS refused %s: %s", worker.backend, fqdn, exc)
            self._problem(worker.backend, fqdn, str(exc), permanent=True)
            self._settle(fqdn, Outcome(Code.DNSERR, str(exc)))
            return True
        worker.failures, worker.retry_at = 0, 0.0
        keep = keeps_applied(backend)
        now = time.monotonic()
        for fqdn, generation, wanted in batch:
            if keep:
                for (owner, rtype), addresses in wanted.items():
                    self.applied[worker.backend][(owner, rtype)] = addresses
                    self._unsaved_applied[(worker.backend, owner, rtype)] = addresses
            self.confirmed[(worker.backend, fqdn)] = generation
            stored_at = self._stored_at.get(fqdn)
            if stored_at is not None and generation == self.generation.get(fqdn):
                self.on_applied(worker.backend, now - stored_at)
            if self.problems.pop((worker.backend, fqdn), None) is not None:
                self._unsaved_problems[(worker.backend, fqdn)] = None
            self._settle(fqdn)
        if keep:
            self.on_unsaved()
        return True

    def _postpone(self, worker: _Worker, names: list[str]) -> None:
        """Names not tried because the backend is unavailable: keep them, answer 911 now."""
        worker.dirty.update(names)
        for fqdn in names:
            self._settle(fqdn, _unavailable("DNS is unavailable; retrying"))

    def _backoff(self, worker: _Worker, at_least: float = 0.0) -> None:
        """Wait before the next attempt: doubling from retry_initial, jittered, capped at
        retry_max; and never sooner than the backend asked (Retry-After)."""
        server = self.config.server
        worker.failures += 1
        step = min(server.retry_max, server.retry_initial * 2.0 ** (worker.failures - 1))
        delay = max(step * (0.5 + 0.5 * self._random.random()), min(at_least, RETRY_AFTER_CAP))
        worker.retry_at = time.monotonic() + delay
        worker.wake.set()

    def _problem(self, backend: str, fqdn: str, message: str, *, permanent: bool) -> None:
        self.failures[(backend, permanent)] += 1
        old = self.problems.get((backend, fqdn))
        attempts = (old.attempts if old else 0) + 1
        problem = Problem(message, permanent, attempts, time.time())
        self.problems[(backend, fqdn)] = problem
        self._unsaved_problems[(backend, fqdn)] = problem
        if old is None or (old.message, old.permanent) != (message, permanent):
            self._unsaved_events[(backend, fqdn)] = problem  # news for other processes
            self.on_unsaved()

    # --- drift repair -----------------------------------------------------------------------

    async def check_drift(self, name: str) -> DriftReport:
        """Read ``name``'s records back; where DNS differs from what it confirmed, re-apply."""
        report = DriftReport(name)
        backend = self.backends[name]
        if not hasattr(backend, "read"):
            report.error = "this backend cannot be read back"
            return report
        reader = cast(Readable, backend)
        for zone in self._zones_of(name):
            names = {f for f in self.state.hosts if self._zone(f) is zone}
            names |= {host_of(o) for o, _ in self.applied[name] if self._zone(o) is zone}
            read = [owner for fqdn in sorted(names) for owner, _ in owners(fqdn)]
            try:
                have = await reader.read(zone, read)
            except (TransientBackendError, PermanentBackendError) as exc:
                report.error = str(exc)
                return report
            report.checked += len(names)
            applied = self.applied[name]
            for fqdn in sorted(names):
                for key, wanted in _desired(fqdn, self.state.hosts.get(fqdn)).items():
                    actual = tuple(sorted(have.get(key, ())))
                    believed = applied.get(key, ())
                    if actual == believed:
                        continue
                    applied[key] = actual
                    self._unsaved_applied[(name, *key)] = actual
                    report.repaired.append(
                        f"{key[0]} {key[1]}: DNS had {','.join(actual) or 'nothing'}, "
                        f"should have {','.join(wanted) or 'nothing'}"
                    )
                    self._mark(fqdn, bump=True)
        for line in report.repaired:
            log.warning("%s: drift: %s; re-applying", name, line)
        return report

    async def _drift_loop(self, name: str, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            if not any(w.active for w in self._workers.values() if w.backend == name):
                continue  # another process reconciles it, and checks it
            try:
                report = await self.check_drift(name)
            except Exception:
                log.exception("%s: drift check failed", name)
                continue
            if report.error:
                log.warning("%s: drift check could not read DNS: %s", name, report.error)

    async def settle(self, timeout: float) -> bool:
        """Wait until nothing is pending that can be applied now; False on timeout."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            idle = all(
                not w.busy and not w.dirty and not w.wake.is_set() for w in self._workers.values()
            )
            if idle:
                return True
            await asyncio.sleep(0.02)
        return False

    # --- persistence ------------------------------------------------------------------------

    @property
    def unsaved(self) -> bool:
        return bool(self._unsaved_applied or self._unsaved_problems or self._unsaved_events)

    async def persist(self, conn: AsyncConnection) -> None:
        """Write the confirmations and errors gathered since the last call."""
        applied, self._unsaved_applied = self._unsaved_applied, {}
        problems, self._unsaved_problems = self._unsaved_problems, {}
        events, self._unsaved_events = self._unsaved_events, {}
        if applied:
            keys = [{"b": b, "f": f, "r": r} for b, f, r in applied]
            await _delete_keys(conn, _applied, keys, with_rtype=True)
            applied_rows = [
                {"backend": b, "fqdn": f, "rtype": r, "addresses": ",".join(a)}
                for (b, f, r), a in applied.items()
                if a
            ]
            if applied_rows:
                await conn.execute(insert(_applied), applied_rows)
        if problems:
            keys = [{"b": b, "f": f, "r": ""} for b, f in problems]
            await _delete_keys(conn, _errors, keys, with_rtype=False)
            rows: list[dict[str, Any]] = [
                {
                    "backend": b,
                    "fqdn": f,
                    "at": datetime.fromtimestamp(p.at, UTC),
                    "attempts": p.attempts,
                    "permanent": p.permanent,
                    "message": p.message,
                }
                for (b, f), p in problems.items()
                if p is not None
            ]
            if rows:
                await conn.execute(insert(_errors), rows)
        changes = [
            Change(Kind.APPLIED, fqdn, self._has(backend, fqdn))
            for backend, fqdn in dict.fromkeys((b, host_of(o)) for b, o, _ in applied)
        ]
        changes += [
            Change(
                Kind.BACKEND_ERROR,
                fqdn,
                {"backend": backend, "message": p.message, "permanent": p.permanent},
            )
            for (backend, fqdn), p in events.items()
        ]
        await append(conn, changes, self.origin)

    def _has(self, backend: str, fqdn: str) -> dict[str, Any]:
        """The value of an ``applied`` row: what ``backend`` has for the host ``fqdn``
        (``records``) and for its wildcard (``wildcard_records``, when it has any)."""
        applied = self.applied[backend]
        records, star = unkeyed(fqdn, {key: applied.get(key, ()) for key in keyed(fqdn, {}, {})})
        value: dict[str, Any] = {"backend": backend, "records": records_value(records)}
        if any(star.values()):
            value["wildcard_records"] = records_value(star)
        return value

    # --- several processes ------------------------------------------------------------------

    def remote_applied(
        self,
        backend: str,
        fqdn: str,
        records: Mapping[str, tuple[str, ...]],
        star: Mapping[str, tuple[str, ...]] | None = None,
    ) -> None:
        """Another process's worker confirmed ``records`` for the host ``fqdn`` in
        ``backend`` (and ``star`` for its wildcard)."""
        instance = self.backends.get(backend)
        if instance is None or not keeps_applied(instance):
            return
        self.applied[backend].update(keyed(fqdn, records, star or {}))
        self.problems.pop((backend, fqdn), None)
        if fqdn in self.behind and not self.pending(backend, fqdn):
            self.confirmed[(backend, fqdn)] = self.generation.get(fqdn, 0)
        self._settle(fqdn)

    def remote_problem(self, backend: str, fqdn: str, message: str, *, permanent: bool) -> None:
        """Another process's worker got an error for ``fqdn`` from ``backend``."""
        old = self.problems.get((backend, fqdn))
        self.problems[(backend, fqdn)] = Problem(
            message, permanent, (old.attempts if old else 0) + 1, time.time()
        )
        failure = Outcome(Code.DNSERR, message) if permanent else _unavailable(message)
        self._settle(fqdn, failure)

    def idle(self, backend: str) -> bool:
        """Whether nothing marked for ``backend`` waits to be applied (or is applying)."""
        return all(
            not w.busy and not w.dirty for w in self._workers.values() if w.backend == backend
        )

    async def claim_before_start(self) -> None:
        """Take the leases of every (backend, zone) no other process holds (then
        :meth:`start` compares their names with the rest)."""
        if self.leases is None:
            return
        for zone in self.config.zones:
            for backend in self._backends_of(zone):
                instance = self.backends.get(backend)
                if instance is not None and keeps_applied(instance):
                    await self.leases.acquire(lease_name(backend, zone.name))

    async def claim(self) -> None:
        """Try the leases of the workers this process does not hold, and check those
        it holds; a worker whose lease it gets compares its whole zone (takeover)."""
        if self.leases is None:
            return
        for lost in await self.leases.check():
            for worker in self._workers.values():
                if worker.lease == lost:
                    worker.active = False
        for worker in list(self._workers.values()):
            if worker.lease is None or worker.active:
                continue
            if await self.leases.acquire(worker.lease):
                worker.active = True
                await self._take_over(worker)

    async def _take_over(self, worker: _Worker) -> None:
        """Compare every name of the worker's zone, a slice at a time (the event loop
        stays free for requests)."""
        names = [*self.state.hosts, *(host_of(o) for o, _ in self.applied[worker.backend])]
        for start in range(0, len(names), TAKEOVER_SLICE):
            for fqdn in names[start : start + TAKEOVER_SLICE]:
                if self._zone(fqdn) is worker.zone and self.pending(worker.backend, fqdn):
                    self.behind.add(fqdn)
                    worker.dirty.add(fqdn)
            await asyncio.sleep(0)
        worker.wake.set()

    # --- routing ----------------------------------------------------------------------------

    def _zone(self, fqdn: str) -> ZoneSettings | None:
        return self.config.zone_for(fqdn)

    def _backends_of(self, zone: ZoneSettings) -> list[str]:
        return list(zone.backends)

    def _zone_routes(self, zone: ZoneSettings) -> list[Route]:
        """The routes of a zone's names: one list, which every name of it shares."""
        routes = self._routes_by_zone.get(zone.name)
        if routes is None:
            backends = self._backends_of(zone)
            routes = self._routes_by_zone[zone.name] = [
                (b, zone) for b in backends if b in self.backends
            ]
        return routes

    def _find_routes(self, fqdn: str) -> list[Route]:
        # A zone apex or nameserver that an older version let be a host: its NS and
        # glue records are the zone's, never the host's.
        zone = self._zone(fqdn) if fqdn not in self.config.reserved else None
        return self._zone_routes(zone) if zone is not None else []

    def _routes(self, fqdn: str) -> list[Route]:
        routes = self._route_cache.get(fqdn)
        if routes is None:
            routes = self._find_routes(fqdn)
            if len(self._route_cache) >= ROUTE_CACHE_SIZE:
                self._route_cache.clear()
            self._route_cache[fqdn] = routes
        return routes

    def stuck(self) -> dict[str, list[str]]:
        """Per backend, the names it has not confirmed, with the reason when one is known."""
        out: dict[str, list[str]] = defaultdict(list)
        for fqdn in sorted(self.behind):
            for backend, _ in self._routes(fqdn):
                waiting = self.pending(backend, fqdn)
                if waiting:
                    problem = self.problems.get((backend, fqdn))
                    reason = f": {problem.message}" if problem else ""
                    types = "+".join(describe_key(fqdn, *key) for key in waiting)
                    out[backend].append(f"{fqdn} {types}{reason}")
        return dict(out)

    def pending_counts(self) -> dict[str, int]:
        """Per backend, how many names it has not confirmed yet (0 for every backend)."""
        counts = dict.fromkeys(self.backends, 0)
        for fqdn in self.behind:
            for backend, _ in self._routes(fqdn):
                if self.pending(backend, fqdn):
                    counts[backend] = counts.get(backend, 0) + 1
        return counts

    def _zones_of(self, backend: str) -> list[ZoneSettings]:
        return [z for z in self.config.zones if backend in self._backends_of(z)]


def _desired(fqdn: str, host: HostEntry | None) -> dict[Key, tuple[str, ...]]:
    if host is None:
        return expand(fqdn, {}, False)
    return expand(fqdn, host.records(), host.wildcard)


def lease_name(backend: str, zone: str) -> str:
    return f"reconcile:{backend}:{zone}"


def _nothing(fqdn: str) -> None:
    pass


def _nothing_unsaved() -> None:
    pass


def _nothing_applied(backend: str, seconds: float) -> None:
    pass


def _expire(future: asyncio.Future[Outcome], reason: str) -> None:
    if not future.done():
        future.set_result(_unavailable(reason))


def _unavailable(reason: str) -> Outcome:
    return Outcome(Code.SERVER_ERROR, f"stored; DNS will get it when it can ({reason})")


async def _delete_keys(
    conn: AsyncConnection, table: Table, keys: list[dict[str, Any]], *, with_rtype: bool
) -> None:
    from sqlalchemy import and_, bindparam

    condition = and_(table.c.backend == bindparam("b"), table.c.fqdn == bindparam("f"))
    if with_rtype:
        condition = and_(condition, table.c.rtype == bindparam("r"))
    await conn.execute(delete(table).where(condition), keys)
