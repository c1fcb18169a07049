"""One webhook's delivery (httpx), in the process that holds its lease: see
:mod:`.webhooks` for what is sent and when. Imported only when a webhook is configured
(httpx costs the server memory it need not carry otherwise)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import random
import time
from collections.abc import Generator
from datetime import UTC, datetime

import httpx
from sqlalchemy import insert, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from . import __version__, changelog
from .backends.relay import retry_after
from .config import WebhookSettings
from .events import Event, Events
from .feed import Feed
from .leases import Leases
from .store import describe_failure
from .tables import feed_positions as _positions
from .tasks import cancel
from .webhooks import Counts, consumer

log = logging.getLogger("nicupdate.webhooks")

USER_AGENT = f"nicupdate/{__version__}"
SIGNATURE_HEADER = "X-Nicupdate-Signature-256"
LEASE_RETRY = 1.0  # seconds between tries to take a webhook another process delivers
STORE_INTERVAL = 1.0  # the position is stored at most this often while delivering
IDLE_CHECK = 1.0  # while caught up: how often the lease is looked at
BACKOFF_INITIAL = 1.0
BACKOFF_MAX = 300.0
RETRY_AFTER_MAX = 3600.0
CLOSE_TIMEOUT = 2.0  # storing the position when the server stops


def signature(secret: bytes, body: bytes) -> str:
    """The value of ``X-Nicupdate-Signature-256``: ``sha256=<hex>``."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


class Signature(httpx.Auth):
    """Signs each request's body with the webhook's secret."""

    requires_request_body = True

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def __repr__(self) -> str:
        return "Signature(secret=***)"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers[SIGNATURE_HEADER] = signature(self._secret, request.content)
        yield request


class _LeaseLost(Exception):
    pass


