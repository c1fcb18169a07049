"""The JSON API under ``/api/v1``: thin adapters over the server's own objects.

:mod:`.changes` serves ``GET /api/v1/changes``, the change feed for pollers (long poll
or Server-Sent Events). The update paths never come here: :class:`~..app.App` hands
them to their handler before Starlette's router.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.routing import BaseRoute, Route

from ..auth import Authenticator
from ..config import IPNetwork
from ..events import Events
from ..feed import Feed
from ..state import State
from .changes import ChangesEndpoint


def routes(
    *,
    authenticator: Authenticator,
    engine: AsyncEngine,
    feed: Feed,
    events: Events,
    state: State,
    trusted_proxies: Sequence[IPNetwork],
    realm: str,
) -> list[BaseRoute]:
    changes = ChangesEndpoint(authenticator, engine, feed, events, state, trusted_proxies, realm)
    return [Route("/api/v1/changes", changes.handle, methods=["GET"])]
