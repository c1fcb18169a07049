"""``Retry-After``: how long an HTTP server asked us to stay away.

Both the address sources (a 403 or 429 puts the source on cooldown) and the update
server (a 429 or 503 delays the host's next attempt) send it, as delta-seconds or as
an HTTP date (RFC 9110, section 10.2.3).
"""

from __future__ import annotations

import email.utils
from datetime import UTC

MAX_WAIT = 86400.0  # a server asking for longer than a day is obeyed for a day


def retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header; None when it is missing or invalid.

    A date in the past is 0 seconds; anything longer than :data:`MAX_WAIT` is cut to it.
    """
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        delay = float(value)
    else:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, OverflowError):
            return None
        if when.tzinfo is None:  # "-0000": HTTP dates are in GMT
            when = when.replace(tzinfo=UTC)
        delay = when.timestamp() - now
    return min(max(delay, 0.0), MAX_WAIT)
