"""The DNS process: the built-in DNS in a process of its own (``python -m nicupdate_server.dns``).

A flood of queries then costs this process's CPU, not the update server's: the server
keeps answering HTTP while its DNS answers as fast as one core allows. The server
starts it (:mod:`.supervise`) with the listening sockets already bound, a control
socket, and the configuration sent over that socket. The process then:

* loads the builtin zones from the database and follows the change log, as every server
  process does, applying only records and serials (:mod:`.zones`);
* tells the server, over the control socket, each change-log position it serves: the
  server's ``builtin`` backend confirms a change (``good``) once that position covers it;
* reads the log at once when the server says it committed something (``wake``), so a
  change is served within milliseconds, not at the next poll;
* hands each UPDATE message to the server and sends the reply the server makes
  (:mod:`..rfc2136in.handover`); reads the UPDATE keys every few seconds, to answer
  queries signed with them (an ACME client's SOA lookup);
* reports its counters every second, for ``/metrics``;
* exits when the control socket closes: it never outlives its server.

Messages on the control socket are length-prefixed pickles: both ends are this program.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import signal
import socket
from typing import Any

import dns.name
import dns.tsig

from ..config import Config
from ..db import create_engine
from ..feed import Feed
from ..logformat import log_to_stderr
from ..rfc2136in.handover import Handover
from ..rfc2136in.keys import follow
from .control import encode, read_message
from .secondaries import Secondaries
from .server import DnsServer
from .zones import ServedZones

log = logging.getLogger("nicupdate.dns")

STATS_INTERVAL = 1.0


class DnsProcess:
    def __init__(self, config: Config, udp: socket.socket, tcp: socket.socket) -> None:
        self.config = config
        self.engine = create_engine(config.server.database_url())
        self.zones = ServedZones(config)
        self.server = DnsServer(self.zones.data, config.dns, udp, tcp)
        self.feed = Feed(self.engine, config.server.poll_interval, self.zones.apply, self._rebuild)
        self._arrived = asyncio.Event()
        self.feed.arrivals.append(self._arrived)
        self._writer: asyncio.StreamWriter | None = None
        self.secondaries: Secondaries | None = None
        # UPDATE messages go to the server, which checks and applies them.
        self.handover = Handover(self._send, lambda: self.config.server.apply_deadline)
        self.server.update = self.handover.reply

    async def _set_up_secondaries(self, config: Config) -> None:
        """Serve transfers and send NOTIFY as ``config``'s [dns.transfer] says."""
        if self.secondaries is not None:
            await self.secondaries.close(self.server)
            self.secondaries = None
            self.zones.on_serial = lambda zone, serial: None
        settings = config.dns.transfer
        if settings.enabled:
            secondaries = Secondaries(
                settings,
                self.zones.data,
                self.engine,
                self.feed,
                config.dns.endpoint[0],
                config.limits.log_interval,
            )
            await secondaries.start(self.server, self.zones.data.zones)
            self.zones.on_serial = secondaries.changed
            self.secondaries = secondaries

    async def _rebuild(self) -> int:
        async with self.engine.connect() as conn:
            return await self.zones.load(conn)

    def _send(self, message: dict[str, Any]) -> None:
        if self._writer is not None and not self._writer.is_closing():
            self._writer.write(encode(message))

    async def run(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        async with self.engine.connect() as conn:
            position = await self.zones.load(conn)
        await self.server.start()
        await self.feed.start(position)
        await self._set_up_secondaries(self.config)
        host, _ = self.config.dns.endpoint
        log.info(
            "DNS listening on %s port %d (UDP and TCP), process %d",
            host,
            self.server.port,
            os.getpid(),
        )
        self._send({"ready": self.server.port, "served": self.feed.position})
        tasks = [
            asyncio.create_task(self._report_served()),
            asyncio.create_task(self._report_stats()),
            asyncio.create_task(follow(self.engine, self._update_keys)),
        ]
        try:
            while True:
                message = await read_message(reader)
                if "wake" in message:
                    self.feed.wake()
                elif "config" in message:
                    await self._reconfigure(message["config"])
                elif "updated" in message:
                    self.handover.replied(message)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the server went away: so do we
        finally:
            for task in tasks:
                task.cancel()
            await self.feed.close()
            if self.secondaries is not None:
                await self.secondaries.close(self.server)
            await self.server.close()
            await self.engine.dispose()

    async def _reconfigure(self, config: Config) -> None:
        """A reloaded configuration: the zones again (some may be new), rate limits."""
        async with self.feed.locked(), self.engine.connect() as conn:
            self.feed.position = await self.zones.load(conn, config)
        old, self.config = self.config, config
        self.server.configure(config.dns)
        if old.dns.transfer != config.dns.transfer:
            await self._set_up_secondaries(config)
        elif self.secondaries is not None:
            self.secondaries.loaded(self.zones.data.zones)
        self.feed.wake()
        self._send({"served": self.feed.position})

    def _update_keys(self, keys: dict[dns.name.Name, dns.tsig.Key]) -> None:
        self.server.update_keys = keys

    async def _report_served(self) -> None:
        while True:
            await self._arrived.wait()
            self._arrived.clear()
            self._send({"served": self.feed.position})

    async def _report_stats(self) -> None:
        while True:
            await asyncio.sleep(STATS_INTERVAL)
            self._send(self.stats())

    def stats(self) -> dict[str, Any]:
        limit = self.server.rate_limit
        stats = {
            "rcodes": dict(self.server.rcodes),
            "rrl_dropped": limit.dropped,
            "rrl_slipped": limit.slipped,
            "tcp_refused": self.server.tcp_refused,
            **self.handover.stats(),
        }
        if self.secondaries is not None:
            notifier = self.secondaries.notifier
            stats["notify_sent"] = notifier.sent
            stats["notify_acknowledged"] = notifier.acknowledged
            stats["notify_failed"] = notifier.failed
            for kind, count in self.secondaries.transfers.counts.items():
                stats[f"transfers_{kind.replace('-', '_')}"] = count
        return stats


async def _main(control_fd: int, udp_fd: int, tcp_fd: int) -> None:
    control = socket.socket(fileno=control_fd)
    reader, writer = await asyncio.open_unix_connection(sock=control)
    try:
        first = await read_message(reader)
    except (asyncio.IncompleteReadError, ConnectionError):
        return  # the server stopped before it was ready
    config: Config = first["config"]
    log_to_stderr(config.server.log_format)
    logging.getLogger().setLevel(config.server.log_level.upper())
    process = DnsProcess(config, socket.socket(fileno=udp_fd), socket.socket(fileno=tcp_fd))
    await process.run(reader, writer)


def main(control_fd: int, udp_fd: int, tcp_fd: int) -> None:
    # The server stops us by closing the control socket; a terminal's Ctrl-C reaches
    # the whole process group, and the server's own shutdown does the rest.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # pragma: no cover - uvloop comes with the server's extra
        runner = asyncio.run
    runner(_main(control_fd, udp_fd, tcp_fd))
