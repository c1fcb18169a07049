"""The built-in DNS runs in a process of its own, fed by the change log: it serves every
change before the update is answered ``good``, comes back when killed, never outlives
the server, and follows a reloaded configuration."""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode
import httpx
import pytest

from tests.server.conftest import (
    ALICE,
    LiveServer,
    eventually,
    start_server,
    stop_server,
    write_config,
)
from tests.server.process import server_process, wait_for


def dns_pid(server: LiveServer) -> int:
    assert server.runtime.dns is not None
    process = server.runtime.dns._process
    assert process is not None and process.poll() is None
    return process.pid


def answers(server: LiveServer, name: str) -> list[str]:
    try:
        return server.addresses(name)
    except dns.exception.Timeout:
        return []


def test_the_dns_is_another_process_and_serves_each_good_at_once(alice: LiveServer) -> None:
    assert dns_pid(alice) != os.getpid()
    for i in range(1, 21):
        reply = alice.update(f"hostname=home.dyn.example.test&myip=192.0.2.{i}", auth=ALICE)
        assert reply.text.strip() == f"good 192.0.2.{i}"
        # `good` means DNS serves it: no waiting.
        assert alice.addresses("home.dyn.example.test") == [f"192.0.2.{i}"]


def test_a_killed_dns_process_is_started_again(alice: LiveServer) -> None:
    first = dns_pid(alice)
    os.kill(first, signal.SIGKILL)
    # The port stays bound in the server: queries wait in the socket, then are answered.
    assert eventually(lambda: alice.runtime.dns is not None and alice.runtime.dns.restarts == 1)
    reply = alice.update("hostname=home.dyn.example.test&myip=192.0.2.77", auth=ALICE)
    assert reply.text.strip() == "good 192.0.2.77"
    assert alice.addresses("home.dyn.example.test") == ["192.0.2.77"]
    assert dns_pid(alice) != first


def test_cli_changes_reach_the_dns_process(alice: LiveServer) -> None:
    alice.update("hostname=home.dyn.example.test&myip=192.0.2.5", auth=ALICE)
    result = alice.cli("host", "remove", "home.dyn.example.test")
    assert result.returncode == 0, result.stderr
    assert eventually(
        lambda: alice.dns_query("home.dyn.example.test").rcode() == dns.rcode.NXDOMAIN, 10
    )


def test_a_reloaded_configuration_reaches_the_dns_process(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    server = start_server(config)
    try:
        assert server.dns_query("new.example.org", "SOA").rcode() == dns.rcode.REFUSED
        text = config.read_text() + '\n[[zones]]\nname = "new.example.org"\nbackend = "builtin"\n'
        exempt = 'exempt_clients = ["127.0.0.1/32"]'
        config.write_text(text.replace(exempt, "responses_per_second = 3"))
        from nicupdate_server.config import load_config
        from nicupdate_server.reload import reconfigure

        new = load_config(config)
        levels = {name: logging.getLogger(name).level for name in ("", "uvicorn.error")}
        try:
            server.call(lambda: reconfigure(server.runtime, new))
        finally:  # the reload set this (test) process's log levels
            for name, level in levels.items():
                logging.getLogger(name).setLevel(level)
        assert eventually(
            lambda: server.dns_query("new.example.org", "SOA").rcode() == dns.rcode.NOERROR, 10
        )
        # The new rate limit holds: a burst of one question gets 3 answers in full.
        query = dns.message.make_query("new.example.org", "NS")  # not asked before
        full = 0
        for _ in range(10):
            try:
                reply = dns.query.udp(query, "127.0.0.1", port=server.dns_port, timeout=0.5)
            except dns.exception.Timeout:
                continue  # dropped
            full += bool(reply.answer)
        assert 3 <= full <= 4
    finally:
        stop_server(server)


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "State:\tZ" not in status


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_the_dns_process_never_outlives_its_server(tmp_path: Path, sig: int) -> None:
    with server_process(tmp_path) as server:
        wait_for(lambda: children(server.proc.pid), what="the DNS process")
        (child,) = children(server.proc.pid)
        assert "nicupdate_server.dns" in Path(f"/proc/{child}/cmdline").read_bytes().decode()
        server.proc.send_signal(sig)
        server.proc.wait(30)
        deadline = time.monotonic() + 10
        while alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(child)


def test_http_is_answered_while_the_dns_process_is_stopped(alice: LiveServer) -> None:
    """The update server does not depend on the DNS process to answer nochg."""
    alice.update("hostname=home.dyn.example.test&myip=192.0.2.9", auth=ALICE)
    pid = dns_pid(alice)
    os.kill(pid, signal.SIGSTOP)
    try:
        reply = httpx.get(
            alice.url + "/nic/update?hostname=home.dyn.example.test&myip=192.0.2.9",
            auth=ALICE,
            timeout=10,
        )
        assert reply.text.strip() == "nochg 192.0.2.9"
    finally:
        os.kill(pid, signal.SIGCONT)
