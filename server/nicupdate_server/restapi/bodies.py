"""What a request brings: its JSON body and query parameters, checked member by member.

:func:`read_json` refuses what is not a JSON object (413, 415, 400, 422); :class:`Fields`
takes the members a resource knows, each checked for its type and range, after refusing
any it does not know (422 naming them). Nothing here knows about hosts or tokens.

:class:`Drained` reads the rest of a body its request did not need (refused before it
was read, or over :data:`MAX_BODY`) before the answer goes: a connection whose body is
left unread is closed after the answer, and a client that sends its next request on it
meanwhile would get no answer at all.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import ApiError, invalid

MAX_BODY = 64 * 1024
DRAIN_MAX = 256 * 1024  # body bytes read and dropped to keep a connection usable
MAX_TEXT = 1024  # characters of any string member (a password, a name)
MAX_ITEMS = 100  # items of any list member


class _Absent:
    pass


ABSENT: Any = _Absent()  # a member not sent (where null means something of its own)


def _no_constants(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


async def read_json(request: Request) -> dict[str, Any]:
    """The body: a JSON object of at most :data:`MAX_BODY` bytes."""
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != "application/json":
        shown = media_type[:60] or "none"
        raise ApiError(
            415,
            "unsupported_media_type",
            f"send the body as JSON with Content-Type: application/json (got {shown})",
        )
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_BODY:
        raise _too_large()
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise _too_large()
    try:
        data = json.loads(bytes(body).decode("utf-8"), parse_constant=_no_constants)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        where = ""
        if isinstance(exc, json.JSONDecodeError):
            where = f" (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        raise ApiError(
            400, "malformed_json", f"the body is not valid JSON{where}: send a JSON object"
        ) from None
    if not isinstance(data, dict):
        raise invalid(f"the body must be a JSON object, not {_kind(data)}")
    return data


def _too_large() -> ApiError:
    return ApiError(413, "too_large", f"the body is over {MAX_BODY // 1024} KiB")


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


class Fields:
    """The members of a JSON object, taken one by one (``prefix``: where it lies)."""

    def __init__(self, data: Mapping[str, Any], known: Sequence[str], prefix: str = "") -> None:
        self._data = data
        self._prefix = prefix
        unknown = sorted(name for name in data if name not in known)
        if unknown:
            names = ", ".join(self._name(name)[:70] for name in unknown[:5])
            allowed = ", ".join(known)
            raise invalid(
                f"unknown member(s): {names}; this object takes {allowed}",
                self._name(unknown[0])[:70],
            )

    def _name(self, name: str) -> str:
        return f"{self._prefix}{name}"

    def _wrong(self, name: str, wanted: str, value: Any) -> ApiError:
        return invalid(f"{self._name(name)} must be {wanted}, not {_kind(value)}", self._name(name))

    def has(self, name: str) -> bool:
        return name in self._data

    def raw(self, name: str) -> Any:
        return self._data.get(name, ABSENT)

    def required(self, name: str) -> None:
        if name not in self._data:
            raise invalid(f"{self._name(name)} is missing", self._name(name))

    def text(self, name: str, *, required: bool = False, max_length: int = MAX_TEXT) -> str | None:
        if required:
            self.required(name)
        if name not in self._data:
            return None
        value = self._data[name]
        if not isinstance(value, str):
            raise self._wrong(name, "a string", value)
        if not value:
            raise invalid(f"{self._name(name)} is empty", self._name(name))
        if len(value) > max_length:
            raise invalid(
                f"{self._name(name)} is too long: at most {max_length} characters",
                self._name(name),
            )
        return value

    def flag(self, name: str) -> bool | None:
        if name not in self._data:
            return None
        value = self._data[name]
        if not isinstance(value, bool):
            raise self._wrong(name, "true or false", value)
        return value

    def whole(self, name: str, low: int, high: int) -> int | None:
        if name not in self._data:
            return None
        value = self._data[name]
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._wrong(name, f"a whole number from {low} to {high}", value)
        if not low <= value <= high:
            raise invalid(
                f"{self._name(name)} must be from {low} to {high} (got {value})"[:200],
                self._name(name),
            )
        return value

    def texts(
        self, name: str, *, max_items: int = MAX_ITEMS, max_length: int = 255
    ) -> list[str] | None:
        """A list of strings (maybe empty)."""
        if name not in self._data:
            return None
        values = self._data[name]
        if not isinstance(values, list):
            raise self._wrong(name, "a list of strings", values)
        if len(values) > max_items:
            raise invalid(f"{self._name(name)}: at most {max_items} items", self._name(name))
        for value in values:
            if not isinstance(value, str):
                raise invalid(
                    f"{self._name(name)}: every item must be a string, not {_kind(value)}",
                    self._name(name),
                )
            if len(value) > max_length:
                raise invalid(
                    f"{self._name(name)}: an item is over {max_length} characters",
                    self._name(name),
                )
        return list(values)

    def nested(self, name: str, known: Sequence[str]) -> Fields | None:
        """An object member (None: not sent; null is the caller's to look at with raw)."""
        if name not in self._data:
            return None
        value = self._data[name]
        if not isinstance(value, dict):
            raise self._wrong(name, "an object", value)
        return Fields(value, known, prefix=self._name(name) + ".")


def query(request: Request, known: Sequence[str]) -> dict[str, str]:
    """The query parameters, each at most once, none unknown."""
    values: dict[str, str] = {}
    for name, value in request.query_params.multi_items():
        if name not in known:
            allowed = ", ".join(known) or "none"
            raise invalid(f"unknown parameter {name[:60]!r} (this takes: {allowed})", name[:60])
        if name in values:
            raise invalid(f"{name} is given twice", name)
        values[name] = value
    return values


def truth(values: Mapping[str, str], name: str) -> bool:
    """A yes/no parameter: ``true`` or ``false`` (``1``, ``0``); absent: false."""
    text = values.get(name, "false").strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise invalid(f"{name} must be true or false (got {text[:40]!r})", name)


def whole_parameter(values: Mapping[str, str], name: str, low: int, high: int) -> int | None:
    if name not in values:
        return None
    text = values[name].strip()
    if not text.isascii() or not text.isdigit() or len(text) > 19 or not low <= int(text) <= high:
        raise invalid(f"{name} must be a whole number from {low} to {high}", name)
    return int(text)


class Drained:
    """``app``, with what a request's body still holds read (up to :data:`DRAIN_MAX`)
    before its answer starts."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length", b"")
        left = not (length.isdigit() and int(length) > DRAIN_MAX)  # too big: not read
        seen = 0

        async def counted() -> Message:
            nonlocal left, seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                left = left and bool(message.get("more_body", False))
            else:
                left = False
            return message

        async def answering(message: Message) -> None:
            if message["type"] == "http.response.start":
                while left and seen <= DRAIN_MAX:
                    await counted()
            await send(message)

        await self._app(scope, counted, answering)
