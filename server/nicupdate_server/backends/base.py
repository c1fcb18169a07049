"""The interface every DNS backend implements, and the one error tree they raise.

::

    BackendError                 the change did not reach DNS
    ├── PermanentBackendError    refused: auth, policy, bad data. Answer dnserr; do not retry.
    └── TransientBackendError    unreachable, throttled, timed out. Answer 911; retry later.

A backend receives, per zone, the record sets that changed: for each name and
type the complete new set of addresses, an empty set meaning "delete". It never
sees the family that did not change.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from ..config import ZoneSettings

RType = Literal["A", "AAAA"]


class BackendError(Exception):
    """The change did not reach DNS. The message says what to fix, and holds no secret."""


class PermanentBackendError(BackendError):
    """DNS refused the change; retrying the same change will not help.

    ``every_name``: the refusal is not about these names (refused credentials, a zone that
    takes no updates): every name would get it, so there is no point in trying them one
    by one to find the culprit.
    """

    def __init__(self, message: str, *, every_name: bool = False) -> None:
        super().__init__(message)
        self.every_name = every_name


class TransientBackendError(BackendError):
    """DNS could not be reached or asked us to slow down; the same change may work later.

    ``retry_after``: seconds the service asked us to wait (HTTP ``Retry-After``); the
    next attempt waits at least that long.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class RecordChange:
    fqdn: str
    rtype: RType
    addresses: tuple[str, ...]  # empty: remove the records of this type


@dataclass(frozen=True, slots=True)
class ZoneChange:
    zone: ZoneSettings
    serial: int  # the zone's new SOA serial, for backends that keep their own SOA
    changes: Sequence[RecordChange]


class Backend(Protocol):
    """Gets record changes into DNS. One instance may serve several zones."""

    name: str

    async def start(self) -> None: ...

    async def apply(self, change: ZoneChange) -> None:
        """Apply all ``change.changes`` (atomically where the DNS side allows it).

        Raises :class:`PermanentBackendError` or :class:`TransientBackendError`.
        """
        ...

    async def close(self) -> None: ...
