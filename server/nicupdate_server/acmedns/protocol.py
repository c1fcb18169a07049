"""What acme-dns clients send and what they are answered, as acme-dns does it (pure).

An update is checked in acme-dns's order:

1. ``X-Api-User`` (a UUID) and ``X-Api-Key`` (40 URL-safe characters) are an account's
   credentials: otherwise 401 ``forbidden``.
2. The body is a JSON object: otherwise 400 ``malformed_json_payload``. (acme-dns gives
   this answer to a ``/register`` body it cannot read; to such an ``/update`` body it
   answers ``forbidden``, having no subdomain to compare. The clearer answer costs no
   client anything: none sends such a body.)
3. Its ``subdomain`` is the account's: otherwise 401 ``forbidden``.
4. Its ``txt`` is 43 to 200 URL-safe characters (an ACME DNS-01 token has 43):
   otherwise 400 ``bad_txt``.

Keys are matched as Go's ``encoding/json`` matches them, whatever their case: lego's
client sends ``{"SubDomain": ..., "Txt": ...}``.

An error is ``{"error": CODE, "message": TEXT}``: acme-dns's code, which scripts may
compare, and a message that says what to do (acme-dns sends the code alone; clients
show the body as it came).
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

MAX_BODY = 4096  # bytes; an update is about 100
KEY_LENGTH = 40
MIN_TXT = 43
MAX_TXT = 200
MAX_USERNAME = 45  # the longest form of a UUID: urn:uuid:...
_URL_SAFE = re.compile(r"[A-Za-z0-9_-]+")

# acme-dns's error codes.
FORBIDDEN = "forbidden"
MALFORMED = "malformed_json_payload"
BAD_TXT = "bad_txt"
DB_ERROR = "db_error"
# Answers acme-dns does not give.
TOO_LARGE = "payload_too_large"
TOO_MANY = "too_many_requests"
REGISTRATION_DISABLED = "registration_disabled"

TXT_RULE = (
    f"txt must be the ACME DNS-01 token: {MIN_TXT} to {MAX_TXT} characters "
    "of A-Z, a-z, 0-9, '-' and '_'"
)


class Malformed(ValueError):
    """The body is not a JSON object; the message says what is wrong with it."""


@dataclass(frozen=True, slots=True)
class Update:
    """An update's body. A field that is missing or not a string is None."""

    subdomain: str | None
    txt: str | None


class _Object(list[tuple[str, Any]]):
    """A JSON object's members, in order (to tell it from an array of pairs)."""


def parse_update(body: bytes) -> Update:
    """The body's ``subdomain`` and ``txt``. Raises :class:`Malformed`."""
    shape = 'send a JSON object: {"subdomain": "...", "txt": "..."}'
    if not body.strip():
        raise Malformed(f"the body is empty: {shape}")
    try:
        value = json.loads(body, object_pairs_hook=_Object)
    except json.JSONDecodeError as exc:
        raise Malformed(
            f"the body is not JSON ({exc.msg} at character {exc.pos}): {shape}"
        ) from None
    except (ValueError, RecursionError):  # not UTF-8 (or -16, -32); nested too deep
        raise Malformed(f"the body is not JSON: {shape}") from None
    if not isinstance(value, _Object):
        raise Malformed(f"the body is JSON but not an object: {shape}")
    fields: dict[str, str | None] = {}
    for key, member in value:  # the last of the same name counts, as in Go
        name = key.casefold()
        if name in ("subdomain", "txt"):
            fields[name] = member if isinstance(member, str) else None
    return Update(fields.get("subdomain"), fields.get("txt"))


def canonical_username(text: str) -> str | None:
    """An ``X-Api-User`` as the accounts keep it (a UUID in lower case, with hyphens);
    None when it is no UUID."""
    if len(text) > MAX_USERNAME:
        return None
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return None


def url_safe(text: str) -> bool:
    return _URL_SAFE.fullmatch(text) is not None


def valid_key(text: str) -> bool:
    """Whether ``text`` has the form of an acme-dns password (40 URL-safe characters)."""
    return len(text) == KEY_LENGTH and url_safe(text)


def valid_txt(text: str) -> bool:
    return MIN_TXT <= len(text) <= MAX_TXT and url_safe(text)


def answer(**fields: str) -> bytes:
    """A JSON body as acme-dns writes it: ``{"txt": "..."}``."""
    return json.dumps(fields).encode()
