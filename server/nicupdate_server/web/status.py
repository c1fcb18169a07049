"""The server's status, for admins (``/admin/status``): what ``/healthz`` reports, each
DNS backend's pending changes and errors, the numbers of accounts and hosts, and the
counters and gauges of ``/metrics`` as a table."""

from __future__ import annotations

from starlette.responses import Response
from starlette.routing import Route

from .site import Visit, page


async def status_page(visit: Visit) -> Response:
    status = await visit.manager.status(visit.actor)
    figures = sorted(status.figures.items())
    return visit.render("status.html", {"status": status, "figures": figures})


routes = [Route("/admin/status", page(status_page, admin=True), methods=["GET"])]
