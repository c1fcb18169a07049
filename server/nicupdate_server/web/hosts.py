"""The hosts pages: the list (``/hosts``; an admin's ``?all=1``: every host), adding one,
a host's page (its addresses, what DNS serves, its history and timeline), setting its
addresses by hand, its wildcard, a new token, removing it.

A host's token is shown once, on the answer to the POST that made it (never cached),
with settings for the usual clients filled in (:mod:`.snippets`).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..dyndns import Code
from ..manage import ManageError
from . import chart
from .messages import t
from .site import Visit, page, redirect
from .snippets import snippets

CHART_ROWS = 200
_SPLIT = re.compile(r"[\s,;]+")


async def home(request: Request) -> Response:
    return redirect("/hosts")


async def hosts_page(visit: Visit) -> Response:
    every = visit.session.admin and visit.request.query_params.get("all") == "1"
    rows = await visit.manager.hosts(visit.actor, every=every)
    return visit.render("hosts.html", {"hosts": rows, "every": every})


def _zones(visit: Visit) -> list[str]:
    return [zone.name for zone in visit.manager.config.zones]


def _new_form(visit: Visit, *, error: ManageError | None = None, status: int = 200) -> Response:
    return visit.render(
        "host_new.html",
        {
            "zones": _zones(visit),
            "fqdn": visit.field("fqdn"),
            "owner": visit.field("owner"),
            "wildcard": visit.field("wildcard") == "on",
            "error": error,
        },
        status=status,
    )


async def new_host_page(visit: Visit) -> Response:
    return _new_form(visit)


async def add_host(visit: Visit) -> Response:
    owner = visit.field("owner").strip() if visit.session.admin else ""
    try:
        token = await visit.manager.add_host(
            visit.actor,
            visit.field("fqdn"),
            owner=owner or None,
            wildcard=visit.field("wildcard") == "on",
        )
        row = await visit.manager.host(visit.actor, visit.field("fqdn"))
    except ManageError as exc:
        return _new_form(visit, error=exc, status=exc.status)
    return _token_page(visit, row.fqdn, token, added=True)


def _token_page(visit: Visit, fqdn: str, token: str, *, added: bool) -> Response:
    server = visit.site.server(visit.request)
    return visit.render(
        "token.html",
        {
            "fqdn": fqdn,
            "token": token,
            "added": added,
            "snippets": snippets(server, fqdn, token),
        },
        secret=True,
    )


def _split(text: str) -> list[str]:
    return [item for item in _SPLIT.split(text) if item]


async def _host_page(
    visit: Visit,
    fqdn: str,
    *,
    error: str = "",
    error_field: str = "",
    form: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    row = await visit.manager.host(visit.actor, fqdn)
    before_text = visit.request.query_params.get("before", "")
    before = int(before_text) if before_text.isdigit() else None
    history = await visit.manager.history(visit.actor, row.fqdn, before=before)
    recent = await visit.manager.history(visit.actor, row.fqdn, limit=CHART_ROWS)
    timeline = chart.timeline(recent.rows, datetime.now(UTC))
    values = form or {
        "A": ", ".join(row.records.get("A", ())),
        "AAAA": ", ".join(row.records.get("AAAA", ())),
    }
    return visit.render(
        "host.html",
        {
            "host": row,
            "history": history,
            "older": before is not None,
            "chart": timeline,
            "values": values,
            "error": error,
            "error_field": error_field,
        },
        status=status,
    )


async def host_page(visit: Visit) -> Response:
    return await _host_page(visit, visit.request.path_params["fqdn"])


async def set_records(visit: Visit) -> Response:
    fqdn = visit.request.path_params["fqdn"]
    form = {"A": visit.field("a"), "AAAA": visit.field("aaaa")}
    try:
        changed = await visit.manager.set_records(
            visit.actor,
            fqdn,
            {family: _split(text) for family, text in form.items()},
            caller=visit.site.address(visit.request),
            user_agent="nicupdate web UI",
        )
    except ManageError as exc:
        return await _host_page(
            visit,
            fqdn,
            error=exc.message,
            error_field=exc.field or "",
            form=form,
            status=exc.status,
        )
    path = f"/hosts/{fqdn}"
    if changed.code == Code.GOOD.value:
        return redirect(path, "records_saved")
    if changed.code == Code.NOCHG.value:
        return redirect(path, "records_unchanged")
    if changed.code == Code.DNSERR.value:
        reason = t("host.records_refused", reason=changed.reason or changed.code)
        return await _host_page(visit, fqdn, error=reason, form=form, status=422)
    return redirect(path, "records_pending")


async def set_wildcard(visit: Visit) -> Response:
    fqdn = visit.request.path_params["fqdn"]
    on = visit.field("wildcard") == "on"
    row = await visit.manager.set_host(visit.actor, fqdn, wildcard=on)
    return redirect(f"/hosts/{row.fqdn}", "wildcard_on" if on else "wildcard_off")


async def rotate_token(visit: Visit) -> Response:
    fqdn = visit.request.path_params["fqdn"]
    row = await visit.manager.host(visit.actor, fqdn)
    token = await visit.manager.rotate_token(visit.actor, row.fqdn)
    return _token_page(visit, row.fqdn, token, added=False)


async def remove_page(visit: Visit) -> Response:
    row = await visit.manager.host(visit.actor, visit.request.path_params["fqdn"])
    return visit.render("host_remove.html", {"host": row})


async def remove_host(visit: Visit) -> Response:
    await visit.manager.remove_host(visit.actor, visit.request.path_params["fqdn"])
    return redirect("/hosts", "host_removed")


routes = [
    Route("/", home, methods=["GET"]),
    Route("/hosts", page(hosts_page), methods=["GET"]),
    Route("/hosts/new", page(new_host_page), methods=["GET"]),
    Route("/hosts/new", page(add_host), methods=["POST"]),
    Route("/hosts/{fqdn}", page(host_page), methods=["GET"]),
    Route("/hosts/{fqdn}/records", page(set_records), methods=["POST"]),
    Route("/hosts/{fqdn}/wildcard", page(set_wildcard), methods=["POST"]),
    Route("/hosts/{fqdn}/token", page(rotate_token), methods=["POST"]),
    Route("/hosts/{fqdn}/remove", page(remove_page), methods=["GET"]),
    Route("/hosts/{fqdn}/remove", page(remove_host), methods=["POST"]),
]
