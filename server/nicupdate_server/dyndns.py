"""The dyndns2 protocol: parse a request into typed values, and write the answer.

Pure functions only: nothing here touches the network, the database or the clock,
so every client dialect can be tested on the parser alone. ``shared/PROTOCOL.md``
and ``docs/protocol.md`` describe the dialects.
"""

from __future__ import annotations

import binascii
import functools
import urllib.parse
from base64 import b64decode
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from .addresses import IPAddress, parse_host_address, parse_prefix, rtype_of

MAX_QUERY_BYTES = 4096
MAX_QUERY_FIELDS = 64
MAX_ADDRESSES_PER_FAMILY = 16
MAX_CREDENTIAL_BYTES = 1024
# Routers repeat the same query every few minutes: short queries are parsed once.
CACHED_QUERY_BYTES = 512
PARSE_CACHE_SIZE = 2048

HOSTNAME_KEYS = ("hostname",)
ADDRESS_KEYS = ("myip", "myipv4", "myipv6", "ipv4", "ipv6", "ip")
PREFIX_KEYS = ("ip6lanprefix",)  # FRITZ!Box's <ip6lanprefix>, when a URL names it apart
TRUE_WORDS = frozenset({"yes", "on", "true", "1"})
# wildcard=: ON and OFF (and their usual spellings); NOCHG or anything else leaves it.
WILDCARD_WORDS = {
    **dict.fromkeys(("on", "yes", "true", "1"), True),
    **dict.fromkeys(("off", "no", "false", "0"), False),
}


class Code(StrEnum):
    """Answer codes of the dyndns2 protocol."""

    GOOD = "good"
    NOCHG = "nochg"
    BADAUTH = "badauth"
    BADAGENT = "badagent"
    ABUSE = "abuse"
    NUMHOST = "numhost"
    NOTFQDN = "notfqdn"
    NOHOST = "nohost"
    DNSERR = "dnserr"
    SERVER_ERROR = "911"


SUCCESS_CODES = frozenset({Code.GOOD, Code.NOCHG})


class RequestRejected(Exception):
    """The whole request is answered with one code, not one line per host."""

    def __init__(self, code: Code, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Credentials:
    username: str
    password: str

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, password=<hidden>)"


@dataclass(frozen=True, slots=True)
class UpdateRequest:
    """One update request, as the client meant it."""

    hostnames: tuple[str, ...]
    # Addresses in the order sent, without duplicates. Empty: none were sent, so the
    # caller's own address is meant (unless ``offline``).
    addresses: tuple[IPAddress, ...]
    # Why an address item was refused, if one was: the hosts then answer ``dnserr``.
    address_error: str | None
    offline: bool
    query_credentials: Credentials | None
    # The addresses by record type, as text, sorted: what the host's records become.
    families: Mapping[str, tuple[str, ...]]
    # The IPv6 prefix the request delegates (``2001:db8:1:2::/64``): the hosts that
    # follow this one take it. None: none was sent.
    prefix: str | None = None
    # ``wildcard=ON|OFF``: turn ``*.<host>`` on or off; None (``NOCHG``, or not sent):
    # leave it.
    wildcard: bool | None = None

    def __repr__(self) -> str:  # the query may carry a password: never show it
        return (
            f"UpdateRequest(hostnames={self.hostnames!r}, addresses={self.addresses!r}, "
            f"address_error={self.address_error!r}, offline={self.offline!r}, "
            f"prefix={self.prefix!r}, wildcard={self.wildcard!r})"
        )


def _split_items(values: Iterable[str]) -> list[str]:
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


def _decode_query(raw_query: bytes) -> dict[str, list[str]]:
    if len(raw_query) > MAX_QUERY_BYTES:
        raise RequestRejected(Code.NOTFQDN, f"query longer than {MAX_QUERY_BYTES} bytes")
    try:
        pairs = urllib.parse.parse_qsl(
            raw_query, keep_blank_values=True, max_num_fields=MAX_QUERY_FIELDS
        )
    except ValueError:
        raise RequestRejected(Code.NOTFQDN, f"more than {MAX_QUERY_FIELDS} query fields") from None
    fields: dict[str, list[str]] = {}
    try:
        for key, value in pairs:
            fields.setdefault(key.decode("utf-8").lower(), []).append(value.decode("utf-8"))
    except UnicodeDecodeError:
        raise RequestRejected(Code.NOTFQDN, "query is not valid UTF-8") from None
    return fields


