"""Password checks cannot be starved: a bounded queue, fair between sources, that drops
the checks of clients who have gone.

The queue on its own with checks the test holds on a gate, then the real server under
a flood of requests whose clients hang up at once.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from base64 import b64encode
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from nicupdate_server import auth
from nicupdate_server.checks import CheckDropped, ChecksBusy, PasswordChecks

from tests.server.conftest import ALICE, LiveServer, start_server, stop_server, write_config
from tests.server.test_throttle import HOME, update


def gated(log: list[str], name: str, gate: threading.Event) -> Callable[[], bool]:
    def work() -> bool:
        gate.wait(30)
        log.append(name)
        return True

    return work


def never() -> bool:
    return False


async def started(queue: PasswordChecks, running: int) -> None:
    """Wait until ``running`` checks have a thread (they are past the queue)."""
    while queue.running < running:
        await asyncio.sleep(0.001)


def test_the_queue_is_bounded_in_all_and_per_source() -> None:
    async def scenario() -> tuple[str, str]:
        gate = threading.Event()
        done: list[str] = []
        queue = PasswordChecks(workers=1, max_pending=3, max_per_source=2)
        first = asyncio.ensure_future(queue.run("a", gated(done, "a0", gate), never))
        await started(queue, 1)
        waiting = [
            asyncio.ensure_future(queue.run(src, gated(done, src, gate), never))
            for src in ("a", "a", "b")
        ]
        await asyncio.sleep(0)
        with pytest.raises(ChecksBusy) as full:
            await queue.run("c", gated(done, "c", gate), never)  # 3 waiting: the queue is full
        gate.set()
        await asyncio.gather(first, *waiting)
        per_source = PasswordChecks(workers=1, max_pending=10, max_per_source=1)
        gate.clear()
        held = asyncio.ensure_future(per_source.run("a", gated(done, "x", gate), never))
        await started(per_source, 1)
        queued = asyncio.ensure_future(per_source.run("a", gated(done, "y", gate), never))
        await asyncio.sleep(0)
        with pytest.raises(ChecksBusy) as mine:
            await per_source.run("a", gated(done, "z", gate), never)
        gate.set()
        await asyncio.gather(held, queued)
        assert full.value.retry_after >= 1
        return str(full.value), str(mine.value)

    whole, own = asyncio.run(scenario())
    assert "3 password checks waiting" in whole
    assert "from a waiting" in own


def test_sources_take_turns() -> None:
    async def scenario() -> list[str]:
        gate = threading.Event()
        done: list[str] = []
        queue = PasswordChecks(workers=1, max_pending=10, max_per_source=3)
        jobs = [asyncio.ensure_future(queue.run("flood", gated(done, "flood-0", gate), never))]
        await started(queue, 1)
        jobs += [
            asyncio.ensure_future(queue.run("flood", gated(done, f"flood-{n}", gate), never))
            for n in (1, 2, 3)
        ]
        await asyncio.sleep(0)
        jobs.append(asyncio.ensure_future(queue.run("router", gated(done, "router", gate), never)))
        await asyncio.sleep(0)
        gate.set()
        await asyncio.gather(*jobs)
        return done

    # The router's check, queued last, waits for one flood check, not for all of them.
    assert asyncio.run(scenario()) == ["flood-0", "flood-1", "router", "flood-2", "flood-3"]


def test_sources_with_fewer_failures_go_first_and_take_the_place_of_worse_ones() -> None:
    failures = {"attacker-1": 40, "attacker-2": 20, "router": 0}

    async def scenario() -> tuple[list[str], list[object]]:
        gate = threading.Event()
        done: list[str] = []
        queue = PasswordChecks(
            workers=1, max_pending=2, max_per_source=2, standing=failures.__getitem__
        )
        jobs = [asyncio.ensure_future(queue.run("attacker-1", gated(done, "a1-0", gate), never))]
        await started(queue, 1)
        jobs += [
            asyncio.ensure_future(queue.run("attacker-2", gated(done, "a2", gate), never)),
            asyncio.ensure_future(queue.run("attacker-1", gated(done, "a1-1", gate), never)),
        ]
        await asyncio.sleep(0)
        # The queue is full: the router's check takes the place of the worst source's.
        jobs.append(asyncio.ensure_future(queue.run("router", gated(done, "router", gate), never)))
        await asyncio.sleep(0)
        gate.set()
        return done, await asyncio.gather(*jobs, return_exceptions=True)

    done, results = asyncio.run(scenario())
    assert done == ["a1-0", "router", "a2"]  # the router first, though it came last
    assert isinstance(results[2], ChecksBusy)  # attacker-1's waiting check made room


def test_a_check_whose_client_has_gone_is_dropped_when_others_wait() -> None:
    async def scenario() -> tuple[list[str], list[object]]:
        gate = threading.Event()
        done: list[str] = []
        queue = PasswordChecks(workers=1, max_pending=10, max_per_source=5)
        first = asyncio.ensure_future(queue.run("a", gated(done, "first", gate), never))
        await started(queue, 1)
        gone = asyncio.ensure_future(queue.run("b", gated(done, "gone", gate), lambda: True))
        there = asyncio.ensure_future(queue.run("c", gated(done, "there", gate), never))
        alone = asyncio.ensure_future(queue.run("d", gated(done, "alone", gate), lambda: True))
        await asyncio.sleep(0)
        gate.set()
        results = await asyncio.gather(first, gone, there, alone, return_exceptions=True)
        return done, results

    done, results = asyncio.run(scenario())
    # "gone" was dropped while "there" waited; "alone", gone too but the last one
    # waiting, was checked: a client that half-closed its connection still gets it.
    assert done == ["first", "there", "alone"]
    assert isinstance(results[1], CheckDropped)


def test_closing_refuses_the_waiting_checks() -> None:
    async def scenario() -> object:
        gate = threading.Event()
        queue = PasswordChecks(workers=1, max_pending=10, max_per_source=5)
        running = asyncio.ensure_future(queue.run("a", gated([], "a", gate), never))
        await started(queue, 1)
        waiting = asyncio.ensure_future(queue.run("b", gated([], "b", gate), never))
        await asyncio.sleep(0)
        queue.close()
        gate.set()
        return (await asyncio.gather(running, waiting, return_exceptions=True))[1]

    assert isinstance(asyncio.run(scenario()), ChecksBusy)


def test_closing_lets_a_check_handed_to_a_thread_finish() -> None:
    """A check past the queue whose thread has not picked it up yet when the server
    stops still gets its verdict (it used to be cancelled, and its request died with
    a traceback)."""

    async def scenario() -> object:
        queue = PasswordChecks(workers=1, max_pending=10, max_per_source=5)
        busy = threading.Event()
        # The pool's one thread is still busy when the check is handed over, as when a
        # thread has just finished but not yet taken the next item.
        queue._executor.submit(busy.wait, 30)
        check = asyncio.ensure_future(queue.run("a", lambda: True, never))
        await started(queue, 1)
        queue.close()
        busy.set()
        return await asyncio.wait_for(check, 30)

    assert asyncio.run(scenario()) is True


# -- against the real server -----------------------------------------------------------


@pytest.fixture
def slow_hashes(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[list[str], threading.Event]]:
    """Every password check waits for the gate (a hash as slow as the test wants) and
    is recorded."""
    gate = threading.Event()
    calls: list[str] = []
    real = auth.verify_password

    def slow(password: str, password_hash: str) -> bool:
        calls.append(password)
        gate.wait(30)
        return real(password, password_hash)

    monkeypatch.setattr(auth, "verify_password", slow)
    yield calls, gate
    gate.set()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    path = write_config(tmp_path)
    path.write_text(path.read_text() + "\n[limits]\nthrottle_delay = 0\n")
    live = start_server(path)
    live.add_user("alice", ALICE[1])
    live.add_host(HOME, "alice")
    yield live
    stop_server(live)


def hang_up_after_sending(server: LiveServer, source: str, user: str) -> None:
    """A request with random credentials from a client that closes at once."""
    auth_header = b64encode(f"{user}:random-{user}".encode()).decode()
    with socket.create_connection(("127.0.0.1", server.http.port), source_address=(source, 0)) as s:
        s.sendall(
            f"GET /nic/update?hostname={HOME} HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Basic {auth_header}\r\n\r\n".encode()
        )


def test_abandoned_checks_cost_no_hash_and_do_not_delay_a_login(
    server: LiveServer, slow_hashes: tuple[list[str], threading.Event]
) -> None:
    calls, gate = slow_hashes
    # 300 requests with random credentials from 300 addresses, each closed right after
    # sending, while the two hashing threads are busy with the first of them: 32 wait
    # (the queue's bound), the rest are refused.
    for n in range(300):
        hang_up_after_sending(server, f"127.0.{1 + n // 250}.{1 + n % 250}", f"user{n}")
    server.get("/healthz")  # answered after the requests that came before it are queued
    with ThreadPoolExecutor(1) as pool:
        login = pool.submit(update, server, "127.0.9.9", *ALICE)
        server.get("/healthz")  # alice's check is queued: the abandoned ones made room
        gate.set()
        answer = login.result(timeout=30)
    assert (answer.status_code, answer.text) == (200, "good 203.0.113.7\n")
    # Only the two checks already running when the flood came were hashed, then alice's.
    assert len(calls) == 3 and calls[-1] == ALICE[1], calls
