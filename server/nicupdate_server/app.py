"""The HTTP side: routes, the caller's address, and turning outcomes into responses.

``/nic/update``, ``/update`` and ``/v3/update`` share one handler. Every answer is
``text/plain`` with HTTP 200, except ``badauth`` (401 with a Basic challenge) and
"try again later" (429 with ``Retry-After`` and the body ``911``: the source is locked
out for guessing, the password checks are busy, or a host's update rate is used up).
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import urllib.parse
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

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
) -> Starlette:
    """The routes. ``health()`` lists what is wrong with the server (empty: nothing);
    a 429 answer is held back ``throttle_delay`` seconds (at most its Retry-After).
    With ``metrics``, updates are counted and timed, and ``metrics_allow`` (None: not
    here) are the callers /metrics is shown to; others get 404."""
    challenge = {"WWW-Authenticate": f'Basic realm="{realm}", charset="UTF-8"'}

    def caller_of(request: Request) -> Caller:
        def find_address() -> IPAddress | None:
            peer = request.client.host if request.client else None
            forwarded = request.headers.getlist("x-forwarded-for") if trusted_proxies else []
            return client_address(peer, forwarded, trusted_proxies)

        connection = request.scope.get("extensions", _NONE).get(CONNECTION, _NONE)
        return Caller(
            find_address, request.headers.get("user-agent", ""), connection.get("gone", _never)
        )

    async def update(request: Request) -> Response:
        begin_request(request.scope, trusted_proxies)  # the request id of its log lines
        if request.method not in UPDATE_METHODS:
            return PlainTextResponse(
                answer_body([Code.BADAGENT.value]),
                media_type=TEXT,
                headers={"Allow": "GET, HEAD, POST"},
            )
        try:
            parsed = parse_update(request.scope["query_string"], max_hosts=max_hosts)
            header = request.headers.get("authorization")
            credentials = parse_basic_auth(header) if header else None
            lines = await service.handle(parsed, credentials, caller_of(request))
        except Unauthorized:
            return PlainTextResponse(
                answer_body([Code.BADAUTH.value]), 401, headers=challenge, media_type=TEXT
            )
        except TooManyRequests as exc:
            code, retry_after = exc.code, exc.retry_after  # answered below, without exc:
            # the wait holds no traceback
        except RequestRejected as exc:
            return PlainTextResponse(answer_body([exc.code.value]), media_type=TEXT)
        except Exception:
            log.exception("update failed; answered 911")
            return PlainTextResponse(answer_body([Code.SERVER_ERROR.value]), media_type=TEXT)
        else:
            return PlainTextResponse(answer_body(lines), media_type=TEXT)
        delay = min(throttle_delay, retry_after)
        if delay > 0:  # the flood waits, not the server; its connection may be closed
            connection = request.scope.get("extensions", _NONE).get(CONNECTION, _NONE)
            await connection.get("hold", _sleep)(delay)
        return PlainTextResponse(
            answer_body([code.value]),
            429,
            headers={"Retry-After": retry_after_header(retry_after)},
            media_type=TEXT,
        )

    async def myip(request: Request) -> Response:
        address = caller_of(request).address
        return PlainTextResponse(f"{address or ''}\n", media_type=TEXT)

    async def healthz(request: Request) -> Response:
        problems = await health()
        if not problems:
            return PlainTextResponse("ok\n", media_type=TEXT)
        return PlainTextResponse(answer_body(["unhealthy", *problems]), 503, media_type=TEXT)

    # Every method reaches the handler, which answers the unsupported ones itself.
    all_methods = [*UPDATE_METHODS, "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT"]
    handler = update if metrics is None else metrics.observe_updates(update)
    routes = [Route(path, handler, methods=all_methods) for path in UPDATE_PATHS]
    routes += [Route("/myip", myip), Route("/healthz", healthz)]
    if metrics is not None and metrics_allow is not None:
        page, allow = metrics.page, tuple(metrics_allow)

        async def metrics_page(request: Request) -> Response:
            address = caller_of(request).address  # behind a trusted proxy: the caller
            if address is None or not any(address in network for network in allow):
                return PlainTextResponse("Not Found", 404)  # as for any unknown page
            if request.method not in ("GET", "HEAD"):
                return PlainTextResponse("Method Not Allowed", 405, headers={"Allow": "GET"})
            return await page(request)

        # Every method: to a caller not allowed, /metrics is not there whatever it sends.
        routes.append(Route("/metrics", metrics_page, methods=all_methods))
    return Starlette(routes=routes)
