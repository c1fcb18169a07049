"""``Retry-After``, as the update server and the address sources send it."""

from __future__ import annotations

import email.utils

import pytest
from nicupdate_client.retry_after import MAX_WAIT, retry_after

NOW = 1_800_000_000.0  # Fri, 15 Jan 2027 08:00:00 GMT


def http_date(timestamp: float) -> str:
    return email.utils.formatdate(timestamp, usegmt=True)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120.0),
        (" 120 ", 120.0),
        ("0", 0.0),
        ("9999999", MAX_WAIT),
        (http_date(NOW + 600), 600.0),
        (http_date(NOW - 600), 0.0),  # a date gone by: at once
        (http_date(NOW + 10 * MAX_WAIT), MAX_WAIT),
        ("Fri, 15 Jan 2027 09:20:00 -0000", 4800.0),  # "-0000" is GMT too
    ],
)
def test_delta_seconds_and_http_dates(value: str, seconds: float) -> None:
    assert retry_after(value, NOW) == pytest.approx(seconds)


@pytest.mark.parametrize("value", [None, "", "soon", "-5", "1.5", "Tomorrow, 8 o'clock"])
def test_missing_or_invalid_is_none(value: str | None) -> None:
    assert retry_after(value, NOW) is None
