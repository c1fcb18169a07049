"""Password guessing is throttled per source, never per victim.

The counters on a clock the test turns, then the real server on 127.0.0.1 with clients
bound to different loopback addresses (127.0.0.0/8 is all loopback on Linux), so each
test client is a source of its own.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from nicupdate_server.config import LimitSettings
from nicupdate_server.throttle import GuessLimiter, source_of

from tests.server.conftest import ALICE, LiveServer, start_server, stop_server, write_config

HOME = "home.dyn.example.test"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def limiter(clock: Clock, **limits: float) -> GuessLimiter:
    defaults: dict[str, float] = {"auth_failures_per_source": 6, "auth_failures_per_user": 3}
    settings = LimitSettings(**{**defaults, **limits})  # type: ignore[arg-type]
    return GuessLimiter(settings, clock=clock)


def test_sources_are_addresses_and_ipv6_slash_64s() -> None:
    assert source_of(ipaddress.ip_address("203.0.113.7")) == "203.0.113.7"
    assert source_of(ipaddress.ip_address("2001:db8:1:2:aaaa::1")) == "2001:db8:1:2::/64"
    assert source_of(ipaddress.ip_address("2001:db8:1:2:bbbb::9")) == "2001:db8:1:2::/64"
    assert source_of(ipaddress.ip_address("::ffff:203.0.113.7")) == "203.0.113.7"
    assert source_of(None) == "unknown"


def test_one_user_from_one_source_is_locked_out_with_growing_lockouts() -> None:
    clock = Clock()
    guesses = limiter(clock, lockout_initial=60, lockout_max=200)
    assert [guesses.failed("192.0.2.1", "alice") for _ in range(2)] == [None, None]
    assert guesses.locked("192.0.2.1", "alice") == 0
    started = guesses.failed("192.0.2.1", "alice")
    assert started is not None and started.seconds == 60 and started.user == "alice"
    assert guesses.locked("192.0.2.1", "ALICE") == 60  # user names are compared caselessly
    assert guesses.locked("192.0.2.1", "bob") == 0  # another user from there is not
    assert guesses.locked("198.51.100.1", "alice") == 0  # nor alice from elsewhere
    clock.now += 60
    assert guesses.locked("192.0.2.1", "alice") == 0
    for _ in range(3):
        second = guesses.failed("192.0.2.1", "alice")
    assert second is not None and second.seconds == 120  # doubled
    clock.now += 120
    for _ in range(3):
        third = guesses.failed("192.0.2.1", "alice")
    assert third is not None and third.seconds == 200  # capped at lockout_max
    clock.now += 200 + 900  # quiet for longer than lockout_max and the window
    for _ in range(3):
        fresh = guesses.failed("192.0.2.1", "alice")
    assert fresh is not None and fresh.seconds == 60  # starts again from lockout_initial


def test_many_user_names_from_one_source_lock_the_source() -> None:
    clock = Clock()
    guesses = limiter(clock)
    outcomes = [guesses.failed("192.0.2.1", f"user{n}") for n in range(6)]
    assert outcomes[:5] == [None] * 5
    assert outcomes[5] is not None and outcomes[5].user is None  # the whole source
    assert guesses.locked("192.0.2.1", "anyone") == 60
    assert guesses.locked("192.0.2.2", "anyone") == 0


def test_old_failures_are_forgotten_and_a_success_clears_only_its_own_count() -> None:
    clock = Clock()
    guesses = limiter(clock, auth_failure_window=100)
    guesses.failed("192.0.2.1", "alice")
    guesses.failed("192.0.2.1", "alice")
    clock.now += 101
    assert guesses.failed("192.0.2.1", "alice") is None  # the first two are forgotten
    guesses.failed("192.0.2.1", "alice")
    guesses.succeeded("192.0.2.1", "alice")
    assert guesses.failed("192.0.2.1", "alice") is None  # alice's count starts again
    # ...but the source keeps its count: 3 failures since the window passed, the 6th
    # locks the source.
    assert guesses.failed("192.0.2.1", "bob") is None
    assert guesses.failed("192.0.2.1", "carol") is None
    assert guesses.failed("192.0.2.1", "dave") is not None


def test_standing_counts_failures_and_refusals_and_recovers() -> None:
    clock = Clock()
    guesses = limiter(clock, auth_failure_window=100)
    assert guesses.standing("192.0.2.1") == 0
    guesses.failed("192.0.2.1", "alice")
    guesses.refused("192.0.2.1")
    guesses.refused("192.0.2.1")
    assert guesses.standing("192.0.2.1") == 3
    assert guesses.locked("192.0.2.1", "alice") == 0  # refusals lock nothing out
    assert guesses.standing("192.0.2.2") == 0
    clock.now += 101
    assert guesses.standing("192.0.2.1") == 0


def test_the_counters_are_bounded() -> None:
    guesses = GuessLimiter(LimitSettings(), clock=Clock(), max_keys=100)
    for n in range(1000):
        guesses.failed(f"10.0.{n // 256}.{n % 256}", "x")
    assert len(guesses) <= 100


# -- against the real server -----------------------------------------------------------


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[LiveServer]:
    """A server where 3 failures lock (user, source) out and 6 lock a source out; 429s
    are not held back (the tests would only wait)."""
    extra = (
        "\n[limits]\nauth_failures_per_user = 3\nauth_failures_per_source = 6\n"
        "lockout_initial = 300\nthrottle_delay = 0\n"
    )
    path = write_config(tmp_path)
    path.write_text(path.read_text() + extra)
    server = start_server(path)
    server.add_user("alice", ALICE[1])
    server.add_host(HOME, "alice")
    yield server
    stop_server(server)


def client(source: str) -> httpx.Client:
    """An HTTP client whose connections come from ``source`` (a 127.x.y.z address)."""
    return httpx.Client(transport=httpx.HTTPTransport(local_address=source), timeout=30)


def update(server: LiveServer, source: str, user: str, password: str) -> httpx.Response:
    with client(source) as http:
        return http.get(
            f"{server.url}/nic/update?hostname={HOME}&myip=203.0.113.7", auth=(user, password)
        )


def test_a_guessing_source_gets_429_without_a_hash(guarded: LiveServer, hashes: list[str]) -> None:
    answers = [update(guarded, "127.0.0.2", "alice", f"guess-{n}") for n in range(5)]
    assert [a.status_code for a in answers] == [401, 401, 401, 429, 429]
    assert [a.text for a in answers[:3]] == ["badauth\n"] * 3
    locked = answers[3]
    assert locked.text == "911\n"  # dyndns2 for "try again later"
    assert 290 <= int(locked.headers["Retry-After"]) <= 300
    assert hashes == ["guess-0", "guess-1", "guess-2"]  # the locked-out guesses cost nothing


def test_a_verified_router_keeps_working_while_its_account_is_guessed(
    guarded: LiveServer, hashes: list[str]
) -> None:
    assert update(guarded, "127.0.0.3", *ALICE).text.startswith("good")  # verified once
    for n in range(8):  # an attacker from elsewhere, on alice's account and others
        update(guarded, "127.0.0.2", "alice" if n % 2 else f"user{n}", f"guess-{n}")
    assert update(guarded, "127.0.0.2", "alice", "guess-x").status_code == 429
    router = update(guarded, "127.0.0.3", *ALICE)
    assert (router.status_code, router.text) == (200, "nochg 203.0.113.7\n")
    # Even from the locked-out address, the right password (already verified) works:
    # only guesses are refused.
    assert update(guarded, "127.0.0.2", *ALICE).text == "nochg 203.0.113.7\n"
    assert hashes.count(ALICE[1]) == 1


def test_an_attacker_cannot_lock_a_user_out_from_another_address(
    guarded: LiveServer, hashes: list[str]
) -> None:
    for n in range(4):
        update(guarded, "127.0.0.2", "alice", f"guess-{n}")
    assert update(guarded, "127.0.0.2", "alice", "guess").status_code == 429
    first = update(guarded, "127.0.0.4", *ALICE)  # alice's first login, from her router
    assert (first.status_code, first.text) == (200, "good 203.0.113.7\n")
    assert hashes[-1] == ALICE[1]  # a real check, not a cached one


def test_a_host_token_works_from_a_locked_out_source(guarded: LiveServer) -> None:
    for n in range(6):
        update(guarded, "127.0.0.2", f"user{n}", "guess")
    assert update(guarded, "127.0.0.2", "alice", "guess").status_code == 429
    token = guarded.tokens[HOME]
    assert update(guarded, "127.0.0.2", HOME, token).text == "good 203.0.113.7\n"


def test_unknown_users_and_wrong_passwords_are_answered_alike(guarded: LiveServer) -> None:
    def sequence(source: str, user: str) -> list[tuple[int, str, list[str]]]:
        answers = [update(guarded, source, user, f"guess-{n}") for n in range(5)]
        return [
            (a.status_code, a.text, sorted(set(a.headers) & {"www-authenticate", "retry-after"}))
            for a in answers
        ]

    assert sequence("127.0.0.5", "alice") == sequence("127.0.0.6", "nobody")
