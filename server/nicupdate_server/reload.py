"""Reloading the configuration while the server runs: SIGHUP (``systemctl reload``).

What a reload changes at once: zones and backends (the reconciler's workers restart for
them; what a removed backend still lacks stays in the database, applied if it comes
back), limits, the TLS certificate files, the log level and the access log, and every
other ``[server]`` key except those that need a restart: ``server.listen``,
``server.database`` and ``[dns]`` (the sockets and the database are open already), which
are logged as waiting for one. Requests in flight finish; new requests see the new
configuration.

A file that does not load (TOML, a key, a backend, the TLS files) changes nothing: the
running configuration stays, and one line names the key.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncConnection

from .backends import Backend, BackendUnavailable, create_backend
from .config import Config, ConfigError
from .connections import connection_cap
from .logformat import set_log_format
from .store import ensure_zones

if TYPE_CHECKING:
    from .runtime import Runtime

log = logging.getLogger("nicupdate")


def _restart_only(old: Config, new: Config) -> list[str]:
    """The changed keys that take effect only after a restart."""
    changed = []
    if old.server.endpoint != new.server.endpoint:
        changed.append("server.listen")
    if (old.server.database, old.server.database_password_file) != (
        new.server.database,
        new.server.database_password_file,
    ):
        changed.append("server.database")
    for key in ("enabled", "listen"):  # the rest of [dns] takes effect at once
        if getattr(old.dns, key) != getattr(new.dns, key):
            changed.append(f"dns.{key}")
    for key in ("enabled", "listen"):  # metrics.allow takes effect at once
        if getattr(old.metrics, key) != getattr(new.metrics, key):
            changed.append(f"metrics.{key}")
    return changed


def _backends(runtime: Runtime, new: Config) -> dict[str, Backend]:
    """The backends of ``new``: the running instance where its table is unchanged,
    a new (not yet started) one otherwise."""
    old = runtime.config.backends
    backends: dict[str, Backend] = {"builtin": runtime.builtin}
    for name, table in new.backends.items():
        if name in runtime.backends and old.get(name) == table:
            backends[name] = runtime.backends[name]
        else:
            try:
                backends[name] = create_backend(name, table)
            except BackendUnavailable as exc:
                raise ConfigError(str(exc)) from None
    return backends


async def reconfigure(runtime: Runtime, new: Config) -> None:
    """Make ``new`` the running configuration (raises :class:`ConfigError`, having
    changed nothing, when part of it cannot be used)."""
    from .runtime import RESERVED_DESCRIPTORS, make_app, set_access_log, set_log_level

    old = runtime.config
    backends = _backends(runtime, new)
    if new.dns.transfer.enabled and runtime.dns is not None:
        from .dns.tsig import KeyFileError, transfer_key

        try:
            transfer_key(new.dns.transfer)  # the DNS process reads it again
        except KeyFileError as exc:
            raise ConfigError(f"dns.transfer: {exc}") from None
    runtime.tls.reload(new.server)  # checked before it replaces the running certificate
    for key in _restart_only(old, new):
        log.warning("%s changed: it takes effect when the server is restarted", key)

    runtime.config = new
    limits = new.limits
    runtime.service.configure(new)
    runtime.authenticator.configure(limits)
    runtime.summary.configure(limits.log_interval)
    runtime.recorder.history_days = new.server.history_days
    reserved = RESERVED_DESCRIPTORS
    runtime.guard.configure(
        limits,
        connection_cap(limits.max_connections, runtime.descriptors, reserved),
        new.server.trusted_proxies,
    )
    set_log_level(new.server.log_level)
    set_log_format(new.server.log_format)
    set_access_log(new.server.access_log)
    if runtime.app is not None:
        runtime.app.app = make_app(runtime)
    await runtime.webhooks.configure(new.webhooks)  # the changed ones restart

    retries = (old.server.retry_initial, old.server.retry_max)
    if (
        old.zones != new.zones
        or old.backends != new.backends
        or retries != (new.server.retry_initial, new.server.retry_max)
    ):
        await _restart_reconciler(runtime, new, backends)
    if runtime.dns is not None and (old.zones != new.zones or old.dns != new.dns):
        runtime.dns.reconfigure(new)  # the DNS process: its zones, rate limits, TCP caps


async def _restart_reconciler(runtime: Runtime, new: Config, backends: dict[str, Backend]) -> None:
    started = [b for name, b in backends.items() if runtime.backends.get(name) is not b]
    removed = [b for name, b in runtime.backends.items() if backends.get(name) is not b]
    for backend in started:
        await backend.start()
    reconciler = runtime.reconciler
    await reconciler.close()
    reconciler.reconfigure(new, backends)
    runtime.backends = backends

    async def prepare(conn: AsyncConnection) -> None:
        await ensure_zones(conn, list(new.zones))
        await reconciler.persist(conn)
        await reconciler.load(conn)

    await runtime.writer.exclusive(prepare)
    await reconciler.claim_before_start()
    reconciler.start()  # picks up what is pending for the new zones and backends
    await runtime.rebuild()  # the hosts again, and the built-in DNS's zones
    for backend in removed:
        await backend.close()


class Reloader:
    """Runs one reload at a time; a signal during a reload asks for one more after it."""

    def __init__(self, runtime: Runtime, load: Callable[[], Config]) -> None:
        self._runtime = runtime
        self._load = load
        self._task: asyncio.Task[None] | None = None
        self._again = False

    def request(self) -> None:
        if self._task is not None and not self._task.done():
            self._again = True
            return
        self._task = asyncio.get_running_loop().create_task(self._run(), name="nicupdate-reload")

    async def _run(self) -> None:
        while True:
            self._again = False
            await self.reload()
            if not self._again:
                return

    async def reload(self) -> bool:
        """Reload now; False when the running configuration was kept."""
        log.info("reloading the configuration")
        try:
            new = self._load()
            await reconfigure(self._runtime, new)
        except ConfigError as exc:
            log.error("configuration not reloaded, the running one is kept: %s", exc)
            return False
        except Exception:
            log.exception("configuration not reloaded, the running one is kept")
            return False
        log.info("configuration reloaded")
        return True
