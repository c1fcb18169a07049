"""``/account``: the caller's own account, and its password."""

from __future__ import annotations

from starlette.responses import Response

from ..manage import NotFound
from .calls import Call, Operations
from .errors import json_response, no_content, timestamp


async def get_account(call: Call) -> Response:
    call.query()
    account = await call.manager.account(call.actor.user_id)
    if account is None:  # removed since its token was checked
        raise NotFound("this account no longer exists")
    scope = call.actor.scope
    return json_response(
        {
            "name": account.name,
            "admin": account.admin,
            "totp": account.totp,
            "created_at": timestamp(account.created_at),
            "token": {
                "id": call.caller.token_id,
                "hosts": None if scope.hosts is None else list(scope.hosts),
                "read_only": scope.read_only,
                "acme_only": scope.acme_only,
                "admin": call.actor.admin,
                "expires_at": timestamp(call.actor.expires_at),
            },
        }
    )


async def change_password(call: Call) -> Response:
    """A new password; the account's web sessions end (its API tokens stay)."""
    call.query()
    fields = await call.body("current_password", "new_password")
    current = fields.text("current_password", required=True)
    new = fields.text("new_password", required=True)
    assert current is not None and new is not None
    await call.manager.change_password(call.actor, current, new, source=call.source)
    await call.manager.end_sessions(call.actor.user_id)
    return no_content()


OPERATIONS: Operations = {
    "/account": {"GET": get_account},
    "/account/password": {"POST": change_password},
}
