"""Who calls the API: ``Authorization: Bearer nu_...``, an API token (:mod:`..apitokens`).

Account passwords never work here (a script holds a token it can revoke, scoped to
what it needs); Basic credentials are answered 401 saying so. A wrong token counts as
a failed login of the caller's source, under the user name ``api-token``, in the same
lock-out as ``/nic/update``: a locked-out source is answered 429 before its token is
looked up.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from starlette.requests import Request

from ..addresses import IPAddress
from ..app import client_address
from ..config import IPNetwork
from ..manage import Actor, Manager
from ..throttle import retry_after_header, source_of
from .errors import ApiError

LOCKOUT_USER = "api-token"  # failed token checks count under this user name
_HOW = "make one with `nicupdate-server token add USER` or in the web UI"


@dataclass(frozen=True, slots=True)
class Caller:
    """An accepted caller: who it acts for (``actor``), with which token, from where."""

    actor: Actor
    token_id: int
    address: IPAddress | None


class BearerAuth:
    def __init__(self, manager: Manager, trusted_proxies: Sequence[IPNetwork]) -> None:
        self._manager = manager
        self._trusted = tuple(trusted_proxies)
        realm = manager.config.server.realm.replace("\\", "\\\\").replace('"', '\\"')
        self._challenge = f'Bearer realm="{realm}"'

    def address(self, request: Request) -> IPAddress | None:
        peer = request.client.host if request.client is not None else None
        forwarded = request.headers.getlist("x-forwarded-for") if self._trusted else []
        return client_address(peer, forwarded, self._trusted)

    def _refused(self, message: str, error: str | None = None) -> ApiError:
        challenge = self._challenge + (f', error="{error}"' if error else "")
        return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": challenge})

    async def caller(self, request: Request) -> Caller:
        """The caller, or :class:`ApiError` 401 (no working token) or 429 (locked out)."""
        header = request.headers.get("authorization", "").strip()
        scheme, _, secret = header.partition(" ")
        scheme, secret = scheme.lower(), secret.strip()
        if not header:
            raise self._refused(f"send an API token: Authorization: Bearer nu_... ({_HOW})")
        if scheme == "basic":
            raise self._refused(
                "account passwords do not work on the API: send an API token as "
                f"Authorization: Bearer nu_... ({_HOW})"
            )
        if scheme != "bearer" or not secret:
            raise self._refused(
                f"the Authorization header must be: Bearer nu_... ({_HOW})", "invalid_request"
            )
        address = self.address(request)
        source = source_of(address)
        authenticator = self._manager.authenticator
        wait = authenticator.limiter.locked(source, LOCKOUT_USER)
        if wait > 0:
            raise ApiError(
                429,
                "too_many_requests",
                f"too many wrong API tokens from {source}: try again in "
                f"{retry_after_header(wait)} seconds",
                headers={"Retry-After": retry_after_header(wait)},
            )
        bearer = await self._manager.tokens.check(secret)
        if bearer is None:
            authenticator.failed(source, LOCKOUT_USER)
            raise self._refused(
                "this API token is unknown, expired or revoked, or its account is disabled: "
                f"{_HOW}",
                "invalid_token",
            )
        actor = Actor(bearer.user_id, bearer.user, bearer.admin, bearer.scope, bearer.expires_at)
        return Caller(actor, bearer.token_id, address)
