"""The same server on PostgreSQL (asyncpg): the schema and the SQL are portable."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server.conftest import (
    ALICE,
    LiveServer,
    run_cli,
    start_server,
    stop_server,
    write_config,
)
from tests.server.postgres import running_postgres

HOME = "home.dyn.example.test"


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    with running_postgres() as url:
        yield url


@pytest.fixture
def pg_config(tmp_path: Path, postgres_url: str) -> Path:
    path = write_config(tmp_path)
    text = re.sub(r'database = ".*"', f'database = "{postgres_url}"', path.read_text())
    path.write_text(text)
    return path


def test_accounts_updates_and_restart_on_postgres(pg_config: Path) -> None:
    assert (
        run_cli(
            "--config",
            str(pg_config),
            "user",
            "add",
            "alice",
            "--password-stdin",
            stdin="alice-secret-1\n",
        ).returncode
        == 0
    )
    added = run_cli("--config", str(pg_config), "host", "add", HOME, "--owner", "alice")
    assert added.returncode == 0, added.stderr
    server: LiveServer = start_server(pg_config)
    try:
        query = f"hostname={HOME}&myip=203.0.113.7,2001:db8::7"
        assert server.update(query, auth=ALICE).text == "good 203.0.113.7,2001:db8::7\n"
        assert server.update(query, auth=ALICE).text == "nochg 203.0.113.7,2001:db8::7\n"
        assert server.update(f"hostname={HOME}&myip=203.0.113.8", auth=ALICE).text == (
            "good 203.0.113.8\n"
        )
        assert server.addresses(HOME) == ["203.0.113.8"]
        assert server.addresses(HOME, "AAAA") == ["2001:db8::7"]
        assert server.ttl(HOME) == 60
    finally:
        stop_server(server)
    listing = run_cli("--config", str(pg_config), "host", "list")
    assert listing.returncode == 0, listing.stderr
    row = next(line for line in listing.stdout.splitlines() if line.startswith(HOME))
    assert row.split()[1:4] == ["alice", "203.0.113.8", "2001:db8::7"]
    again = start_server(pg_config)
    try:
        assert again.addresses(HOME) == ["203.0.113.8"]
        assert again.update(f"hostname={HOME}&offline=YES", auth=ALICE).text == "good\n"
    finally:
        stop_server(again)
