"""``nicupdate-server backup PATH``: a copy of the live database that restores for real.

A subprocess server is backed up while it runs, changed, stopped, given the backup back
as docs/backup.md says, and started again: it serves the backup's hosts and addresses.
A backup taken while a thread keeps updating is one moment of the database. PostgreSQL
is answered with the ``pg_dump`` command, which is run, and its dump restored.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import sqlite3
import stat
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import httpx
import pytest
from nicupdate_server.db import HEAD_REVISION

from tests.server.conftest import run_cli, start_server, stop_server, write_config
from tests.server.postgres import psql, running_postgres
from tests.server.process import ALICE, HOME, ServerProcess, server_process, wait_for

ZONE = "dyn.example.test"
LATE = f"late.{ZONE}"
HOSTS = [f"h{i:02d}.{ZONE}" for i in range(12)]
MAX_UPDATES = 20_000  # the updating thread's bound; the backup ends it long before
SUMMARY = re.compile(
    r"backed up (?P<source>\S+) to (?P<path>\S+): (?P<hosts>\d+) host\(s\), "
    r"(?P<users>\d+) user\(s\), [\d.]+ MB in [\d.]+ s; integrity ok, schema revision "
    r"(?P<revision>\w+)"
)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def a_records(server: ServerProcess, name: str) -> tuple[str, list[str]]:
    """What a resolver gets from the server's built-in DNS: the rcode and the A records."""
    query = dns.message.make_query(name, "A")
    reply = dns.query.udp(query, "127.0.0.1", port=server.dns_port, timeout=3)
    addresses = sorted(rd.to_text() for rrset in reply.answer for rd in rrset)
    return dns.rcode.to_text(reply.rcode()), addresses


def update(server: ServerProcess, query: str) -> str:
    return httpx.get(f"{server.url}/nic/update?{query}", auth=ALICE, timeout=10).text


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("nicupdate-server: error: "), done.stderr
    return lines[0]


def test_a_backup_of_a_running_server_restores_its_hosts(tmp_path: Path) -> None:
    live, kept = tmp_path / "live", tmp_path / "backups"
    live.mkdir()
    kept.mkdir()
    backup = kept / "nicupdate.db"
    with server_process(live) as server:
        assert update(server, f"hostname={HOME}&myip=203.0.113.1") == "good 203.0.113.1\n"

        done = server.cli("backup", str(backup))
        assert done.returncode == 0, done.stderr
        summary = SUMMARY.fullmatch(done.stdout.strip())
        assert summary, done.stdout
        assert (summary["source"], summary["path"]) == (str(live / "state.db"), str(backup))
        assert (summary["hosts"], summary["users"], summary["revision"]) == (
            "1",
            "1",
            HEAD_REVISION,
        )
        assert mode(backup) == 0o600
        assert os.listdir(kept) == ["nicupdate.db"]  # one file: no temporary, no -wal

        # Changes after the backup: the restore takes them back.
        assert update(server, f"hostname={HOME}&myip=203.0.113.2") == "good 203.0.113.2\n"
        assert server.cli("host", "add", LATE, "--owner", ALICE[0]).returncode == 0
        wait_for(
            lambda: update(server, f"hostname={LATE}&myip=203.0.113.9") == "good 203.0.113.9\n"
        )
        assert server.stop() == 0

    # The restore of docs/backup.md: the server stopped, the old database's WAL files
    # gone, the backup copied in place with mode 0600.
    for leftover in ("state.db-wal", "state.db-shm"):
        (live / leftover).unlink(missing_ok=True)
    restore = ["install", "-m", "600", str(backup), str(live / "state.db")]
    subprocess.run(restore, check=True, timeout=30)

    with server_process(live, accounts=False) as server:
        assert update(server, f"hostname={HOME}&myip=203.0.113.1") == "nochg 203.0.113.1\n"
        assert a_records(server, HOME) == ("NOERROR", ["203.0.113.1"])
        assert update(server, f"hostname={LATE}&myip=203.0.113.9") == "nohost\n"
        assert a_records(server, LATE) == ("NXDOMAIN", [])
        listed = server.cli("host", "list")
        assert HOME in listed.stdout and LATE not in listed.stdout
    assert mode(live / "state.db") == 0o600


