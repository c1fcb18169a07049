"""Database engine and schema: SQLite (WAL) by default, PostgreSQL via asyncpg.

The server checks the schema revision with one query; only when the database is
behind does it run Alembic, in a child process, so the running server never
carries Alembic's import cost.
"""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

# The newest migration in migrations/versions; a test checks they agree.
HEAD_REVISION = "0007"
MIGRATE_URL_ENV = "NICUPDATE_MIGRATE_URL"
PRIVATE = 0o600
# SQLite's companions of the database file (they take the database's mode when created).
SQLITE_COMPANIONS = ("", "-wal", "-shm", "-journal")

log = logging.getLogger(__name__)


class DatabaseError(Exception):
    """The database cannot be opened or brought to the current schema."""


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")  # a committed update survives power loss
    cursor.execute("PRAGMA busy_timeout=10000")  # the CLI and the server share the file
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def create_engine(url: str) -> AsyncEngine:
    if make_url(url).get_backend_name() != "sqlite":
        try:
            return create_async_engine(url, pool_pre_ping=True)
        except ImportError as exc:
            raise DatabaseError(
                f"{describe(url)} needs the {exc.name} driver: "
                "pip install 'nicupdate[server,postgres]'"
            ) from None
    database = make_url(url).database
    if database and database != ":memory:":
        make_private(database)
    # SQLite has one writer at a time anyway, and the server writes from one task:
    # one connection (one aiosqlite thread, one page cache) serves it all.
    engine = create_async_engine(url, pool_size=1, max_overflow=0)
    event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def make_private(path: str) -> None:
    """Create the SQLite database file readable by its owner only (0600), whatever the
    umask; narrow the mode of an existing one (and of its -wal and -shm files). Raises
    :class:`DatabaseError` when it cannot be opened for writing."""
    try:
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, PRIVATE))
    except OSError as exc:
        # Said here, before SQLite tries: a failed open leaves aiosqlite's thread behind.
        raise DatabaseError(f"cannot open the database {path}: {exc.strerror}") from None
    for companion in SQLITE_COMPANIONS:
        name = path + companion
        try:
            mode = stat.S_IMODE(os.stat(name).st_mode)
            if mode & 0o077:
                os.chmod(name, PRIVATE)
                log.warning("%s was readable by others (mode %o): made it 0600", name, mode)
        except OSError:
            continue  # absent, or not ours to change


def sqlite_location_problem(url: str) -> str | None:
    """What keeps an SQLite database at ``url`` from being created or written, as one
    line naming ``server.database`` and the path; None when there is nothing wrong (or
    the database is not SQLite). SQLite writes beside the file (-wal, -shm): its
    directory must be writable too."""
    parsed = make_url(url)
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    path = os.path.abspath(database)
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        return f"server.database: the directory {directory} does not exist (create it first)"
    if not os.access(directory, os.W_OK | os.X_OK):
        return f"server.database: the directory {directory} is not writable by this user"
    if os.path.exists(path) and not os.access(path, os.R_OK | os.W_OK):
        return f"server.database: {path} is not writable by this user"
    return None


def describe(url: str) -> str:
    """The URL for messages: the password masked."""
    return make_url(url).render_as_string(hide_password=True)


async def current_revision(engine: AsyncEngine, url: str) -> str | None:
    try:
        async with engine.connect() as conn:
            result = await conn.execute(text("SELECT version_num FROM alembic_version"))
            return result.scalar_one_or_none()
    except DBAPIError as exc:
        if "alembic_version" in str(exc.orig) or "no such table" in str(exc.orig):
            return None
        raise DatabaseError(f"cannot open the database: {exc.orig}") from None
    except OSError as exc:  # e.g. PostgreSQL refused or unreachable (not wrapped by DBAPI)
        raise DatabaseError(
            f"cannot open the database {describe(url)}: {exc.strerror or exc}"
        ) from None


async def ensure_schema(engine: AsyncEngine, url: str) -> None:
    """Bring the database to :data:`HEAD_REVISION`, migrating it if it is behind."""
    if await current_revision(engine, url) == HEAD_REVISION:
        return
    env = dict(os.environ, **{MIGRATE_URL_ENV: url})
    proc = subprocess.run(
        [sys.executable, "-m", "nicupdate_server.migrations"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        detail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise DatabaseError(f"migrating {describe(url)} failed: {detail}")
