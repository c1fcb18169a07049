"""Reading a ``[backends.NAME]`` table: each problem is one line naming the key.

Secrets (API tokens, secret keys) come from a file (``KEY_file``) or an environment
variable (``KEY_env``), never inline in the configuration, and never appear in a message.
"""

from __future__ import annotations

import math
import os
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import httpx

from . import BackendUnavailable


class TableReader:
    """Typed values from one backend's table; errors are :class:`BackendUnavailable`."""

    def __init__(self, name: str, table: Mapping[str, Any]) -> None:
        self.name = name
        self.table = table

    def error(self, key: str, problem: str) -> BackendUnavailable:
        return BackendUnavailable(f"backends.{self.name}.{key}: {problem}")

    def check_keys(self, known: Collection[str], kind: str) -> None:
        for key in self.table:
            if key in known:
                continue
            if f"{key}_file" in known:  # a secret given inline
                raise self.error(
                    key, f"give it as {key}_file or {key}_env, not in the configuration"
                )
            raise self.error(key, f"unknown key for a {kind} backend")

    def string(self, key: str) -> str | None:
        value = self.table.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            raise self.error(key, f"must be a non-empty string (got {value!r})")
        return value

    def required(self, key: str, what: str) -> str:
        value = self.string(key)
        if value is None:
            raise self.error(key, f"missing ({what})")
        return value

    def number(
        self, key: str, default: float, low: float, high: float, integer: bool = False
    ) -> float:
        value = self.table.get(key, default)
        kinds = (int,) if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds):
            raise self.error(
                key, f"must be {'an integer' if integer else 'a number'} (got {value!r})"
            )
        if not low <= value <= high:
            bounds = f"at least {low:g}" if high == math.inf else f"between {low:g} and {high:g}"
            raise self.error(key, f"must be {bounds} (got {value!r})")
        return float(value)

    def choice(self, key: str, options: tuple[str, ...], default: str) -> str:
        value = self.table.get(key, default)
        if value not in options:
            raise self.error(key, f"must be one of {', '.join(options)} (got {value!r})")
        return str(value)

    def url(self, key: str, default: str) -> str:
        """An http(s) URL without a trailing slash (tests point it at a fake)."""
        value = self.string(key) or default
        try:
            parsed = httpx.URL(value)
        except httpx.InvalidURL:
            parsed = None
        if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
            raise self.error(key, f"{value!r} is not an http:// or https:// URL")
        return value.rstrip("/")

    def read_file(self, key: str) -> str:
        path = Path(str(self.string(key)))
        try:
            return path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not a text file"
            raise self.error(key, f"cannot read {path}: {reason}") from None

    def read_env(self, key: str) -> str:
        variable = str(self.string(key))
        value = os.environ.get(variable)
        if not value:
            raise self.error(key, f"environment variable {variable} is not set")
        return value

    def secret(self, base: str, what: str) -> str:
        """The secret ``base`` from ``base_file`` or ``base_env`` (surrounding whitespace
        stripped). An inline ``base`` is refused so that it does not sit in the config."""
        if base in self.table:
            raise self.error(
                base, f"give the {what} as {base}_file or {base}_env, not in the configuration"
            )
        sources = [key for key in (f"{base}_file", f"{base}_env") if key in self.table]
        if not sources:
            raise self.error(
                f"{base}_file", f"missing: give the {what} as {base}_file or {base}_env"
            )
        if len(sources) > 1:
            raise self.error(sources[1], f"give only one of {base}_file and {base}_env")
        key = sources[0]
        text = self.read_file(key) if key.endswith("_file") else self.read_env(key)
        value = text.strip()
        if not value:
            where = "the file is empty" if key.endswith("_file") else "the variable is empty"
            raise self.error(key, f"{where} (the {what})")
        return value
