"""``/users``: the accounts, for admins."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from ..admin import AdminError, UserRow, check_user_name
from ..manage import ManageError, NotFound
from .bodies import truth
from .calls import Call, Operations
from .errors import json_response, no_content, timestamp

MAX_NAME = 64


def user_json(row: UserRow) -> dict[str, Any]:
    return {
        "name": row.name,
        "admin": row.admin,
        "disabled": row.disabled_at is not None,
        "disabled_at": timestamp(row.disabled_at),
        "totp": row.totp,
        "hosts": row.hosts,
        "created_at": timestamp(row.created_at),
    }


async def _user(call: Call, name: str) -> UserRow:
    for row in await call.manager.users(call.actor):
        if row.name == name:
            return row
    raise NotFound(f"no user named {name[:70]!r} (list them: GET /api/v1/users)")


async def list_users(call: Call) -> Response:
    call.query()
    rows = await call.manager.users(call.actor)
    return json_response({"users": [user_json(row) for row in rows]})


async def add_user(call: Call) -> Response:
    call.query()
    fields = await call.body("name", "password", "admin")
    name = fields.text("name", required=True, max_length=MAX_NAME)
    password = fields.text("password", required=True)
    assert name is not None and password is not None
    try:
        await call.manager.add_user(call.actor, name, password, admin=fields.flag("admin") or False)
    except ManageError as exc:
        if exc.field is None and exc.status == 422:  # about the name, or the password
            exc.field = "password" if "password" in exc.message else "name"
        raise
    location = {"Location": f"{call.request.scope.get('root_path', '')}/users/{name}"}
    return json_response(user_json(await _user(call, name)), 201, location)


def _name(call: Call) -> str:
    """The user named in the path (404 for a name no user can have)."""
    name = call.path("name")
    try:
        check_user_name(name)
    except AdminError:
        raise NotFound(f"no user named {name[:70]!r} (list them: GET /api/v1/users)") from None
    return name


async def patch_user(call: Call) -> Response:
    call.query()
    fields = await call.body("disabled", "admin")
    row = await call.manager.set_user(
        call.actor, _name(call), disabled=fields.flag("disabled"), admin=fields.flag("admin")
    )
    return json_response(user_json(row))


async def delete_user(call: Call) -> Response:
    with_hosts = truth(call.query("with_hosts"), "with_hosts")
    await call.manager.remove_user(call.actor, _name(call), with_hosts=with_hosts)
    return no_content()


OPERATIONS: Operations = {
    "/users": {"GET": list_users, "POST": add_user},
    "/users/{name}": {"PATCH": patch_user, "DELETE": delete_user},
}
