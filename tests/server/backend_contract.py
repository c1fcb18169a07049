"""The contract every provider relay passes, whatever the provider.

A test module plugs a backend in by subclassing :class:`BackendContract` and giving it
a ``harness`` fixture: a :class:`Harness` for the backend and its fake (or moto). The
tests below then run against that provider as they are::

    class TestCloudflare(BackendContract):
        @pytest.fixture
        def harness(self, tmp_path): ...

Besides a host's own A and AAAA records, a backend gets its wildcard owner ``*.<fqdn>``
(A, AAAA) and its ``_acme-challenge.<fqdn>`` owner (TXT, ACME tokens). The checks of
those are functions (:func:`check_wildcard`, :func:`check_txt`), so that a backend tested
against real servers (rfc2136) runs them too. A backend that can be read back (it has
``read``) must read all of them back as they were applied.
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
WILDCARD = f"*.{HOME}"
ACME = f"_acme-challenge.{HOME}"
# ACME DNS-01 tokens as ACME servers make them: 43 characters of base64url.
TOKENS = (
    "LHDhK3oGRvkiefQnx7OOczTY5Tic_xZ6HcMOc_gmtoM",
    "Cvq0uV9ONeV2wpM1eQ9Jm-K4_7xQ0GJdSd8AiEpM-Ho",
    "wyZ-0n6Ei2fU4sV7Zr7pQa1xoDHgJeB3mT_5kLqN9cE",
)


class Harness(Protocol):
    """One backend pointed at its fake, and a view of the fake's records."""

    zone: ZoneSettings
    secret: str  # the credential the backend was given: never in a message or a log
    batches: bool  # whether many hosts go out in one write call (Route 53)
    # Whether the provider holds TXT records; one that does not (a dyndns2 relay) must
    # refuse them with a PermanentBackendError that says so.
    txt: bool
    # Optional, default False: the backend keeps no state and sends every change it gets
    # (rfc2136; the reconciler sends only what changed), so an unchanged value is written.
    # stateless: bool

    def backend(self) -> Backend:
        """A backend instance (the same one on every call within a test)."""
        ...

    def records(self, fqdn: str, rtype: str) -> list[str]:
        """The addresses (or TXT values, unquoted) the provider holds for ``fqdn`` and
        ``rtype``, sorted; for a wildcard owner, what the provider holds at ``*.<fqdn>``."""
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


def read_back(harness: Harness, names: list[str]) -> dict[tuple[str, str], tuple[str, ...]]:
    """``backend.read`` of ``names`` in the harness's zone, then close."""
    backend: Any = harness.backend()

    async def work() -> dict[tuple[str, str], tuple[str, ...]]:
        try:
            found: dict[tuple[str, str], tuple[str, ...]] = await backend.read(harness.zone, names)
            return found
        finally:
            await backend.close()

    return run(work)


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

    # -- wildcard and ACME owners ------------------------------------------------------

    def test_a_wildcard_owner_is_set_and_removed(self, harness: Any) -> None:
        check_wildcard(harness)

    def test_txt_values_are_set_replaced_and_removed(self, harness: Any) -> None:
        check_txt(harness)

    def test_a_host_its_wildcard_and_its_txt_in_one_apply(self, harness: Any) -> None:
        check_all_owners_at_once(harness)


def readable(harness: Any) -> bool:
    return hasattr(harness.backend(), "read")


def stateless(harness: Any) -> bool:
    return bool(getattr(harness, "stateless", False))


