"""Per-host limits: a token bucket of updates (429 with Retry-After), and `abuse` for a
host whose client keeps sending the same address, until its owner unblocks it.

The counters on a clock the test turns, then the real server: what a client and the
CLI's user see.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from nicupdate_server.config import LimitSettings
from nicupdate_server.ratelimit import SLOTS, HostLimits

from tests.server.conftest import ALICE, LiveServer, start_server, stop_server, write_config

HOME = "home.dyn.example.test"
OFFICE = "office.dyn.example.test"


class Clock:
    def __init__(self) -> None:
        self.now = 10_000.0

    def __call__(self) -> float:
        return self.now


def test_a_host_has_a_burst_then_one_update_per_interval() -> None:
    clock = Clock()
    limits = HostLimits(LimitSettings(host_update_burst=3, host_update_interval=10.0), clock=clock)
    for _ in range(3):
        assert limits.wait([7]) == 0
        limits.spend(7)
    assert limits.wait([7]) == pytest.approx(10.0)
    assert limits.wait([8]) == 0  # another host has its own bucket
    clock.now += 4
    assert limits.wait([7, 8]) == pytest.approx(6.0)  # the longest wait of the hosts asked
    clock.now += 6
    assert limits.wait([7]) == 0
    limits.spend(7)
    assert limits.wait([7]) == pytest.approx(10.0)
    clock.now += 1000
    limits.prune()
    assert len(limits) == 0  # full buckets take no memory


def test_an_interval_of_zero_turns_the_limit_off() -> None:
    limits = HostLimits(LimitSettings(host_update_interval=0), clock=Clock())
    for _ in range(1000):
        limits.spend(7)
    assert limits.wait([7]) == 0


def test_nochg_past_the_threshold_within_the_window_is_abuse() -> None:
    clock = Clock()
    limits = HostLimits(LimitSettings(abuse_nochg_threshold=5, abuse_window=1200.0), clock=clock)
    assert [limits.nochg(7) for _ in range(5)] == [False] * 5
    assert limits.nochg(7) is True  # the sixth within the window
    assert [limits.nochg(8) for _ in range(5)] == [False] * 5
    clock.now += 1200 + 1200 / SLOTS  # the window has moved past those five
    assert limits.nochg(8) is False


def test_abuse_counting_is_off_by_default() -> None:
    limits = HostLimits(LimitSettings(), clock=Clock())
    assert not any(limits.nochg(7) for _ in range(10_000))


# -- against the real server -----------------------------------------------------------


def limited_server(directory: Path, limits: str) -> LiveServer:
    path = write_config(directory)
    path.write_text(path.read_text() + "\n[limits]\nthrottle_delay = 0\n" + limits)
    server = start_server(path)
    server.add_user("alice", ALICE[1])
    server.add_host(HOME, "alice")
    server.add_host(OFFICE, "alice")
    return server


@pytest.fixture
def bucketed(tmp_path: Path) -> Iterator[LiveServer]:
    server = limited_server(tmp_path, "host_update_burst = 3\nhost_update_interval = 600\n")
    yield server
    stop_server(server)


def test_a_host_past_its_rate_gets_429_and_the_others_do_not(bucketed: LiveServer) -> None:
    answers = [
        bucketed.update(f"hostname={HOME}&myip=203.0.113.{n}", auth=ALICE) for n in (1, 2, 2)
    ]
    assert [a.text for a in answers] == [
        "good 203.0.113.1\n",
        "good 203.0.113.2\n",
        "nochg 203.0.113.2\n",
    ]
    limited = bucketed.update(f"hostname={HOME}&myip=203.0.113.9", auth=ALICE)
    assert (limited.status_code, limited.text) == (429, "911\n")
    assert 590 <= int(limited.headers["Retry-After"]) <= 600
    assert bucketed.addresses(HOME) == ["203.0.113.2"]  # the refused request changed nothing
    other = bucketed.update(f"hostname={OFFICE}&myip=203.0.113.9", auth=ALICE)
    assert other.text == "good 203.0.113.9\n"
    both = bucketed.update(f"hostname={OFFICE},{HOME}&myip=203.0.113.9", auth=ALICE)
    assert both.status_code == 429  # one exhausted host in the request is enough


def test_server_side_failures_take_no_token(bucketed: LiveServer) -> None:
    for _ in range(10):  # dnserr: the address is refused, the client is not to blame
        refused = bucketed.update(f"hostname={HOME}&myip=127.0.0.1", auth=ALICE)
        assert (refused.status_code, refused.text) == (200, "dnserr\n")
    for n in range(3):
        assert bucketed.update(
            f"hostname={HOME}&myip=203.0.113.{n + 1}", auth=ALICE
        ).text.startswith("good")


@pytest.fixture
def watched(tmp_path: Path) -> Iterator[LiveServer]:
    server = limited_server(tmp_path, "abuse_nochg_threshold = 3\nabuse_window = 3600\n")
    yield server
    stop_server(server)


def test_a_client_that_ignores_its_cache_is_told_abuse_until_unblocked(
    watched: LiveServer,
) -> None:
    update = f"hostname={HOME}&myip=203.0.113.7"
    assert watched.update(update, auth=ALICE).text == "good 203.0.113.7\n"
    assert [watched.update(update, auth=ALICE).text for _ in range(3)] == [
        "nochg 203.0.113.7\n"
    ] * 3
    blocked = watched.update(update, auth=ALICE)
    assert (blocked.status_code, blocked.text) == (200, "abuse\n")
    # Blocked means blocked: a new address is refused too, and DNS keeps the old one.
    assert watched.update(f"hostname={HOME}&myip=203.0.113.8", auth=ALICE).text == "abuse\n"
    assert watched.addresses(HOME) == ["203.0.113.7"]
    # ...but only that host, and only for its owner: others still learn nothing.
    assert watched.update(f"hostname={OFFICE},{HOME}&myip=203.0.113.8", auth=ALICE).text == (
        "good 203.0.113.8\nabuse\n"
    )
    listed = watched.cli("host", "list").stdout
    home_line = next(line for line in listed.splitlines() if line.startswith(HOME))
    assert "abuse: blocked since" in home_line

    unblocked = watched.cli("host", "unblock", HOME)
    assert (unblocked.returncode, unblocked.stdout) == (
        0,
        f"host {HOME} unblocked: it may update again\n",
    )
    watched.call(watched.runtime.feed.catch_up)
    assert watched.update(update, auth=ALICE).text == "nochg 203.0.113.7\n"  # counted afresh
    again = watched.cli("host", "unblock", HOME)
    assert again.stdout == f"host {HOME} was not blocked\n"


def test_a_block_survives_a_restart(tmp_path: Path) -> None:
    server = limited_server(tmp_path, "abuse_nochg_threshold = 1\n")
    try:
        update = f"hostname={HOME}&myip=203.0.113.7"
        answers = [server.update(update, auth=ALICE).text for _ in range(3)]
        assert answers == ["good 203.0.113.7\n", "nochg 203.0.113.7\n", "abuse\n"]
    finally:
        stop_server(server)
    restarted = start_server(server.config_path)
    try:
        assert restarted.update(update, auth=ALICE).text == "abuse\n"
    finally:
        stop_server(restarted)
