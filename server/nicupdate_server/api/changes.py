"""``GET /api/v1/changes``: the webhooks' events, for callers who ask for them.

Credentials as for ``/nic/update`` (HTTP Basic: an account, or a host name and its
token), checked by the same :class:`~..auth.Authenticator`, so its lock-outs apply. The
caller sees the events of the hosts it may update.

Parameters: ``since`` (a change id; default 0: everything the log keeps), ``limit``
(1-5000, default 500), ``wait`` (0-60 s: long poll while there is nothing to show).
The answer, ``{"changes": [...], "next": N}``: pass ``next`` as ``since`` next time; it
moves past rows the caller may not see, so a page may hold fewer than ``limit`` events
(none, even) while more follow. With ``Accept: text/event-stream`` the answer is a
stream of Server-Sent Events (``id:``, ``event:``, ``data:`` per event; a comment every
15 s), resumed from ``Last-Event-ID``; it ends when the client goes, the server stops,
or the caller's account (or host, for a host token) is removed.

Errors are JSON: 400 (a parameter, named), 401 (``WWW-Authenticate: Basic``), 410 when
``since`` lies before the oldest change kept (``{"error": "gone", "oldest": N}``), 429
with ``Retry-After`` (locked out), 503 (the database cannot be read now).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from .. import changelog
from ..app import client_address
from ..auth import Authenticator, LoginThrottled, Principal
from ..config import IPNetwork
from ..connections import CONNECTION
from ..dyndns import parse_basic_auth
from ..events import Event, Events
from ..feed import Feed
from ..state import State
from ..store import describe_failure
from ..throttle import retry_after_header, source_of

log = logging.getLogger("nicupdate.api")

DEFAULT_LIMIT = 500
MAX_LIMIT = 5000
MAX_WAIT = 60.0
KEEPALIVE = 15.0  # seconds between comment lines of an idle event stream
SCAN_MAX = 20_000  # rows of the log read for one answer, at most
STREAM_PAGE = 500
JSON = "application/json"
PARAMETERS = frozenset({"since", "limit", "wait"})

Hold = Callable[[float], Awaitable[None]]


class BadParameter(Exception):
    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(f"{parameter}: {message}")
        self.parameter = parameter


class Gone(Exception):
    """The rows after ``since`` were pruned: the oldest kept is ``oldest``."""

    def __init__(self, oldest: int) -> None:
        super().__init__(oldest)
        self.oldest = oldest


@dataclass(frozen=True, slots=True)
class Query:
    since: int = 0
    limit: int = DEFAULT_LIMIT
    wait: float = 0.0
    stream: bool = False


def _whole(parameter: str, text: str, low: int, high: int) -> int:
    if not text.isascii() or not text.isdigit() or len(text) > 18 or not low <= int(text) <= high:
        shown = text if len(text) <= 40 else text[:40] + "..."
        raise BadParameter(
            parameter, f"must be a whole number from {low} to {high} (got {shown!r})"
        )
    return int(text)


def parse_query(params: Sequence[tuple[str, str]], headers: Mapping[str, str]) -> Query:
    """The request's parameters (raises :class:`BadParameter` naming the first wrong one)."""
    values: dict[str, str] = {}
    for name, value in params:
        if name not in PARAMETERS:
            raise BadParameter(name, "unknown parameter (use since, limit, wait)")
        values[name] = value
    since = _whole("since", values["since"], 0, 2**62) if "since" in values else 0
    limit = _whole("limit", values["limit"], 1, MAX_LIMIT) if "limit" in values else DEFAULT_LIMIT
    wait = 0.0
    if "wait" in values:
        try:
            wait = float(values["wait"])
        except ValueError:
            wait = math.nan
        if not 0 <= wait <= MAX_WAIT:
            raise BadParameter("wait", f"must be seconds from 0 to {MAX_WAIT:g}")
    stream = "text/event-stream" in headers.get("accept", "")
    resume = headers.get("last-event-id")
    if stream and resume:
        since = _whole("Last-Event-ID", resume.strip(), 0, 2**62)
    return Query(since, limit, wait, stream)


