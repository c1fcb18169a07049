"""Who is asking: account passwords, host tokens, and the verified-credential cache.

An account (user name + password) may update the hosts it owns. A host token
(user name = the host's FQDN, password = its token) may update that host only.

Passwords are stored as argon2id hashes (argon2-cffi, PHC strings); one check costs
tens of milliseconds, so a successful check is remembered as a keyed digest of the
password next to the hash it was checked against: a client that sends the same
correct password again is answered without the slow hash, and a new password hash
(``user passwd``) invalidates the entry. Refused attempts are remembered the same
way, so a misconfigured client looping on a wrong password does not cost a hash
each time. An unknown user pays the same hash as a wrong password.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from collections import OrderedDict
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from .dyndns import MAX_CREDENTIAL_BYTES, Credentials
from .state import HostEntry, State

TOKEN_BYTES = 32
REFUSED_CACHE_SIZE = 4096

# argon2id with RFC 9106's low-memory parameters (m=64 MiB, t=3, p=4).
_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password: str, password_hash: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError, ValueError, TypeError):
        return False  # wrong password, or a malformed hash


# Verified against when the user does not exist, so that case costs the same.
_DUMMY_HASH = hash_password(secrets.token_urlsafe(16))


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: an account, or a token bound to one host."""

    name: str
    user_id: int | None = None
    host_id: int | None = None

    def may_update(self, host: HostEntry) -> bool:
        if self.host_id is not None:
            return host.id == self.host_id
        return host.owner_id == self.user_id


class Authenticator:
    def __init__(self, state: State, *, max_parallel_hashes: int = 2) -> None:
        self._state = state
        self._key = secrets.token_bytes(32)
        self._verified: dict[str, tuple[bytes, str]] = {}
        self._refused: OrderedDict[tuple[str, bytes], str] = OrderedDict()
        self._hashing = asyncio.Semaphore(max_parallel_hashes)
        self._in_flight: dict[tuple[str, bytes, str], asyncio.Future[bool]] = {}

    def use_state(self, state: State) -> None:
        self._state = state

    def _digest(self, password: str) -> bytes:
        data = password.encode("utf-8", "surrogatepass")
        return hashlib.blake2b(data, key=self._key, digest_size=32).digest()

    async def authenticate(self, credentials: Credentials) -> Principal | None:
        username, password = credentials.username, credentials.password
        if len(password.encode("utf-8", "surrogatepass")) > MAX_CREDENTIAL_BYTES:
            return None
        host = self._state.hosts.get(username.lower().rstrip("."))
        if host is not None and host.token_digest is not None:
            if hmac.compare_digest(token_digest(password), host.token_digest):
                return Principal(host.fqdn, host_id=host.id)
        user = self._state.users.get(username)
        current_hash = user.password_hash if user is not None else _DUMMY_HASH
        digest = self._digest(password)
        cached = self._verified.get(username)
        if (
            user is not None
            and cached is not None
            and cached[1] == current_hash
            and hmac.compare_digest(cached[0], digest)
        ):
            return Principal(user.name, user_id=user.id)
        refused_key = (username, digest)
        if self._refused.get(refused_key) == current_hash:
            self._refused.move_to_end(refused_key)
            return None
        ok = await self._verify_once(username, digest, password, current_hash)
        if ok and user is not None:
            return Principal(user.name, user_id=user.id)
        return None

    async def _verify_once(
        self, username: str, digest: bytes, password: str, current_hash: str
    ) -> bool:
        """Hash ``password`` once however many requests bring it at the same time.

        Routers that come back together after an outage all send the same credentials:
        the first request hashes, the others wait for its verdict instead of queueing a
        hash each."""
        key = (username, digest, current_hash)
        pending = self._in_flight.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._verify(username, digest, password, current_hash))
            self._in_flight[key] = pending
            pending.add_done_callback(lambda _: self._in_flight.pop(key, None))
        return await asyncio.shield(pending)

    async def _verify(self, username: str, digest: bytes, password: str, current_hash: str) -> bool:
        async with self._hashing:
            ok = await asyncio.to_thread(verify_password, password, current_hash)
        if ok and username in self._state.users:
            self._verified[username] = (digest, current_hash)
            return True
        self._refused[(username, digest)] = current_hash
        if len(self._refused) > REFUSED_CACHE_SIZE:
            self._refused.popitem(last=False)
        return False
