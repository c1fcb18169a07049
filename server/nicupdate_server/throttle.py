"""Password guessing, throttled per source: failure counters and exponential lock-outs.

Failed logins are counted per source (the caller's address after ``trusted_proxies``:
an IPv4 address, or the /64 of an IPv6 address) and per (user name, source). When
either count reaches its limit within ``auth_failure_window``, that key is locked out:
its attempts are answered HTTP 429 with ``Retry-After`` and cost no hash. Each further
lock-out of the same key lasts twice as long, up to ``lockout_max``; a key that stays
quiet for ``lockout_max`` starts again from ``lockout_initial``.

Nothing is ever locked per user alone: an attacker elsewhere cannot lock a user out.
A correct login clears its (user name, source) count, never the source's: an attacker
holding one account cannot wash its guesses at other accounts clean.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from .addresses import IPAddress
from .config import LimitSettings

MAX_KEYS = 100_000  # counters kept; the least recently used go first
UNKNOWN_SOURCE = "unknown"


def source_of(address: IPAddress | None) -> str:
    """The key failures are counted under: ``203.0.113.7``, ``2001:db8:1:2::/64``."""
    if address is None:
        return UNKNOWN_SOURCE
    if address.version == 6:
        assert isinstance(address, ipaddress.IPv6Address)
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(address) >> 64 << 64, 64)))
    return str(address)


@dataclass(slots=True)
class _Count:
    failures: int = 0
    last_failure: float = 0.0
    lockouts: int = 0
    locked_until: float = 0.0
    refused: int = 0  # attempts refused unchecked (the checks were busy): standing only


@dataclass(frozen=True, slots=True)
class Lockout:
    """A lock-out that has just begun (for the log)."""

    source: str
    user: str | None  # None: the whole source
    seconds: float
    failures: int


def retry_after_header(seconds: float) -> str:
    """``Retry-After`` in whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))


class GuessLimiter:
    def __init__(
        self,
        limits: LimitSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = MAX_KEYS,
    ) -> None:
        self._limits = limits
        self._clock = clock
        self._max_keys = max_keys
        self._counts: OrderedDict[tuple[str, str | None], _Count] = OrderedDict()

    def configure(self, limits: LimitSettings) -> None:
        """New limits (a reload); the failures counted so far are kept."""
        self._limits = limits

    def _keys(self, source: str, user: str) -> tuple[tuple[str, None], tuple[str, str]]:
        return (source, None), (source, user.lower())

    def locked(self, source: str, user: str) -> float:
        """Seconds until ``user`` may try again from ``source``; 0 when not locked out."""
        now = self._clock()
        wait = 0.0
        for key in self._keys(source, user):
            count = self._counts.get(key)
            if count is not None and count.locked_until > now:
                wait = max(wait, count.locked_until - now)
        return wait

    def failed(self, source: str, user: str) -> Lockout | None:
        """Count a failed login; return the lock-out it starts, if it starts one."""
        now = self._clock()
        limits = self._limits
        started: Lockout | None = None
        source_key, user_key = self._keys(source, user)
        for key, limit in (
            (source_key, limits.auth_failures_per_source),
            (user_key, limits.auth_failures_per_user),
        ):
            count = self._counts.get(key)
            if count is None:
                count = self._counts[key] = _Count()
                if len(self._counts) > self._max_keys:
                    self._counts.popitem(last=False)
            else:
                self._counts.move_to_end(key)
            quiet = now - count.last_failure
            if quiet > max(limits.lockout_max, limits.auth_failure_window):
                count.lockouts = 0
            if quiet > limits.auth_failure_window:
                count.failures = count.refused = 0
            count.last_failure = now
            if count.locked_until > now:
                continue  # already locked out: attempts now cost nothing and count nothing
            count.failures += 1
            if count.failures >= limit:
                seconds = min(limits.lockout_max, limits.lockout_initial * 2.0**count.lockouts)
                count.locked_until = now + seconds
                count.lockouts += 1
                count.failures = 0
                if started is None or seconds > started.seconds:
                    started = Lockout(source, key[1], seconds, limit)
        return started

    def standing(self, source: str) -> int:
        """How many logins from ``source`` failed or were refused lately (0: none): the
        higher, the longer its password checks wait behind others'."""
        count = self._counts.get((source, None))
        if count is None:
            return 0
        if self._clock() - count.last_failure > self._limits.auth_failure_window:
            return count.lockouts * self._limits.auth_failures_per_source
        lockouts = count.lockouts * self._limits.auth_failures_per_source
        return count.failures + count.refused + lockouts

    def refused(self, source: str) -> None:
        """An attempt from ``source`` refused unchecked (too many checks waiting): it
        lowers the source's standing, and locks nothing out."""
        now = self._clock()
        key = (source, None)
        count = self._counts.get(key)
        if count is None:
            count = self._counts[key] = _Count()
            if len(self._counts) > self._max_keys:
                self._counts.popitem(last=False)
        if now - count.last_failure > self._limits.auth_failure_window:
            count.failures = count.refused = 0
        count.last_failure = now
        count.refused += 1

    def succeeded(self, source: str, user: str) -> None:
        """A correct login clears its (user, source) count; the source's stays."""
        self._counts.pop(self._keys(source, user)[1], None)

    def __len__(self) -> int:
        return len(self._counts)
