"""The account page (``/account``): change the password (which ends the account's other
sessions), and turn two-factor sign-in (TOTP, :mod:`.totp`) on or off.

Turning it on shows a new secret and asks for a code made from it; only a right code
stores the secret, so a mistyped secret never locks anyone out. The secret travels in
the set-up form (it is on that page anyway), so nothing is kept between the two steps.
Turning it off asks for a current code. A wrong code there, or a wrong current password
when changing it, counts as a failed login, as at sign-in.
"""

from __future__ import annotations

from starlette.responses import Response
from starlette.routing import Route

from ..manage import Locked, ManageError
from ..throttle import retry_after_header
from . import totp
from .messages import t
from .site import Visit, page, redirect


async def _account_page(
    visit: Visit,
    *,
    password_error: ManageError | None = None,
    totp_error: str = "",
    status: int = 200,
) -> Response:
    account = await visit.manager.account(visit.session.user_id)
    assert account is not None  # the session was found with it
    return visit.render(
        "account.html",
        {
            "account": account,
            "password_error": password_error,
            "totp_error": totp_error,
        },
        status=status,
    )


def _locked(visit: Visit) -> float:
    source = visit.site.source(visit.request)
    return visit.manager.authenticator.limiter.locked(source, visit.session.user)


def _failed(visit: Visit) -> None:
    source = visit.site.source(visit.request)
    visit.manager.authenticator.failed(source, visit.session.user)


async def account_page(visit: Visit) -> Response:
    return await _account_page(visit)


async def change_password(visit: Visit) -> Response:
    """A wrong current password counts as a failed login (a borrowed session must not
    guess it freely): the manager counts it and refuses a locked-out source."""
    new = visit.field("new_password")
    try:
        if new != visit.field("repeat_password"):
            raise ManageError(t("account.passwords_differ"), field="repeat_password")
        source = visit.site.source(visit.request)
        current = visit.field("current_password")
        await visit.manager.change_password(visit.actor, current, new, source=source)
    except Locked as exc:
        locked = ManageError(t("signin.locked", seconds=retry_after_header(exc.retry_after)))
        return await _account_page(visit, password_error=locked, status=429)
    except ManageError as exc:
        return await _account_page(visit, password_error=exc, status=exc.status)
    await visit.manager.end_sessions(visit.session.user_id, keep=visit.session.digest)
    return redirect("/account", "password_changed")


def _setup_page(visit: Visit, secret: str, *, error: str = "", status: int = 200) -> Response:
    uri = totp.uri(secret, visit.session.user)
    return visit.render(
        "totp.html",
        {"secret": secret, "uri": uri, "qr": totp.qr_svg(uri), "error": error},
        status=status,
        secret=True,
    )


async def totp_page(visit: Visit) -> Response:
    if visit.session.totp:
        return redirect("/account")
    return _setup_page(visit, totp.new_secret())


async def enable_totp(visit: Visit) -> Response:
    secret = visit.field("secret")
    if not totp.valid_secret(secret):
        return visit.error(422, t("totp.bad_secret"))
    if visit.session.totp:
        return redirect("/account")
    step = totp.matching_step(secret, visit.field("code"))
    if step is None:
        return _setup_page(visit, secret, error=t("code.wrong"), status=422)
    await visit.manager.set_totp(visit.session.user_id, secret)
    await visit.manager.take_totp_step(visit.session.user_id, step)
    return redirect("/account", "totp_on")


async def disable_totp(visit: Visit) -> Response:
    wait = _locked(visit)
    if wait > 0:
        message = t("signin.locked", seconds=retry_after_header(wait))
        return await _account_page(visit, totp_error=message, status=429)
    secret, _ = await visit.manager.totp_secret(visit.session.user_id)
    if secret is None:
        return redirect("/account")
    step = totp.matching_step(secret, visit.field("code"))
    if step is None or not await visit.manager.take_totp_step(visit.session.user_id, step):
        _failed(visit)
        return await _account_page(visit, totp_error=t("code.wrong"), status=422)
    await visit.manager.set_totp(visit.session.user_id, None)
    return redirect("/account", "totp_off")


routes = [
    Route("/account", page(account_page), methods=["GET"]),
    Route("/account/password", page(change_password), methods=["POST"]),
    Route("/account/totp", page(totp_page), methods=["GET"]),
    Route("/account/totp", page(enable_totp), methods=["POST"]),
    Route("/account/totp/disable", page(disable_totp), methods=["POST"]),
]
