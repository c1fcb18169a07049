"""The running server: database, state, writer, DNS listener and HTTP, in one event loop.

One process serves everything (the in-memory state it answers ``nochg`` from
must be the only one). Background work: every ``server.reload_interval`` it
checks whether the CLI changed accounts or hosts and reloads them; every
``STATS_INTERVAL`` it writes the ``nochg`` counts gathered in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Iterator
from typing import Any

import uvicorn
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from .app import create_app
from .auth import Authenticator
from .backends import Backend, create_backend
from .backends.builtin import BuiltinBackend
from .config import Config
from .db import create_engine, ensure_schema
from .dnsserver import DnsServer
from .reconciler import Reconciler
from .state import State, read_admin_revision
from .store import Writer, ensure_zones, flush_host_stats
from .updates import UpdateService
from .zonedata import AuthoritativeData

log = logging.getLogger("nicupdate")

STATS_INTERVAL = 10.0


class Runtime:
    """Everything but the HTTP listener; :func:`serve` adds that."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.url = config.server.database_url()
        self.engine: AsyncEngine = create_engine(self.url)
        self.state = State()
        self.dns_data = AuthoritativeData()
        self.builtin = BuiltinBackend(self.dns_data)
        self.backends: dict[str, Backend] = {"builtin": self.builtin}
        for name, table in config.backends.items():  # all of them, as check-config does
            self.backends[name] = create_backend(name, table)
        self.reconciler = Reconciler(config, self.state, self.backends)
        self.writer = Writer(self.engine, self.state, self.reconciler.mark)
        self.authenticator = Authenticator(self.state)
        self.service = UpdateService(
            config, self.state, self.authenticator, self.writer, self.reconciler
        )
        self.dns: DnsServer | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        await ensure_schema(self.engine, self.url)
        async with self.engine.begin() as conn:
            await ensure_zones(conn, list(self.config.zones))
            self._adopt(await State.load(conn))
            await self.reconciler.load(conn)
        for backend in self.backends.values():
            await backend.start()
        self.writer.start()
        self.reconciler.start()  # resumes whatever was pending when the server stopped
        builtin_zones = [z for z in self.config.zones if "builtin" in z.backends]
        if self.config.dns.enabled and builtin_zones:
            host, port = self.config.dns.endpoint
            self.dns = DnsServer(self.dns_data, host, port)
            await self.dns.start()
        self._tasks.append(asyncio.create_task(self._watch(), name="nicupdate-watch"))

    def _adopt(self, loaded: State) -> None:
        """Make ``loaded`` the current state (in place: the service holds this object)."""
        self.state.users = loaded.users
        self.state.hosts = loaded.hosts
        self.state.zone_serials = loaded.zone_serials
        self.state.admin_revision = loaded.admin_revision
        fresh = AuthoritativeData()
        for zone in self.config.zones:
            if "builtin" in zone.backends:
                records = [
                    (fqdn, host.records)
                    for fqdn, host in loaded.hosts.items()
                    if self.config.zone_for(fqdn) is zone
                ]
                fresh.add_zone(zone, loaded.zone_serials.get(zone.name, 1), records)
        self.dns_data.zones = fresh.zones

    async def reload(self) -> None:
        """Reload accounts and hosts now (the watcher does it on its own within a second)."""
        await self.writer.exclusive(self._reload)

    async def _reload(self, conn: AsyncConnection) -> None:
        await flush_host_stats(conn, self.state)
        await self.reconciler.persist(conn)
        self._adopt(await State.load(conn))
        self.reconciler.refresh()
        log.info("accounts and hosts reloaded (revision %d)", self.state.admin_revision)

    async def _watch(self) -> None:
        interval = self.config.server.reload_interval
        since_flush = 0.0
        while True:
            await asyncio.sleep(interval)
            since_flush += interval
            try:
                async with self.engine.connect() as conn:
                    revision = await read_admin_revision(conn)
                if revision != self.state.admin_revision:
                    await self.writer.exclusive(self._reload)
                elif self.reconciler.unsaved:
                    await self.writer.exclusive(self.reconciler.persist)
                if since_flush >= STATS_INTERVAL:
                    since_flush = 0.0
                    await self.writer.exclusive(self._flush)
            except Exception:
                log.exception("background reload failed; will try again")

    async def _flush(self, conn: AsyncConnection) -> None:
        await flush_host_stats(conn, self.state)
        await self.reconciler.persist(conn)

    def healthy(self) -> bool:
        return all(not task.done() for task in self._tasks) and self.reconciler.healthy()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        await self.reconciler.close()
        with contextlib.suppress(Exception):
            await self.writer.exclusive(self._flush)
        await self.writer.close()
        if self.dns is not None:
            await self.dns.close()
        for backend in self.backends.values():
            await backend.close()
        await self.engine.dispose()


class HttpServer(uvicorn.Server):
    """uvicorn, told never to trust forwarded headers itself (the app decides).

    Signals are handled by :func:`serve`: uvicorn's own handling re-raises SIGTERM
    after its shutdown, which would kill the process before the runtime is closed.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    @property
    def port(self) -> int:
        sockname: Any = self.servers[0].sockets[0].getsockname()
        return int(sockname[1])


def http_server(runtime: Runtime) -> HttpServer:
    settings = runtime.config.server
    host, port = settings.endpoint
    app = create_app(
        runtime.service,
        max_hosts=settings.max_hosts_per_request,
        trusted_proxies=settings.trusted_proxies,
        realm=settings.realm,
        healthy=runtime.healthy,
    )
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="none",
        http="httptools",
        ws="none",
        lifespan="off",
        access_log=settings.access_log,
        proxy_headers=False,
        server_header=False,
        log_config=None,
        timeout_graceful_shutdown=5,
    )
    return HttpServer(config)


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if level != "debug":
        logging.getLogger("uvicorn.error").setLevel(logging.WARNING)


async def serve(runtime: Runtime, on_started: Callable[[Runtime], None] | None = None) -> None:
    """Run until SIGINT/SIGTERM; ``on_started`` is called once the state is loaded."""
    await runtime.start()
    try:
        if on_started is not None:
            on_started(runtime)
        server = http_server(runtime)
        settings = runtime.config
        zones = ", ".join(f"{z.name} ({' + '.join(z.backends)})" for z in settings.zones)
        dns = f"DNS on {settings.dns.listen} (UDP+TCP)" if runtime.dns else "no built-in DNS"
        log.info("serving HTTP on %s, %s; zones: %s", settings.server.listen, dns, zones)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):  # not on Windows
                loop.add_signal_handler(sig, server.handle_exit, sig, None)
        await server.serve()
    finally:
        await runtime.close()
