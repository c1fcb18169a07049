"""Repeated failures are summarised in the log, never one line each."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest
from nicupdate_server.logsummary import LogSummary

from tests.server.process import ALICE, HOME, server_process


def test_the_first_is_logged_then_repeats_are_counted(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    summary = LogSummary(logging.getLogger("test.summary"), 60)
    for n in range(500):
        summary.note("badauth", "192.0.2.1", f"'user{n % 5}'")
    summary.note("badauth", "192.0.2.2", "'bob'")
    assert caplog.messages == [
        "badauth from 192.0.2.1: 'user0' (repeats are summarised every 60 s)",
        "badauth from 192.0.2.2: 'bob' (repeats are summarised every 60 s)",
    ]
    caplog.clear()
    summary.flush()
    assert caplog.messages == [
        "badauth from 192.0.2.1: 499 more in the last 60 s ('user0', 'user1', 'user2' and 2 more)"
    ]
    caplog.clear()
    summary.note("badauth", "192.0.2.1", "'user9'")  # still going: counted, not logged
    assert caplog.messages == []
    summary.flush()
    summary.flush()  # a quiet interval forgets the source...
    summary.note("badauth", "192.0.2.1", "'again'")  # ...so its next failure shows at once
    assert (
        caplog.messages[-1] == "badauth from 192.0.2.1: 'again' (repeats are summarised every 60 s)"
    )


def test_sources_past_the_bound_are_counted_together(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    summary = LogSummary(logging.getLogger("test.summary"), 60, max_sources=3)
    for n in range(100):
        summary.note("badauth", f"10.0.0.{n}")
    assert len(caplog.messages) == 3
    summary.flush()
    assert caplog.messages[-1] == "badauth from other sources: 97 more in the last 60 s"


def test_a_wrong_password_repeated_fills_no_log(tmp_path: Path) -> None:
    limits = "auth_failures_per_user = 1000\nauth_failures_per_source = 1000\nlog_interval = 0.5"
    with server_process(tmp_path, limits=limits) as server:
        with httpx.Client(timeout=30) as http:
            for _ in range(300):
                answer = http.get(
                    f"{server.url}/nic/update?hostname={HOME}", auth=("alice", "wrong")
                )
                assert answer.status_code == 401
            assert http.get(
                f"{server.url}/nic/update?hostname={HOME}&myip=203.0.113.3", auth=ALICE
            ).text == ("good 203.0.113.3\n")
        # The summary comes within one interval of the failures.
        server.stop()
        log = server.text()
    failures = [line for line in log.splitlines() if "badauth from 127.0.0.1" in line]
    assert failures[0].endswith(
        "badauth from 127.0.0.1: 'alice' (repeats are summarised every 0.5 s)"
    )
    counted = sum(int(line.split(": ")[-1].split()[0]) for line in failures[1:])
    assert counted == 299  # every failure is in the count
    assert len(failures) < 20  # one line per interval, not one per failure


def test_a_flood_from_many_sources_makes_few_lines(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    summary = LogSummary(logging.getLogger("test.summary"), 60)
    for n in range(50):
        for _ in range(n + 1):  # source n fails n + 1 times
            summary.note("badauth", f"10.0.0.{n}")
    assert len(caplog.messages) == 10  # the first ten sources at once, then silence
    caplog.clear()
    summary.flush()
    lines = caplog.messages
    assert len(lines) == 11
    assert lines[0] == "badauth from 10.0.0.49: 50 more in the last 60 s"  # the busiest first
    total = sum(range(1, 51))  # 10.0.0.0's one failure was logged and is not counted
    counted = sum(int(line.split(": ")[1].split()[0]) for line in lines[:10])
    assert lines[10] == f"badauth from 39 more sources: {total - 10 - counted} in the last 60 s"
