"""What the signing schemes share: the clock, secrets, RFC 3986 encoding, and the
canonical request of SigV4 (which Huawei's SDK-HMAC-SHA256 reuses with another string
to sign), and the query and path as httpx puts them on the wire."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from urllib.parse import quote

import httpx

Headers = Mapping[str, str] | Iterable[tuple[str, str]]


def utc_now() -> datetime:
    """The default signing clock."""
    return datetime.now(UTC)


def as_utc(when: datetime) -> datetime:
    """``when`` in UTC; a naive datetime is refused rather than taken as local time."""
    if when.utcoffset() is None:
        raise ValueError("the signing time must be timezone-aware")
    return when.astimezone(UTC)


def secret_bytes(name: str, value: str) -> bytes:
    """A secret as UTF-8, checked at construction; errors name the argument, never the value."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string")
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{name} is not valid UTF-8") from None


def uri_encode(text: str, safe: str = "") -> str:
    """RFC 3986 percent-encoding of UTF-8: all but ``A-Z a-z 0-9 - _ . ~`` (and ``safe``)."""
    return quote(text, safe=safe)


def canonical_query(pairs: Iterable[tuple[str, str]]) -> str:
    """Names and values encoded one by one, sorted by name then value, joined by ``&``."""
    encoded = sorted((uri_encode(name), uri_encode(value)) for name, value in pairs)
    return "&".join(f"{name}={value}" for name, value in encoded)


def canonical_headers(headers: Headers) -> tuple[str, str]:
    """(canonical headers block, signed headers) of the headers given.

    Names are lower-cased and sorted; values trimmed with inner runs of spaces
    collapsed; a repeated header's values are joined by commas in order.
    """
    items = headers.items() if isinstance(headers, Mapping) else headers
    merged: dict[str, list[str]] = {}
    for name, value in items:
        merged.setdefault(name.lower(), []).append(" ".join(value.split()))
    names = sorted(merged)
    block = "".join(f"{name}:{','.join(merged[name])}\n" for name in names)
    return block, ";".join(names)


def canonical_request(
    method: str, uri: str, query: str, headers: Headers, payload_hash: str
) -> tuple[str, str]:
    """(canonical request, signed headers); ``uri`` and ``query`` already canonical."""
    block, signed = canonical_headers(headers)
    return "\n".join([method.upper(), uri, query, block, signed, payload_hash]), signed


def hmac_sha256(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()


def wire_query(request: httpx.Request) -> list[tuple[str, str]]:
    """The request's query pairs, with the URL rewritten to their RFC 3986 encoding.

    httpx sends a space in ``params`` as ``+``; rewriting the query to ``%20`` (and
    sorting it) makes what goes on the wire exactly what the signature covers.
    """
    pairs = list(request.url.params.multi_items())
    if pairs:
        request.url = request.url.copy_with(query=canonical_query(pairs).encode("ascii"))
    return pairs


def wire_path(request: httpx.Request) -> str:
    """The percent-encoded path as sent, without the query."""
    return request.url.raw_path.split(b"?", 1)[0].decode("ascii") or "/"


def headers_to_sign(request: httpx.Request, prefix: str) -> list[tuple[str, str]]:
    """``content-type`` and the headers starting with ``prefix``: what SigV4-style
    schemes sign besides ``host``."""
    return [
        (name, value)
        for name, value in request.headers.multi_items()
        if name == "content-type" or name.startswith(prefix)
    ]
