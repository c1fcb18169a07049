"""The server's side of the DNS process (:mod:`.process`): start it, feed it, restart it.

The server binds the DNS port itself (so a port in use is its one-line start-up error,
and port 0 picks one port for UDP and TCP), then hands the sockets to the process. The
sockets stay open in the server while the process runs, so a restarted process serves
the same port and no query is refused in between (the kernel queues them).

What the process serves reaches the server as change-log positions
(:class:`~..served.ServedPosition`): the ``builtin`` backend confirms a change once
the position covers it. A process that dies is started again, after 1 s, doubling to
30 s while it keeps dying.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from ..config import Config
from ..served import ServedPosition
from .control import bind, encode, read_message

log = logging.getLogger("nicupdate.dns")

READY_TIMEOUT = 300.0  # loading a zone of a million names takes seconds, not minutes
STOP_TIMEOUT = 5.0
RESTART_FIRST = 1.0
RESTART_MAX = 30.0
HEALTHY_AFTER = 60.0


class DnsStartError(RuntimeError):
    """The DNS process could not start (its own lines on stderr say why)."""


class SupervisedDns:
    def __init__(self, config: Config, served: ServedPosition) -> None:
        self.config = config
        self.served = served
        self._udp: socket.socket | None = None
        self._tcp: socket.socket | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._reader: asyncio.StreamReader | None = None  # spawned, not yet started
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.port = 0
        self.restarts = 0
        # What the process last reported (read by /metrics).
        self.rcodes: Counter[int] = Counter()
        self.update_rcodes: Counter[int] = Counter()  # UPDATE messages' replies
        self.stats: dict[str, int] = {}
        # Answers the UPDATE messages the process hands over (:mod:`..rfc2136in`):
        # (message, source address, over TCP) -> the reply.
        self.on_update: Callable[[bytes, str, bool], Awaitable[bytes]] | None = None
        self._updates: set[asyncio.Task[None]] = set()

    def bind(self) -> None:
        """Bind the DNS port (raises OSError: in use, not permitted)."""
        host, port = self.config.dns.endpoint
        self._udp, self._tcp = bind(host, port)
        self.port = self._udp.getsockname()[1]

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    async def spawn(self) -> None:
        """Start the process (binding the port first, if not yet): it loads its modules
        while the server loads its state, and waits for :meth:`start`."""
        if self._udp is None:
            self.bind()
        self._reader = await self._spawn()

    async def start(self) -> None:
        """Give the process its configuration and wait until it serves (raises
        :class:`DnsStartError`)."""
        if self._reader is None:
            await self.spawn()
        reader, self._reader = self._reader, None
        assert reader is not None and self._writer is not None
        self._writer.write(encode({"config": self.config}))
        try:
            async with asyncio.timeout(READY_TIMEOUT):
                while True:
                    message = await read_message(reader)
                    self._received(message)
                    if "ready" in message:
                        break
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
            await self._reap()
            raise DnsStartError("the DNS process did not start (its lines above say why)") from None
        self._task = asyncio.create_task(self._follow(reader), name="nicupdate-dns-process")

    async def _spawn(self) -> asyncio.StreamReader:
        assert self._udp is not None and self._tcp is not None
        ours, theirs = socket.socketpair()
        fds = (theirs.fileno(), self._udp.fileno(), self._tcp.fileno())
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "nicupdate_server.dns", *map(str, fds)], pass_fds=fds
            )
        finally:
            theirs.close()
        reader, self._writer = await asyncio.open_unix_connection(sock=ours)
        return reader

    def _received(self, message: dict[str, Any]) -> None:
        if "served" in message:
            self.served.announced(int(message["served"]))
        if "rcodes" in message:
            self.rcodes = Counter(message["rcodes"])
            self.update_rcodes = Counter(message.get("update_rcodes", {}))
            self.stats = {k: int(v) for k, v in message.items() if not k.endswith("rcodes")}
        if "update" in message:
            task = asyncio.create_task(self._update(message))
            self._updates.add(task)
            task.add_done_callback(self._updates.discard)

    async def _update(self, message: dict[str, Any]) -> None:
        """Answer an UPDATE message the process handed over (None: not taken here)."""
        reply = None
        if self.on_update is not None:
            reply = await self.on_update(message["wire"], message["source"], message["tcp"])
        self._send({"updated": message["update"], "reply": reply})

    def _send(self, message: dict[str, Any]) -> None:
        if self._writer is not None and not self._writer.is_closing():
            self._writer.write(encode(message))

    def wake(self) -> None:
        """Something was committed: have the process read the change log now."""
        self._send({"wake": True})

    def reconfigure(self, config: Config) -> None:
        """A reloaded configuration (zones, rate limits); the port stays until a restart."""
        self.config = config
        self._send({"config": config})

    async def _follow(self, reader: asyncio.StreamReader) -> None:
        delay = RESTART_FIRST
        while True:
            started = time.monotonic()
            with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
                while True:
                    self._received(await read_message(reader))
            status = await self._reap()
            if self._closing:
                return
            if time.monotonic() - started > HEALTHY_AFTER:
                delay = RESTART_FIRST
            log.error(
                "the DNS process stopped (exit status %s): starting it again in %g s",
                status,
                delay,
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, RESTART_MAX)
            self.restarts += 1
            try:
                reader = await self._spawn()
                self._send({"config": self.config})
            except OSError as exc:
                log.error("the DNS process could not be started: %s", exc)
                reader = asyncio.StreamReader()
                reader.feed_eof()

    async def _reap(self) -> int | None:
        """Close the control socket (the process then exits) and wait for the process."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        process = self._process
        if process is None:
            return None
        deadline = time.monotonic() + STOP_TIMEOUT
        while process.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        if process.poll() is None:
            process.kill()
            await asyncio.to_thread(process.wait)
        return process.returncode

    async def close(self) -> None:
        self._closing = True
        for task in self._updates:
            task.cancel()
        if self._task is not None:
            await self._reap()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        else:
            await self._reap()
        for sock in (self._udp, self._tcp):
            if sock is not None:
                sock.close()
        self._udp = self._tcp = None
