"""TSIG keys for UPDATE messages: made by ``key add``, held by the server as a keyring.

A key belongs to an account and may be bound to one of its hosts (``tsig_keys``): an
account key may update its owner's hosts, a host key that host alone (:mod:`.policy`).
The secret is random bytes of the algorithm's digest size, as ``tsig-keygen`` makes
it, kept in base64 in the database: the server needs it to check signatures.

The server holds the keys in memory (:class:`KeyRing`) and reads them again when a
message names a key it does not hold (at most once a second), so a new key works at
once. A message whose signature checks is applied only if its key is still in the
database, read at that moment: a removed (or replaced) key stops at once too.

Secrets never reach a log, an exception or a ``repr``: the keys print as
``<TSIG key NAME ALGORITHM>``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import dns.exception
import dns.name
import dns.tsig
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from ..dns.tsig import SecretKey
from ..store import describe_failure
from ..tables import tsig_keys

log = logging.getLogger("nicupdate.rfc2136in")

# The algorithms a key may have, and their secrets' sizes in bytes (tsig-keygen's).
ALGORITHMS: dict[str, tuple[dns.name.Name, int]] = {
    "hmac-sha256": (dns.tsig.HMAC_SHA256, 32),
    "hmac-sha512": (dns.tsig.HMAC_SHA512, 64),
    "hmac-sha1": (dns.tsig.HMAC_SHA1, 20),
    "hmac-md5": (dns.tsig.HMAC_MD5, 16),  # MikroTik's /tool dns-update knows no other
}
DEFAULT_ALGORITHM = "hmac-sha256"
MAX_NAME = 253
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
MISS_REFRESH = 1.0  # seconds: an unknown key name reads the keys again at most this often
QUERY_KEYS_INTERVAL = 2.0  # seconds between the DNS process's reads of the keys


class KeyNameError(ValueError):
    """Not a usable key name; the message says what one looks like."""


def key_name(text: str) -> str:
    """The normal form of a key's name: lower case, no trailing dot (``router.alice``)."""
    name = text.strip().lower()
    name = name[:-1] if name.endswith(".") else name
    labels = name.split(".")
    if not name or len(name) > MAX_NAME or not all(_LABEL.fullmatch(label) for label in labels):
        raise KeyNameError(
            f"{text[:80]!r} is not a valid key name: DNS labels of letters, digits, - and _, "
            "separated by dots (like home-router or home-router.alice)"
        )
    return name


def new_secret(algorithm: str) -> bytes:
    return secrets.token_bytes(ALGORITHMS[algorithm][1])


def key_clause(name: str, algorithm: str, secret: bytes) -> str:
    """The key as ``tsig-keygen`` prints it, for ``nsupdate -k`` and named.conf."""
    encoded = base64.b64encode(secret).decode("ascii")
    return f'key "{name}" {{\n\talgorithm {algorithm};\n\tsecret "{encoded}";\n}};\n'


@dataclass(frozen=True, slots=True)
class UpdateKey:
    """A key as the server checks a message with it: whose it is, and what it may update."""

    id: int
    name: str
    owner_id: int
    host_id: int | None  # None: every host of its owner
    algorithm: str
    key: dns.tsig.Key = field(repr=False, compare=False)  # holds the secret


def make_key(
    id: int, name: str, owner_id: int, host_id: int | None, algorithm: str, secret: str
) -> UpdateKey:
    """A key from its row (raises ValueError, naming the key and never the secret)."""
    known = ALGORITHMS.get(algorithm)
    if known is None:
        raise ValueError(f"key {name}: unknown algorithm {algorithm!r}")
    try:
        raw = base64.b64decode(secret, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if not raw:
        raise ValueError(f"key {name}: its secret is not base64")
    try:
        dns_name = dns.name.from_text(name)
    except dns.exception.DNSException:
        raise ValueError(f"key {name}: not a valid DNS name") from None
    return UpdateKey(id, name, owner_id, host_id, algorithm, SecretKey(dns_name, raw, known[0]))


class KeyRing:
    """Every key, by its DNS name, as the last read of ``tsig_keys`` found them."""

    def __init__(self, engine: AsyncEngine, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._engine = engine
        self._clock = clock
        self._read_at = -MISS_REFRESH
        self.keys: dict[dns.name.Name, UpdateKey] = {}

    async def find(self, name: dns.name.Name) -> UpdateKey | None:
        """The key named ``name``; a name not held reads the keys again (if the last
        read is more than :data:`MISS_REFRESH` seconds old)."""
        key = self.keys.get(name)
        if key is None and self._clock() - self._read_at >= MISS_REFRESH:
            await self.refresh()
            key = self.keys.get(name)
        return key

    async def refresh(self) -> None:
        """Read every key (a key whose row is broken is left out, with a warning)."""
        self._read_at = self._clock()
        query = select(
            tsig_keys.c.id,
            tsig_keys.c.name,
            tsig_keys.c.owner_id,
            tsig_keys.c.host_id,
            tsig_keys.c.algorithm,
            tsig_keys.c.secret,
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        keys: dict[dns.name.Name, UpdateKey] = {}
        for row in rows:
            try:
                key = make_key(*row)
            except ValueError as exc:
                log.warning("TSIG %s: it is not used (remove it with `key remove`)", exc)
                continue
            keys[key.key.name] = key
        self.keys = keys

    async def current(self, key: UpdateKey) -> bool:
        """Whether ``key`` is still in the database, as it was read (not removed, not
        replaced by another of the same name)."""
        query = select(tsig_keys.c.secret).where(tsig_keys.c.id == key.id)
        async with self._engine.connect() as conn:
            secret = await conn.scalar(query)
        if secret is None:
            self.keys.pop(key.key.name, None)
            return False
        try:
            stored = base64.b64decode(secret, validate=True)
        except (binascii.Error, ValueError):
            return False
        return secrets.compare_digest(stored, key.key.secret)


async def any_keys(engine: AsyncEngine) -> bool:
    """Whether any key exists (the DNS port then opens for UPDATE messages even when no
    zone uses the built-in DNS)."""
    async with engine.connect() as conn:
        return await conn.scalar(select(tsig_keys.c.id).limit(1)) is not None


async def follow(
    engine: AsyncEngine,
    changed: Callable[[dict[dns.name.Name, dns.tsig.Key]], None],
    interval: float = QUERY_KEYS_INTERVAL,
) -> None:
    """Read the keys every ``interval`` seconds and hand them to ``changed`` (the DNS
    process: it answers queries signed with them, signed, as certbot's rfc2136 plugin
    before v2.6 signs the SOA queries it finds the zone with)."""
    ring = KeyRing(engine)
    failing = False
    while True:
        try:
            await ring.refresh()
        except (SQLAlchemyError, OSError) as exc:
            if not failing:
                reason = describe_failure(exc)
                log.warning("TSIG keys cannot be read (%s); trying again", reason)
            failing = True
        else:
            failing = False
            changed({name: key.key for name, key in ring.keys.items()})
        await asyncio.sleep(interval)