def check_wildcard(harness: Any) -> None:
    """A wildcard owner gets the host's addresses, is read back, and goes again; the
    host's own records stay."""
    apply(
        harness,
        (HOME, "A", ("203.0.113.7",)),
        (HOME, "AAAA", ("2001:db8::7",)),
        (WILDCARD, "A", ("203.0.113.7",)),
        (WILDCARD, "AAAA", ("2001:db8::7",)),
    )
    assert harness.records(WILDCARD, "A") == ["203.0.113.7"]
    assert harness.records(WILDCARD, "AAAA") == ["2001:db8::7"]
    assert harness.records(HOME, "A") == ["203.0.113.7"]
    if harness.ttl(WILDCARD, "A") is not None:
        assert harness.ttl(WILDCARD, "A") == harness.zone.ttl
    if readable(harness):
        assert read_back(harness, [HOME, WILDCARD]) == {
            (HOME, "A"): ("203.0.113.7",),
            (HOME, "AAAA"): ("2001:db8::7",),
            (WILDCARD, "A"): ("203.0.113.7",),
            (WILDCARD, "AAAA"): ("2001:db8::7",),
        }
    before = harness.writes()
    apply(harness, (WILDCARD, "A", ("203.0.113.7",)))  # unchanged: no write
    assert harness.writes() == before or stateless(harness)
    apply(harness, (WILDCARD, "A", ()), (WILDCARD, "AAAA", ()))
    assert harness.records(WILDCARD, "A") == []
    assert harness.records(WILDCARD, "AAAA") == []
    assert harness.records(HOME, "A") == ["203.0.113.7"]
    assert harness.records(HOME, "AAAA") == ["2001:db8::7"]
    if readable(harness):
        assert read_back(harness, [WILDCARD]) == {(WILDCARD, "A"): (), (WILDCARD, "AAAA"): ()}


def check_txt(harness: Any) -> None:
    """Two ACME tokens at ``_acme-challenge.<fqdn>``, replaced by one, then removed;
    each state read back where the backend reads. A backend without TXT refuses them."""
    if not harness.txt:
        before = harness.writes()
        with pytest.raises(PermanentBackendError) as raised:
            apply(harness, (ACME, "TXT", TOKENS[:2]))
        assert "cannot hold TXT records" in str(raised.value)
        assert harness.backend().name in str(raised.value)
        assert harness.writes() == before
        apply(harness, (ACME, "TXT", ()))  # removing what it cannot hold is done already
        assert harness.writes() == before
        return
    apply(harness, (ACME, "TXT", TOKENS[:2]))
    assert harness.records(ACME, "TXT") == sorted(TOKENS[:2])
    if harness.ttl(ACME, "TXT") is not None:
        assert harness.ttl(ACME, "TXT") == harness.zone.ttl
    if readable(harness):
        assert read_back(harness, [ACME]) == {(ACME, "TXT"): tuple(sorted(TOKENS[:2]))}
    before = harness.writes()
    apply(harness, (ACME, "TXT", (TOKENS[1], TOKENS[0])))  # the same two: no write
    assert harness.writes() == before or stateless(harness)
    assert harness.records(ACME, "TXT") == sorted(TOKENS[:2])
    apply(harness, (ACME, "TXT", (TOKENS[2],)))
    assert harness.records(ACME, "TXT") == [TOKENS[2]]
    if readable(harness):
        assert read_back(harness, [ACME]) == {(ACME, "TXT"): (TOKENS[2],)}
    apply(harness, (ACME, "TXT", ()))
    assert harness.records(ACME, "TXT") == []
    if readable(harness):
        assert read_back(harness, [ACME]) == {(ACME, "TXT"): ()}


def check_all_owners_at_once(harness: Any) -> None:
    """A host, its wildcard and its TXT records in one apply land together; a host with
    all of them removed has none left."""
    everything = [
        (HOME, "A", ("203.0.113.7",)),
        (WILDCARD, "A", ("203.0.113.7",)),
        (ACME, "TXT", (TOKENS[0],)),
    ]
    if not harness.txt:
        everything.pop()
    apply(harness, *everything)
    assert harness.records(HOME, "A") == ["203.0.113.7"]
    assert harness.records(WILDCARD, "A") == ["203.0.113.7"]
    if harness.txt:
        assert harness.records(ACME, "TXT") == [TOKENS[0]]
    apply(harness, (HOME, "A", ()), (WILDCARD, "A", ()), (ACME, "TXT", ()))
    assert harness.records(HOME, "A") == []
    assert harness.records(WILDCARD, "A") == []
    assert harness.records(ACME, "TXT") == []