class _Quiet(logging.Filter):
    """httpx logs every request with its URL: not the webhooks' (one line per event,
    and a URL may hold a secret)."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        return not (isinstance(args, tuple) and len(args) > 1 and str(args[1]) in self.urls)


async def load_position(conn: AsyncConnection, name: str) -> int | None:
    """The stored position of webhook ``name`` (None: it has none yet)."""
    result = await conn.execute(
        select(_positions.c.position).where(_positions.c.consumer == consumer(name))
    )
    value = result.scalar()
    return None if value is None else int(value)


async def store_position(conn: AsyncConnection, name: str, position: int) -> None:
    now = datetime.now(UTC)
    key = consumer(name)
    result = await conn.execute(
        update(_positions)
        .where(_positions.c.consumer == key)
        .values(position=position, updated_at=now)
    )
    if not result.rowcount:
        await conn.execute(
            insert(_positions).values(consumer=key, position=position, updated_at=now)
        )


class Webhook:
    """One webhook's delivery, in the process that holds its lease."""

    def __init__(
        self,
        settings: WebhookSettings,
        secret: bytes,
        *,
        engine: AsyncEngine,
        leases: Leases,
        feed: Feed,
        events: Events,
        client: httpx.AsyncClient,
        counts: Counts,
    ) -> None:
        self.settings = settings
        self.name = settings.name
        self._signature = Signature(secret)
        self._engine = engine
        self._leases = leases
        self._feed = feed
        self._events = events
        self._client = client
        self._kinds = frozenset(settings.events)
        self.counts = counts
        self._job = consumer(settings.name)
        self.position: int | None = None  # None: not delivering (no lease, or not loaded)
        self._stored = 0
        self._stored_at = 0.0
        self._failing = False  # the receiver does not take events (logged once)
        self._attempts = 0
        self._database: str | None = None  # why the database cannot be used (logged once)
        self._arrived = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._random = random.Random()

    def __repr__(self) -> str:
        return f"Webhook(name={self.name!r}, position={self.position!r})"

    async def start(self) -> None:
        """Take the webhook if no other process delivers it (at once, so that a new one
        starts from the changes made after the server started), then deliver."""
        self._feed.arrivals.append(self._arrived)
        with contextlib.suppress(SQLAlchemyError, OSError):
            await self._take()
        self._task = asyncio.create_task(self._run(), name=f"nicupdate-{self._job}")

    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def close(self) -> None:
        await cancel(self._task)
        self._task = None
        with contextlib.suppress(ValueError):
            self._feed.arrivals.remove(self._arrived)
        if self.position is not None and self.position != self._stored:
            try:
                async with asyncio.timeout(CLOSE_TIMEOUT), self._engine.begin() as conn:
                    await store_position(conn, self.name, self.position)
            except (TimeoutError, SQLAlchemyError, OSError) as exc:
                log.warning(
                    "webhook %s: its position (change %d) was not stored (%s): the changes "
                    "since change %d will be sent again",
                    self.name,
                    self.position,
                    describe_failure(exc),
                    self._stored,
                )
        self.position = None
        await self._leases.release(self._job)

    # --- the loop ---------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            try:
                if self.position is None and not await self._take():
                    await asyncio.sleep(LEASE_RETRY)
                    continue
                await self._follow()
            except _LeaseLost:
                log.warning("webhook %s: this process no longer delivers it", self.name)
                self.position = None
            except (SQLAlchemyError, OSError) as exc:
                reason = describe_failure(exc)
                if self._database is None:
                    log.error(
                        "webhook %s: cannot use the database (%s); will try again",
                        self.name,
                        reason,
                    )
                self._database = reason
                await asyncio.sleep(LEASE_RETRY)
            except Exception:
                log.exception("webhook %s: delivery failed; will try again", self.name)
                await asyncio.sleep(LEASE_RETRY)

    async def _take(self) -> bool:
        """Hold the lease and know the position; whether this process delivers now."""
        if not await self._leases.acquire(self._job):
            return False
        async with self._engine.begin() as conn:
            position = await load_position(conn, self.name)
            if position is None:
                position = await changelog.newest(conn)
                await store_position(conn, self.name, position)
                log.info(
                    "webhook %s: new; it gets the changes after change %d", self.name, position
                )
        self.position = self._stored = position
        self._stored_at = time.monotonic()
        return True

    async def _follow(self) -> None:
        """Deliver while this process holds the lease."""
        while True:
            self._check_lease()
            assert self.position is not None
            self._arrived.clear()
            events, last = await self._read(self.position)
            if self._database is not None:
                log.info("webhook %s: the database answers again", self.name)
                self._database = None
            for event in events:
                await self._deliver(event)
                self.position = event.id
                await self._store(due_only=True)
            if last is not None:
                self.position = max(self.position, last)
                continue
            await self._store(due_only=True)  # caught up: at most a second from now
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(IDLE_CHECK):
                    await self._arrived.wait()

    async def _read(self, position: int) -> tuple[list[Event], int | None]:
        """The wanted events after ``position`` that this process has applied too (their
        owners are known), and the id of the last row read (None: none)."""
        ceiling = self._feed.position
        if ceiling <= position:
            return [], None
        async with self._engine.connect() as conn:
            entries = [e for e in await changelog.read(conn, position) if e.id <= ceiling]
            if not entries:
                return [], None
            if entries[0].id != position + 1:
                oldest = await changelog.oldest(conn)
                if oldest > position + 1:
                    log.warning(
                        "webhook %s: %d changes (%d to %d) were lost: the change log no "
                        "longer has them (it keeps them 7 days at most); going on with "
                        "change %d",
                        self.name,
                        oldest - position - 1,
                        position + 1,
                        oldest - 1,
                        entries[0].id,
                    )
            events = await self._events.describe(conn, entries, self._kinds)
        return events, entries[-1].id

    async def _store(self, *, due_only: bool = False) -> None:
        """Store the position if it moved (``due_only``: and the last store is a
        second old: a busy log costs one write a second, not one per change)."""
        position = self.position
        if position is None or position == self._stored:
            return
        if due_only and time.monotonic() - self._stored_at < STORE_INTERVAL:
            return
        async with self._engine.begin() as conn:
            await store_position(conn, self.name, position)
        self._stored, self._stored_at = position, time.monotonic()

    def _check_lease(self) -> None:
        if not self._leases.holds(self._job):
            raise _LeaseLost

    # --- one event ----------------------------------------------------------------------

    async def _deliver(self, event: Event) -> None:
        """POST ``event`` until the receiver takes it."""
        while True:
            problem, wait = await self._post(event)
            if problem is None:
                self.counts.delivered += 1
                if self._failing:
                    log.info(
                        "webhook %s: the receiver takes events again (change %d, after %d "
                        "failed attempts)",
                        self.name,
                        event.id,
                        self._attempts,
                    )
                self._failing, self._attempts = False, 0
                return
            self.counts.failed += 1
            self._attempts += 1
            if not self._failing:
                log.warning(
                    "webhook %s: change %d not delivered (%s); retrying with back-off until "
                    "the receiver takes it",
                    self.name,
                    event.id,
                    problem,
                )
                self._failing = True
            await asyncio.sleep(self._backoff(wait))
            self._check_lease()

    def _backoff(self, retry_after: float | None) -> float:
        """Doubling from 1 s with jitter up to 5 minutes, or what Retry-After asked."""
        step = min(BACKOFF_MAX, BACKOFF_INITIAL * 2.0 ** min(self._attempts - 1, 30))
        delay = step * (0.5 + 0.5 * self._random.random())
        return max(delay, min(retry_after or 0.0, RETRY_AFTER_MAX))

    async def _post(self, event: Event) -> tuple[str | None, float | None]:
        """POST once: (None, None) when delivered, else what went wrong and the
        Retry-After the receiver sent."""
        headers = {
            "Content-Type": "application/json",
            "X-Nicupdate-Event": event.kind,
            "X-Nicupdate-Delivery": str(event.id),
        }
        try:
            async with self._client.stream(
                "POST",
                self.settings.url,
                content=event.body,
                headers=headers,
                auth=self._signature,
                timeout=self.settings.timeout,
            ) as response:
                status = response.status_code
                if 200 <= status < 300:
                    return None, None
                return f"HTTP {status}", retry_after(response)
        except httpx.TimeoutException:
            return f"no answer within {self.settings.timeout:g} s", None
        except httpx.HTTPError as exc:
            text = (str(exc).splitlines() or [""])[0][:200].replace(self.settings.url, "<url>")
            return f"{type(exc).__name__}: {text}" if text else type(exc).__name__, None


def new_client() -> httpx.AsyncClient:
    """The client every webhook of a process shares (its connection pool)."""
    return httpx.AsyncClient(
        headers={"User-Agent": USER_AGENT},
        trust_env=False,  # no proxy from the environment: the URL says where
        follow_redirects=False,
    )


def url_text(url: str) -> str:
    """A URL as httpx writes it in its log lines."""
    return str(httpx.URL(url))
