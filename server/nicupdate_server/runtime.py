"""The running server: database, state, writer, DNS listener and HTTP, in one event loop.

The process answers ``nochg`` from its in-memory copy of the hosts; what other
processes change (the CLI, other workers or instances on the same database) reaches
that copy through the change log (:class:`~.feed.Feed`, :class:`~.follow.Follower`).
Background work, every second: while the database refuses writes, whether it takes them
again; the reconciler's confirmations; pruning the change log. The update history and
what ``host list`` shows are written by :class:`~.history.Recorder` as answers are sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import logging
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import uvicorn
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from starlette.routing import BaseRoute, Mount
from starlette.types import ASGIApp, Receive, Scope, Send

from . import changelog
from .acmedns.endpoint import AcmeDns
from .acmedns.endpoint import routes as acmedns_routes
from .api import routes as api_routes
from .api.changes import ChangesEndpoint
from .app import MaskSecrets, create_app
from .auth import Authenticator
from .backends import Backend, create_backend
from .backends.builtin import BuiltinBackend
from .config import Config, IPNetwork
from .connections import (
    ConnectionGuard,
    connection_cap,
    descriptor_limit,
    descriptors_in_use,
    protocol_class,
)
from .db import create_engine, ensure_schema
from .dns.supervise import DnsStartError, SupervisedDns
from .feed import Feed
from .follow import Follower
from .history import Recorder
from .lazyapp import Lazy
from .leases import Leases
from .listeners import StartupError, bind_error, bind_tcp, shown
from .logformat import log_to_stderr
from .logsummary import LogSummary
from .reconciler import Reconciler
from .served import Announcer, RemoteBuiltin, ServedPosition
from .state import State
from .store import Writer, describe_failure, ensure_zones, flush_host_stats
from .tls import Tls
from .updates import UpdateService
from .webhooks import Webhooks
from .zonedata import AuthoritativeData

if TYPE_CHECKING:
    from .metrics import Metrics

log = logging.getLogger("nicupdate")

WATCH_INTERVAL = 1.0
LEASE_INTERVAL = 1.0  # how often a process tries to take over the jobs of one gone
STATS_INTERVAL = 10.0
# The change log keeps what every durable reader (webhooks) has passed for this long,
# and nothing older than CHANGES_KEEP_MAX, whoever is behind.
CHANGES_KEEP = timedelta(hours=1)
CHANGES_KEEP_MAX = timedelta(days=7)
CHANGES_PRUNE_INTERVAL = 600.0
CHANGES_PRUNE_BATCH = 5000
# /healthz tries a write when the last one that told anything is older than this.
WRITE_CHECK_INTERVAL = 5.0
WRITE_CHECK_TIMEOUT = 2.0
# File descriptors kept back from HTTP connections: the database, backends, listeners.
RESERVED_DESCRIPTORS = 64
# Fewer free descriptors than this is reported by /healthz.
DESCRIPTOR_MARGIN = 16
GC_THRESHOLDS = (10_000, 20, 20)  # Python's own: (700, 10, 10)


@dataclass(frozen=True, slots=True)
class WorkerRole:
    """This process is worker ``index`` of ``count`` of one ``serve --workers`` (whose
    supervisor named the group): worker 0 serves the built-in DNS (:mod:`.served`)."""

    index: int
    count: int
    group: str

    @property
    def serves_dns(self) -> bool:
        return self.index == 0


class Runtime:
    """Everything but the HTTP listener; :func:`serve` adds that."""

    def __init__(self, config: Config, worker: WorkerRole | None = None) -> None:
        self.config = config
        self.worker = worker
        self.url = config.server.database_url()
        self.engine: AsyncEngine = create_engine(self.url)
        self.state = State()
        self.dns_data = AuthoritativeData()
        self.served = ServedPosition()  # what worker 0's DNS serves (other workers)
        # The built-in DNS runs in a process of its own (dns/): this process's `builtin`
        # confirms a change once that process (or worker 0's) says it serves it.
        self.dns: SupervisedDns | None = None
        builtin_zones = any("builtin" in zone.backends for zone in config.zones)
        if (worker is None or worker.serves_dns) and config.dns.enabled and builtin_zones:
            self.dns = SupervisedDns(config, self.served)
        self.builtin: BuiltinBackend = BuiltinBackend(self.dns_data)
        if self.dns is not None or (worker is not None and not worker.serves_dns):
            self.builtin = RemoteBuiltin(
                self.dns_data,
                self.served,
                self.known_position,
                wake=self.dns.wake if self.dns is not None else None,
            )
        self.backends: dict[str, Backend] = {"builtin": self.builtin}
        for name, table in config.backends.items():  # all of them, as check-config does
            self.backends[name] = create_backend(name, table)
        self.reconciler = Reconciler(config, self.state, self.backends)
        self.origin = changelog.new_origin("serve")
        self.writer = Writer(
            self.engine,
            self.state,
            self.reconciler.mark,
            origin=self.origin,
            shared=worker is not None or self.engine.dialect.name == "postgresql",
        )
        self.recorder = Recorder(config, self.state, self.writer, self.reconciler)
        self.reconciler.on_confirmed = self.recorder.confirmed
        self.writer.rider = self.recorder  # changes' transactions carry the history too
        # Repeated failures from one source: one log line per interval, not one each.
        self.summary = LogSummary(logging.getLogger("nicupdate.guard"), config.limits.log_interval)
        self.authenticator = Authenticator(self.state, config.limits, summary=self.summary)
        self.service = UpdateService(
            config,
            self.state,
            self.authenticator,
            self.writer,
            self.reconciler,
            recorder=self.recorder,
            summary=self.summary,
        )
        self.reconciler.origin = self.origin
        self.reconciler.on_unsaved = self.recorder.hurry  # others may wait for it
        self.follower = Follower(self.state, self.reconciler, self.origin)
        self.follower.on_unblocked = self.service.host_limits.forget
        self.feed = Feed(
            self.engine, config.server.poll_interval, self.follower.apply, self._rebuild
        )
        self.service.stale = self.feed.stale
        self.announcer: Announcer | None = None
        if worker is not None:
            self.follower.group = worker.group
            self.follower.on_served = self.served.announced
            if worker.serves_dns and worker.count > 1:
                self.announcer = Announcer(
                    worker.group,
                    self.origin,
                    self.known_position,
                    lambda: self.reconciler.idle("builtin"),
                    self.writer.exclusive,
                    config.server.poll_interval,
                )
        # Jobs one process at a time does (reconciling a backend, delivering webhooks).
        self.leases = Leases(self.engine, self.url)
        self.webhooks = Webhooks(self.engine, self.leases, self.state, self.feed, config.webhooks)
        self.descriptors = descriptor_limit()
        reserved = RESERVED_DESCRIPTORS
        limits = config.limits
        self.guard = ConnectionGuard(
            limits,
            connection_cap(limits.max_connections, self.descriptors, reserved),
            config.server.trusted_proxies,
            self.summary,
        )
        self._descriptors_short = False
        self._tasks: list[asyncio.Task[None]] = []
        self._started = False  # the writer and the reconciler run
        self.tls = Tls(config.server)
        self.app: CurrentApp | None = None  # the HTTP application, once serving
        self.metrics: Metrics | None = None
        if config.metrics.enabled:  # prometheus-client is imported only then
            from .metrics import Metrics

            self.metrics = Metrics(self)

    def known_position(self) -> int:
        """The newest change this process knows: read from the log, or its own."""
        return max(self.feed.position, self.writer.last_change_id)

    @property
    def serves_dns(self) -> bool:
        return self.worker is None or self.worker.serves_dns

    async def start(self) -> None:
        if self.dns is not None:  # a port in use stops us; it loads while we do
            await self._spawn_dns(self.dns)
        await ensure_schema(self.engine, self.url)
        if self.dns is None and self.serves_dns and self.config.dns.enabled:
            from .rfc2136in.keys import any_keys

            if await any_keys(self.engine):  # no builtin zone: DNS for UPDATE messages alone
                self.dns = SupervisedDns(self.config, self.served)
                await self._spawn_dns(self.dns)
        async with self.engine.begin() as conn:
            await ensure_zones(conn, list(self.config.zones))
        async with self.engine.connect() as conn:
            # The log's position first: what commits while the tables are read is in
            # the rows after it, applied again (idempotently) before serving.
            position = await changelog.newest(conn)
            self._adopt(await State.load(conn))
            await self.reconciler.load(conn)
            await self.recorder.load(conn)
        if self.metrics is not None and self.serves_dns:  # metrics.listen: worker 0's
            await self.metrics.start()  # a port in use stops us here, as for DNS
        if self.dns is not None:
            from .rfc2136in.handler import UpdateHandler
            from .rfc2136in.keys import KeyRing

            self.dns.on_update = UpdateHandler(  # UPDATE messages (RFC 2136) to the DNS port
                lambda: self.config,
                self.state,
                self.service,
                self.reconciler,
                KeyRing(self.engine),
                self.authenticator,
                self.summary,
            ).handle
            try:
                await self.dns.start()
            except DnsStartError as exc:
                raise StartupError(str(exc)) from None
        self._started = True
        for backend in self.backends.values():
            await backend.start()
        self.writer.start()
        self.recorder.start()
        self.reconciler.leases = self.leases
        await self.reconciler.claim_before_start()
        self.reconciler.start()  # resumes whatever was pending when the server stopped
        self.recorder.resumed()
        await self.feed.start(position)
        if self.announcer is not None:
            self.announcer.start()
        await self.webhooks.start()  # after the feed: they read what it has applied
        await self.writer.check_writes()  # so that /healthz knows a read-only database
        for fqdn in self.state.hosts:
            if fqdn in self.config.reserved:
                log.warning(
                    "host %s is %s, not a host name: its updates are refused (nohost); "
                    "remove it with `nicupdate-server host remove %s`",
                    fqdn,
                    self.config.reserved[fqdn],
                    fqdn,
                )
        if self.config.server.reload_interval is not None:
            log.warning(
                "server.reload_interval is no longer used (changes reach the server through "
                "the change log): remove it; server.poll_interval (%g s) is how often the "
                "log is read",
                self.config.server.poll_interval,
            )
        limits = self.config.limits
        if self.guard.max_connections < limits.max_connections:
            log.warning(
                "at most %d HTTP connections: the file descriptor limit is %s; raise it "
                "(systemd: LimitNOFILE=%d) for limits.max_connections = %d",
                self.guard.max_connections,
                self.descriptors,
                limits.max_connections + 1024,
                limits.max_connections,
            )
        self._tasks.append(asyncio.create_task(self._watch(), name="nicupdate-watch"))
        self._tasks.append(asyncio.create_task(self._claim(), name="nicupdate-leases"))

    async def _spawn_dns(self, dns: SupervisedDns) -> None:
        transfer = self.config.dns.transfer
        if transfer.enabled:  # its key is read here first, for a one-line error
            from .dns.tsig import KeyFileError, transfer_key

            try:
                transfer_key(transfer)
            except KeyFileError as exc:
                raise StartupError(f"dns.transfer: {exc}") from None
        host, port = self.config.dns.endpoint
        try:
            dns.bind()
        except OSError as exc:
            raise bind_error("dns.listen", host, port, exc) from None
        await dns.spawn()

    def _adopt(self, loaded: State) -> None:
        """Make ``loaded`` the current state (in place: the service holds this object)."""
        for part in dataclasses.fields(State):
            setattr(self.state, part.name, getattr(loaded, part.name))
        fresh = AuthoritativeData()
        for zone in self.config.zones:
            if "builtin" in zone.backends:
                hosts = (
                    (fqdn, host.records(), host.wildcard)
                    for fqdn, host in loaded.hosts.items()
                    if self.config.zone_for(fqdn) is zone and fqdn not in self.config.reserved
                )
                fresh.add_zone(zone, loaded.zone_serials.get(zone.name, 1), hosts)
        self.dns_data.zones = fresh.zones

    async def rebuild(self) -> None:
        """Reload every account and host, and the built-in DNS's zones (a configuration
        reload; or the change log no longer reaches back to this process's position)."""
        async with self.feed.locked():
            self.feed.position = await self.writer.exclusive(self._reload)

    async def _rebuild(self) -> int:
        return int(await self.writer.exclusive(self._reload))

    async def _reload(self, conn: AsyncConnection) -> int:
        await flush_host_stats(conn, self.state)
        await self.reconciler.persist(conn)
        before = {host.id for host in self.state.hosts.values() if host.blocked}
        position = await changelog.newest(conn)
        self._adopt(await State.load(conn))
        for host in self.state.hosts.values():
            if host.id in before and not host.blocked:  # `host unblock`: count afresh
                self.service.host_limits.forget(host.id)
        self.reconciler.refresh()
        log.info("accounts and hosts reloaded (%d hosts)", len(self.state.hosts))
        return position

    async def _watch(self) -> None:
        since_flush = 0.0
        since_prune = 0.0
        while True:
            await asyncio.sleep(WATCH_INTERVAL)
            since_flush += WATCH_INTERVAL
            since_prune += WATCH_INTERVAL
            try:
                if self.writer.failure is not None or self.writer.unrecorded:
                    if await self.writer.check_writes() is not None:
                        continue  # it refuses writes (logged once): nothing to do until then
                if self.reconciler.unsaved:
                    await self.writer.exclusive(self.reconciler.persist)
                if since_flush >= STATS_INTERVAL:
                    since_flush = 0.0
                    self.service.host_limits.prune()
                    await self.recorder.flush()  # written as answers go; this in case
                if since_prune >= CHANGES_PRUNE_INTERVAL:
                    since_prune = 0.0
                    await self._prune_changes()
            except (SQLAlchemyError, OSError) as exc:
                log.warning("background work failed (%s); will try again", describe_failure(exc))
            except Exception:
                log.exception("background work failed; will try again")

    async def _claim(self) -> None:
        """Take over the jobs of processes that stopped (their leases were released)."""
        while True:
            await asyncio.sleep(LEASE_INTERVAL)
            try:
                await self.reconciler.claim()
            except Exception:
                log.exception("taking over reconciling failed; will try again")

    async def _prune_changes(self) -> None:
        """Delete what every reader of the change log has passed (and what is too old)."""

        async def prune(conn: AsyncConnection) -> int:
            behind = await changelog.slowest_reader(conn)
            passed = self.feed.position if behind is None else min(self.feed.position, behind)
            done = await changelog.prune(conn, passed + 1, CHANGES_KEEP, CHANGES_PRUNE_BATCH)
            newest = await changelog.newest(conn)
            return done + await changelog.prune(conn, newest, CHANGES_KEEP_MAX, CHANGES_PRUNE_BATCH)

        while await self.writer.exclusive(prune) >= CHANGES_PRUNE_BATCH:
            await asyncio.sleep(0.05)

    async def health(self) -> list[str]:
        """What is wrong, one line each, for /healthz (empty: healthy)."""
        problems = []
        if any(task.done() for task in self._tasks):
            problems.append("background task: stopped (database checks, change log pruning)")
        if self._started and not self.feed.running():
            problems.append("change log: its reader stopped (changes elsewhere are not seen)")
        elif self.feed.stale():
            problems.append(
                f"change log: cannot be read ({self.feed.failure or 'no answer'}); "
                "updates answer 911"
            )
        if not self.reconciler.healthy():
            problems.append("reconciler: a backend worker stopped")
        if not self.recorder.healthy():
            problems.append("update history: its writer stopped (host log, host list)")
        writer = self.writer
        if (
            writer.failure is not None
            or time.monotonic() - writer.checked_at > WRITE_CHECK_INTERVAL
        ):
            try:
                async with asyncio.timeout(WRITE_CHECK_TIMEOUT):
                    await writer.check_writes()
            except TimeoutError:
                problems.append(f"database: no answer to a write within {WRITE_CHECK_TIMEOUT:g} s")
        if writer.failure is not None:
            problems.append(f"database: refuses writes ({writer.failure}); changes answer 911")
        connections = self.guard.problem()
        if connections is not None:
            problems.append(connections)
        used = descriptors_in_use()
        if used is not None and self.descriptors is not None:
            short = used >= self.descriptors - DESCRIPTOR_MARGIN
            if short and not self._descriptors_short:
                log.error("file descriptors: %d of %d in use", used, self.descriptors)
            self._descriptors_short = short
            if short:
                problems.append(f"file descriptors: {used} of {self.descriptors} in use")
        return problems

    async def close(self) -> None:
        await self.webhooks.close()  # stores their positions while the database is open
        await self.feed.close()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self.metrics is not None:
            await self.metrics.close()
        self.authenticator.close()
        self.summary.close()
        await self.reconciler.close()
        if self._started:
            with contextlib.suppress(Exception):
                await self.recorder.close()  # writes what is left
        await self.writer.close()
        if self.dns is not None:
            await self.dns.close()
        for backend in self.backends.values():
            await backend.close()
        await self.leases.close()
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


