"""The JSON API under ``/api/v1``: thin adapters over the server's own objects.

:mod:`.changes` serves ``GET /api/v1/changes``, the change feed for pollers (long poll
or Server-Sent Events). The update paths never come here: :class:`~..app.App` hands
them to their handler before Starlette's router.
"""

from __future__ import annotations

from starlette.routing import BaseRoute, Route

from .changes import ChangesEndpoint


def routes(changes: ChangesEndpoint) -> list[BaseRoute]:
    return [Route("/api/v1/changes", changes.handle, methods=["GET"])]
