"""A real nicupdate server for tests: uvicorn and the built-in DNS on free loopback ports."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import dns.message
import dns.query
import dns.rdatatype
import httpx
import pytest
import uvloop
from nicupdate_server.admin import Admin
from nicupdate_server.config import Config, load_config
from nicupdate_server.runtime import HttpServer, Runtime, http_server

T = TypeVar("T")

BASE_CONFIG = """
[server]
listen = "127.0.0.1:0"
database = "sqlite+aiosqlite:///{db}"
{server_extra}

[dns]
listen = "127.0.0.1:0"

[dns.rate_limit]
# Tests ask the DNS from 127.0.0.1 again and again, as a monitoring probe would;
# response rate limiting is tested from other sources (tests/server/dns).
exempt_clients = ["127.0.0.1/32"]

[[zones]]
name = "dyn.example.test"
backend = "builtin"
ttl = 60
nameserver_addresses = ["127.0.0.1"]

[[zones]]
name = "public.example.net"
backend = "builtin"
ttl = 300
public_only = true
"""


def write_config(directory: Path, server_extra: str = "") -> Path:
    path = directory / "nicupdate.toml"
    path.write_text(BASE_CONFIG.format(db=directory / "state.db", server_extra=server_extra))
    return path


@dataclass
class LiveServer:
    config_path: Path
    config: Config
    runtime: Runtime
    http: HttpServer
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http.port}"

    @property
    def dns_port(self) -> int:
        assert self.runtime.dns is not None
        return self.runtime.dns.port

    def call(self, work: Callable[[], Awaitable[T]]) -> T:
        """Run ``work()`` on the server's event loop and return its result."""

        async def wrapped() -> T:
            return await work()

        future: Future[T] = asyncio.run_coroutine_threadsafe(wrapped(), self.loop)
        return future.result(timeout=30)

    def admin(self, work: Callable[[Admin], Awaitable[T]]) -> T:
        """An admin change, as the CLI makes it, then an immediate reload."""

        async def run() -> T:
            result = await work(Admin(self.runtime.engine, self.config))
            await self.runtime.feed.catch_up()
            return result

        return self.call(run)

    def add_user(self, name: str, password: str) -> None:
        self.admin(lambda a: a.add_user(name, password))

    def add_host(self, fqdn: str, owner: str) -> str:
        token = self.admin(lambda a: a.add_host(fqdn, owner))
        self.tokens[fqdn] = token
        return token

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.get(self.url + path, timeout=10, **kwargs)

    def update(self, query: str, auth: tuple[str, str] | None = None, **kw: Any) -> httpx.Response:
        return self.get("/nic/update?" + query, auth=auth, **kw)

    def dns_query(self, name: str, rdtype: str = "A", tcp: bool = False) -> dns.message.Message:
        query = dns.message.make_query(name, dns.rdatatype.from_text(rdtype))
        if tcp:
            return dns.query.tcp(query, "127.0.0.1", port=self.dns_port, timeout=3)
        return dns.query.udp(query, "127.0.0.1", port=self.dns_port, timeout=3)

    def addresses(self, name: str, rdtype: str = "A") -> list[str]:
        """What a resolver sees: the addresses served for ``name``, sorted."""
        answer = self.dns_query(name, rdtype).answer
        return sorted(rd.to_text() for rrset in answer for rd in rrset)

    def ttl(self, name: str, rdtype: str = "A") -> int:
        return int(self.dns_query(name, rdtype).answer[0].ttl)

    def cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return run_cli("--config", str(self.config_path), *args, stdin=stdin)


def run_cli(
    *args: str, stdin: str | None = None, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nicupdate_server", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        check=False,
    )


def start_server(config_path: Path) -> LiveServer:
    config = load_config(config_path, environ={})
    loop = uvloop.new_event_loop()  # as `serve` runs it (uvicorn with loop="uvloop")
    runtime_box: dict[str, Any] = {}
    started = threading.Event()

    async def main() -> None:
        runtime = Runtime(config)
        await runtime.start()
        server = http_server(runtime)
        runtime_box.update(runtime=runtime, http=server)
        serve = asyncio.ensure_future(server.serve())
        while not server.started and not serve.done():
            await asyncio.sleep(0.01)
        started.set()
        try:
            await serve
        finally:
            await runtime.close()

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(main())
        finally:
            started.set()
            loop.close()

    thread = threading.Thread(target=run, name="nicupdate-test-server", daemon=True)
    thread.start()
    started.wait(30)
    if "http" not in runtime_box or not runtime_box["http"].started:
        raise RuntimeError("the test server did not start")
    return LiveServer(
        config_path, config, runtime_box["runtime"], runtime_box["http"], loop, thread
    )


def eventually(check: Callable[[], T], timeout: float = 30.0) -> T:
    """``check()`` once it is true, or its last value after ``timeout`` seconds (polled
    every 50 ms): for what a running server takes a moment to show."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.05)


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No NICUPDATE_* variables from the caller's shell reach the commands (a module
    asks for it with ``pytestmark = pytest.mark.usefixtures("clean_environment")``)."""
    for name in list(os.environ):
        if name.startswith("NICUPDATE_"):
            monkeypatch.delenv(name)


def stop_server(server: LiveServer) -> None:
    server.http.should_exit = True
    server.thread.join(30)


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[LiveServer]:
    server = start_server(write_config(tmp_path))
    yield server
    stop_server(server)


@pytest.fixture
def alice(live_server: LiveServer) -> LiveServer:
    """A server with account alice (password alice-secret-1) owning home.dyn.example.test."""
    live_server.add_user("alice", "alice-secret-1")
    live_server.add_host("home.dyn.example.test", "alice")
    return live_server


ALICE = ("alice", "alice-secret-1")


@pytest.fixture
def hashes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The passwords the server checks against a hash (the slow check), in order."""
    from nicupdate_server import auth

    calls: list[str] = []
    real = auth.verify_password

    def counting(password: str, password_hash: str) -> bool:
        calls.append(password)
        return real(password, password_hash)

    monkeypatch.setattr(auth, "verify_password", counting)
    return calls