@pytest.fixture
def updating_server(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A server (in this process) with alice's HOSTS and no per-host update limit:
    (its configuration, alice's password)."""
    config = write_config(tmp_path)
    config.write_text(config.read_text() + "\n[limits]\nhost_update_interval = 0\n")
    server = start_server(config)
    try:
        server.add_user(*ALICE)
        for fqdn in HOSTS:
            server.add_host(fqdn, ALICE[0])
        yield config, server.url
    finally:
        stop_server(server)


def test_a_backup_taken_while_updates_are_written_is_one_moment(
    tmp_path: Path, updating_server: tuple[Path, str]
) -> None:
    """Update n (1, 2, ...) gives host n % len(HOSTS) A 203.0.113.(n % 250 + 1) and AAAA
    2001:db8::n, one request after the other. A copy of one moment holds updates 1..N
    for some N and nothing after: each host has the addresses of its last update up to
    N, and the history has exactly N rows."""
    config, url = updating_server
    answers: list[str] = []
    stop = threading.Event()

    def updates() -> None:
        with httpx.Client(base_url=url, auth=ALICE, timeout=10) as client:
            for n in range(1, MAX_UPDATES + 1):
                if stop.is_set():
                    return
                query = (
                    f"hostname={HOSTS[n % len(HOSTS)]}&myip=203.0.113.{n % 250 + 1},2001:db8::{n:x}"
                )
                answers.append(client.get(f"/nic/update?{query}").text)

    writer = threading.Thread(target=updates, name="updates")
    writer.start()
    try:
        wait_for(lambda: len(answers) >= 50 or not writer.is_alive(), what="50 updates")
        answered_before = len(answers)
        backup = tmp_path / "copy.db"
        done = run_cli("--config", str(config), "backup", str(backup), cwd=tmp_path)
        answered_after = len(answers)
        in_flight = answered_after + 1
    finally:
        stop.set()
        writer.join(60)
    assert done.returncode == 0, done.stderr
    assert not writer.is_alive()
    # The server kept answering while the backup ran, and every update went in.
    assert answered_after > answered_before
    bad = [(n, a) for n, a in enumerate(answers, 1) if not a.startswith("good ")]
    assert not bad, bad[:3]

    with contextlib.closing(sqlite3.connect(backup)) as copy:
        assert copy.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert copy.execute("PRAGMA journal_mode").fetchone() == ("delete",)
        rows = copy.execute(
            "SELECT hosts.fqdn, records.rtype, records.address "
            "FROM hosts JOIN records ON records.host_id = hosts.id"
        ).fetchall()
        history = copy.execute("SELECT count(*) FROM update_log").fetchone()[0]
        last_rows = dict(
            copy.execute(
                "SELECT fqdn, new_value FROM update_log "
                "WHERE id IN (SELECT max(id) FROM update_log GROUP BY fqdn)"
            ).fetchall()
        )
    records: dict[str, dict[str, str]] = {}
    for fqdn, rtype, address in rows:
        assert rtype not in records.setdefault(fqdn, {}), f"{fqdn} has two {rtype}"
        records[fqdn][rtype] = address
    last = {fqdn: int(r["AAAA"].rsplit(":", 1)[1], 16) for fqdn, r in records.items()}
    moment = max(last.values())
    assert answered_before <= moment <= in_flight
    # A change's history row is written once its answer is sent, with the next change's
    # transaction: the copy may lack the last change's row, never an earlier one.
    assert moment - 1 <= history <= moment
    for n in range(max(1, moment - len(HOSTS) + 1), moment + 1):
        fqdn = HOSTS[n % len(HOSTS)]
        assert last[fqdn] == n, f"{fqdn}: update {last[fqdn]} in the copy, {n} expected"
        assert records[fqdn]["A"] == f"203.0.113.{n % 250 + 1}"
        if n <= history:
            assert last_rows[fqdn] == f"A {records[fqdn]['A']}; AAAA {records[fqdn]['AAAA']}"


@pytest.fixture(scope="module")
def made_once(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An SQLite database with alice and HOME, made through the CLI."""
    config = write_config(tmp_path_factory.mktemp("template"))
    added = run_cli(
        "--config", str(config), "user", "add", ALICE[0], "--password-stdin", stdin=ALICE[1] + "\n"
    )
    assert added.returncode == 0, added.stderr
    host = run_cli("--config", str(config), "host", "add", HOME, "--owner", ALICE[0])
    assert host.returncode == 0, host.stderr
    return config.parent / "state.db"


@pytest.fixture
def database(tmp_path: Path, made_once: Path) -> Path:
    """A configuration whose database (a copy of ``made_once``) no server runs on."""
    shutil.copyfile(made_once, tmp_path / "state.db")
    return write_config(tmp_path)


def backup_cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("--config", str(config), "backup", *args, cwd=config.parent)


def test_an_existing_path_is_kept_unless_force(database: Path) -> None:
    target = database.parent / "nicupdate.backup"
    target.write_text("an older backup\n")
    target.chmod(0o644)

    refused = one_line_error(backup_cli(database, str(target)))
    assert refused.endswith(f"{target} already exists: pass --force to replace it")
    assert target.read_text() == "an older backup\n"

    done = backup_cli(database, str(target), "--force")
    assert done.returncode == 0, done.stderr
    assert SUMMARY.fullmatch(done.stdout.strip())
    assert mode(target) == 0o600
    with contextlib.closing(sqlite3.connect(target)) as copy:
        assert copy.execute("SELECT fqdn FROM hosts").fetchall() == [(HOME,)]
    leftovers = [name for name in os.listdir(database.parent) if name.endswith(".tmp")]
    assert leftovers == []


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing database", "nothing to back up: the database {db} does not exist"),
        ("missing directory", "the directory {dir}/nowhere does not exist"),
        ("a directory", "{dir}/backups is a directory: give the backup's file name"),
        ("the database", "{db} is the live database or one of its files"),
        ("its WAL", "{db}-wal is the live database or one of its files"),
        ("not nicupdate's", "{db} is not a nicupdate database (it has no schema revision)"),
        ("not SQLite", "cannot read the database {db}: file is not a database"),
        ("a newer schema", "schema revision 9999, which this version (schema {head})"),
    ],
)
def test_what_cannot_be_backed_up_is_said_in_one_line(
    database: Path, case: str, expected: str
) -> None:
    directory = database.parent
    db = directory / "state.db"
    (directory / "backups").mkdir()
    target = {
        "missing directory": directory / "nowhere" / "copy.db",
        "a directory": directory / "backups",
        "the database": db,
        "its WAL": Path(f"{db}-wal"),
    }.get(case, directory / "copy.db")
    if case == "missing database":
        db.unlink()
    elif case == "not nicupdate's":
        db.unlink()
        with contextlib.closing(sqlite3.connect(db)) as other:
            other.execute("CREATE TABLE notes (text)")
    elif case == "not SQLite":
        db.write_text("not a database at all\n")
    elif case == "a newer schema":
        with contextlib.closing(sqlite3.connect(db)) as newer, newer:
            newer.execute("UPDATE alembic_version SET version_num = '9999'")
    before = sorted(os.listdir(directory))
    source = db.read_bytes() if db.exists() else None

    error = one_line_error(backup_cli(database, str(target), "--force"))

    assert expected.format(db=db, dir=directory, head=HEAD_REVISION) in error
    assert sorted(os.listdir(directory)) == before  # nothing written, nothing created
    assert (db.read_bytes() if db.exists() else None) == source
    assert os.listdir(directory / "backups") == []


def test_an_older_schema_is_backed_up_and_said_to_migrate_at_start(
    tmp_path: Path, database: Path
) -> None:
    """A backup taken after an upgrade of the package, before the server restarted."""
    from alembic.script import ScriptDirectory
    from nicupdate_server.migrations import alembic_config

    older = ScriptDirectory.from_config(alembic_config("sqlite://")).get_revision(HEAD_REVISION)
    assert older is not None and isinstance(older.down_revision, str)
    with contextlib.closing(sqlite3.connect(database.parent / "state.db")) as db, db:
        db.execute("UPDATE alembic_version SET version_num = ?", (older.down_revision,))

    done = backup_cli(database, str(tmp_path / "copy.db"))

    assert done.returncode == 0, done.stderr
    summary = SUMMARY.match(done.stdout)
    assert summary and summary["revision"] == older.down_revision, done.stdout
    assert done.stdout.rstrip().endswith(
        f"(this version's is {HEAD_REVISION}: `serve` migrates a restored copy when it starts)"
    )


def test_postgresql_is_answered_with_a_pg_dump_command_that_works(tmp_path: Path) -> None:
    """The command names the configured server and hides its password; run as printed,
    it writes a dump that pg_restore brings back into a database the server runs on."""
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    dump = tmp_path / "nicupdate.dump"
    with running_postgres() as url:
        with_password = url.replace("postgres@", "postgres:pg-s3cret@")
        with server_process(first, database=with_password) as server:
            assert update(server, f"hostname={HOME}&myip=203.0.113.5") == "good 203.0.113.5\n"
            error = one_line_error(server.cli("backup", str(dump)))
        assert "pg-s3cret" not in error
        command = re.fullmatch(r".*back it up with `(.+)`", error)
        assert command, error
        port = url.rsplit(":", 1)[1].split("/")[0]
        assert command[1] == (
            f"PGPASSWORD=*** pg_dump -Fc -h 127.0.0.1 -p {port} -U postgres "
            f"-f {shlex.quote(str(dump))} nicupdate"
        )

        dumped = subprocess.run(
            ["bash", "-c", command[1]], capture_output=True, text=True, timeout=120, check=False
        )
        assert dumped.returncode == 0, dumped.stderr
        psql(url, "CREATE DATABASE restored")
        restore = ["pg_restore", "-h", "127.0.0.1", "-p", port, "-U", "postgres"]
        restored = subprocess.run(
            [*restore, "--no-owner", "-d", "restored", str(dump)],  # as docs/backup.md
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert restored.returncode == 0, restored.stderr
        restored_url = url.rsplit("/", 1)[0] + "/restored"
        with server_process(second, database=restored_url, accounts=False) as server:
            assert update(server, f"hostname={HOME}&myip=203.0.113.5") == "nochg 203.0.113.5\n"
            assert a_records(server, HOME) == ("NOERROR", ["203.0.113.5"])
