"""Signing in and out: ``/signin`` (account name and password), ``/signin/code`` (the
TOTP code, for accounts that turned it on), ``/signout``.

The password is checked by the server's :class:`~..auth.Authenticator` (through
``Manager.check_password``), so a web sign-in counts and locks out exactly as a
``/nic/update`` does: a source that guessed too often gets 429 with ``Retry-After``,
and no check. A wrong TOTP code counts as a failed login of the account's name, and a
locked-out source is not asked for one. A new session (a new cookie) starts at each
sign-in; the one the browser had before ends.
"""

from __future__ import annotations

from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..auth import LoginThrottled
from ..throttle import retry_after_header
from . import csrf
from .messages import t
from .sessions import COOKIE, LIFETIME
from .site import Site, local_path, read_form, redirect, site_of
from .totp import matching_step

MAX_FIELD = 1024
SIGNIN_COOKIE_AGE = 3600 * 24


def _next(request: Request, form_value: object = None) -> str:
    value = form_value if isinstance(form_value, str) else request.query_params.get("next")
    return local_path(value) or "/hosts"


def _signin_form(
    site: Site,
    request: Request,
    *,
    token: str | None = None,
    name: str = "",
    error: str = "",
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    """The form, with a pre-session CSRF token (a new one unless the browser has one)."""
    current = request.cookies.get(csrf.SIGNIN_COOKIE)
    token = token or (current if current and len(current) <= 100 else None) or csrf.new_token()
    response = site.render(
        request,
        "signin.html",
        {
            "signin_token": token,
            "name": name,
            "error": error,
            "next": local_path(request.query_params.get("next")) or "",
        },
        status=status,
        headers=headers,
    )
    if current != token:
        site.set_cookie(request, response, csrf.SIGNIN_COOKIE, token, SIGNIN_COOKIE_AGE)
    return response


async def signin_page(request: Request) -> Response:
    site = site_of(request)
    session = await site.sessions.find(request.cookies.get(COOKIE))
    if session is not None and not session.pending:
        return redirect(_next(request))
    return _signin_form(site, request)


async def signin(request: Request) -> Response:
    site = site_of(request)
    form = await read_form(request, 10)
    if not csrf.matches(request.cookies.get(csrf.SIGNIN_COOKIE), form.get(csrf.FIELD)):
        return _signin_form(
            site, request, token=csrf.new_token(), error=t("signin.expired_form"), status=403
        )
    name = form.get("name")
    password = form.get("password")
    if not isinstance(name, str) or not isinstance(password, str):
        return _signin_form(site, request, error=t("signin.missing"), status=422)
    name = name.strip()[:MAX_FIELD]
    if not name or not password:
        return _signin_form(site, request, name=name, error=t("signin.missing"), status=422)
    try:
        account = await site.manager.check_password(
            name, password[:MAX_FIELD], site.source(request)
        )
    except LoginThrottled as exc:
        return _signin_form(
            site,
            request,
            name=name,
            error=t("signin.locked", seconds=retry_after_header(exc.retry_after)),
            status=429,
            headers={"retry-after": retry_after_header(exc.retry_after)},
        )
    if account is None:
        return _signin_form(site, request, name=name, error=t("signin.wrong"), status=401)
    await site.sessions.end(request.cookies.get(COOKIE))
    session_id = await site.sessions.start(account.id, pending=account.totp)
    target = _next(request, form.get("next"))
    if account.totp:
        next_part = "?next=" + quote(target, safe="/") if target != "/hosts" else ""
        response = redirect("/signin/code" + next_part)
    else:
        response = redirect(target)
    site.set_cookie(request, response, COOKIE, session_id, int(LIFETIME.total_seconds()))
    response.delete_cookie(csrf.SIGNIN_COOKIE, path="/")
    return response


def _code_form(
    site: Site,
    request: Request,
    session_csrf: str,
    *,
    error: str = "",
    status: int = 200,
    headers: dict[str, str] | None = None,
    next_path: str = "",
) -> Response:
    return site.render(
        request,
        "code.html",
        {
            "code_csrf": session_csrf,
            "error": error,
            "next": next_path or local_path(request.query_params.get("next")) or "",
        },
        status=status,
        headers=headers,
    )


async def code_page(request: Request) -> Response:
    site = site_of(request)
    session = await site.sessions.find(request.cookies.get(COOKIE))
    if session is None:
        return redirect("/signin")
    if not session.pending:
        return redirect(_next(request))
    return _code_form(site, request, session.csrf)


async def code(request: Request) -> Response:
    site = site_of(request)
    session = await site.sessions.find(request.cookies.get(COOKIE))
    if session is None:
        return redirect("/signin", "session_ended")
    form = await read_form(request, 10)
    if not csrf.matches(session.csrf, form.get(csrf.FIELD)):
        return site.error(request, 403, t("error.csrf"))
    if not session.pending:
        return redirect(_next(request, form.get("next")))
    next_path = local_path(str(form.get("next") or "")) or ""
    source = site.source(request)
    authenticator = site.manager.authenticator
    wait = authenticator.limiter.locked(source, session.user)
    if wait > 0:
        return _code_form(
            site,
            request,
            session.csrf,
            error=t("signin.locked", seconds=retry_after_header(wait)),
            status=429,
            headers={"retry-after": retry_after_header(wait)},
            next_path=next_path,
        )
    secret, _ = await site.manager.totp_secret(session.user_id)
    sent = form.get("code")
    step = (
        matching_step(secret, sent[:MAX_FIELD])
        if secret is not None and isinstance(sent, str)
        else None
    )
    if step is None or not await site.manager.take_totp_step(session.user_id, step):
        authenticator.failed(source, session.user)
        return _code_form(
            site, request, session.csrf, error=t("code.wrong"), status=401, next_path=next_path
        )
    authenticator.limiter.succeeded(source, session.user)
    await site.sessions.complete(session)
    return redirect(next_path or "/hosts")


async def signout(request: Request) -> Response:
    site = site_of(request)
    cookie = request.cookies.get(COOKIE)
    session = await site.sessions.find(cookie)
    if session is None:
        return redirect("/signin")
    form = await read_form(request, 10)
    if not csrf.matches(session.csrf, form.get(csrf.FIELD)):
        return site.error(request, 403, t("error.csrf"), session=session)
    await site.sessions.end(cookie)
    response = redirect("/signin", "signed_out")
    response.delete_cookie(COOKIE, path="/")
    return response


routes = [
    Route("/signin", signin_page, methods=["GET"]),
    Route("/signin", signin, methods=["POST"]),
    Route("/signin/code", code_page, methods=["GET"]),
    Route("/signin/code", code, methods=["POST"]),
    Route("/signout", signout, methods=["POST"]),
]
