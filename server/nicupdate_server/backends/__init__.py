"""DNS backends, registered by type name.

A zone names its backend: ``builtin`` or a ``[backends.NAME]`` table whose
``type`` selects the implementation. Later backends (``rfc2136``, provider
relays) register here with a factory that builds them from their table.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .base import (
    Backend,
    BackendError,
    PermanentBackendError,
    RecordChange,
    TransientBackendError,
    ZoneChange,
)

__all__ = [
    "FACTORIES",
    "Backend",
    "BackendError",
    "BackendUnavailable",
    "PermanentBackendError",
    "RecordChange",
    "TransientBackendError",
    "ZoneChange",
    "create_backend",
]

# type name -> factory(name, settings table) -> Backend
FACTORIES: dict[str, Callable[[str, Mapping[str, Any]], Backend]] = {}


class BackendUnavailable(Exception):
    """A configured backend cannot be built; the message names the key to fix."""


def create_backend(name: str, table: Mapping[str, Any]) -> Backend:
    kind = table.get("type")
    if not isinstance(kind, str):
        raise BackendUnavailable(f"backends.{name}.type: missing (the kind of backend)")
    factory = FACTORIES.get(kind)
    if factory is None:
        known = ", ".join(sorted(FACTORIES)) or "none besides builtin"
        raise BackendUnavailable(
            f"backends.{name}.type: {kind!r} is not an available backend type (available: {known})"
        )
    return factory(name, table)


def _rfc2136(name: str, table: Mapping[str, Any]) -> Backend:
    # Imported on first use: a server that does not use it does not pay its memory.
    from .rfc2136 import Rfc2136Backend

    return Rfc2136Backend.from_table(name, table)


FACTORIES["rfc2136"] = _rfc2136
