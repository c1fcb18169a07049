"""What the client remembers between runs: the local cache, back-off and refusals.

One JSON file in the state directory, written atomically, under a lock so that the
scheduled task and a run started by hand never interleave. Per host and family: the
address the server last accepted and when; per host: the last answer, the back-off
after temporary failures (and the time the server's ``Retry-After`` asked for), and a
permanent refusal with the configuration it applied to. Per IP source: the cool-down
after it answered 403 or 429.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import filelock

log = logging.getLogger("nicupdate_client")

VERSION = 1


@dataclass
class Sent:
    address: str
    at: float


@dataclass
class Refusal:
    code: str
    reason: str
    fingerprint: str
    at: float


@dataclass
class HostState:
    sent: dict[str, Sent] = field(default_factory=dict)  # "4"/"6" -> what was accepted
    last_answer: str | None = None
    last_attempt: float | None = None
    failures: int = 0
    retry_at: float | None = None
    asked_until: float | None = None  # the server's Retry-After, as a time: not before then
    refused: Refusal | None = None

    def refused_for(self, fingerprint: str) -> Refusal | None:
        """The refusal, if the configuration it was given to has this fingerprint."""
        if self.refused is not None and self.refused.fingerprint == fingerprint:
            return self.refused
        return None

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> HostState:
        refused = raw.get("refused")
        return cls(
            sent={k: Sent(**v) for k, v in raw.get("sent", {}).items()},
            last_answer=raw.get("last_answer"),
            last_attempt=raw.get("last_attempt"),
            failures=int(raw.get("failures", 0)),
            retry_at=raw.get("retry_at"),
            asked_until=raw.get("asked_until"),
            refused=Refusal(**refused) if refused else None,
        )


@dataclass
class State:
    hosts: dict[str, HostState] = field(default_factory=dict)
    cooldowns: dict[str, float] = field(default_factory=dict)
    last_run: float | None = None
    last_result: str | None = None

    def host(self, name: str) -> HostState:
        return self.hosts.setdefault(name, HostState())

    def to_json(self) -> dict[str, Any]:
        return {"version": VERSION, **asdict(self)}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> State:
        return cls(
            hosts={k: HostState.from_json(v) for k, v in raw.get("hosts", {}).items()},
            cooldowns={k: float(v) for k, v in raw.get("cooldowns", {}).items()},
            last_run=raw.get("last_run"),
            last_result=raw.get("last_result"),
        )


class Busy(Exception):
    """Another run holds the state lock."""


def load(path: Path) -> State:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return State()
    except (OSError, ValueError) as exc:
        # A damaged cache costs one extra update, never a stuck client.
        log.warning("ignoring the unreadable state file %s (%s)", path, exc)
        return State()
    try:
        return State.from_json(raw)
    except (TypeError, ValueError, AttributeError) as exc:
        log.warning("ignoring the state file %s: unexpected content (%s)", path, exc)
        return State()


def save(path: Path, state: State) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".new")
    with open(temporary, "w", encoding="utf-8") as handle:
        json.dump(state.to_json(), handle, indent=1, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


@contextlib.contextmanager
def locked(path: Path, *, wait: float = 0.0) -> Iterator[State]:
    """The state, locked for one run and saved when the run ends (even on failure)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(str(path) + ".lock")
    try:
        lock.acquire(timeout=wait)
    except filelock.Timeout:
        raise Busy(f"another nicupdate-client run is using {path}") from None
    try:
        state = load(path)
        try:
            yield state
        finally:
            save(path, state)
    finally:
        lock.release()
