"""DNS backends, registered by type name.

A zone names its backend: ``builtin`` or a ``[backends.NAME]`` table whose
``type`` selects the implementation. Later backends (``rfc2136``, provider
relays) register here with a factory that builds them from their table.
"""

from __future__ import annotations

import importlib
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


def _lazy(module: str, cls: str) -> Callable[[str, Mapping[str, Any]], Backend]:
    """A factory that imports ``.module`` on first use: a server that does not use a
    backend does not pay its memory (nor its signing code)."""

    def build(name: str, table: Mapping[str, Any]) -> Backend:
        loaded = importlib.import_module(f"{__name__}.{module}")
        backend: Backend = getattr(loaded, cls).from_table(name, table)
        return backend

    return build


FACTORIES["rfc2136"] = _lazy("rfc2136", "Rfc2136Backend")
FACTORIES["cloudflare"] = _lazy("cloudflare", "CloudflareBackend")
FACTORIES["alidns"] = _lazy("alidns", "AlidnsBackend")
FACTORIES["huaweicloud"] = _lazy("huaweicloud", "HuaweiCloudBackend")
FACTORIES["route53"] = _lazy("route53", "Route53Backend")
FACTORIES["dnspod"] = _lazy("dnspod", "DnspodBackend")
FACTORIES["dyndns2"] = _lazy("dyndns2", "Dyndns2Backend")
FACTORIES["lexicon"] = _lazy("lexicon", "LexiconBackend")
