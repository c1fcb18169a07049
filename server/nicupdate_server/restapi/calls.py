"""One API call, from the route to the answer: the caller checked, the handler run, any
refusal turned into the JSON error (:mod:`.errors`).

A resource module lists its operations as ``{path: {method: handler}}``
(:data:`Operations`); :func:`route` makes one Starlette route of each path, so that a
method the path does not take is answered 405 with every method it does take.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..manage import Actor, ManageError, Manager
from ..throttle import source_of
from .auth import BearerAuth, Caller
from .bodies import Fields, query, read_json
from .errors import ApiError, error_response, of_api_error, of_manage_error

log = logging.getLogger("nicupdate.restapi")


@dataclass(frozen=True, slots=True)
class Call:
    """A request of an accepted caller, with what its handler needs."""

    request: Request
    manager: Manager
    caller: Caller

    @property
    def actor(self) -> Actor:
        return self.caller.actor

    @property
    def user_agent(self) -> str:
        return self.request.headers.get("user-agent", "")[:255]

    @property
    def address(self) -> str:
        """The caller's address as the history shows it."""
        return str(self.caller.address or "")

    @property
    def source(self) -> str:
        """Where failed logins are counted (:func:`~..throttle.source_of`)."""
        return source_of(self.caller.address)

    def path(self, name: str) -> str:
        return str(self.request.path_params[name])

    def query(self, *known: str) -> dict[str, str]:
        return query(self.request, known)

    async def body(self, *known: str) -> Fields:
        return Fields(await read_json(self.request), known)


Handler = Callable[[Call], Awaitable[Response]]
Operations = Mapping[str, Mapping[str, Handler]]  # path -> method -> handler


def route(path: str, handlers: Mapping[str, Handler], auth: BearerAuth, manager: Manager) -> Route:
    async def endpoint(request: Request) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        return await answer(request, handlers[method], auth, manager)

    return Route(path, endpoint, methods=list(handlers))


async def answer(
    request: Request, handler: Handler, auth: BearerAuth, manager: Manager
) -> Response:
    """The handler's response, or the error's; never a traceback."""
    try:
        caller = await auth.caller(request)
        return await handler(Call(request, manager, caller))
    except ApiError as exc:
        return of_api_error(exc)
    except ManageError as exc:
        return of_manage_error(exc)
    except SQLAlchemyError as exc:
        log.warning("%s %s: the database failed: %s", request.method, request.url.path, exc)
        return error_response(
            503,
            "unavailable",
            "the database cannot be read or written now: try again in a moment",
            headers={"Retry-After": "5"},
        )
    except Exception:
        log.exception("%s %s failed", request.method, request.url.path)
        return error_response(500, "internal", "the server failed on this request (see its log)")


def methods_of(operations: Sequence[Operations]) -> dict[str, list[str]]:
    """Every path, with its methods (for tests that compare them with the OpenAPI)."""
    found: dict[str, list[str]] = {}
    for table in operations:
        for path, handlers in table.items():
            found.setdefault(path, []).extend(handlers)
    return found
