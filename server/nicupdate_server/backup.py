"""``nicupdate-server backup PATH``: a consistent copy of the live SQLite database.

SQLite's online backup API copies the database as of one moment, while the server goes
on writing. The copy is taken in one step: in WAL mode that step only holds a read
snapshot, which never blocks the server's commits (they go to the WAL meanwhile). A
copy in several steps would be restarted by every commit the server makes between two
steps, and a busy server commits all the time.

The copy is written to a temporary file beside PATH, checked (``PRAGMA
integrity_check``, foreign keys, the schema revision), made durable, and only then
given its name: a failed or interrupted backup never leaves a half-written PATH, nor
damages an earlier backup there. It is 0600, since it holds password hashes and token
digests. PostgreSQL is backed up with its own tools: :func:`pg_dump_command` says how.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shlex
import sqlite3
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from .db import HEAD_REVISION, PRIVATE, SQLITE_COMPANIONS

# os.link fails so where a file system has no hard links (FAT, some network shares).
_NO_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS}


class BackupError(Exception):
    """The backup was not written (or not to PATH); the message is one line."""


@dataclass(frozen=True)
class Backup:
    """A verified copy, as :func:`backup_sqlite` wrote it."""

    source: str
    path: str
    size: int
    users: int
    hosts: int
    revision: str
    seconds: float

    def summary(self) -> str:
        line = (
            f"backed up {self.source} to {self.path}: {self.hosts} host(s), "
            f"{self.users} user(s), {self.size / 1e6:.1f} MB in {self.seconds:.1f} s; "
            f"integrity ok, schema revision {self.revision}"
        )
        if self.revision != HEAD_REVISION:
            line += (
                f" (this version's is {HEAD_REVISION}: `serve` migrates a restored copy "
                "when it starts)"
            )
        return line


def sqlite_path(url: str) -> str | None:
    """The file of an SQLite database URL; None for another database."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    return parsed.database or ":memory:"


def backup_sqlite(database: str, target: str, *, force: bool = False) -> Backup:
    """Copy the SQLite database file ``database`` to ``target`` (see the module)."""
    started = time.monotonic()
    source = _check_source(database)
    target = os.path.abspath(target)
    _check_target(source, target, force=force)
    directory, name = os.path.split(target)
    try:
        fd, temporary = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise BackupError(f"cannot write in {directory}: {exc.strerror}") from None
    try:
        os.chmod(temporary, PRIVATE)  # mkstemp's mode already; said here, since it matters
        users, hosts, revision = _copy(source, temporary, target)
        os.fsync(fd)
        _give_name(temporary, target, force=force)
        _sync_directory(directory)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    finally:
        os.close(fd)
    return Backup(
        source=source,
        path=target,
        size=os.stat(target).st_size,
        users=users,
        hosts=hosts,
        revision=revision,
        seconds=time.monotonic() - started,
    )


def _check_source(database: str) -> str:
    if database == ":memory:":
        raise BackupError("server.database is an in-memory database: there is nothing to back up")
    source = os.path.abspath(database)
    if not os.path.isfile(source):
        where = "" if os.path.isabs(database) else ", relative to the current directory"
        raise BackupError(
            f"nothing to back up: the database {source} does not exist (server.database{where})"
        )
    return source


def _check_target(source: str, target: str, *, force: bool) -> None:
    if target in {source + companion for companion in SQLITE_COMPANIONS} or (
        os.path.exists(target) and os.path.samefile(source, target)
    ):
        raise BackupError(
            f"{target} is the live database or one of its files: give the backup another name"
        )
    if os.path.isdir(target):
        raise BackupError(f"{target} is a directory: give the backup's file name")
    if not os.path.isdir(os.path.dirname(target)):
        raise BackupError(f"the directory {os.path.dirname(target)} does not exist")
    if not force and os.path.lexists(target):
        raise BackupError(f"{target} already exists: pass --force to replace it")