def _json(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    body = json.dumps(data, separators=(",", ":")).encode()
    return Response(body, status, {"Cache-Control": "no-store", **(headers or {})}, JSON)


def _page_body(events: list[Event], after: int) -> bytes:
    """``{"changes": [...], "next": N}``, each event's bytes as the webhooks send them."""
    return b'{"changes":[' + b",".join(e.body for e in events) + b'],"next":%d}' % after


def _sse(event: Event) -> bytes:
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (event.id, event.kind.encode(), event.body)


async def _pause(arrived: asyncio.Event, seconds: float, hold: Hold) -> str:
    """Wait for new rows (``"arrived"``), ``seconds`` (``"timeout"``), or until the
    server stops or the client goes (``"stop"``)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    waits = [asyncio.ensure_future(arrived.wait()), asyncio.ensure_future(hold(seconds))]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in waits:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    if arrived.is_set():
        return "arrived"
    return "timeout" if loop.time() >= end - 0.005 else "stop"


async def _sleep(seconds: float) -> None:
    await asyncio.sleep(seconds)


def _never() -> bool:
    return False


class ChangesEndpoint:
    def __init__(
        self,
        authenticator: Authenticator,
        engine: AsyncEngine,
        feed: Feed,
        events: Events,
        state: State,
        trusted_proxies: Sequence[IPNetwork],
        realm: str,
    ) -> None:
        self._authenticator = authenticator
        self._state = state
        self._engine = engine
        self._feed = feed
        self._events = events
        self._trusted = tuple(trusted_proxies)
        self._challenge = f'Basic realm="{realm}", charset="UTF-8"'

    async def handle(self, request: Request) -> Response:
        connection = request.scope.get("extensions", {}).get(CONNECTION, {})
        principal = await self._principal(request, connection.get("gone", _never))
        if isinstance(principal, Response):
            return principal
        try:
            query = parse_query(request.query_params.multi_items(), request.headers)
        except BadParameter as exc:
            return _json(
                {"error": "bad parameter", "parameter": exc.parameter, "message": str(exc)}, 400
            )
        hold: Hold = connection.get("hold", _sleep)
        arrived = asyncio.Event()
        self._feed.arrivals.append(arrived)  # before the first read: no arrival is missed
        streaming = False
        try:
            events, after = await self._page(principal, query.since, query.limit)
            if query.stream:
                stream = self._stream(principal, events, after, arrived, hold)
                streaming = True  # the stream lets go of `arrived` when it ends
                headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
                return StreamingResponse(stream, headers=headers, media_type="text/event-stream")
            events, after = await self._poll(principal, query, events, after, arrived, hold)
        except Gone as exc:
            return _json({"error": "gone", "oldest": exc.oldest}, 410)
        except (SQLAlchemyError, OSError) as exc:
            return self._unavailable(exc)
        finally:
            if not streaming:
                self._feed.arrivals.remove(arrived)
        return Response(_page_body(events, after), 200, {"Cache-Control": "no-store"}, JSON)

    async def _principal(self, request: Request, gone: Callable[[], bool]) -> Principal | Response:
        """Who asks, or the 401/429 answer."""
        header = request.headers.get("authorization", "")
        credentials = parse_basic_auth(header) if header else None
        unauthorized = _json(
            {
                "error": "unauthorized",
                "message": "HTTP Basic credentials: an account, or a host name and its token",
            },
            401,
            {"WWW-Authenticate": self._challenge},
        )
        if credentials is None:
            return unauthorized

        def where() -> str:
            peer = request.client.host if request.client else None
            forwarded = request.headers.getlist("x-forwarded-for") if self._trusted else []
            return source_of(client_address(peer, forwarded, self._trusted))

        try:
            principal = await self._authenticator.authenticate(credentials, where, gone)
        except LoginThrottled as exc:
            wait = retry_after_header(exc.retry_after)
            return _json(
                {
                    "error": "too many requests",
                    "message": "try again later",
                    "retry_after": int(wait),
                },
                429,
                {"Retry-After": wait},
            )
        return principal if principal is not None else unauthorized

    def _still_valid(self, principal: Principal) -> bool:
        if principal.host_id is not None:
            host = self._state.hosts.get(principal.name)
            return host is not None and host.id == principal.host_id
        user = self._state.users.get(principal.name)
        return user is not None and user.id == principal.user_id

    def _unavailable(self, exc: BaseException) -> Response:
        log.warning("GET /api/v1/changes: cannot read the change log (%s)", describe_failure(exc))
        message = "the change log cannot be read now; try again"
        return _json({"error": "unavailable", "message": message}, 503, {"Retry-After": "1"})

    async def _page(self, principal: Principal, since: int, limit: int) -> tuple[list[Event], int]:
        """Up to ``limit`` events after ``since`` that ``principal`` may see, among the
        rows this process has applied; and the id to go on from."""
        ceiling = self._feed.position
        found: list[Event] = []
        after = since
        if after >= ceiling:
            return found, after
        scanned = 0
        async with self._engine.connect() as conn:
            while after < ceiling and len(found) < limit and scanned < SCAN_MAX:
                entries = [e for e in await changelog.read(conn, after) if e.id <= ceiling]
                if not entries:
                    return found, ceiling
                if after > 0 and entries[0].id != after + 1:
                    oldest = await changelog.oldest(conn)
                    if oldest > after + 1:
                        raise Gone(oldest)
                scanned += len(entries)
                for event in await self._events.describe(conn, entries):
                    if event.visible_to(principal):
                        found.append(event)
                        if len(found) == limit:
                            return found, event.id
                after = entries[-1].id
        return found, after

    async def _poll(
        self,
        principal: Principal,
        query: Query,
        events: list[Event],
        after: int,
        arrived: asyncio.Event,
        hold: Hold,
    ) -> tuple[list[Event], int]:
        """Long poll: while there is nothing to show, wait for new rows, up to ``wait``."""
        loop = asyncio.get_running_loop()
        end = loop.time() + query.wait
        while not events and after >= self._feed.position:
            left = end - loop.time()
            if left <= 0 or await _pause(arrived, left, hold) != "arrived":
                break
            arrived.clear()
            events, after = await self._page(principal, after, query.limit)
        return events, after

    async def _stream(
        self,
        principal: Principal,
        events: list[Event],
        after: int,
        arrived: asyncio.Event,
        hold: Hold,
    ) -> AsyncIterator[bytes]:
        try:
            yield b"retry: 2000\n\n"
            while True:
                for event in events:
                    yield _sse(event)
                if not self._still_valid(principal):  # its account or host was removed
                    return
                if after >= self._feed.position:  # caught up: wait for more
                    woke = await _pause(arrived, KEEPALIVE, hold)
                    if woke == "stop":
                        return
                    if woke == "timeout":
                        yield b": keep-alive\n\n"
                arrived.clear()
                try:
                    events, after = await self._page(principal, after, STREAM_PAGE)
                except Gone as exc:
                    data = json.dumps({"error": "gone", "oldest": exc.oldest}).encode()
                    yield b"event: error\ndata: %s\n\n" % data
                    return
                except (SQLAlchemyError, OSError) as exc:
                    log.warning(
                        "GET /api/v1/changes: an event stream ended: cannot read the change "
                        "log (%s)",
                        describe_failure(exc),
                    )
                    return
        finally:
            with contextlib.suppress(ValueError):
                self._feed.arrivals.remove(arrived)
