"""The running server under attack: SIGTERM during a flood, the access log, /healthz."""

from __future__ import annotations

import logging
import socket
import threading
from pathlib import Path

import httpx
import pytest

from tests.server.conftest import ALICE, start_server, stop_server, write_config
from tests.server.process import HOME, raise_own_descriptor_limit, server_process, wait_for

GRACE = 5.0  # uvicorn's timeout_graceful_shutdown, as serve sets it


def test_sigterm_during_a_flood_exits_cleanly_within_the_grace_period(tmp_path: Path) -> None:
    raise_own_descriptor_limit()
    with server_process(tmp_path, limits="throttle_delay = 3") as server:
        stop = threading.Event()
        sent = [0]

        def guess(source: str) -> None:
            with httpx.Client(
                transport=httpx.HTTPTransport(local_address=source), timeout=30
            ) as http:
                for n in range(10_000):  # bounded; stops when the server does
                    if stop.is_set():
                        return
                    try:
                        http.get(f"{server.url}/nic/update?hostname={HOME}", auth=(f"u{n}", "x"))
                        sent[0] += 1
                    except httpx.HTTPError:
                        return

        floods = [
            threading.Thread(target=guess, args=(f"127.0.5.{n}",), daemon=True)
            for n in range(1, 17)
        ]
        for flood in floods:
            flood.start()
        idle = [
            socket.create_connection(
                ("127.0.0.1", server.http_port), source_address=("127.0.6.1", 0)
            )
            for _ in range(50)
        ]
        slow = socket.create_connection(("127.0.0.1", server.http_port))
        slow.sendall(b"GET /nic/update HTTP/1.1\r\nHost: x\r\n")
        try:
            # Under way: checks are queued, sources locked out, answers held back.
            wait_for(lambda: sent[0] >= 100, what="the flood to be under way")
            # The server bounds its shutdown by the grace period; the timeout here only
            # catches a hang (bench_abuse.py measures how long it takes).
            status = server.stop(timeout=GRACE + 25)
        finally:
            stop.set()
            for flood in floods:
                flood.join(30)
            for sock in (*idle, slow):
                sock.close()
        log = server.text()
    assert status == 0, log[-3000:]
    assert "Traceback" not in log
    assert "Exception in ASGI application" not in log


def test_the_access_log_masks_passwords_and_tokens(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    server = start_server(write_config(tmp_path, "access_log = true"))
    try:
        server.add_user("alice", ALICE[1])
        token = server.add_host(HOME, "alice")
        for user, secret in (("alice", ALICE[1]), (HOME, token)):
            answer = server.get(
                f"/nic/update?hostname={HOME}&myip=203.0.113.7&username={user}&password={secret}"
            )
            assert answer.status_code == 200
        server.get(f"/nic/update?hostname={HOME}&token={token}&Pass%77ord={token}")
    finally:
        stop_server(server)
    ours = [r.getMessage() for r in caplog.records if r.name.startswith(("uvicorn", "nicupdate"))]
    # Once each (a fake's uvicorn elsewhere in the test session may have given the
    # logger a handler of its own as well).
    access = list(
        dict.fromkeys(r.getMessage() for r in caplog.records if r.name == "uvicorn.access")
    )
    assert len(access) == 3
    assert f"username={HOME}&password=*** HTTP/1.1" in access[1]
    assert "token=***&Pass%77ord=***" in access[2]
    assert not [line for line in ours if ALICE[1] in line or token in line]
