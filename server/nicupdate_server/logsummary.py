"""Repeated events logged as summaries, so that a flood cannot flood the log.

The first event of a kind from a source is logged at once. Further ones are counted,
and every ``interval`` one line per (kind, source) says how many there were, with a few
examples (user names, say). A source that keeps going gets one line per interval; one
that stops is forgotten at the next summary, and its next event is logged at once again.

Many sources at once (a distributed flood) do not make many lines either: per kind and
interval, at most ``MAX_LINES`` sources get lines of their own (the first to come at
once, the busiest in the summary) and one more line counts the rest. Memory is bounded:
past ``max_sources`` (kind, source) pairs, further sources are counted together as
"other sources".
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

MAX_SOURCES = 1000
MAX_LINES = 10  # per kind and interval
MAX_EXAMPLES = 3  # shown
MAX_DISTINCT = 100  # told apart; past that: "100+ more"
OTHERS = "other sources"


@dataclass(slots=True)
class _Tally:
    count: int = 0
    examples: list[str] = field(default_factory=list)
    others: set[str] = field(default_factory=set)


class LogSummary:
    def __init__(
        self, logger: logging.Logger, interval: float, *, max_sources: int = MAX_SOURCES
    ) -> None:
        self._log = logger
        self._interval = interval
        self._max_sources = max_sources
        self._tallies: dict[tuple[str, str], _Tally] = {}
        self._levels: dict[str, int] = {}
        self._shown: dict[str, int] = {}  # per kind: sources logged at once this interval
        self._timer: asyncio.TimerHandle | None = None

    def configure(self, interval: float) -> None:
        """A new interval between summaries (a reload), from the next one on."""
        self._interval = interval

    def note(self, kind: str, source: str, example: str = "", level: int = logging.INFO) -> None:
        """One event of ``kind`` (``"badauth"``) from ``source``; ``example`` shows what."""
        key = (kind, source)
        tally = self._tallies.get(key)
        if tally is None:
            if len(self._tallies) >= self._max_sources:
                key = (kind, OTHERS)
                tally = self._tallies.setdefault(key, _Tally())
            else:
                self._tallies[key] = tally = _Tally(examples=[example] if example else [])
                self._levels[kind] = level
                self._schedule()
                shown = self._shown.get(kind, 0)
                if shown >= MAX_LINES:
                    tally.count = 1  # in the summary with the rest
                    return
                self._shown[kind] = shown + 1
                suffix = f": {example}" if example else ""
                self._log.log(
                    level,
                    "%s from %s%s (repeats are summarised every %g s)",
                    kind,
                    source,
                    suffix,
                    self._interval,
                )
                return
        tally.count += 1
        if example and example not in tally.examples:
            if len(tally.examples) < MAX_EXAMPLES:
                tally.examples.append(example)
            elif len(tally.others) < MAX_DISTINCT:
                tally.others.add(example)

    def _schedule(self) -> None:
        if self._timer is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a unit test): summaries come from flush()
            return
        self._timer = loop.call_later(self._interval, self._tick)

    def _tick(self) -> None:
        self._timer = None
        self.flush()
        if self._tallies:
            self._schedule()

    def flush(self) -> None:
        """Log the counts gathered since the last flush; forget the sources that were quiet."""
        self._shown.clear()
        by_kind: dict[str, list[tuple[str, _Tally]]] = {}
        for key, tally in list(self._tallies.items()):
            if tally.count == 0:
                del self._tallies[key]
                continue
            by_kind.setdefault(key[0], []).append((key[1], tally))
            self._tallies[key] = _Tally(examples=tally.examples[:1])
        for kind, tallies in by_kind.items():
            level = self._levels.get(kind, logging.INFO)
            tallies.sort(key=lambda pair: -pair[1].count)
            for source, tally in tallies[:MAX_LINES]:
                shown = ", ".join(tally.examples)
                if tally.others:
                    more = len(tally.others)
                    shown += f" and {more}{'+' if more >= MAX_DISTINCT else ''} more"
                self._log.log(
                    level,
                    "%s from %s: %d more in the last %g s%s",
                    kind,
                    source,
                    tally.count,
                    self._interval,
                    f" ({shown})" if shown else "",
                )
            rest = tallies[MAX_LINES:]
            if rest:
                self._log.log(
                    level,
                    "%s from %d more sources: %d in the last %g s",
                    kind,
                    len(rest),
                    sum(tally.count for _, tally in rest),
                    self._interval,
                )

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.flush()