def _copy(source: str, temporary: str, target: str) -> tuple[int, int, str]:
    """Back ``source`` up into ``temporary`` and check the copy: (users, hosts, revision)."""
    try:
        # mode=rw: never create the database (it was there a moment ago; it stays absent).
        live = sqlite3.connect(Path(source).as_uri() + "?mode=rw", uri=True, timeout=10)
    except sqlite3.Error as exc:
        raise BackupError(f"cannot open the database {source}: {exc}") from None
    with contextlib.closing(live):
        _revision(live, source)  # a nicupdate database, before anything is written
        copy = sqlite3.connect(temporary)
        with contextlib.closing(copy):
            try:
                live.backup(copy)  # one step: see the module's docstring
            except sqlite3.Error as exc:
                raise BackupError(f"the backup to {target} failed: {exc}") from None
            return _verify(copy, target)


def _revision(db: sqlite3.Connection, where: str) -> str:
    try:
        row = db.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.DatabaseError as exc:
        if "no such table" in str(exc):
            row = None
        else:
            raise BackupError(f"cannot read the database {where}: {exc}") from None
    if row is None:
        raise BackupError(f"{where} is not a nicupdate database (it has no schema revision)")
    return str(row[0])


def _verify(copy: sqlite3.Connection, target: str) -> tuple[int, int, str]:
    """One file, whole and consistent, that this version (or the next) can open."""
    try:
        # The copy takes the live database's WAL mode; as a file kept aside it needs no
        # -wal or -shm beside it. The server turns WAL on again when it opens a restore.
        copy.execute("PRAGMA journal_mode=DELETE")
        problems = [row[0] for row in copy.execute("PRAGMA integrity_check(5)")]
        if problems != ["ok"]:
            raise BackupError(f"the copy failed its integrity check: {'; '.join(problems)}")
        orphans = copy.execute("PRAGMA foreign_key_check").fetchall()
        if orphans:
            raise BackupError(
                f"the copy failed its check: {len(orphans)} row(s) refer to missing rows "
                f"(first in table {orphans[0][0]})"
            )
        revision = _revision(copy, target)
        if revision != HEAD_REVISION and not _known_revision(revision):
            raise BackupError(
                f"the database has schema revision {revision}, which this version (schema "
                f"{HEAD_REVISION}) does not know: back it up with the version that serves it"
            )
        users = int(copy.execute("SELECT count(*) FROM users").fetchone()[0])
        hosts = int(copy.execute("SELECT count(*) FROM hosts").fetchone()[0])
    except sqlite3.Error as exc:
        raise BackupError(f"cannot check the copy {target}: {exc}") from None
    return users, hosts, revision


def _known_revision(revision: str) -> bool:
    """An older revision of these migrations (Alembic loaded only in this rare case)."""
    from alembic.script import ScriptDirectory

    from .migrations import alembic_config

    scripts = ScriptDirectory.from_config(alembic_config("sqlite://"))
    return revision in {script.revision for script in scripts.walk_revisions()}


def _give_name(temporary: str, target: str, *, force: bool) -> None:
    try:
        if force:
            os.replace(temporary, target)
            return
        try:
            os.link(temporary, target)  # fails, rather than replaces, if target appeared
        except OSError as exc:
            if exc.errno not in _NO_LINKS:
                raise
            if os.path.lexists(target):
                raise FileExistsError(errno.EEXIST, "exists", target) from None
            os.replace(temporary, target)
        else:
            os.unlink(temporary)
    except FileExistsError:
        raise BackupError(f"{target} already exists: pass --force to replace it") from None
    except OSError as exc:
        raise BackupError(f"cannot write {target}: {exc.strerror}") from None


def _sync_directory(directory: str) -> None:
    """Make the new name durable too (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def pg_dump_command(url: str, password_file: Path | None, target: str) -> str:
    """The ``pg_dump`` command that backs up the PostgreSQL database at ``url`` to
    ``target``, ready to paste; a password in the URL is shown as ``***``."""
    parsed = make_url(url)
    words = ["pg_dump", "-Fc"]
    host = parsed.query.get("host") or parsed.host
    if host:
        words += ["-h", str(host)]
    if parsed.port:
        words += ["-p", str(parsed.port)]
    if parsed.username:
        words += ["-U", parsed.username]
    words += ["-f", target]
    if parsed.database:
        words.append(parsed.database)
    command = shlex.join(words)
    if password_file is not None:
        return f'PGPASSWORD="$(cat {shlex.quote(str(password_file))})" {command}'
    if parsed.password is not None:
        return f"PGPASSWORD=*** {command}"
    return command