def _parse_prefix(items: Sequence[str]) -> tuple[str | None, str | None]:
    """The one IPv6 prefix among address items, and why they were refused if they were."""
    prefixes = list(dict.fromkeys(str(p) for p in map(parse_prefix, items) if p is not None))
    if len(prefixes) > 1:
        return None, f"more than one IPv6 prefix ({', '.join(prefixes[:3])})"
    return (prefixes[0] if prefixes else None), None


def _parse_addresses(items: Sequence[str]) -> tuple[tuple[IPAddress, ...], str | None]:
    addresses: list[IPAddress] = []
    for item in items:
        try:
            address = parse_host_address(item)
        except ValueError:
            return (), f"{item[:60]!r} is not an IP address"
        if address is not None and address not in addresses:
            addresses.append(address)
    for version in (4, 6):
        if sum(1 for a in addresses if a.version == version) > MAX_ADDRESSES_PER_FAMILY:
            return (), f"more than {MAX_ADDRESSES_PER_FAMILY} IPv{version} addresses"
    return tuple(addresses), None


def families_of(addresses: Iterable[IPAddress]) -> dict[str, tuple[str, ...]]:
    """``{"A": ("203.0.113.7",), "AAAA": (...)}``: each family's addresses as sorted text."""
    grouped: dict[str, list[str]] = {}
    for address in addresses:
        grouped.setdefault(rtype_of(address), []).append(str(address))
    return {rtype: tuple(sorted(values)) for rtype, values in grouped.items()}


def parse_update(raw_query: bytes, *, max_hosts: int) -> UpdateRequest:
    """Parse the query string of an update request.

    Raises :class:`RequestRejected` for a request that cannot be answered per host.
    """
    # Not cached: a query that carries a password (it would outlive the request in memory).
    if len(raw_query) <= CACHED_QUERY_BYTES and b"password=" not in raw_query.lower():
        return _parse_update_cached(raw_query, max_hosts)
    return _parse_update(raw_query, max_hosts)


def _parse_update(raw_query: bytes, max_hosts: int) -> UpdateRequest:
    fields = _decode_query(raw_query)
    hostnames = tuple(_split_items(v for key in HOSTNAME_KEYS for v in fields.get(key, ())))
    if not hostnames:
        raise RequestRejected(Code.NOTFQDN, "no hostname given")
    if len(hostnames) > max_hosts:
        raise RequestRejected(Code.NUMHOST, f"{len(hostnames)} hostnames, at most {max_hosts}")
    items = _split_items(v for key in ADDRESS_KEYS for v in fields.get(key, ()))
    addresses, address_error = _parse_addresses(items)
    prefix_items = [*items, *_split_items(v for key in PREFIX_KEYS for v in fields.get(key, ()))]
    prefix, prefix_error = _parse_prefix(prefix_items)
    for item in prefix_items[len(items) :]:
        if parse_prefix(item) is None and address_error is None:
            address_error = f"{item[:60]!r} is not an IPv6 prefix"
    address_error = address_error or prefix_error
    wildcard = WILDCARD_WORDS.get(fields.get("wildcard", [""])[0].strip().lower())
    offline = any(v.strip().lower() in TRUE_WORDS for v in fields.get("offline", ()))
    username = fields.get("username", [""])[0]
    password = fields.get("password", [""])[0]
    query_credentials = Credentials(username, password) if username and password else None
    return UpdateRequest(
        hostnames,
        addresses,
        address_error,
        offline,
        query_credentials,
        families_of(addresses),
        prefix,
        wildcard,
    )


_parse_update_cached = functools.lru_cache(maxsize=PARSE_CACHE_SIZE)(_parse_update)


def parse_basic_auth(header: str) -> Credentials | None:
    """Credentials from an ``Authorization: Basic`` header; ``None`` if absent or malformed."""
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or len(encoded) > 2 * MAX_CREDENTIAL_BYTES:
        return None
    try:
        decoded = b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    username, sep, password = decoded.partition(":")
    if not sep or not username:
        return None
    return Credentials(username, password)


def answer_line(code: Code, addresses: Sequence[IPAddress] = ()) -> str:
    """One answer line: ``good 203.0.113.7``, ``nochg 203.0.113.7,2001:db8::7``, ``nohost``."""
    return _answer_line(code, tuple(addresses))


@functools.lru_cache(maxsize=PARSE_CACHE_SIZE)
def _answer_line(code: Code, addresses: tuple[IPAddress, ...]) -> str:
    if code in SUCCESS_CODES and addresses:
        return f"{code.value} {','.join(str(a) for a in addresses)}"
    return code.value


def answer_body(lines: Iterable[str]) -> str:
    return "".join(line + "\n" for line in lines)
