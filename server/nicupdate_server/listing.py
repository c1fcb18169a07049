"""What ``host list`` and ``host log`` print: aligned tables, or JSON lines (``--json``).

JSON output is one object per line (JSON Lines): ``jq`` reads it as it is, ``jq -s``
makes an array of it, and a long history can be read line by line. Times are UTC, in
ISO 8601 (``2026-11-25T08:49:15.123456+00:00``); the tables show them to the second.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from .admin import History, HistoryRow, HostRow, utc
from .store import parse_records

RTYPES = ("A", "AAAA", "TXT")
_WILDCARD = re.compile(r"(?:^|; )wildcard (on|off)$")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(s|m|h|d|w)", re.IGNORECASE)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
SINCE_FORMS = "a duration (90s, 30m, 12h, 7d, 2w) or a UTC date (2026-11-25, 2026-11-25T08:00)"


def parse_since(text: str, now: datetime) -> datetime:
    """``--since``: a duration back from ``now``, or a date and time (UTC unless it says
    otherwise). Raises ValueError with a message for the user."""
    value = text.strip()
    duration = _DURATION.fullmatch(value)
    try:
        if duration is not None:
            seconds = float(duration.group(1)) * _UNITS[duration.group(2).lower()]
            return now - timedelta(seconds=seconds)
        when = datetime.fromisoformat(value)
    except (ValueError, OverflowError):
        raise ValueError(f"--since: {text!r} is not {SINCE_FORMS}") from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def printable(text: str) -> str:
    """``text`` with control characters shown as escapes: a user agent is the caller's
    to choose, and must not be able to move the cursor of whoever reads the history."""
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


def columns(table: Sequence[Sequence[str]]) -> list[str]:
    """Rows of cells, padded to line up; the last cell is not padded."""
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in table
    ]


def when(value: datetime | None) -> str:
    return "-" if value is None else utc(value).strftime("%Y-%m-%d %H:%M:%S")


def iso(value: datetime | None) -> str | None:
    return None if value is None else utc(value).isoformat()


def records_of(described: str) -> dict[str, list[str]]:
    """``A 203.0.113.7; AAAA 2001:db8::7`` (as the history keeps it) as a mapping."""
    return {rtype: list(addresses) for rtype, addresses in parse_records(described).items()}


def wildcard_of(described: str) -> bool | None:
    """Whether a change turned the wildcard on (True) or off (False); None: neither."""
    found = _WILDCARD.search(described)
    return None if found is None else found.group(1) == "on"


def features(row: HostRow) -> str:
    """A host's wildcard, IPv6 prefix and followers, in a few words (``-``: none)."""
    parts = []
    if row.wildcard:
        parts.append(f"*.{row.fqdn}")
    if row.follows is not None:
        parts.append(f"follows {row.follows} ({row.interface_id}/{row.prefix_length})")
    if row.ipv6_prefix is not None:
        parts.append(f"prefix {row.ipv6_prefix}")
    if row.followers:
        parts.append(f"followed by {', '.join(row.followers)}")
    if row.records.get("TXT"):
        parts.append(f"TXT {','.join(row.records['TXT'])}")
    return "; ".join(parts) or "-"


# --- host log -------------------------------------------------------------------------

HISTORY_HEADER = ("TIME", "CALLER", "AGENT", "CHANGE", "ANSWER", "CONFIRMED", "DETAIL")


def change_of(row: HistoryRow) -> str:
    if row.old == row.new:
        return f"unchanged: {row.new}" if row.new else "-"
    return f"{row.old or '-'} -> {row.new or '-'}"


def history_table(history: History, since: datetime | None) -> list[str]:
    lines: list[str] = []
    if history.rows:
        lines = columns(
            [HISTORY_HEADER]
            + [
                (
                    when(row.at),
                    row.caller or "-",
                    printable(row.user_agent) or "-",
                    change_of(row),
                    row.answer or "-",
                    when(row.confirmed_at),
                    printable(row.detail),
                )
                for row in history.rows
            ]
        )
    else:
        after = f" since {when(since)} UTC" if since is not None else ""
        lines.append(f"no updates of {history.fqdn} recorded{after}")
    if not history.exists:
        lines.append(f"({history.fqdn} has been removed; its history is kept until pruned)")
    elif history.nochg_count:
        lines.append(
            f"(and {history.nochg_count} nochg answer(s) in all: counted, not listed; "
            "see host list)"
        )
    return lines


def history_json(history: History) -> list[str]:
    return [
        _json(
            {
                "at": iso(row.at),
                "fqdn": history.fqdn,
                "caller": row.caller,
                "user_agent": row.user_agent,
                "old": records_of(row.old),
                "new": records_of(row.new),
                "wildcard": wildcard_of(row.new),
                "answer": row.answer,
                "detail": row.detail,
                "confirmed_at": iso(row.confirmed_at),
            }
        )
        for row in history.rows
    ]


# --- host list ------------------------------------------------------------------------


def hosts_json(rows: Sequence[HostRow]) -> list[str]:
    return [
        _json(
            {
                "fqdn": row.fqdn,
                "owner": row.owner,
                # A and AAAA always; TXT (at _acme-challenge.FQDN) when it has any.
                "records": {
                    rtype: list(row.records.get(rtype, ()))
                    for rtype in RTYPES
                    if rtype != "TXT" or row.records.get(rtype)
                },
                "last_update_at": iso(row.last_update_at),
                "last_result": row.last_result,
                "last_seen_at": iso(row.last_seen_at),
                "nochg_count": row.nochg_count,
                "blocked_at": iso(row.blocked_at),
                # Per backend that lacks some of the records: their types. {}: DNS has them.
                "pending": {backend: list(types) for backend, types in row.pending.items()},
                "errors": dict(row.errors),
                "wildcard": row.wildcard,
                "ipv6_prefix": row.ipv6_prefix,
                "follows": row.follows,
                "interface_id": row.interface_id,
                "prefix_length": row.prefix_length,
                "followers": list(row.followers),
            }
        )
        for row in rows
    ]


def _json(value: dict[str, Any]) -> str:
    return json.dumps(value)  # ASCII: no control character of a user agent gets through
