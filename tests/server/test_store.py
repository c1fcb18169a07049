"""Storage faults: a change the database refused is never described as stored.

Two real faults under the running server: the SQLite database on a small tmpfs of its
own that the test fills up, and a PostgreSQL database switched to read-only
(``default_transaction_read_only``, as a demoted primary would be); then both are
repaired.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import dns.message
import dns.query
import dns.rdatatype
import httpx
import pytest

from tests.server.postgres import psql, running_postgres
from tests.server.process import ALICE, HOME, ServerProcess, server_process, wait_for


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB file system of the test's own."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs tests/run.sh as root)")
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(mount: Path) -> Callable[[], None]:
    """Fill the file system; return what frees it again."""
    filler = mount / "filler"
    with contextlib.suppress(OSError), filler.open("wb") as out:
        while True:  # bounded by the 2 MB of the file system
            out.write(b"\0" * 4096)
            out.flush()
    return filler.unlink


def served(server: ServerProcess) -> list[str]:
    query = dns.message.make_query(HOME, dns.rdatatype.A)
    reply = dns.query.udp(query, "127.0.0.1", port=server.dns_port, timeout=5)
    return sorted(rd.to_text() for rrset in reply.answer for rd in rrset)


def update(server: ServerProcess, address: str) -> httpx.Response:
    return httpx.get(
        f"{server.url}/nic/update?hostname={HOME}&myip={address}", auth=ALICE, timeout=30
    )


def health(server: ServerProcess) -> httpx.Response:
    return httpx.get(f"{server.url}/healthz", timeout=30)


def test_a_change_refused_by_a_full_disk_is_not_described_as_stored(
    tmp_path: Path, disk: Path
) -> None:
    database = f"sqlite+aiosqlite:///{disk / 'state.db'}"
    with server_process(tmp_path, database=database) as server:
        check_refused_then_recovered(server, lambda: fill(disk), "database or disk is full")

        def history() -> list[tuple[str, str, str, str]]:
            with sqlite3.connect(disk / "state.db") as db:
                return db.execute(
                    "SELECT old_value, new_value, answer, detail FROM update_log ORDER BY at, id"
                ).fetchall()

        # The answers as sent; the retry's row is written just after it is sent.
        wait_for(lambda: history()[-1][2] == "good 203.0.113.2", what="the retry's row")
        rows = history()
        log = server.text()
    assert rows[-2] == (
        "A 203.0.113.1",
        "A 203.0.113.2",
        "911",
        "not stored: database or disk is full",
    )
    assert rows[-1] == ("A 203.0.113.1", "A 203.0.113.2", "good 203.0.113.2", "")  # the retry
    assert log.count("the database refuses writes") == 1
    assert "the database takes writes again" in log
    assert "Traceback" not in log


def test_a_change_refused_by_a_read_only_database_is_not_described_as_stored(
    tmp_path: Path,
) -> None:
    with running_postgres() as url, server_process(tmp_path, database=url) as server:
        # New sessions are read-only, and the server's sessions are cut (as a failover
        # to a standby does): the server reconnects to a database that refuses writes.
        reconnect = (
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = 'nicupdate' AND pid <> pg_backend_pid()"
        )

        def read_only() -> Callable[[], None]:
            psql(url, "ALTER DATABASE nicupdate SET default_transaction_read_only = on")
            psql(url, reconnect)

            def writable() -> None:
                psql(url, "ALTER DATABASE nicupdate RESET default_transaction_read_only")
                psql(url, reconnect)

            return writable

        check_refused_then_recovered(server, read_only, "read-only transaction")
        assert "Traceback" not in server.text()


def check_refused_then_recovered(
    server: ServerProcess, fault: Callable[[], Callable[[], None]], reason: str
) -> None:
    """While ``fault`` holds, a change answers 911, is not stored and /healthz says why;
    once it is repaired, /healthz says ok, `host list` and the history say what
    happened, and the client's retry lands."""
    assert update(server, "203.0.113.1").text == "good 203.0.113.1\n"
    repair = fault()
    try:
        refused = update(server, "203.0.113.2")
        assert (refused.status_code, refused.text) == (200, "911\n")
        unhealthy = health(server)
        assert unhealthy.status_code == 503
        assert unhealthy.text.startswith("unhealthy\ndatabase: refuses writes (")
        assert reason in unhealthy.text
        assert served(server) == ["203.0.113.1"]  # DNS keeps what is stored
    finally:
        repair()
    wait_for(lambda: health(server).status_code == 200, what="/healthz to say ok")
    listed = server.cli("host", "list").stdout
    line = next(line for line in listed.splitlines() if line.startswith(HOME))
    assert "203.0.113.1" in line and "911: not stored (the database refused the write)" in line
    assert update(server, "203.0.113.2").text == "good 203.0.113.2\n"  # the retry lands
    assert served(server) == ["203.0.113.2"]
