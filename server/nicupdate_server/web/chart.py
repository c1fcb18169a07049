"""A host's address timeline: which address each family had when, drawn as inline SVG on
the server (the template ``_chart.html``; no script, styled by ``app.css``).

One lane per address family, one bar per address, from the change that set it to the
next one (or now). Horizontal positions are percentages of the width, so the chart
fills a phone's screen or a desktop's without scaling its text; a bar's address is
clipped to the bar. The history rows come newest first, as the host page reads them;
only stored changes count (``good``, or a ``911`` that DNS confirmed later), not
refusals. The same facts are written out as text (:attr:`Chart.description`) for
screen readers and in the history table beside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from ..admin import HistoryRow
from ..store import parse_records

NAME = 18  # a lane's name, above its bars
LANE = 28
GAP = 10
AXIS = 24
FAMILIES = ("A", "AAAA")
NAMES = {"A": "IPv4 (A)", "AAAA": "IPv6 (AAAA)"}


@dataclass(frozen=True, slots=True)
class Bar:
    x: float  # percent of the width
    width: float  # percent
    value: str  # the addresses, or "" for none
    start: datetime
    end: datetime | None  # None: still so
    shade: int  # 0 or 1, alternating


@dataclass(frozen=True, slots=True)
class Lane:
    family: str
    name: str
    y: int  # of its bars (its name is above)
    bars: list[Bar]
    marks: list[float]  # x of each change, percent


@dataclass(frozen=True, slots=True)
class Tick:
    x: float  # percent
    label: str
    anchor: str  # SVG text-anchor


@dataclass(frozen=True, slots=True)
class Chart:
    height: int
    lanes: list[Lane]
    ticks: list[Tick]
    changes: int
    first: datetime  # the first change shown
    start: datetime  # the left edge
    end: datetime

    @property
    def description(self) -> str:
        parts = []
        for lane in self.lanes:
            for bar in lane.bars:
                until = "now" if bar.end is None else _when(bar.end)
                what = bar.value or "no address"
                parts.append(f"{lane.name} {what} from {_when(bar.start)} until {until}")
        return "; ".join(parts) + "."


def _when(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC"


def _stored(entry: HistoryRow) -> bool:
    return entry.answer.startswith("good") or (
        entry.answer.startswith("911") and entry.confirmed_at is not None
    )


def timeline(entries: Sequence[HistoryRow], now: datetime) -> Chart | None:
    """The chart of ``entries`` (newest first); None when they hold no change."""
    changes = []
    for entry in reversed(entries):
        if not _stored(entry):
            continue
        old, new = parse_records(entry.old), parse_records(entry.new)
        touched = {family: new.get(family, ()) for family in (*old, *new)}
        if any(old.get(family, ()) != value for family, value in touched.items()):
            changes.append((entry.at, old, touched))
    if not changes:
        return None
    first = changes[0][0]
    span = max(now - first, timedelta(seconds=1))
    start = first - span / 10  # a little of what was before the first change
    end = now
    total = (end - start).total_seconds()

    def x_of(moment: datetime) -> float:
        return 100 * (moment - start).total_seconds() / total

    lanes: list[Lane] = []
    for family in FAMILIES:
        if not any(family in touched for _, _, touched in changes):
            continue
        y = len(lanes) * (NAME + LANE + GAP) + NAME
        spans: list[tuple[datetime, datetime | None, str]] = []
        marks: list[float] = []
        value: str | None = None
        since = start
        for at, old, touched in changes:
            if family not in touched:
                continue
            if value is None:
                value = ",".join(old.get(family, ()))
            new_value = ",".join(touched[family])
            if new_value == value:
                continue
            spans.append((since, at, value))
            marks.append(x_of(at))
            value, since = new_value, at
        spans.append((since, None, value or ""))
        bars = []
        for index, (begin, finish, text) in enumerate(spans):
            left = x_of(begin)
            width = max(x_of(finish or end) - left, 0.3)
            bars.append(Bar(left, width, text, begin, finish, index % 2))
        lanes.append(Lane(family, NAMES[family], y, bars, marks))
    height = len(lanes) * (NAME + LANE + GAP) + AXIS
    if span <= timedelta(hours=1):
        label = "%H:%M:%S"
    elif span <= timedelta(days=1):
        label = "%H:%M"
    else:
        label = "%Y-%m-%d"
    ticks = [
        Tick(0, f"{start:{label}}", "start"),
        Tick(50, f"{start + (end - start) / 2:{label}}", "middle"),
        Tick(100, "now", "end"),
    ]
    return Chart(height, lanes, ticks, len(changes), first, start, end)
