"""API tokens (``/tokens``): the account's bearer tokens for the REST API, listed (never
their secrets), made with a scope and an expiry (the secret shown once), revoked."""

from __future__ import annotations

from starlette.responses import Response
from starlette.routing import Route

from ..manage import ManageError
from .site import Visit, page, redirect

EXPIRIES = (30, 90, 365)  # days offered besides "never"
SCOPES = ("full", "read_only", "acme_only")


async def _tokens_page(
    visit: Visit, *, error: ManageError | None = None, status: int = 200
) -> Response:
    tokens = await visit.manager.api_tokens(visit.actor)
    hosts = await visit.manager.hosts(visit.actor)
    chosen = set(visit.form.getlist("hosts")) if visit.form is not None else set()
    return visit.render(
        "tokens.html",
        {
            "tokens": tokens,
            "hosts": [row.fqdn for row in hosts],
            "expiries": EXPIRIES,
            "form": {
                "name": visit.field("name"),
                "scope": visit.field("scope") or "full",
                "expires": visit.field("expires") or "90",
                "hosts": chosen,
            },
            "error": error,
        },
        status=status,
    )


async def tokens_page(visit: Visit) -> Response:
    return await _tokens_page(visit)


async def add_token(visit: Visit) -> Response:
    scope = visit.field("scope")
    expires = visit.field("expires")
    assert visit.form is not None
    hosts = [str(name) for name in visit.form.getlist("hosts")]
    try:
        if scope not in SCOPES:
            raise ManageError("choose what the token may do", field="scope")
        if expires != "never" and not expires.isdigit():
            raise ManageError("choose when the token expires", field="expires")
        secret, row = await visit.manager.add_api_token(
            visit.actor,
            visit.field("name") or "web",
            hosts=hosts or None,
            read_only=scope == "read_only",
            acme_only=scope == "acme_only",
            expires_days=None if expires == "never" else int(expires),
        )
    except ManageError as exc:
        return await _tokens_page(visit, error=exc, status=exc.status)
    server = visit.site.server(visit.request)
    return visit.render(
        "token_new.html", {"token": row, "secret": secret, "server": server.url}, secret=True
    )


async def revoke_token(visit: Visit) -> Response:
    await visit.manager.revoke_api_token(visit.actor, visit.request.path_params["token_id"])
    return redirect("/tokens", "token_revoked")


routes = [
    Route("/tokens", page(tokens_page), methods=["GET"]),
    Route("/tokens", page(add_token), methods=["POST"]),
    Route("/tokens/{token_id:int}/revoke", page(revoke_token), methods=["POST"]),
]