class CurrentApp:
    """The ASGI application, replaced whole when the configuration is reloaded: open
    connections take the new one from their next request on."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


def _surfaces(runtime: Runtime) -> list[BaseRoute]:
    """The REST API (``/api/v1``) and the web UI (``/``), each built on its first
    request, over one :class:`~.manage.Manager`."""
    settings = runtime.config.server
    managers: list[Any] = []

    def manager() -> Any:
        if not managers:
            from .manage import Manager

            managers.append(Manager.of_runtime(runtime))
        return managers[0]

    def restapi() -> ASGIApp:
        from .restapi import create

        return create(manager(), trusted_proxies=settings.trusted_proxies)

    def web() -> ASGIApp:
        from .web import create

        return create(manager(), trusted_proxies=settings.trusted_proxies)

    return [Mount("/api/v1", app=Lazy(restapi)), Mount("", app=Lazy(web))]


def make_app(runtime: Runtime) -> ASGIApp:
    settings = runtime.config.server
    return create_app(
        runtime.service,
        max_hosts=settings.max_hosts_per_request,
        trusted_proxies=settings.trusted_proxies,
        realm=settings.realm,
        health=runtime.health,
        throttle_delay=runtime.config.limits.throttle_delay,
        metrics=runtime.metrics,
        metrics_allow=metrics_allow(runtime),
        api=[
            *api_routes(
                ChangesEndpoint(
                    runtime.authenticator,
                    runtime.engine,
                    runtime.feed,
                    runtime.webhooks.events,
                    runtime.state,
                    settings.trusted_proxies,
                    settings.realm,
                )
            ),
            *acmedns_routes(
                AcmeDns(
                    runtime.service,
                    runtime.engine,
                    runtime.state,
                    runtime.authenticator,
                    runtime.summary,
                    trusted_proxies=settings.trusted_proxies,
                    health=runtime.health,
                    throttle_delay=runtime.config.limits.throttle_delay,
                )
            ),
            *_surfaces(runtime),
        ],
    )


def metrics_allow(runtime: Runtime) -> tuple[IPNetwork, ...] | None:
    """Who may read /metrics on the HTTP listener; None: not served there (no metrics, or
    a listener of their own). A reload changes the list, not where it is served."""
    metrics = runtime.metrics
    if metrics is None or metrics.port is not None:
        return None
    return runtime.config.metrics.allow


def set_access_log(on: bool) -> None:
    """uvicorn's access log on (at server.log_level, passwords masked) or off; each new
    connection looks whether it has somewhere to go."""
    access = logging.getLogger("uvicorn.access")
    if on and not any(isinstance(f, MaskSecrets) for f in access.filters):
        access.addFilter(MaskSecrets())
    # Whatever configured logging before (another uvicorn in the process may have set
    # its level or turned its propagation off).
    access.propagate = on
    access.disabled = not on
    access.setLevel(logging.NOTSET)


def http_server(runtime: Runtime) -> HttpServer:
    settings = runtime.config.server
    host, port = settings.endpoint
    runtime.app = CurrentApp(make_app(runtime))
    set_access_log(settings.access_log)
    config = uvicorn.Config(
        runtime.app,
        host=host,
        port=port,
        loop="none",
        http=protocol_class(runtime.guard),
        ws="none",
        lifespan="off",
        access_log=settings.access_log,
        proxy_headers=False,
        server_header=False,
        log_config=None,
        timeout_graceful_shutdown=5,
    )
    if runtime.tls.context is not None:
        config.load()
        config.ssl = runtime.tls.context  # one context, its certificate reloadable
    return HttpServer(config)


def setup_logging(level: str, log_format: str = "text") -> None:
    log_to_stderr(log_format)  # as text or JSON lines
    set_log_level(level)


def set_log_level(level: str) -> None:
    logging.getLogger().setLevel(level.upper())
    uvicorn_level = logging.DEBUG if level == "debug" else logging.WARNING
    logging.getLogger("uvicorn.error").setLevel(uvicorn_level)


async def serve(
    runtime: Runtime,
    on_started: Callable[[Runtime], None] | None = None,
    load: Callable[[], Config] | None = None,
) -> None:
    """Run until SIGINT/SIGTERM; ``on_started`` is called once the state is loaded.
    SIGHUP reloads the configuration with ``load`` (see :mod:`.reload`).

    The HTTP port is bound first and the DNS ports next, so that a port in use stops
    start-up (:class:`~.listeners.StartupError`) before anything else has begun."""
    host, port = runtime.config.server.endpoint
    listener = bind_tcp("server.listen", host, port, shared=runtime.worker is not None)
    try:
        await _serve(runtime, listener, on_started, load)
    finally:
        listener.close()


async def _serve(
    runtime: Runtime,
    listener: socket.socket,
    on_started: Callable[[Runtime], None] | None,
    load: Callable[[], Config] | None,
) -> None:
    host, port = listener.getsockname()[:2]
    try:
        await runtime.start()
    except BaseException:
        await runtime.close()
        raise
    # What start-up made (modules, configuration, the state of every host) lives as long
    # as the process: keep it out of the cyclic garbage collector's full runs. And run
    # the collector less often than every 700 allocations: each request makes a few
    # cycles (exceptions, futures), and a flood made collections cost a sixth of the CPU.
    gc.collect()  # what start-up left behind (the CLI's parser, ...) is not kept
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        server = http_server(runtime)
        settings = runtime.config
        zones = ", ".join(f"{z.name} ({' + '.join(z.backends)})" for z in settings.zones)
        dns = "no built-in DNS"
        if runtime.dns is not None:
            dns = f"DNS on {shown(settings.dns.endpoint[0], runtime.dns.port)} (UDP+TCP)"
        worker = runtime.worker
        who = (
            ""
            if worker is None
            else f"worker {worker.index} of {worker.count} (pid {os.getpid()}): "
        )
        log.info("%sserving HTTP on %s, %s; zones: %s", who, shown(host, port), dns, zones)
        loop = asyncio.get_running_loop()

        def stop(sig: int) -> None:
            # Waiting password checks are answered 429 at once instead of holding the
            # shutdown for their turn; running ones finish.
            runtime.authenticator.checks.close()
            server.handle_exit(sig, None)

        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):  # not on Windows
                loop.add_signal_handler(sig, stop, sig)
        if load is not None:
            from .reload import Reloader

            reloader = Reloader(runtime, load)
            with contextlib.suppress(NotImplementedError, RuntimeError, AttributeError):
                loop.add_signal_handler(signal.SIGHUP, reloader.request)
        if on_started is not None:
            on_started(runtime)
        await server.serve(sockets=[listener])
    finally:
        await runtime.close()
