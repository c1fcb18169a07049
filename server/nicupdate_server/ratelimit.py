"""Per-host limits: a token bucket of updates, and the `nochg` count that means abuse.

* Every ``good`` or ``nochg`` answer takes a token from the host's bucket, which holds
  ``host_update_burst`` tokens and gains one every ``host_update_interval`` seconds. A
  request for a host with an empty bucket is answered HTTP 429 with ``Retry-After``.
  Answers caused by the server (``911``, ``dnserr``) take nothing.
* With ``abuse_nochg_threshold`` set, ``nochg`` answers are counted per host over a
  rolling ``abuse_window``; the one that goes past the threshold blocks the host: it
  answers ``abuse`` until its owner clears it (``host unblock``).

Only hosts that were updated recently take memory; :meth:`HostLimits.prune` drops the
rest.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .config import LimitSettings

SLOTS = 12  # the abuse window is counted in this many slices


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


@dataclass(slots=True)
class _Window:
    counts: list[int]
    newest: int  # the slice number counts[newest % SLOTS] belongs to


class HostLimits:
    def __init__(
        self, limits: LimitSettings, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._clock = clock
        self._buckets: dict[int, _Bucket] = {}
        self._windows: dict[int, _Window] = {}
        self.configure(limits)

    def configure(self, limits: LimitSettings) -> None:
        """New limits (a reload); the tokens and counts so far are kept."""
        self._burst = float(limits.host_update_burst)
        self._interval = limits.host_update_interval
        self._threshold = limits.abuse_nochg_threshold
        self._slice = limits.abuse_window / SLOTS

    def _tokens(self, bucket: _Bucket, now: float) -> float:
        return min(self._burst, bucket.tokens + (now - bucket.at) / self._interval)

    def wait(self, host_ids: Iterable[int]) -> float:
        """Seconds until every one of these hosts has a token; 0 if they all have one."""
        if self._interval <= 0:
            return 0.0
        now = self._clock()
        wait = 0.0
        for host_id in host_ids:
            bucket = self._buckets.get(host_id)
            if bucket is not None:
                tokens = self._tokens(bucket, now)
                if tokens < 1.0:
                    wait = max(wait, (1.0 - tokens) * self._interval)
        return wait

    def spend(self, host_id: int) -> None:
        """Take a token for an answered update."""
        if self._interval <= 0:
            return
        now = self._clock()
        bucket = self._buckets.get(host_id)
        if bucket is None:
            self._buckets[host_id] = _Bucket(self._burst - 1.0, now)
            return
        bucket.tokens = max(0.0, self._tokens(bucket, now) - 1.0)
        bucket.at = now

    def nochg(self, host_id: int) -> bool:
        """Count a ``nochg``; true when it takes the host past the abuse threshold."""
        if not self._threshold:
            return False
        current = int(self._clock() // self._slice)
        window = self._windows.get(host_id)
        if window is None:
            window = self._windows[host_id] = _Window([0] * SLOTS, current)
        elif current - window.newest >= SLOTS:
            window.counts = [0] * SLOTS
        else:
            for passed in range(window.newest + 1, current + 1):
                window.counts[passed % SLOTS] = 0
        window.newest = current
        window.counts[current % SLOTS] += 1
        if sum(window.counts) > self._threshold:
            del self._windows[host_id]
            return True
        return False

    def forget(self, host_id: int) -> None:
        """Start the host afresh (it was unblocked or removed)."""
        self._buckets.pop(host_id, None)
        self._windows.pop(host_id, None)

    def prune(self) -> None:
        """Drop the buckets that are full again and the windows that are empty."""
        now = self._clock()
        full = [h for h, b in self._buckets.items() if self._tokens(b, now) >= self._burst]
        for host_id in full:
            del self._buckets[host_id]
        current = int(now // self._slice)
        stale = [h for h, w in self._windows.items() if current - w.newest >= SLOTS]
        for host_id in stale:
            del self._windows[host_id]

    def __len__(self) -> int:
        return len(self._buckets) + len(self._windows)
