"""Fake IP echo sources, and a recording proxy in front of the real server, on loopback.

``EchoSources`` answers on 127.0.0.1 and ::1; each path behaves as a test sets it
(agreeing, lying, failing, rate-limiting) and every request is recorded with the
family it arrived over and its User-Agent.
``RecordingProxy`` forwards ``/nic/update`` to the real nicupdate server and records
what the client sent, so a test can assert that nothing was sent; it can also answer
in the server's place (``inject``) for answers a healthy server does not give, with
any HTTP status and headers (a 429 with ``Retry-After``).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest


@dataclass
class Behaviour:
    body: str = ""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, body: str, status: int, headers: dict[str, str]) -> Behaviour:
        """Header names may be given as keywords: ``Retry_After`` is ``Retry-After``."""
        return cls(body, status, {k.replace("_", "-"): v for k, v in headers.items()})


@dataclass(frozen=True)
class Seen:
    path: str
    family: int
    user_agent: str
    query: str
    authorization: str


class _V6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


class _Base:
    def __init__(self) -> None:
        self.requests: list[Seen] = []
        self.lock = threading.Lock()
        self.servers: list[ThreadingHTTPServer] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path, _, query = self.path.partition("?")
                family = 6 if ":" in self.client_address[0] else 4
                with owner.lock:
                    owner.requests.append(
                        Seen(
                            path,
                            family,
                            self.headers.get("User-Agent", ""),
                            query,
                            self.headers.get("Authorization", ""),
                        )
                    )
                status, headers, body = owner.respond(path, query, family, dict(self.headers))
                data = body.encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.handler = Handler

    def respond(
        self, path: str, query: str, family: int, headers: dict[str, str]
    ) -> tuple[int, dict[str, str], str]:
        raise NotImplementedError

    def start(self, v6: bool = True) -> None:
        self.servers.append(ThreadingHTTPServer(("127.0.0.1", 0), self.handler))
        if v6:
            self.servers.append(_V6Server(("::1", 0), self.handler))
        for server in self.servers:
            threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()

    def stop(self) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()

    def seen(self, path: str | None = None) -> list[Seen]:
        with self.lock:
            return [r for r in self.requests if path is None or r.path == path]


class EchoSources(_Base):
    def __init__(self) -> None:
        super().__init__()
        self.behaviours: dict[str, Behaviour] = {}

    def set(self, path: str, body: str = "", status: int = 200, **headers: str) -> str:
        """Make ``path`` answer ``body``; returns the path for use in ``url``."""
        self.behaviours[path] = Behaviour.of(body, status, headers)
        return path

    def url(self, path: str, family: int = 4) -> str:
        host, port = self.servers[0 if family == 4 else 1].server_address[:2]
        return f"http://{host}:{port}{path}" if family == 4 else f"http://[{host}]:{port}{path}"

    def respond(
        self, path: str, query: str, family: int, headers: dict[str, str]
    ) -> tuple[int, dict[str, str], str]:
        behaviour = self.behaviours.get(path)
        if behaviour is None:
            return 404, {}, "not found\n"
        return behaviour.status, behaviour.headers, behaviour.body


class RecordingProxy(_Base):
    def __init__(self, target: str) -> None:
        super().__init__()
        self.target = target
        self.injected: list[Behaviour] = []

    @property
    def url(self) -> str:
        host, port = self.servers[0].server_address[:2]
        return f"http://{host}:{port}"

    def inject(self, *bodies: str, status: int = 200, **headers: str) -> None:
        """Answer the next requests with these bodies instead of forwarding them."""
        self.injected.extend(Behaviour.of(body, status, headers) for body in bodies)

    def updates(self) -> list[Seen]:
        return self.seen("/nic/update")

    def respond(
        self, path: str, query: str, family: int, headers: dict[str, str]
    ) -> tuple[int, dict[str, str], str]:
        if self.injected:
            answer = self.injected.pop(0)
            return answer.status, answer.headers, answer.body
        forwarded = {
            k: v for k, v in headers.items() if k.lower() in ("authorization", "user-agent")
        }
        response = httpx.get(
            f"{self.target}{path}?{query}", headers=forwarded, timeout=60, trust_env=False
        )
        keep = {
            k: v
            for k, v in response.headers.items()
            if k.lower() in ("www-authenticate", "retry-after")
        }
        return response.status_code, keep, response.text


@pytest.fixture
def echo() -> Iterator[EchoSources]:
    sources = EchoSources()
    sources.start()
    yield sources
    sources.stop()
