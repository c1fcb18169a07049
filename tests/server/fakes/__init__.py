"""Stateful fakes of provider APIs, served for real over HTTP on 127.0.0.1.

A fake is a Starlette app on uvicorn in a thread. It keeps the provider's records, checks
each request's signature or token as the provider would, answers with the provider's
real error shapes, and can be told to fail the next calls (throttling, a 5xx, refused
credentials). A request it has no route for is recorded in ``unexpected``, and the
:func:`serving` context manager fails the test when it ends with any.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import dns.rdata
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response


def txt_value(text: str) -> str:
    """A TXT record in zone-file form (``"a" "b"``, or bare) as its value: the strings
    joined, as dnspython reads them (not with the backends' own parser)."""
    rdata: Any = dns.rdata.from_text("IN", "TXT", text)
    return b"".join(rdata.strings).decode()


def is_quoted_txt(text: str) -> bool:
    """Whether ``text`` is one or more complete zone-file quoted strings (``"..."``), as
    the APIs that want TXT values quoted (Route 53, Huawei Cloud) check them."""
    rest = text.strip()
    while rest:
        if not rest.startswith('"'):
            return False
        end = 1
        while end < len(rest) and rest[end] != '"':
            end += 2 if rest[end] == "\\" else 1
        if end >= len(rest):
            return False
        rest = rest[end + 1 :].lstrip()
    return bool(text.strip())


@dataclass
class Seen:
    """One request the fake received."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes


@dataclass
class FakeProvider:
    """State shared by every fake: what it saw, and failures queued for the next calls."""

    seen: list[Seen] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    # Queued failures, each taken by one call: "throttle", "server", "credentials".
    failures: list[str] = field(default_factory=list)
    writes: int = 0  # calls that changed (or tried to change) records
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def fail_next(self, kind: str, times: int = 1) -> None:
        with self.lock:
            self.failures.extend([kind] * times)

    def take_failure(self) -> str | None:
        with self.lock:
            return self.failures.pop(0) if self.failures else None

    async def record(self, request: Request) -> Seen:
        seen = Seen(
            request.method,
            request.url.path,
            request.url.query,
            {k.lower(): v for k, v in request.headers.items()},
            await request.body(),
        )
        with self.lock:
            self.seen.append(seen)
        return seen

    def not_expected(self, request: Request, why: str = "no such route") -> Response:
        with self.lock:
            where = f"{request.url.path}?{request.url.query}"
            self.unexpected.append(f"{request.method} {where}: {why}")
        return JSONResponse({"error": f"unexpected request ({why})"}, status_code=404)

    def app(self) -> Starlette:
        """The provider's routes; a subclass overrides this."""
        raise NotImplementedError


@dataclass
class Served:
    fake: Any
    url: str  # http://127.0.0.1:PORT


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def serving(fake: FakeProvider) -> Iterator[Served]:
    """Serve ``fake`` on a free 127.0.0.1 port; fail if it saw an unexpected request."""
    app = fake.app()

    async def catch_all(request: Request) -> Response:
        await fake.record(request)
        return fake.not_expected(request)

    app.add_route("/{path:path}", catch_all, methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    port = _free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", access_log=False, lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"the fake {type(fake).__name__} did not start")
        time.sleep(0.01)
    try:
        yield Served(fake, f"http://127.0.0.1:{port}")
    finally:
        server.should_exit = True
        thread.join(10)
    name = type(fake).__name__
    assert not fake.unexpected, f"{name} got requests it did not expect: {fake.unexpected}"
