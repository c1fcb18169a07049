"""Jobs that one process at a time does, among all that share the database.

Reconciling a (backend, zone) and delivering a webhook must each run in exactly one
process, whether the processes are the workers of one ``serve --workers N`` or
instances on other machines. A :class:`Leases` holds the right to such jobs by name:

* PostgreSQL: a session-level advisory lock per job (``pg_try_advisory_lock``) on one
  connection kept for the purpose. A process that dies, or whose connection breaks,
  loses its locks at once, and another process takes the job over at its next try.
* SQLite (one machine): an exclusive ``flock`` on a file beside the database per job
  (``nicupdate.db.lease-reconcile-primary-dyn.example.com``, 0600); the kernel
  releases it when the process exits, however it exits.

Tries never wait: :meth:`Leases.acquire` says at once whether this process holds the
job now.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from .db import PRIVATE

log = logging.getLogger("nicupdate.leases")

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def lock_key(name: str) -> int:
    """The job's advisory lock key: 64 signed bits of its name's hash."""
    digest = hashlib.blake2b(f"nicupdate:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class Leases:
    def __init__(self, engine: AsyncEngine, url: str) -> None:
        self._engine = engine
        self._postgres = engine.dialect.name == "postgresql"
        database = make_url(url).database
        self._directory_base = (
            None if self._postgres or not database or database == ":memory:" else database
        )
        self._held: dict[str, Any] = {}  # job -> its lock file (SQLite) or True (PostgreSQL)
        self._conn: AsyncConnection | None = None

    def holds(self, name: str) -> bool:
        return name in self._held

    async def acquire(self, name: str) -> bool:
        """Hold ``name`` if no other process does; whether this process holds it now."""
        if name in self._held:
            return True
        if self._postgres:
            held = await self._acquire_advisory(name)
        else:
            held = self._acquire_file(name)
        if held:
            log.info("this process now does %s", name)
        return held

    async def check(self) -> list[str]:
        """Whether the held jobs are still held (PostgreSQL: the connection lives); the
        names of those lost, which are forgotten."""
        if not self._postgres or not self._held:
            return []
        try:
            assert self._conn is not None
            await self._conn.execute(text("SELECT 1"))
        except (SQLAlchemyError, OSError, AssertionError):
            lost = sorted(self._held)
            log.warning("lost the database connection that held %s", ", ".join(lost))
            self._held.clear()
            await self._drop_connection()
            return lost
        return []

    async def release(self, name: str) -> None:
        token = self._held.pop(name, None)
        if token is None:
            return
        if self._postgres:
            with contextlib.suppress(SQLAlchemyError, OSError):
                assert self._conn is not None
                await self._conn.execute(
                    text("SELECT pg_advisory_unlock(:key)"), {"key": lock_key(name)}
                )
                await self._conn.commit()
        else:
            _close_file(token)

    async def close(self) -> None:
        for name in list(self._held):
            await self.release(name)
        await self._drop_connection()

    async def _acquire_advisory(self, name: str) -> bool:
        try:
            if self._conn is None:
                self._conn = await self._engine.connect()
            result = await self._conn.execute(
                text("SELECT pg_try_advisory_lock(:key)"), {"key": lock_key(name)}
            )
            held = bool(result.scalar())
            await self._conn.commit()  # a session lock outlives the transaction
        except (SQLAlchemyError, OSError):
            lost = sorted(self._held)
            self._held.clear()
            await self._drop_connection()
            if lost:
                log.warning("lost the database connection that held %s", ", ".join(lost))
            return False
        if held:
            self._held[name] = True
        return held

    def _acquire_file(self, name: str) -> bool:
        if self._directory_base is None:  # an in-memory database: this process only
            self._held[name] = True
            return True
        import fcntl

        path = f"{self._directory_base}.lease-{_UNSAFE.sub('-', name)}"
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, PRIVATE)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(descriptor)
            return False
        self._held[name] = descriptor
        return True

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.invalidate()
            with contextlib.suppress(Exception):
                await conn.close()


def _close_file(token: Any) -> None:
    if isinstance(token, int):
        with contextlib.suppress(OSError):
            os.close(token)  # closing the descriptor releases the flock
