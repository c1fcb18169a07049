"""``GET /api/v1/changes``: who sees what, paging, long poll, Server-Sent Events, 410."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from nicupdate_server import changelog

from tests.server.conftest import (
    ALICE,
    LiveServer,
    eventually,
    start_server,
    stop_server,
    write_config,
)

pytestmark = pytest.mark.usefixtures("clean_environment")

HOME = "home.dyn.example.test"
OFFICE = "office.dyn.example.test"
BOBS = "bob.dyn.example.test"
BOB = ("bob", "bob-secret-1")
PATH = "/api/v1/changes"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    """alice owns HOME and OFFICE, bob owns BOBS; each host got an address."""
    live = start_server(write_config(tmp_path))
    live.add_user(*ALICE)
    live.add_user(*BOB)
    live.add_host(HOME, "alice")
    live.add_host(BOBS, "bob")
    live.add_host(OFFICE, "alice")
    for n, (fqdn, auth) in enumerate([(HOME, ALICE), (BOBS, BOB), (OFFICE, ALICE)], 1):
        assert live.update(f"hostname={fqdn}&myip=203.0.113.{n}", auth=auth).status_code == 200
    live.call(live.runtime.feed.catch_up)
    yield live
    stop_server(live)


def changes(
    server: LiveServer, auth: tuple[str, str] | None, timeout: float = 10, **params: Any
) -> httpx.Response:
    return httpx.get(server.url + PATH, params=params, auth=auth, timeout=timeout)


def summary(response: httpx.Response) -> list[tuple[str, str]]:
    assert response.status_code == 200, response.text
    return [(c["event"], c["host"]) for c in response.json()["changes"]]


def newest(server: LiveServer) -> int:
    async def read() -> int:
        async with server.runtime.engine.connect() as conn:
            return await changelog.newest(conn)

    return server.call(read)


# --- who sees what ---------------------------------------------------------------------


def test_without_right_credentials_the_answer_is_401(server: LiveServer) -> None:
    for auth in (None, ("alice", "wrong"), ("nobody", "x"), (HOME, "not-the-token")):
        answer = changes(server, auth)
        assert answer.status_code == 401, auth
        assert answer.headers["www-authenticate"].startswith("Basic realm=")
        assert answer.json()["error"] == "unauthorized"


def test_an_account_sees_its_own_hosts_and_next_passes_the_others(server: LiveServer) -> None:
    alice = changes(server, ALICE)
    assert summary(alice) == [
        ("host.added", HOME),
        ("host.added", OFFICE),
        ("records", HOME),
        ("records", OFFICE),
    ]
    body = alice.json()
    assert body["next"] == newest(server)  # past bob's rows too
    first = body["changes"][2]
    assert set(first) == {"id", "event", "at", "host", "owner", "records", "previous"}
    assert (first["owner"], first["records"]) == ("alice", {"A": ["203.0.113.1"]})
    assert "digest" not in alice.text and "password" not in alice.text
    assert summary(changes(server, BOB)) == [("host.added", BOBS), ("records", BOBS)]
    assert changes(server, ALICE, since=body["next"]).json() == {
        "changes": [],
        "next": body["next"],
    }


def test_a_host_token_sees_only_its_host(server: LiveServer) -> None:
    token = (HOME, server.tokens[HOME])
    assert summary(changes(server, token)) == [("host.added", HOME), ("records", HOME)]
    server.admin(lambda a: a.remove_host(OFFICE))  # alice's other host: not for the token
    server.update(f"hostname={HOME}&myip=203.0.113.9", auth=token)
    server.call(server.runtime.feed.catch_up)
    assert summary(changes(server, token))[-1] == ("records", HOME)
    # A removed host stays alice's by the row's owner.
    assert summary(changes(server, ALICE))[-2:] == [("host.removed", OFFICE), ("records", HOME)]
    assert ("host.removed", OFFICE) not in summary(changes(server, BOB))


def test_since_next_and_limit_page_through_the_same_events(server: LiveServer) -> None:
    whole = changes(server, ALICE).json()["changes"]
    paged: list[dict[str, Any]] = []
    since = 0
    for _ in range(10):
        page = changes(server, ALICE, since=since, limit=1).json()
        assert len(page["changes"]) <= 1
        paged += page["changes"]
        if page["next"] == since:
            break
        since = page["next"]
    assert paged == whole
    assert [c["id"] for c in changes(server, ALICE, since=whole[1]["id"]).json()["changes"]] == [
        c["id"] for c in whole[2:]
    ]


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"since": "-1"}, "since"),
        ({"since": "abc"}, "since"),
        ({"limit": "0"}, "limit"),
        ({"limit": "5001"}, "limit"),
        ({"wait": "61"}, "wait"),
        ({"wait": "soon"}, "wait"),
        ({"sinse": "3"}, "sinse"),
    ],
)
def test_bad_parameters_are_400_naming_the_parameter(
    server: LiveServer, params: dict[str, str], parameter: str
) -> None:
    answer = changes(server, ALICE, **params)
    assert answer.status_code == 400
    body = answer.json()
    assert body["parameter"] == parameter
    assert body["message"].startswith(f"{parameter}: ")


def test_a_pruned_since_is_410_with_the_oldest_kept(server: LiveServer) -> None:
    async def prune() -> int:
        async with server.runtime.engine.begin() as conn:
            return await changelog.prune(conn, await changelog.newest(conn), timedelta(0), 1000)

    assert server.call(prune) > 0
    oldest = newest(server)
    gone = changes(server, ALICE, since=1)
    assert (gone.status_code, gone.json()) == (410, {"error": "gone", "oldest": oldest})
    assert changes(server, ALICE).status_code == 200  # since=0: whatever is kept
    assert changes(server, ALICE, since=oldest - 1).status_code == 200


def test_a_locked_out_source_gets_429_with_retry_after(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    path.write_text(path.read_text() + "\n[limits]\nauth_failures_per_source = 2\n")
    live = start_server(path)
    try:
        live.add_user(*ALICE)
        answers = [changes(live, ("alice", f"guess-{n}")).status_code for n in range(3)]
        assert answers[:2] == [401, 401]
        locked = changes(live, ("alice", "guess-again"))
        assert locked.status_code == 429
        assert int(locked.headers["retry-after"]) >= 1
        # The same lock-out as /nic/update's: it is one authenticator.
        assert live.update("hostname=x.dyn.example.test", auth=("alice", "more")).status_code == 429
    finally:
        stop_server(live)


# --- waiting for changes ------------------------------------------------------------------


def test_a_long_poll_answers_as_soon_as_a_change_is_made(server: LiveServer) -> None:
    since = changes(server, ALICE).json()["next"]
    waiting = len(server.runtime.feed.arrivals)
    with ThreadPoolExecutor(1) as pool:
        started = time.monotonic()
        poll: Future[httpx.Response] = pool.submit(changes, server, ALICE, 30, since=since, wait=20)
        assert eventually(lambda: len(server.runtime.feed.arrivals) > waiting)  # it waits
        server.update(f"hostname={HOME}&myip=203.0.113.44", auth=ALICE)
        answer = poll.result(30)
    assert time.monotonic() - started < 15  # not the whole 20 s
    assert summary(answer) == [("records", HOME)]
    assert answer.json()["changes"][0]["records"] == {"A": ["203.0.113.44"]}


def test_a_long_poll_with_nothing_new_answers_empty_after_wait(server: LiveServer) -> None:
    since = changes(server, ALICE).json()["next"]
    started = time.monotonic()
    server.update(f"hostname={BOBS}&myip=203.0.113.55", auth=BOB)  # not alice's
    answer = changes(server, ALICE, since=since, wait=1)
    assert time.monotonic() - started >= 0.9
    assert answer.json()["changes"] == []
    assert answer.json()["next"] >= since


# --- Server-Sent Events ---------------------------------------------------------------------


def read_events(lines: Iterator[str], count: int) -> list[dict[str, str]]:
    """The next ``count`` events of a stream (comments and ``retry:`` skipped)."""
    events: list[dict[str, str]] = []
    block: dict[str, str] = {}
    for line in lines:
        if not line:
            if "data" in block:
                events.append(block)
                if len(events) == count:
                    return events
            block = {}
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        block[name] = value.removeprefix(" ")
    raise AssertionError(f"the stream ended after {len(events)} events")


def test_an_event_stream_sends_the_events_and_resumes_from_last_event_id(
    server: LiveServer,
) -> None:
    headers = {"Accept": "text/event-stream"}
    with httpx.stream("GET", server.url + PATH, headers=headers, auth=ALICE, timeout=20) as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = stream.iter_lines()
        first = read_events(lines, 4)
        assert [(e["event"], e["id"]) for e in first] == [
            (e["event"], str(httpx.Response(200, content=e["data"]).json()["id"])) for e in first
        ]
        server.update(f"hostname={OFFICE}&myip=203.0.113.66", auth=ALICE)
        (new,) = read_events(lines, 1)
        assert new["event"] == "records"
        assert httpx.Response(200, content=new["data"]).json()["records"] == {"A": ["203.0.113.66"]}
    resumed_headers = {**headers, "Last-Event-ID": first[1]["id"]}
    with httpx.stream(
        "GET", server.url + PATH, headers=resumed_headers, auth=ALICE, timeout=20
    ) as stream:
        again = read_events(stream.iter_lines(), 3)
    assert [e["id"] for e in again] == [e["id"] for e in [*first[2:], new]]
    assert [e["data"] for e in again] == [e["data"] for e in [*first[2:], new]]


def test_a_host_tokens_stream_ends_after_its_host_is_removed(server: LiveServer) -> None:
    token = (HOME, server.tokens[HOME])
    with httpx.stream(
        "GET", server.url + PATH, headers={"Accept": "text/event-stream"}, auth=token, timeout=20
    ) as stream:
        lines = stream.iter_lines()
        assert [e["event"] for e in read_events(lines, 2)] == ["host.added", "records"]
        server.admin(lambda a: a.remove_host(HOME))
        assert [e["event"] for e in read_events(lines, 1)] == ["host.removed"]
        assert all(not line or line.startswith(":") for line in lines)  # and it ends


def test_an_event_stream_ends_when_the_server_stops(tmp_path: Path) -> None:
    live = start_server(write_config(tmp_path))
    live.add_user(*ALICE)
    stopper = threading.Thread(target=stop_server, args=(live,))
    with httpx.stream(
        "GET", live.url + PATH, headers={"Accept": "text/event-stream"}, auth=ALICE, timeout=20
    ) as stream:
        lines = stream.iter_lines()
        assert next(lines) == "retry: 2000"
        stopper.start()
        rest = list(lines)  # ends (a read timeout would raise)
    stopper.join(30)
    assert not stopper.is_alive()
    assert all(not line or line.startswith(":") for line in rest)
