"""The interface every DNS backend implements, and the one error tree they raise.

::

    BackendError                 the change did not reach DNS
    ├── PermanentBackendError    refused: auth, policy, bad data. Answer dnserr; do not retry.
    └── TransientBackendError    unreachable, throttled, timed out. Answer 911; retry later.

A backend receives, per zone, the record sets that changed: for each owner name and
type the complete new set of values, an empty set meaning "delete". It never sees the
type that did not change. The owner is a host's name (A, AAAA), its wildcard
``*.<fqdn>`` (A, AAAA) or ``_acme-challenge.<fqdn>`` (TXT: ACME DNS-01 tokens, unquoted
text of at most 255 characters each); :mod:`.values` compares and spells the values.
A backend that cannot hold one of them raises :class:`PermanentBackendError` saying so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from ..config import ZoneSettings

RType = Literal["A", "AAAA", "TXT"]


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
    fqdn: str  # the owner name: a host's, ``*.<host>`` or ``_acme-challenge.<host>``
    rtype: RType
    addresses: tuple[str, ...]  # the addresses or TXT values; empty: remove the record set


@dataclass(frozen=True, slots=True)
class ZoneChange:
    zone: ZoneSettings
    serial: int  # the zone's new SOA serial, for backends that keep their own SOA
    changes: Sequence[RecordChange]


class Backend(Protocol):
    """Gets record changes into DNS. One instance may serve several zones.

    A backend that can be read back (drift repair) also has ``async read(zone, names)``:
    for each owner name in ``names`` and each type :func:`.values.owner_types` gives for
    it, ``(name, type) -> the sorted values`` DNS holds (an empty tuple for none).
    """

    name: str

    async def start(self) -> None: ...

    async def apply(self, change: ZoneChange) -> None:
        """Apply all ``change.changes`` (atomically where the DNS side allows it).

        Raises :class:`PermanentBackendError` or :class:`TransientBackendError`.
        """
        ...

    async def close(self) -> None: ...
