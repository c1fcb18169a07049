"""The API's answers: JSON bodies, and one shape for every error.

Every refusal is ``{"error": {"code": "...", "message": "...", "field": ...}}``: ``code``
a word for scripts, ``message`` what went wrong and what to do, ``field`` the request's
member (``"fqdn"``, ``"follows.interface_id"``) or parameter at fault, or null::

    ApiError                   raised by the API's own checks
      400 malformed_json       the body is not JSON
      401 unauthorized         no API token, or not one that works (with WWW-Authenticate)
      404 not_found            no such resource (the router's, and manage.NotFound)
      405 method_not_allowed   (with Allow)
      413 too_large            a body over MAX_BODY
      415 unsupported_media_type  a body that is not application/json
      422 invalid              a member or parameter, named in ``field``
      429 too_many_requests    the caller's source is locked out (with Retry-After)
    manage.ManageError         raised by the service layer: its status, code, message, field
      403 forbidden, 404 not_found, 409 conflict, 422 invalid, 503 unavailable
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from starlette.responses import Response

from ..admin import utc
from ..manage import Locked, ManageError
from ..throttle import retry_after_header

JSON = "application/json"
_NO_STORE = {"Cache-Control": "no-store"}  # answers may hold secrets, shown once
# The CLI's flags in the service layer's messages, as the API calls them.
_FLAGS = {
    "--interface-id": "follows.interface_id",
    "--prefix-length": "follows.prefix_length",
    "--expires": "expires_days",
    "--host": "hosts",
}
_FLAG = re.compile("|".join(re.escape(flag) for flag in _FLAGS))


class ApiError(Exception):
    """A refusal of the API itself (not of the service layer)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = dict(headers or {})


def invalid(message: str, field: str | None = None) -> ApiError:
    return ApiError(422, "invalid", message, field=field)


def _plain(value: Any) -> Any:
    """JSON has no NaN or infinity: such figures are null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def json_response(
    data: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    body = json.dumps(_plain(data), ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return Response(body.encode(), status, {**_NO_STORE, **(headers or {})}, JSON)


def no_content() -> Response:
    return Response(status_code=204, headers=_NO_STORE)


def error_response(
    status: int,
    code: str,
    message: str,
    field: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    error = {"code": code, "message": message, "field": field}
    return json_response({"error": error}, status, headers)


def of_api_error(exc: ApiError) -> Response:
    return error_response(exc.status, exc.code, exc.message, exc.field, exc.headers)


def of_manage_error(exc: ManageError) -> Response:
    """The service layer's refusal; a CLI flag in its message becomes the API's name."""
    message, field = exc.message, exc.field
    flag = _FLAG.search(message)
    if flag is not None:
        message = _FLAG.sub(lambda m: _FLAGS[m.group(0)], message)
        field = field or _FLAGS[flag.group(0)]
    headers = None
    if isinstance(exc, Locked):
        headers = {"Retry-After": retry_after_header(exc.retry_after)}
    return error_response(exc.status, exc.code, message, field, headers)


def timestamp(value: datetime | None) -> str | None:
    """ISO 8601 in UTC, ``2025-05-06T07:08:09.123456Z``."""
    if value is None:
        return None
    return utc(value).astimezone(UTC).isoformat().replace("+00:00", "Z")
