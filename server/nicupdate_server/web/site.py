"""What every page shares: the :class:`Site` (the manager, the sessions, the templates,
the trusted proxies) and the :func:`page` wrapper that lets a request in.

:func:`page` finds the session of the request's cookie; without one a page redirects to
the sign-in form (and back after it), a session still waiting for its TOTP code goes
to the code's page, and an admin's page answers 403 to anyone else. A POST must carry
the session's CSRF token (:mod:`.csrf`), or it is refused with 403 before its form is
acted on. The handler then gets a :class:`Visit`: the request, the session, the
:class:`~..manage.Actor` to pass to the manager, and the form.

Pages that change something answer with a redirect (POST-redirect-GET) whose
``?done=`` names a notice of the catalogue (only those are shown); pages that show a
secret once (a host token, an API token) answer the POST itself, never cached.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ..app import client_address
from ..config import IPNetwork
from ..manage import Actor, Manager
from ..throttle import source_of
from . import csrf
from .messages import NOTICES, t
from .render import Renderer
from .sessions import COOKIE, Session, Sessions
from .snippets import Server

MAX_FORM_FIELDS = 200
MAX_FORM_BYTES = 64 * 1024  # a form of this UI is well under 10 kB


class Site:
    def __init__(self, manager: Manager, trusted_proxies: Sequence[IPNetwork]) -> None:
        self.manager = manager
        self.sessions = Sessions(manager.engine)
        self.renderer = Renderer()
        self.trusted_proxies = tuple(trusted_proxies)

    def _peer(self, request: Request) -> str | None:
        return request.client.host if request.client is not None else None

    def _from_proxy(self, request: Request) -> bool:
        peer = client_address(self._peer(request), [], ())
        return peer is not None and any(peer in network for network in self.trusted_proxies)

    def address(self, request: Request) -> str:
        """The caller's address (through trusted proxies), as text."""
        forwarded = request.headers.getlist("x-forwarded-for")
        address = client_address(self._peer(request), forwarded, self.trusted_proxies)
        return str(address) if address is not None else "unknown"

    def source(self, request: Request) -> str:
        """Where failed sign-ins are counted (:func:`~..throttle.source_of`)."""
        forwarded = request.headers.getlist("x-forwarded-for")
        return source_of(client_address(self._peer(request), forwarded, self.trusted_proxies))

    def secure(self, request: Request) -> bool:
        """Did the browser use TLS (to us, or to a trusted proxy that says so)?"""
        if request.url.scheme == "https":
            return True
        proto = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
        return proto == "https" and self._from_proxy(request)

    def server(self, request: Request) -> Server:
        """This server's URL as the browser reached it."""
        scheme = "https" if self.secure(request) else "http"
        host = request.headers.get("host") or request.url.netloc
        return Server(f"{scheme}://{host}")

    def set_cookie(
        self, request: Request, response: Response, name: str, value: str, max_age: int | None
    ) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path="/",
            secure=self.secure(request),
            httponly=True,
            samesite="lax",
        )

    def render(
        self,
        request: Request,
        template: str,
        context: Mapping[str, Any] | None = None,
        *,
        session: Session | None = None,
        status: int = 200,
        secret: bool = False,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        done = request.query_params.get("done", "")
        base = {
            "session": session,
            "csrf_token": session.csrf if session is not None else "",
            "notice": done if done in NOTICES else "",
            "path": request.url.path,
        }
        return self.renderer.page(
            request,
            template,
            {**base, **(context or {})},
            status=status,
            secret=secret,
            headers=headers,
        )

    def error(
        self, request: Request, status: int, message: str, *, session: Session | None = None
    ) -> Response:
        return self.render(
            request,
            "error.html",
            {"status": status, "message": message},
            session=session,
            status=status,
        )


async def read_form(request: Request, max_fields: int = MAX_FORM_FIELDS) -> FormData:
    """The posted form; 413 when it is larger than any form of these pages (411 when its
    size is not announced: browsers always announce it)."""
    length = request.headers.get("content-length", "")
    if not length.isdigit():
        raise HTTPException(411, "a form must come with its Content-Length")
    if int(length) > MAX_FORM_BYTES:
        raise HTTPException(413, f"a form may have {MAX_FORM_BYTES} bytes at most")
    return await request.form(max_files=0, max_fields=max_fields)


def redirect(path: str, done: str | None = None) -> Response:
    if done is not None:
        assert done in NOTICES, done
        path += ("&" if "?" in path else "?") + "done=" + done
    return RedirectResponse(path, status_code=303)


def local_path(text: str | None) -> str | None:
    """``text`` if it is a path on this site (a sign-in's ``next``), else None."""
    if not text or not text.startswith("/") or text.startswith(("//", "/\\")):
        return None
    if any(ord(char) < 0x21 for char in text):
        return None
    return text


@dataclass(frozen=True, slots=True)
class Visit:
    """A signed-in request."""

    request: Request
    site: Site
    session: Session
    form: FormData | None

    @property
    def actor(self) -> Actor:
        return Actor(self.session.user_id, self.session.user, self.session.admin)

    @property
    def manager(self) -> Manager:
        return self.site.manager

    def field(self, name: str) -> str:
        """A text field of the form ("" if it is missing)."""
        value = self.form.get(name) if self.form is not None else None
        return value if isinstance(value, str) else ""

    def render(
        self,
        template: str,
        context: Mapping[str, Any] | None = None,
        *,
        status: int = 200,
        secret: bool = False,
    ) -> Response:
        return self.site.render(
            self.request, template, context, session=self.session, status=status, secret=secret
        )

    def error(self, status: int, message: str) -> Response:
        return self.site.error(self.request, status, message, session=self.session)


Handler = Callable[[Visit], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]


def site_of(request: Request) -> Site:
    site = request.app.state.site
    assert isinstance(site, Site)
    return site


def page(handler: Handler, *, admin: bool = False) -> Endpoint:
    """``handler`` for signed-in users (``admin``: admins only)."""

    async def endpoint(request: Request) -> Response:
        site = site_of(request)
        session = await site.sessions.find(request.cookies.get(COOKIE))
        if session is None:
            if request.method != "GET":  # nothing done; back to where, the form knows
                return redirect("/signin", "session_ended")
            target = request.url.path
            if request.url.query:
                target += "?" + request.url.query
            return redirect("/signin?next=" + quote(target, safe="/"))
        if session.pending:
            return redirect("/signin/code")
        request.state.session = session  # for the error pages
        form = None
        if request.method == "POST":
            form = await read_form(request)
            if not csrf.matches(session.csrf, form.get(csrf.FIELD)):
                return site.error(request, 403, t("error.csrf"), session=session)
        if admin and not session.admin:
            return site.error(request, 403, t("error.admin_only"), session=session)
        return await handler(Visit(request, site, session, form))

    endpoint.__name__ = handler.__name__
    return endpoint
