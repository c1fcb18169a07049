"""The routes under ``/acme-dns``: ``POST /update``, ``GET /health``, ``POST /register``.

``/update`` answers as acme-dns does (:mod:`.protocol` has the order of its checks):
200 ``{"txt": "..."}`` once DNS serves the value, 401 ``forbidden``, 400
``malformed_json_payload`` or ``bad_txt``, and 500 ``db_error`` when the update did not
reach DNS in time (it is stored and applied later) or the accounts cannot be read. Ours
besides: 413 for a body over :data:`~.protocol.MAX_BODY` bytes, and 429 with
``Retry-After`` for a source locked out for guessing.

Failed logins count towards the same lock-outs as ``/nic/update``'s (the
:class:`~..auth.Authenticator`'s :class:`~..throttle.GuessLimiter`) and are logged in
the same summarised lines; a source locked out gets 429 before its key is looked at,
so that guessing gains nothing there. The key is never logged.

``/health`` answers as acme-dns's: 200 ``{"status": "ok", "database": "ok"}``, or 503
``"degraded"`` with what is wrong (the server's own health, as ``/healthz``).
``/register`` is closed: 404 (as acme-dns with ``disable_registration``), and the
message names the command that makes an account.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..addresses import IPAddress
from ..app import client_address
from ..auth import Authenticator
from ..config import IPNetwork
from ..connections import CONNECTION
from ..dyndns import SUCCESS_CODES, Code
from ..logformat import begin_request
from ..logsummary import LogSummary
from ..state import State
from ..store import describe_failure
from ..throttle import retry_after_header, source_of
from ..updates import UpdateService
from . import accounts
from .protocol import (
    BAD_TXT,
    DB_ERROR,
    FORBIDDEN,
    MALFORMED,
    MAX_BODY,
    REGISTRATION_DISABLED,
    TOO_LARGE,
    TOO_MANY,
    TXT_RULE,
    Malformed,
    answer,
    canonical_username,
    parse_update,
    valid_key,
    valid_txt,
)

log = logging.getLogger("nicupdate.acmedns")

BASE = "/acme-dns"
JSON = "application/json"
MAX_SHOWN = 64  # characters of a refused user name in the log
FORBIDDEN_MESSAGE = "wrong X-Api-User or X-Api-Key (the username and password of acme add)"
REGISTER_HINT = (
    "accounts are made by the server's operator: `nicupdate-server acme add FQDN` "
    "prints what /register would (see docs/acme.md)"
)


def _json(
    data: Mapping[str, object], status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    return Response(json.dumps(data).encode(), status, headers, JSON)


def _error(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> Response:
    return _json({"error": code, "message": message}, status, headers)


async def _sleep(seconds: float) -> None:
    await asyncio.sleep(seconds)


async def _read_body(request: Request) -> bytes | None:
    """The body, or None when it is longer than :data:`MAX_BODY` (not read further)."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_BODY:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


