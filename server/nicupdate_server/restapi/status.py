"""``/status``: how the server is, for admins."""

from __future__ import annotations

from starlette.responses import Response

from .calls import Call, Operations
from .errors import json_response


async def get_status(call: Call) -> Response:
    call.query()
    status = await call.manager.status(call.actor)
    return json_response(
        {
            "healthy": status.healthy,
            "problems": status.problems,
            "backends": [
                {"name": backend.name, "pending": backend.pending, "errors": backend.errors}
                for backend in status.backends
            ],
            "users": status.users,
            "hosts": status.hosts,
            "figures": status.figures,
        }
    )


OPERATIONS: Operations = {"/status": {"GET": get_status}}
