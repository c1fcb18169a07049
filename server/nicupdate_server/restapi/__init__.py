"""The REST API under ``/api/v1`` (JSON, bearer API tokens) over :mod:`..manage`.

One module per resource (:mod:`.account`, :mod:`.hosts`, :mod:`.tokens`,
:mod:`.users`, :mod:`.status`), each a table of handlers; :mod:`.calls` runs them
behind the token check (:mod:`.auth`), :mod:`.bodies` reads what requests bring,
:mod:`.errors` shapes every refusal, and :mod:`.openapi` describes it all.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp

from ..config import IPNetwork
from ..manage import Manager
from . import account, hosts, status, tokens, users
from .auth import BearerAuth
from .bodies import Drained
from .calls import Operations, route
from .errors import JSON, error_response
from .openapi import document

RESOURCES: tuple[Operations, ...] = (
    account.OPERATIONS,
    hosts.OPERATIONS,
    tokens.OPERATIONS,
    users.OPERATIONS,
    status.OPERATIONS,
)


async def _http_error(request: Request, exc: Exception) -> Response:
    """The router's own answers (no such path, a method the path does not take)."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        return error_response(
            405,
            "method_not_allowed",
            f"{request.method} is not one of this resource's methods ({allowed})",
            headers={"Allow": allowed},
        )
    if exc.status_code == 404:
        return error_response(
            404, "not_found", "no such resource: see GET /api/v1/openapi.json for what there is"
        )
    return error_response(exc.status_code, "http_error", str(exc.detail))


def create(manager: Manager, *, trusted_proxies: Sequence[IPNetwork]) -> ASGIApp:
    """The API's application, mounted at ``/api/v1`` (its routes' paths are relative)."""
    auth = BearerAuth(manager, trusted_proxies)
    description = json.dumps(document(), separators=(",", ":")).encode()

    async def openapi(request: Request) -> Response:
        return Response(description, media_type=JSON)

    routes = [Route("/openapi.json", openapi, methods=["GET"])]
    for table in RESOURCES:
        routes += [route(path, handlers, auth, manager) for path, handlers in table.items()]
    app = Starlette(routes=routes, exception_handlers={HTTPException: _http_error})
    app.router.redirect_slashes = False
    return Drained(app)
