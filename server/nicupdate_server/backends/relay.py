"""What the relays to provider APIs share: one HTTP client, errors sorted into
permanent and transient (with ``Retry-After``), and the TTL clamp.

A relay backend subclasses :class:`HttpRelay`, sets ``kind`` and ``min_ttl``, and makes
its calls with :meth:`HttpRelay.call`. The call turns network failures and timeouts
into :class:`TransientBackendError`. The relay's own code then reads the provider's
answer: throttling and 5xx are transient (:meth:`HttpRelay.transient`), bad credentials
and invalid data permanent. Every message names the backend and what to fix, never a
secret.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar

import httpx

from .. import __version__
from ..config import ZoneSettings
from .base import PermanentBackendError, TransientBackendError

log = logging.getLogger("nicupdate.backend")

USER_AGENT = f"nicupdate/{__version__} (self-hosted dynamic DNS relay)"
MAX_RETRY_AFTER = 3600.0


class HttpRelay:
    """A backend that reaches a provider's HTTP API; subclasses implement ``apply``."""

    kind: ClassVar[str] = "relay"
    min_ttl: int = 1  # the provider's minimum; an instance may set its own from config
    # Providers take a call per record (or per batch) and answer in tens of ms: gather
    # what arrives within this window into one apply.
    coalesce_window = 0.05
    max_batch = 100

    def __init__(self, name: str, *, base_url: str, timeout: float = 10.0) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.auth: httpx.Auth | None = None
        self._warned_ttl: set[str] = set()

    @property
    def label(self) -> str:
        return f"{self.name} ({self.kind} at {httpx.URL(self.base_url).host})"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, base_url={self.base_url!r})"

    async def start(self) -> None:
        """Nothing to do: the shared client opens with the first call."""

    async def close(self) -> None:
        await _release_client()

    # -- calls ---------------------------------------------------------------------------

    async def call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """One request to ``base_url + path``; network failures are transient."""
        client = await _client()
        try:
            return await client.request(
                method,
                self.base_url + path,
                params=params,
                json=json,
                content=content,
                headers=headers,
                auth=self.auth if self.auth is not None else httpx.USE_CLIENT_DEFAULT,
                timeout=self.timeout,
            )
        except httpx.TimeoutException:
            raise TransientBackendError(
                f"{self.label} did not answer within {self.timeout:g} s"
            ) from None
        except httpx.HTTPError as exc:
            raise TransientBackendError(f"cannot reach {self.label}: {exc}") from None

    def transient(self, response: httpx.Response, what: str) -> TransientBackendError:
        """A transient error for a throttled or failing call, honouring Retry-After."""
        wait = retry_after(response)
        hint = f"; asked to wait {wait:g} s" if wait is not None else ""
        return TransientBackendError(
            f"{self.label}: {what} (HTTP {response.status_code}{hint})", retry_after=wait
        )

    def permanent(self, what: str, fix: str, *, every_name: bool = False) -> PermanentBackendError:
        """A refusal, logged once; ``every_name`` when it is about the credentials or the
        account rather than the names (see :class:`PermanentBackendError`)."""
        error = PermanentBackendError(f"{self.label}: {what} ({fix})", every_name=every_name)
        log.warning("%s", error)
        return error

    def ttl_for(self, zone: ZoneSettings) -> int:
        """The zone's TTL, raised to the provider's minimum (said once per zone)."""
        if zone.ttl >= self.min_ttl:
            return zone.ttl
        if zone.name not in self._warned_ttl:
            self._warned_ttl.add(zone.name)
            log.warning(
                "%s: zone %s has ttl %d, below the provider's minimum; using %d",
                self.label,
                zone.name,
                zone.ttl,
                self.min_ttl,
            )
        return self.min_ttl


def retry_after(response: httpx.Response) -> float | None:
    """Seconds from a ``Retry-After`` header (seconds or an HTTP date), capped at an hour."""
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


# -- the shared client -------------------------------------------------------------------
# One httpx.AsyncClient per event loop for every relay, so that they share its
# connection pool. Closing a relay closes it; the next call opens another.

_clients: dict[asyncio.AbstractEventLoop, httpx.AsyncClient] = {}


async def _client() -> httpx.AsyncClient:
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None or client.is_closed:
        client = _clients[loop] = httpx.AsyncClient(
            headers={"User-Agent": USER_AGENT},
            trust_env=False,  # no proxy from the environment: the base URL says where
            follow_redirects=False,
        )
    return client


async def _release_client() -> None:
    client = _clients.pop(asyncio.get_running_loop(), None)
    if client is not None:
        await client.aclose()
