"""The web UI at ``/``: server-rendered pages (Jinja2) over :mod:`..manage`, with
sessions, for people; the REST API (``restapi/``) is its counterpart for scripts.

Modules by concern: :mod:`.site` (what every page shares, and who may see it),
:mod:`.sessions`, :mod:`.csrf`, :mod:`.totp`, :mod:`.messages` (every string shown),
:mod:`.render` (templates), :mod:`.headers` (security headers), and one module per
group of pages: :mod:`.signin`, :mod:`.hosts`, :mod:`.tokens`, :mod:`.account`,
:mod:`.users` and :mod:`.status` (admins). Every main flow works without JavaScript
(forms, POST-redirect-GET); ``static/app.js`` only adds copy buttons.

Mounted behind every other route (``/nic/update`` never reaches it) and built on its
first request (:class:`~..lazyapp.Lazy`): a server nobody browses pays nothing for it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

from ..config import IPNetwork
from ..manage import ManageError, Manager
from . import account, hosts, signin, status, tokens, users
from .headers import SecurityHeaders
from .messages import t
from .render import STATIC
from .sessions import COOKIE
from .site import Site, site_of

_API_HINT = re.compile(r" \(list them: GET /api/v1/[^)]*\)$")


def _wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if not _wants_html(request):
        return PlainTextResponse(exc.detail, exc.status_code, headers=exc.headers)
    site = site_of(request)
    session = await site.sessions.find(request.cookies.get(COOKIE))
    if exc.status_code == 404:
        message = t("error.not_found")
    elif exc.status_code == 405:
        message = t("error.method", method=request.method)
    else:
        message = exc.detail
    response = site.error(request, exc.status_code, message, session=session)
    response.headers.update(exc.headers or {})
    return response


async def _refused(request: Request, exc: Exception) -> Response:
    """A :class:`~..manage.ManageError` a page did not handle itself (a host that is not
    the user's, a change the database refused...)."""
    assert isinstance(exc, ManageError)
    site = site_of(request)
    session = getattr(request.state, "session", None)
    message = _API_HINT.sub("", exc.message)  # "(list them: GET /api/v1/hosts)"
    return site.error(request, exc.status, message, session=session)


async def _server_error(request: Request, exc: Exception) -> Response:
    site = site_of(request)
    return site.error(request, 500, t("error.server"))


def create(manager: Manager, *, trusted_proxies: Sequence[IPNetwork]) -> ASGIApp:
    """The web UI's application, mounted at ``/``."""
    app = Starlette(
        routes=[
            *signin.routes,
            *hosts.routes,
            *tokens.routes,
            *account.routes,
            *users.routes,
            *status.routes,
            # Static files only: pages carry secrets beside echoed input (BREACH).
            Mount(
                "/static",
                GZipMiddleware(StaticFiles(directory=STATIC), minimum_size=500),
                name="static",
            ),
        ],
        exception_handlers={
            HTTPException: _http_error,
            ManageError: _refused,
            500: _server_error,
        },
    )
    app.state.site = Site(manager, trusted_proxies)
    return SecurityHeaders(app)
