"""Alembic migrations: the code's idea of the newest revision, the schema they build,
re-running them on a database in use, and a database that cannot be opened."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from nicupdate_server.db import HEAD_REVISION
from nicupdate_server.migrations import alembic_config
from nicupdate_server.tables import metadata

from tests.server.conftest import run_cli, write_config

SECRET = "s3cr3t-Pa@ss/w:rd"


pytestmark = pytest.mark.usefixtures("clean_environment")


def migrate(url: str) -> subprocess.CompletedProcess[str]:
    """The migration entry point the server and the CLI run in a child process."""
    return subprocess.run(
        [sys.executable, "-m", "nicupdate_server.migrations"],
        env={**os.environ, "NICUPDATE_MIGRATE_URL": url},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_head_revision_is_alembics_head(tmp_path: Path) -> None:
    scripts = ScriptDirectory.from_config(alembic_config(f"sqlite+aiosqlite:///{tmp_path}/x.db"))
    assert scripts.get_heads() == [HEAD_REVISION]  # one head, and the code knows it


def test_migrated_schema_matches_the_tables(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    done = migrate(f"sqlite+aiosqlite:///{db}")
    assert done.returncode == 0, done.stderr

    engine = sqlalchemy.create_engine(f"sqlite:///{db}")
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert context.get_current_revision() == HEAD_REVISION
            assert compare_metadata(context, metadata) == []
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    finally:
        engine.dispose()


def test_migrating_again_keeps_the_data(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    added = run_cli(
        "--config",
        str(config),
        "user",
        "add",
        "alice",
        "--password-stdin",
        stdin="alice-secret-1\n",
    )
    assert added.returncode == 0, added.stderr
    host = run_cli(
        "--config", str(config), "host", "add", "home.dyn.example.test", "--owner", "alice"
    )
    assert host.returncode == 0, host.stderr

    again = migrate(f"sqlite+aiosqlite:///{tmp_path / 'state.db'}")
    assert again.returncode == 0, again.stderr

    listed = run_cli("--config", str(config), "user", "list")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.startswith("alice\t1 host(s)\t")
    hosts = run_cli("--config", str(config), "host", "list")
    assert "home.dyn.example.test" in hosts.stdout


def test_migration_entry_point_without_a_url_says_so() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "nicupdate_server.migrations"],
        env={k: v for k, v in os.environ.items() if k != "NICUPDATE_MIGRATE_URL"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "NICUPDATE_MIGRATE_URL" in done.stderr


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("command", [["user", "list"], ["serve"]])
def test_database_in_a_missing_directory_is_one_line(tmp_path: Path, command: list[str]) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        f'[server]\ndatabase = "sqlite+aiosqlite:///{tmp_path}/no/such/dir/state.db"\n'
        '[dns]\nenabled = false\nlisten = "127.0.0.1:0"\n'
    )
    done = run_cli("--config", str(config), *command, cwd=tmp_path)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("nicupdate-server: error: cannot open the database")
    assert not (tmp_path / "no").exists()


def test_unreachable_postgres_is_one_line_without_the_password(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text(SECRET + "\n")
    config = tmp_path / "c.toml"
    config.write_text(
        "[server]\n"
        f'database = "postgresql+asyncpg://nicupdate@127.0.0.1:{closed_port()}/nicupdate"\n'
        f'database_password_file = "{secret}"\n'
    )
    done = run_cli("--config", str(config), "user", "list", cwd=tmp_path)
    assert done.returncode == 1
    assert SECRET not in done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("nicupdate-server: error: ")
    assert "database" in lines[0]


def test_postgres_url_without_its_driver_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from nicupdate_server.db import DatabaseError, create_engine

    monkeypatch.setitem(sys.modules, "asyncpg", None)  # as if the extra were not installed
    with pytest.raises(DatabaseError) as caught:
        create_engine("postgresql+asyncpg://nicupdate:s3cr3t-pw@127.0.0.1:1/nicupdate")
    assert str(caught.value) == (
        "postgresql+asyncpg://nicupdate:***@127.0.0.1:1/nicupdate needs the asyncpg driver: "
        "pip install 'nicupdate[server,postgres]'"
    )
