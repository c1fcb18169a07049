"""Accounts, for admins (``/admin/users``): list, add, disable or enable, make an admin
or not, remove (after a confirmation page; its hosts too only when asked)."""

from __future__ import annotations

from starlette.responses import Response
from starlette.routing import Route

from ..manage import ManageError
from .site import Visit, page, redirect

ACTIONS = {
    "disable": ({"disabled": True}, "user_disabled"),
    "enable": ({"disabled": False}, "user_enabled"),
    "admin_on": ({"admin": True}, "user_admin_on"),
    "admin_off": ({"admin": False}, "user_admin_off"),
}


async def _users_page(
    visit: Visit, *, error: ManageError | None = None, status: int = 200
) -> Response:
    rows = await visit.manager.users(visit.actor)
    return visit.render(
        "users.html",
        {
            "users": rows,
            "form": {"name": visit.field("name"), "admin": visit.field("admin") == "on"},
            "error": error,
        },
        status=status,
    )


async def users_page(visit: Visit) -> Response:
    return await _users_page(visit)


async def add_user(visit: Visit) -> Response:
    try:
        await visit.manager.add_user(
            visit.actor,
            visit.field("name").strip(),
            visit.field("password"),
            admin=visit.field("admin") == "on",
        )
    except ManageError as exc:
        return await _users_page(visit, error=exc, status=exc.status)
    return redirect("/admin/users", "user_added")


async def change_user(visit: Visit) -> Response:
    action = ACTIONS.get(visit.field("action"))
    if action is None:
        raise ManageError("unknown action")
    changes, done = action
    await visit.manager.set_user(visit.actor, visit.request.path_params["name"], **changes)
    return redirect("/admin/users", done)


async def _remove_page(
    visit: Visit, *, error: ManageError | None = None, status: int = 200
) -> Response:
    name = visit.request.path_params["name"]
    for row in await visit.manager.users(visit.actor):
        if row.name == name:
            return visit.render("user_remove.html", {"user": row, "error": error}, status=status)
    return visit.error(404, f"no user named {name!r}")


async def remove_page(visit: Visit) -> Response:
    return await _remove_page(visit)


async def remove_user(visit: Visit) -> Response:
    try:
        await visit.manager.remove_user(
            visit.actor,
            visit.request.path_params["name"],
            with_hosts=visit.field("with_hosts") == "on",
        )
    except ManageError as exc:
        if exc.status == 404:
            raise
        return await _remove_page(visit, error=exc, status=exc.status)
    return redirect("/admin/users", "user_removed")


routes = [
    Route("/admin/users", page(users_page, admin=True), methods=["GET"]),
    Route("/admin/users", page(add_user, admin=True), methods=["POST"]),
    Route("/admin/users/{name}", page(change_user, admin=True), methods=["POST"]),
    Route("/admin/users/{name}/remove", page(remove_page, admin=True), methods=["GET"]),
    Route("/admin/users/{name}/remove", page(remove_user, admin=True), methods=["POST"]),
]
