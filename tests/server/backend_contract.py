"""The contract every provider relay passes, whatever the provider.

A test module plugs a backend in by subclassing :class:`BackendContract` and giving it
a ``harness`` fixture: a :class:`Harness` for the backend and its fake (or moto). The
tests below then run against that provider as they are::

    class TestCloudflare(BackendContract):
        @pytest.fixture
        def harness(self, tmp_path): ...
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

import pytest
from nicupdate_server.backends import (
    Backend,
    PermanentBackendError,
    RecordChange,
    TransientBackendError,
    ZoneChange,
)
from nicupdate_server.config import ZoneSettings

T = TypeVar("T")
ZONE_NAME = "home.example.test"
HOME = f"router.{ZONE_NAME}"


class Harness(Protocol):
    """One backend pointed at its fake, and a view of the fake's records."""

    zone: ZoneSettings
    secret: str  # the credential the backend was given: never in a message or a log
    batches: bool  # whether many hosts go out in one write call (Route 53)

    def backend(self) -> Backend:
        """A backend instance (the same one on every call within a test)."""
        ...

    def records(self, fqdn: str, rtype: str) -> list[str]:
        """The addresses the provider holds for ``fqdn`` and ``rtype``, sorted."""
        ...

    def ttl(self, fqdn: str, rtype: str) -> int | None:
        """The TTL the provider holds, or None where the API sets no TTL (dyndns2)."""
        ...

    def writes(self) -> int:
        """Calls so far that created, changed or deleted records."""
        ...

    def fail_next(self, kind: str, times: int = 1) -> None:
        """Make the next calls fail: "throttle", "server" or "credentials"."""
        ...

    def forget(self, fqdn: str, rtype: str) -> None:
        """Delete the record set behind the backend's back (its cached id goes stale)."""
        ...


def run(work: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        return await work()

    return asyncio.run(main())


def apply(harness: Harness, *changes: tuple[str, str, tuple[str, ...]]) -> None:
    apply_with(harness.backend(), harness.zone, *changes)


def apply_with(
    backend: Backend, zone: ZoneSettings, *changes: tuple[str, str, tuple[str, ...]]
) -> None:
    """``backend.apply`` of ``changes`` (fqdn, type, addresses) in ``zone``, then close."""
    change = ZoneChange(
        zone,
        0,
        [RecordChange(f, t, a) for f, t, a in changes],  # type: ignore[arg-type]
    )

    async def work() -> None:
        try:
            await backend.apply(change)
        finally:
            await backend.close()

    run(work)


class BackendContract:
    """Subclass with a ``harness`` fixture; every test here must pass."""

    def test_apply_sets_a_and_aaaa_with_the_zone_ttl(self, harness: Any) -> None:
        apply(harness, (HOME, "A", ("203.0.113.7",)), (HOME, "AAAA", ("2001:db8::7",)))
        assert harness.records(HOME, "A") == ["203.0.113.7"]
        assert harness.records(HOME, "AAAA") == ["2001:db8::7"]
        if harness.ttl(HOME, "A") is not None:  # None: the provider sets its own TTL
            assert harness.ttl(HOME, "A") == harness.zone.ttl

    def test_reapplying_the_same_value_makes_no_write_call(self, harness: Any) -> None:
        apply(harness, (HOME, "A", ("203.0.113.7",)))
        before = harness.writes()
        apply(harness, (HOME, "A", ("203.0.113.7",)))
        assert harness.writes() == before
        assert harness.records(HOME, "A") == ["203.0.113.7"]

    def test_a_change_replaces_the_value(self, harness: Any) -> None:
        apply(harness, (HOME, "A", ("203.0.113.7",)))
        apply(harness, (HOME, "A", ("203.0.113.8",)))
        assert harness.records(HOME, "A") == ["203.0.113.8"]

    def test_v4_only_leaves_aaaa(self, harness: Any) -> None:
        apply(harness, (HOME, "A", ("203.0.113.7",)), (HOME, "AAAA", ("2001:db8::7",)))
        apply(harness, (HOME, "A", ("203.0.113.9",)))
        assert harness.records(HOME, "A") == ["203.0.113.9"]
        assert harness.records(HOME, "AAAA") == ["2001:db8::7"]

    def test_offline_deletes(self, harness: Any) -> None:
        apply(harness, (HOME, "A", ("203.0.113.7",)), (HOME, "AAAA", ("2001:db8::7",)))
        apply(harness, (HOME, "A", ()), (HOME, "AAAA", ()))
        assert harness.records(HOME, "A") == []
        assert harness.records(HOME, "AAAA") == []

    def test_many_hosts_in_one_apply(self, harness: Any) -> None:
        hosts = [f"h{i}.{ZONE_NAME}" for i in range(12)]
        before = harness.writes()
        apply(harness, *[(h, "A", (f"198.51.100.{i + 1}",)) for i, h in enumerate(hosts)])
        for i, host in enumerate(hosts):
            assert harness.records(host, "A") == [f"198.51.100.{i + 1}"]
        if harness.batches:
            assert harness.writes() - before == 1

    def test_a_record_removed_behind_the_backend_is_found_again(self, harness: Any) -> None:
        apply(harness, (HOME, "A", ("203.0.113.7",)))
        harness.forget(HOME, "A")
        apply(harness, (HOME, "A", ("203.0.113.8",)))
        assert harness.records(HOME, "A") == ["203.0.113.8"]

    def test_throttling_is_transient(self, harness: Any) -> None:
        harness.fail_next("throttle", times=10)
        with pytest.raises(TransientBackendError):
            apply(harness, (HOME, "A", ("203.0.113.7",)))

    def test_a_server_error_is_transient(self, harness: Any) -> None:
        harness.fail_next("server", times=10)
        with pytest.raises(TransientBackendError):
            apply(harness, (HOME, "A", ("203.0.113.7",)))

    def test_refused_credentials_are_permanent_and_say_what_to_fix(
        self, harness: Any, caplog: pytest.LogCaptureFixture
    ) -> None:
        harness.fail_next("credentials", times=10)
        with caplog.at_level(logging.DEBUG), pytest.raises(PermanentBackendError) as raised:
            apply(harness, (HOME, "A", ("203.0.113.7",)))
        message = str(raised.value)
        assert harness.backend().name in message
        assert any(word in message for word in ("credential", "token", "key", "password")), message
        assert harness.secret not in message
        assert harness.secret not in caplog.text
        assert harness.secret not in repr(harness.backend())
