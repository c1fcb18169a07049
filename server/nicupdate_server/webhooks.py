"""Webhooks: every change of the log POSTed, signed, to the receivers in ``[[webhooks]]``.

Each webhook is delivered by one process at a time among all that share the database
(the lease ``webhook:NAME``, :mod:`.leases`; the others try every second and take over
when the holder dies). That process reads the change log (:mod:`.changelog`) after the
webhook's position, keeps the kinds the webhook wants (:mod:`.events`), and POSTs them
one at a time in log order: ::

    POST <url>
    Content-Type: application/json
    User-Agent: nicupdate/<version>
    X-Nicupdate-Event: records
    X-Nicupdate-Delivery: 42                      (the change id)
    X-Nicupdate-Signature-256: sha256=<hex HMAC-SHA256 of the body with the secret>

A 2xx answer delivers an event; anything else (no connection, no answer within
``timeout``, a redirect, 4xx, 5xx) retries the same event, backing off from 1 s doubling
with jitter to 5 minutes, or as long as ``Retry-After`` asks (up to an hour), for ever.
The position (table ``feed_positions``, consumer ``webhook:NAME``) is stored at most
once a second (and when the server stops): after a crash the events after the stored
position are sent again (at least once; a duplicate carries the same id and the
same body). A new webhook starts at the log's newest change: no old history. The log
keeps what a webhook has not passed for at most 7 days; when the rows it needs were
pruned, one line says how many changes were lost, and delivery goes on from the oldest
kept.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import delete
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from .config import ConfigError, WebhookSettings, read_secret_file
from .events import Events
from .feed import Feed
from .leases import Leases
from .state import State
from .store import describe_failure
from .tables import feed_positions as _positions

if TYPE_CHECKING:
    import httpx

    from .webhook import Webhook, _Quiet

log = logging.getLogger("nicupdate.webhooks")


def consumer(name: str) -> str:
    """The webhook's lease and its row in ``feed_positions``."""
    return f"webhook:{name}"


@dataclass(slots=True)
class Counts:
    """Attempts of one webhook in this process (read by /metrics)."""

    delivered: int = 0
    failed: int = 0


class Webhooks:
    """The configured webhooks of this process."""

    def __init__(
        self,
        engine: AsyncEngine,
        leases: Leases,
        state: State,
        feed: Feed,
        settings: tuple[WebhookSettings, ...],
    ) -> None:
        self._engine = engine
        self._leases = leases
        self._feed = feed
        self.events = Events(state)  # shared with GET /api/v1/changes
        self._settings = settings
        self.hooks: dict[str, Webhook] = {}
        self._secrets: dict[str, bytes] = {}
        self.counts: dict[str, Counts] = {}  # by name, kept across reloads
        self._client: httpx.AsyncClient | None = None
        self._quiet: _Quiet | None = None

    async def start(self) -> None:
        await self.configure(self._settings)

    async def configure(self, settings: tuple[WebhookSettings, ...]) -> None:
        """Deliver the webhooks of ``settings`` (a reload): those changed or gone stop,
        those new or changed start (from their stored positions)."""
        wanted: dict[str, tuple[WebhookSettings, bytes]] = {}
        for hook in settings:
            try:
                secret = read_secret_file(hook.secret_file, f"webhooks[{hook.name}].secret_file")
            except ConfigError as exc:
                log.error("webhook %s: not (re)started: %s", hook.name, exc)
                if hook.name in self.hooks:  # the running one goes on
                    wanted[hook.name] = (self.hooks[hook.name].settings, self._secrets[hook.name])
                continue
            wanted[hook.name] = (hook, secret.encode())
        for name, running in list(self.hooks.items()):
            if wanted.get(name) != (running.settings, self._secrets[name]):
                await running.close()
                del self.hooks[name], self._secrets[name]
                if name not in wanted:
                    await self._forget(name)
        for name, (hook, key) in wanted.items():
            if name in self.hooks:
                continue
            from .webhook import Webhook

            webhook = Webhook(
                hook,
                key,
                engine=self._engine,
                leases=self._leases,
                feed=self._feed,
                events=self.events,
                client=self._http(),
                counts=self.counts.setdefault(name, Counts()),
            )
            self.hooks[name], self._secrets[name] = webhook, key
            await webhook.start()
        self._settings = settings
        if self._quiet is not None:
            from .webhook import url_text

            self._quiet.urls = {url_text(h.settings.url) for h in self.hooks.values()}

    def _http(self) -> httpx.AsyncClient:
        """The client every webhook of this process shares (its connection pool)."""
        if self._client is None:
            from .webhook import _Quiet, new_client

            self._client = new_client()
            self._quiet = _Quiet()
            logging.getLogger("httpx").addFilter(self._quiet)
        return self._client

    async def _forget(self, name: str) -> None:
        """A webhook removed from the configuration: its position goes, so that it no
        longer holds back the pruning of the log (added again, it starts afresh)."""
        try:
            async with self._engine.begin() as conn:
                await conn.execute(
                    delete(_positions).where(_positions.c.consumer == consumer(name))
                )
        except (SQLAlchemyError, OSError) as exc:
            log.warning(
                "webhook %s: its position was not removed (%s)", name, describe_failure(exc)
            )

    async def close(self) -> None:
        for hook in self.hooks.values():
            await hook.close()
        self.hooks.clear()
        self._secrets.clear()
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        if self._quiet is not None:
            logging.getLogger("httpx").removeFilter(self._quiet)
            self._quiet = None
