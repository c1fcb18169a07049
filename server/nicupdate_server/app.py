"""The HTTP side: routes, the caller's address, and turning outcomes into responses.

``/nic/update``, ``/update`` and ``/v3/update`` share one handler. Every answer is
``text/plain`` with HTTP 200, except ``badauth`` (401 with a Basic challenge) and
"try again later" (429 with ``Retry-After`` and the body ``911``: the source is locked
out for guessing, the password checks are busy, or a host's update rate is used up).

The update paths are the hot path (a router asking every few minutes, thousands of
them): :class:`App` hands them to their handler directly, without Starlette's
middleware and router, which answer every other path. The handler answers every error
itself, so the middleware had nothing to add there.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from .addresses import IPAddress
from .config import IPNetwork
from .connections import CONNECTION
from .dyndns import Code, RequestRejected, answer_body, parse_basic_auth, parse_update
from .logformat import begin_request
from .throttle import retry_after_header
from .updates import Caller, TooManyRequests, Unauthorized, UpdateService

if TYPE_CHECKING:
    from .metrics import Metrics  # imported only when metrics are enabled

log = logging.getLogger(__name__)

UPDATE_PATHS = ("/nic/update", "/update", "/v3/update")
UPDATE_METHODS = frozenset({"GET", "HEAD", "POST"})
TEXT = "text/plain; charset=utf-8"
TEXT_BYTES = TEXT.encode()
# Query parameters whose values are secrets: masked in the access log.
SECRET_PARAMETERS = frozenset(
    {"password", "pass", "passwd", "pwd", "token", "key", "secret", "apikey", "api_key"}
)


def mask_secrets(target: str) -> str:
    """``/nic/update?password=x&hostname=h`` -> ``/nic/update?password=***&hostname=h``."""
    path, sep, query = target.partition("?")
    if not sep:
        return target
    pairs = []
    for pair in query.split("&"):
        name, equals, _ = pair.partition("=")
        if equals and urllib.parse.unquote_plus(name).strip().lower() in SECRET_PARAMETERS:
            pair = f"{name}=***"
        pairs.append(pair)
    return f"{path}?{'&'.join(pairs)}"


class MaskSecrets(logging.Filter):
    """For uvicorn's access log: the request target with secrets masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and len(record.args) >= 3:
            args = list(record.args)
            if isinstance(args[2], str):
                args[2] = mask_secrets(args[2])
                record.args = tuple(args)
        return True


