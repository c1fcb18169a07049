"""The database files are the owner's alone (0600), whatever the umask."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server.conftest import run_cli, write_config
from tests.server.process import server_process


@pytest.fixture
def open_umask() -> Iterator[None]:
    """Processes started here create files as readable by all as they ask (umask 0)."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_database_and_its_wal_and_shm_are_0600(tmp_path: Path, open_umask: None) -> None:
    with server_process(tmp_path) as server:  # the CLI creates it, the server runs on it
        files = [tmp_path / name for name in ("state.db", "state.db-wal", "state.db-shm")]
        assert all(f.exists() for f in files)
        assert {f.name: oct(mode(f)) for f in files} == {f.name: "0o600" for f in files}
        assert server.proc.poll() is None


def test_a_database_readable_by_others_is_made_private(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    created = run_cli("--config", str(config), "user", "list", cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    database = tmp_path / "state.db"
    database.chmod(0o644)
    again = run_cli("--config", str(config), "user", "list", cwd=tmp_path)
    assert again.returncode == 0
    assert again.stderr == f"{database} was readable by others (mode 644): made it 0600\n"
    assert mode(database) == 0o600
