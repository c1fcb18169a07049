"""Who is asking: account passwords, host tokens, and the verified-credential cache.

An account (user name + password) may update the hosts it owns. A host token
(user name = the host's FQDN, password = its token) may update that host only.

Passwords are stored as argon2id hashes (argon2-cffi, PHC strings); one check costs
about 20 ms of CPU, so a successful check is remembered as a keyed digest of the
password next to the hash it was checked against: a client that sends the same
correct password again is answered without the slow hash, and a new password hash
(``user passwd``) invalidates the entry. Refused attempts are remembered the same
way, so a misconfigured client looping on a wrong password does not cost a hash
each time. An unknown user pays the same hash as a wrong password.

Guessing is throttled per source (:mod:`.throttle`): a locked-out source is answered
429 without a hash, except for credentials that need none (a host token, or a
password already verified), so a router keeps working while someone guesses its
account. Checks that do need a hash wait in a bounded, fair queue (:mod:`.checks`).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from .checks import CheckDropped, ChecksBusy, PasswordChecks
from .config import LimitSettings
from .dyndns import MAX_CREDENTIAL_BYTES, Credentials
from .logsummary import LogSummary
from .state import HostEntry, State
from .throttle import UNKNOWN_SOURCE, GuessLimiter

TOKEN_BYTES = 32
REFUSED_CACHE_SIZE = 4096

log = logging.getLogger("nicupdate.auth")

# argon2id with OWASP's recommended parameters (m=19 MiB, t=2, p=1): about 20 ms of
# one CPU per check, on one thread. (Parallelism 4 would start four threads per check,
# four times the CPU a flood of guesses could take from the event loop.) Hashes made
# with other parameters, by earlier versions, still verify: the PHC string carries them.
_hasher = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)


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
    """What the database keeps of a host token: its SHA-256, as hex (the server holds the
    raw 32 bytes, ``HostEntry.token_digest``)."""
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


class LoginThrottled(Exception):
    """Not checked now: answered HTTP 429, to try again after ``retry_after`` seconds."""

    def __init__(self, retry_after: float, reason: str) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


def _never() -> bool:
    return False


class Authenticator:
    def __init__(
        self,
        state: State,
        limits: LimitSettings | None = None,
        *,
        summary: LogSummary | None = None,
    ) -> None:
        limits = limits or LimitSettings()
        self._state = state
        self._key = secrets.token_bytes(32)
        self._verified: dict[str, tuple[bytes, str]] = {}
        self._refused: OrderedDict[tuple[str, bytes], str] = OrderedDict()
        self._in_flight: dict[tuple[str, bytes, str], _Shared] = {}
        self.limiter = GuessLimiter(limits)
        self.checks = PasswordChecks(
            workers=limits.hash_workers,
            max_pending=limits.max_pending_checks,
            max_per_source=limits.max_pending_checks_per_source,
            standing=self.limiter.standing,
        )
        self._summary = summary or LogSummary(log, limits.log_interval)
        self.failures = 0  # failed logins since the start (read by /metrics)

    def configure(self, limits: LimitSettings) -> None:
        """New limits (a reload): lock-outs, the queue of checks and its threads."""
        self.limiter.configure(limits)
        self.checks.configure(
            workers=limits.hash_workers,
            max_pending=limits.max_pending_checks,
            max_per_source=limits.max_pending_checks_per_source,
        )
        self._summary.configure(limits.log_interval)

    def use_state(self, state: State) -> None:
        self._state = state

    def close(self) -> None:
        self.checks.close()
        self._summary.close()

    def _digest(self, password: str) -> bytes:
        data = password.encode("utf-8", "surrogatepass")
        return hashlib.blake2b(data, key=self._key, digest_size=32).digest()

    async def authenticate(
        self,
        credentials: Credentials,
        where: Callable[[], str] = lambda: UNKNOWN_SOURCE,
        gone: Callable[[], bool] = _never,
    ) -> Principal | None:
        """The principal, or ``None`` for wrong credentials.

        ``where()`` is where the request comes from (:func:`.throttle.source_of`; asked
        only when a password needs checking or failed) and
        ``gone()`` tells whether its client has closed the connection. Raises
        :class:`LoginThrottled` when the source is locked out or too many checks wait.
        """
        username, password = credentials.username, credentials.password
        if len(password.encode("utf-8", "surrogatepass")) > MAX_CREDENTIAL_BYTES:
            self.failed(where(), username)
            return None
        host = self._state.hosts.get(username.lower().rstrip("."))
        if host is not None and host.token_digest is not None:
            if hmac.compare_digest(hashlib.sha256(password.encode()).digest(), host.token_digest):
                if host.owner_id in self._state.disabled:
                    return None  # the right token of a disabled account's host
                return Principal(host.fqdn, host_id=host.id)
        user = self._state.users.get(username)
        if user is not None and user.id in self._state.disabled:
            user = None  # checked as for an unknown name: the same time, the same answer
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
        source = where()
        wait = self.limiter.locked(source, username)
        if wait > 0:
            self._summary.note("login refused (locked out, 429)", source, repr(username))
            raise LoginThrottled(wait, f"{source} is locked out after failed logins")
        refused_key = (username, digest)
        if self._refused.get(refused_key) == current_hash:
            self._refused.move_to_end(refused_key)
            self.failed(source, username)
            return None
        try:
            ok = await self._verify_once(username, digest, password, current_hash, source, gone)
        except ChecksBusy as exc:
            self.limiter.refused(source)
            self._summary.note("login refused (checks busy, 429)", source, str(exc))
            raise LoginThrottled(exc.retry_after, str(exc)) from None
        except CheckDropped:
            raise LoginThrottled(1.0, "the client went away") from None
        if ok and user is not None and user.id not in self._state.disabled:
            self.limiter.succeeded(source, username)
            return Principal(user.name, user_id=user.id)
        self.failed(source, username)
        return None

    def failed(self, source: str, username: str) -> None:
        """Count and log a failed login (of any kind: dyndns2, acme-dns, TSIG keys)."""
        self.failures += 1
        self._summary.note("badauth", source, repr(username))
        lockout = self.limiter.failed(source, username)
        if lockout is not None:
            who = "every user name" if lockout.user is None else repr(lockout.user)
            self._summary.note(
                "lock-out",
                source,
                f"{who} for {lockout.seconds:g} s after {lockout.failures} failed logins",
                logging.WARNING,
            )

    async def _verify_once(
        self,
        username: str,
        digest: bytes,
        password: str,
        current_hash: str,
        source: str,
        gone: Callable[[], bool],
    ) -> bool:
        """Hash ``password`` once however many requests bring it at the same time.

        Routers that come back together after an outage all send the same credentials:
        the first request queues a check, the others wait for its verdict instead of
        queueing one each. The check is dropped only if all of them have gone. A check
        the queue refuses raises :class:`ChecksBusy` here, at once."""
        key = (username, digest, current_hash)
        shared = self._in_flight.get(key)
        if shared is None:
            shared = _Shared()
            shared.future = self.checks.submit(
                source, lambda: verify_password(password, current_hash), shared.all_gone
            )
            self._in_flight[key] = shared
            shared.future.add_done_callback(
                lambda future: self._remember(key, username, digest, current_hash, future)
            )
        shared.gone.append(gone)
        assert shared.future is not None
        ok = await asyncio.shield(shared.future)
        return ok and username in self._state.users

    def _remember(
        self,
        key: tuple[str, bytes, str],
        username: str,
        digest: bytes,
        current_hash: str,
        verdict: asyncio.Future[bool],
    ) -> None:
        """Keep a finished check's verdict for the next requests with the same password."""
        self._in_flight.pop(key, None)
        if verdict.cancelled() or verdict.exception() is not None:
            return
        if verdict.result() and username in self._state.users:
            self._verified[username] = (digest, current_hash)
            return
        self._refused[(username, digest)] = current_hash
        if len(self._refused) > REFUSED_CACHE_SIZE:
            self._refused.popitem(last=False)


class _Shared:
    """One password check and everyone waiting for it."""

    __slots__ = ("future", "gone")

    def __init__(self) -> None:
        self.gone: list[Callable[[], bool]] = []
        self.future: asyncio.Future[bool] | None = None

    def all_gone(self) -> bool:
        return all(gone() for gone in self.gone)