@functools.lru_cache(maxsize=4096)
def _parse_ip(text: str) -> IPAddress | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [v6]:port
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.partition(":")[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def client_address(
    peer: str | None, forwarded_for: Sequence[str], trusted: Sequence[IPNetwork]
) -> IPAddress | None:
    """The caller's address: the TCP peer, or, when the peer is a trusted proxy, the
    first hop of ``X-Forwarded-For`` (read from the right) that is not a trusted proxy."""
    address = _parse_ip(peer) if peer else None
    if address is None or not trusted:
        return address
    hops = [hop for header in forwarded_for for hop in header.split(",")]
    while any(address in network for network in trusted) and hops:
        hop = _parse_ip(hops.pop())
        if hop is None:
            break
        address = hop
    return address


def _never() -> bool:
    return False


async def _sleep(seconds: float) -> None:
    await asyncio.sleep(seconds)


_NONE: dict[str, Any] = {}


@dataclass(frozen=True, slots=True)
class Answer:
    """An update request's answer: ``text/plain`` ``body``, HTTP ``status``, and the
    headers beyond the content's type and length."""

    body: bytes
    status: int = 200
    headers: tuple[tuple[bytes, bytes], ...] = ()


def _answer(
    lines: Sequence[str], status: int = 200, headers: tuple[tuple[bytes, bytes], ...] = ()
) -> Answer:
    return Answer(answer_body(lines).encode(), status, headers)


UpdateHandler = Callable[[Scope], Awaitable[Answer]]
# Metrics: an answer, and the seconds it took.
Observer = Callable[[Answer, float], None]


class App:
    """The ASGI application: requests for ``paths`` go straight to ``update``, all
    others to ``rest``. ``observe`` (metrics) sees every update answer."""

    def __init__(
        self,
        paths: Sequence[str],
        update: UpdateHandler,
        rest: Starlette,
        observe: Observer | None = None,
    ) -> None:
        self._paths = frozenset(paths)
        self._update = update
        self._observe = observe
        self.rest = rest

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self._paths:
            await self.rest(scope, receive, send)
            return
        started = time.perf_counter()
        answer = await self._update(scope)
        if self._observe is not None:
            self._observe(answer, time.perf_counter() - started)
        headers = [
            (b"content-length", str(len(answer.body)).encode()),
            (b"content-type", TEXT_BYTES),
            *answer.headers,
        ]
        await send({"type": "http.response.start", "status": answer.status, "headers": headers})
        await send({"type": "http.response.body", "body": answer.body})


def _request_headers(scope: Scope) -> tuple[str, str, list[str]]:
    """``Authorization``, ``User-Agent`` (the first of each) and every
    ``X-Forwarded-For`` of a request (names are lower case in ASGI)."""
    authorization = user_agent = None
    forwarded: list[str] = []
    for name, value in scope["headers"]:
        if name == b"authorization":
            authorization = authorization or value.decode("latin-1")
        elif name == b"user-agent":
            user_agent = user_agent or value.decode("latin-1")
        elif name == b"x-forwarded-for":
            forwarded.append(value.decode("latin-1"))
    return authorization or "", user_agent or "", forwarded


def create_app(
    service: UpdateService,
    *,
    max_hosts: int,
    trusted_proxies: Sequence[IPNetwork],
    realm: str,
    health: Callable[[], Awaitable[list[str]]],
    throttle_delay: float = 0.0,
    metrics: Metrics | None = None,
    metrics_allow: Sequence[IPNetwork] | None = None,
    api: Sequence[BaseRoute] = (),
) -> App:
    """The routes. ``health()`` lists what is wrong with the server (empty: nothing);
    a 429 answer is held back ``throttle_delay`` seconds (at most its Retry-After).
    With ``metrics``, updates are counted and timed, and ``metrics_allow`` (None: not
    here) are the callers /metrics is shown to; others get 404. ``api``: the JSON
    routes (:mod:`.api`)."""
    challenge = ((b"www-authenticate", f'Basic realm="{realm}", charset="UTF-8"'.encode()),)
    not_allowed = _answer([Code.BADAGENT.value], headers=((b"allow", b"GET, HEAD, POST"),))

    def caller_of(scope: Scope, user_agent: str, forwarded: list[str]) -> Caller:
        def find_address() -> IPAddress | None:
            client = scope.get("client")
            peer = client[0] if client else None
            return client_address(peer, forwarded if trusted_proxies else (), trusted_proxies)

        connection = scope.get("extensions", _NONE).get(CONNECTION, _NONE)
        return Caller(find_address, user_agent, connection.get("gone", _never))

    async def update(scope: Scope) -> Answer:
        begin_request(scope, trusted_proxies)  # the request id of its log lines
        if scope["method"] not in UPDATE_METHODS:
            return not_allowed
        try:
            parsed = parse_update(scope["query_string"], max_hosts=max_hosts)
            header, user_agent, forwarded = _request_headers(scope)
            credentials = parse_basic_auth(header) if header else None
            caller = caller_of(scope, user_agent, forwarded)
            lines = await service.handle(parsed, credentials, caller)
        except Unauthorized:
            return _answer([Code.BADAUTH.value], 401, challenge)
        except TooManyRequests as exc:
            code, retry_after = exc.code, exc.retry_after  # answered below, without exc:
            # the wait holds no traceback
        except RequestRejected as exc:
            return _answer([exc.code.value])
        except Exception:
            log.exception("update failed; answered 911")
            return _answer([Code.SERVER_ERROR.value])
        else:
            return _answer(lines)
        delay = min(throttle_delay, retry_after)
        if delay > 0:  # the flood waits, not the server; its connection may be closed
            connection = scope.get("extensions", _NONE).get(CONNECTION, _NONE)
            await connection.get("hold", _sleep)(delay)
        wait = retry_after_header(retry_after).encode()
        return _answer([code.value], 429, ((b"retry-after", wait),))

    def request_caller(request: Request) -> Caller:
        return caller_of(
            request.scope,
            request.headers.get("user-agent", ""),
            request.headers.getlist("x-forwarded-for"),
        )

    async def myip(request: Request) -> Response:
        address = request_caller(request).address
        return PlainTextResponse(f"{address or ''}\n", media_type=TEXT)

    async def healthz(request: Request) -> Response:
        problems = await health()
        if not problems:
            return PlainTextResponse("ok\n", media_type=TEXT)
        return PlainTextResponse(answer_body(["unhealthy", *problems]), 503, media_type=TEXT)

    # Every method reaches the update handler (App), which answers the unsupported ones.
    routes: list[BaseRoute] = [Route("/myip", myip), Route("/healthz", healthz)]
    if metrics is not None and metrics_allow is not None:
        page, allow = metrics.page, tuple(metrics_allow)

        async def metrics_page(request: Request) -> Response:
            address = request_caller(request).address  # behind a trusted proxy: the caller
            if address is None or not any(address in network for network in allow):
                return PlainTextResponse("Not Found", 404)  # as for any unknown page
            if request.method not in ("GET", "HEAD"):
                return PlainTextResponse("Method Not Allowed", 405, headers={"Allow": "GET"})
            return await page(request)

        # Every method: to a caller not allowed, /metrics is not there whatever it sends.
        all_methods = [*UPDATE_METHODS, "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT"]
        routes.append(Route("/metrics", metrics_page, methods=all_methods))
    routes += api  # last: the web UI (in api) takes every path no other route takes
    observe = metrics.observe_update if metrics is not None else None
    return App(UPDATE_PATHS, update, Starlette(routes=routes), observe)