class AcmeDns:
    """The three routes' handlers (:func:`routes` mounts them)."""

    def __init__(
        self,
        service: UpdateService,
        engine: AsyncEngine,
        state: State,
        authenticator: Authenticator,
        summary: LogSummary,
        *,
        trusted_proxies: Sequence[IPNetwork],
        health: Callable[[], Awaitable[list[str]]],
        throttle_delay: float = 0.0,
    ) -> None:
        self._service = service
        self._engine = engine
        self._state = state
        self._authenticator = authenticator
        self._summary = summary
        self._trusted = tuple(trusted_proxies)
        self._health = health
        self._throttle_delay = throttle_delay

    async def update(self, request: Request) -> Response:
        begin_request(request.scope, self._trusted)  # the request id of its log lines
        try:
            return await self._update(request)
        except Exception:
            log.exception("acme-dns update failed; answered 500")
            return _error(500, DB_ERROR, "the server failed to store the value; try again")

    async def _update(self, request: Request) -> Response:
        body = await _read_body(request)
        if body is None:
            return _error(413, TOO_LARGE, f"the body is longer than {MAX_BODY} bytes")
        address = self._address(request)
        checked = await self._account(request, address)
        if isinstance(checked, Response):
            return checked
        account = checked
        try:
            update = parse_update(body)
        except Malformed as exc:
            return _error(400, MALFORMED, str(exc))
        if update.subdomain != account.subdomain:
            source = source_of(address)
            self._summary.note("acme-dns update refused (another subdomain)", source, account.fqdn)
            return _error(
                401, FORBIDDEN, "subdomain is not this account's (see the JSON of acme add)"
            )
        if update.txt is None or not valid_txt(update.txt):
            return _error(400, BAD_TXT, TXT_RULE)
        host = self._state.hosts.get(account.fqdn)
        if host is None or host.id != account.host_id:  # made a moment ago, elsewhere
            return _error(500, DB_ERROR, f"host {account.fqdn} is not loaded yet; try again")
        outcome = await self._service.set_txt(
            host,
            update.txt,
            caller=str(address or ""),
            user_agent=request.headers.get("user-agent", ""),
        )
        if outcome.code in SUCCESS_CODES:
            return Response(answer(txt=update.txt), 200, media_type=JSON)
        if outcome.code is Code.SERVER_ERROR:
            message = (
                "DNS does not have the value yet; the server applies it later without "
                "you doing anything: try again in a while"
            )
        elif outcome.code is Code.DNSERR:
            message = "a DNS backend refused the record: the operator sees why in `host list`"
        else:
            message = f"refused: {outcome.code.value}"
        return _error(500, DB_ERROR, message)

    def _address(self, request: Request) -> IPAddress | None:
        peer = request.client.host if request.client else None
        forwarded = request.headers.getlist("x-forwarded-for") if self._trusted else []
        return client_address(peer, forwarded, self._trusted)

    async def _account(
        self, request: Request, address: IPAddress | None
    ) -> accounts.Account | Response:
        """The account whose credentials the request carries, or the answer (401, 429,
        or 500 when the accounts cannot be read)."""
        user = request.headers.get("x-api-user", "")
        key = request.headers.get("x-api-key", "")
        forbidden = _error(401, FORBIDDEN, FORBIDDEN_MESSAGE)
        if not user or not key:
            return forbidden  # no credentials: no guess either
        username = canonical_username(user)
        source = source_of(address)
        name = username or user[:MAX_SHOWN]
        wait = self._authenticator.limiter.locked(source, name)
        if wait > 0:
            self._summary.note("login refused (locked out, 429)", source, repr(name))
            return await self._throttled(request, wait, "too many failed logins from here")
        account = None
        if username is not None and valid_key(key):
            try:
                account = await accounts.find(self._engine, username)
            except (SQLAlchemyError, OSError) as exc:
                log.warning("acme-dns: cannot read the accounts (%s)", describe_failure(exc))
                return _error(500, DB_ERROR, "the accounts cannot be read now; try again")
        if account is None or not account.accepts(key):
            self._authenticator.failed(source, name)
            return forbidden
        self._authenticator.limiter.succeeded(source, name)
        return account

    async def _throttled(self, request: Request, retry_after: float, reason: str) -> Response:
        """429: as ``/nic/update``'s, held back up to ``limits.throttle_delay``."""
        delay = min(self._throttle_delay, retry_after)
        if delay > 0:  # the flood waits, not the server; its connection may be closed
            connection = request.scope.get("extensions", {}).get(CONNECTION, {})
            await connection.get("hold", _sleep)(delay)
        wait = retry_after_header(retry_after)
        message = f"{reason}: try again in {wait} s"
        return _error(429, TOO_MANY, message, {"Retry-After": wait})

    async def health(self, request: Request) -> Response:
        problems = await self._health()
        if not problems:
            return _json({"status": "ok", "database": "ok"})
        database = "error" if any(p.startswith("database") for p in problems) else "ok"
        message = "; ".join(problems)
        return _json({"status": "degraded", "database": database, "message": message}, 503)

    async def register(self, request: Request) -> Response:
        return _error(404, REGISTRATION_DISABLED, REGISTER_HINT)


def routes(acme: AcmeDns, base: str = BASE) -> list[BaseRoute]:
    """The routes under ``base``, and under ``base/`` too: a client given the server as
    ``https://HOST/acme-dns/`` asks for ``/acme-dns//update`` (acme-dns redirects
    such paths to the clean one)."""
    return [
        route
        for prefix in (base, f"{base}/")
        for route in (
            Route(f"{prefix}/update", acme.update, methods=["POST"]),
            Route(f"{prefix}/health", acme.health, methods=["GET"]),
            Route(f"{prefix}/register", acme.register, methods=["POST"]),
        )
    ]
