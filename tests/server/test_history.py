"""The update history and `host list`, as an operator reads them with the CLI.

Every answer a client got about a host, except ``nochg`` (counted), is in ``host log``
exactly as it was sent, with when DNS confirmed it; ``host list`` agrees with what the
clients were told and what DNS has as soon as the CLI can look; old history is pruned
by the running server in small batches. The servers are the real ones of conftest (the
built-in DNS) or one in front of a real BIND primary; the CLI runs as a user runs it.
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from nicupdate_server import history
from nicupdate_server.config import ConfigError, load_config

from tests.server.conftest import (
    ALICE,
    LiveServer,
    eventually,
    start_server,
    stop_server,
    write_config,
)
from tests.server.primaries import running_bind
from tests.server.test_durable import held, write_server_config

T = TypeVar("T")

HOME = "home.dyn.example.test"
AGENT = "ddclient/3.11.2"


def update(server: LiveServer, query: str, agent: str | bytes = AGENT) -> str:
    answer = server.update(query, auth=ALICE, headers={"User-Agent": agent})
    return answer.text


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    assert (done.returncode, done.stdout) == (1, ""), done.stdout
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("nicupdate-server: error: ")
    return lines[0]


def log_json(server: LiveServer, fqdn: str = HOME, *options: str) -> list[dict[str, Any]]:
    done = server.cli("host", "log", fqdn, "--json", *options)
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def answered(server: LiveServer, count: int) -> list[dict[str, Any]] | None:
    """The history of HOME once it has ``count`` rows, each with its answer written."""
    rows = log_json(server)
    return rows if len(rows) == count and all(r["answer"] for r in rows) else None


def listed(server: LiveServer, fqdn: str = HOME) -> dict[str, Any]:
    done = server.cli("host", "list", "--json")
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    hosts = [json.loads(line) for line in done.stdout.splitlines()]
    return next(host for host in hosts if host["fqdn"] == fqdn)


def add_rows(database: Path, rows: list[tuple[datetime, str, str]]) -> None:
    """History rows (time, new records, answer) written as an older server wrote them."""
    with sqlite3.connect(database) as db:
        db.executemany(
            "INSERT INTO update_log (at, fqdn, caller, user_agent, old_value, new_value, "
            "answer, detail) VALUES (?, ?, '192.0.2.1', 'old-router/1.0', '', ?, ?, '')",
            [(at.strftime("%Y-%m-%d %H:%M:%S.%f"), HOME, new, a) for at, new, a in rows],
        )


# --- what the history holds -----------------------------------------------------------


def test_every_answer_is_in_the_history_as_sent_and_nochg_is_counted(alice: LiveServer) -> None:
    assert update(alice, f"hostname={HOME}&myip=203.0.113.7") == "good 203.0.113.7\n"
    assert update(alice, f"hostname={HOME}&myip=203.0.113.7") == "nochg 203.0.113.7\n"
    assert update(alice, f"hostname={HOME}&myip=203.0.113.7") == "nochg 203.0.113.7\n"
    assert update(alice, f"hostname={HOME}&myip=127.0.0.1", b"evil\x9b2Jagent") == "dnserr\n"
    both = "myip=203.0.113.8,2001:db8::8"
    assert update(alice, f"hostname={HOME}&{both}") == "good 203.0.113.8,2001:db8::8\n"
    assert update(alice, f"hostname={HOME}&offline=YES") == "good\n"

    rows = eventually(lambda: answered(alice, 4))
    assert rows, log_json(alice)
    assert [(r["answer"], r["old"], r["new"], r["detail"]) for r in rows] == [
        ("good 203.0.113.7", {}, {"A": ["203.0.113.7"]}, ""),
        ("dnserr", {}, {}, "127.0.0.1 is a loopback address"),
        (
            "good 203.0.113.8,2001:db8::8",
            {"A": ["203.0.113.7"]},
            {"A": ["203.0.113.8"], "AAAA": ["2001:db8::8"]},
            "",
        ),
        ("good", {"A": ["203.0.113.8"], "AAAA": ["2001:db8::8"]}, {}, ""),
    ]
    assert {(r["fqdn"], r["caller"]) for r in rows} == {(HOME, "127.0.0.1")}
    assert [r["user_agent"] for r in rows] == [AGENT, "evil\x9b2Jagent", AGENT, AGENT]
    for row in rows:  # `good`: DNS had it when it was answered; the refusal never got there
        at = datetime.fromisoformat(row["at"])
        assert at.tzinfo is not None
        if row["answer"] == "dnserr":
            assert row["confirmed_at"] is None
        else:
            assert datetime.fromisoformat(row["confirmed_at"]) >= at

    table = alice.cli("host", "log", HOME)
    assert (table.returncode, table.stderr) == (0, "")
    lines = table.stdout.splitlines()
    assert lines[0].split() == [
        "TIME",
        "CALLER",
        "AGENT",
        "CHANGE",
        "ANSWER",
        "CONFIRMED",
        "DETAIL",
    ]
    assert "- -> A 203.0.113.7" in lines[1] and "good 203.0.113.7" in lines[1]
    assert "127.0.0.1 is a loopback address" in lines[2]
    assert "evil\\x9b2Jagent" in lines[2] and "\x9b" not in table.stdout  # no terminal control
    assert "A 203.0.113.8; AAAA 2001:db8::8 -> -" in lines[4]
    assert lines[5] == "(and 2 nochg answer(s) in all: counted, not listed; see host list)"


def test_host_list_agrees_with_the_answers_within_a_second(alice: LiveServer) -> None:
    for address in ("203.0.113.1", "203.0.113.2", "203.0.113.3"):
        assert update(alice, f"hostname={HOME}&myip={address}") == f"good {address}\n"

    def after_goods() -> dict[str, Any] | None:
        row = listed(alice)
        seen, changed = row["last_seen_at"], row["last_update_at"]
        answered = seen and datetime.fromisoformat(seen) >= datetime.fromisoformat(changed)
        return row if answered and row["last_result"] == "good" else None

    row = eventually(after_goods)  # the last good's answer, after its change
    assert row, listed(alice)
    assert row["records"] == {"A": ["203.0.113.3"], "AAAA": []}
    assert row["pending"] == {} and row["errors"] == {}  # what DNS serves

    for _ in range(3):
        assert update(alice, f"hostname={HOME}&myip=203.0.113.3") == "nochg 203.0.113.3\n"
    row = eventually(lambda: (r := listed(alice))["nochg_count"] == 3 and r)
    assert row, listed(alice)
    assert row["last_result"] == "nochg"

    assert update(alice, f"hostname={HOME}&myip=0.0.0.0") == "dnserr\n"
    row = eventually(lambda: (r := listed(alice))["last_result"].startswith("dnserr") and r)
    assert row, listed(alice)
    assert row["last_result"] == "dnserr: 0.0.0.0 is the unspecified address"
    assert row["records"]["A"] == ["203.0.113.3"]  # nothing changed

    table = alice.cli("host", "list").stdout.splitlines()
    assert table[1].split()[:4] == [HOME, "alice", "203.0.113.3", "-"]
    assert "dnserr: 0.0.0.0 is the unspecified address" in table[1]


def test_a_911_is_in_the_history_and_confirmed_when_dns_catches_up(tmp_path: Path) -> None:
    with running_bind(tmp_path / "bind") as primary:
        server = start_server(write_server_config(tmp_path, primary, deadline=0.5))
        try:
            server.add_user(*ALICE)
            server.add_host(HOME, "alice")
            assert update(server, f"hostname={HOME}&myip=203.0.113.7") == "good 203.0.113.7\n"
            assert eventually(lambda: listed(server)["last_result"] == "good"), listed(server)
            assert listed(server)["pending"] == {}  # DNS has it, and host list says so

            with held(primary):  # stored, but the primary does not answer in time
                assert update(server, f"hostname={HOME}&myip=203.0.113.8") == "911\n"
                # The client tries again, twice: the first repeat is listed, not the next.
                for _ in range(2):
                    assert update(server, f"hostname={HOME}&myip=203.0.113.8") == "911\n"
                rows = eventually(lambda: answered(server, 3))
                assert rows, log_json(server)
                assert (rows[2]["answer"], rows[2]["old"], rows[2]["new"]) == (
                    "911",
                    {"A": ["203.0.113.8"]},
                    {"A": ["203.0.113.8"]},
                )
                assert (rows[1]["answer"], rows[1]["new"]) == ("911", {"A": ["203.0.113.8"]})
                assert "not confirmed by DNS within 0.5 s" in rows[1]["detail"]
                assert rows[1]["confirmed_at"] is None
                row = listed(server)
                assert row["last_result"] == "911: stored, DNS pending"
                assert row["pending"] == {"primary": ["A"]}

            def confirmed() -> list[dict[str, Any]] | None:
                rows = log_json(server)
                return rows if rows[1]["confirmed_at"] else None

            rows = eventually(confirmed, timeout=30)  # the primary's next answer
            assert rows, log_json(server)
            assert rows[1]["confirmed_at"] > rows[1]["at"]
            assert rows[2]["confirmed_at"] > rows[2]["at"]  # the repeat's, too
            assert primary.query(HOME, "A") == ["203.0.113.8"]
            row = eventually(lambda: (r := listed(server))["pending"] == {} and r)
            assert row, listed(server)
            assert row["last_result"] == "911: stored, applied by DNS later"
            table = server.cli("host", "log", HOME).stdout.splitlines()
            confirmed_at = datetime.fromisoformat(rows[1]["confirmed_at"])
            shown = f"  911 +{confirmed_at:%Y-%m-%d %H:%M:%S}  stored; DNS will get it when"
            assert re.search(shown, table[2]), table
        finally:
            stop_server(server)


def test_a_911_answered_before_a_restart_is_confirmed_after_it(tmp_path: Path) -> None:
    with running_bind(tmp_path / "bind") as primary:
        config = write_server_config(tmp_path, primary, deadline=0.5)
        server = start_server(config)
        try:
            server.add_user(*ALICE)
            server.add_host(HOME, "alice")
            with held(primary):
                assert update(server, f"hostname={HOME}&myip=203.0.113.8") == "911\n"
                stop_server(server)
                server = start_server(config)  # the change is still DNS's to get
                rows = log_json(server)
                assert (rows[0]["answer"], rows[0]["confirmed_at"]) == ("911", None)

            def confirmed() -> list[dict[str, Any]] | None:
                rows = log_json(server)
                return rows if rows[0]["confirmed_at"] else None

            rows = eventually(confirmed)
            assert rows, log_json(server)
            assert rows[0]["confirmed_at"] > rows[0]["at"]
            assert primary.query(HOME, "A") == ["203.0.113.8"]
        finally:
            stop_server(server)


# --- reading it -----------------------------------------------------------------------


def test_host_log_since_limit_and_refusals(alice: LiveServer) -> None:
    database = alice.config_path.parent / "state.db"
    now = datetime.now(UTC)
    add_rows(
        database,
        [
            (now - timedelta(days=10), "A 192.0.2.10", "good"),
            (now - timedelta(days=2), "A 192.0.2.2", "good"),
            (now - timedelta(hours=1), "A 192.0.2.1", "good"),
        ],
    )
    assert update(alice, f"hostname={HOME}&myip=203.0.113.7") == "good 203.0.113.7\n"
    assert eventually(lambda: answered(alice, 4))

    def new(*options: str) -> list[str]:
        return [",".join(r["new"]["A"]) for r in log_json(alice, HOME, *options)]

    assert new("--since", "3d") == ["192.0.2.2", "192.0.2.1", "203.0.113.7"]
    assert new("--since", "90m") == ["192.0.2.1", "203.0.113.7"]
    day = (now - timedelta(days=5)).strftime("%Y-%m-%d")
    assert new("--since", day, "--limit", "2") == ["192.0.2.1", "203.0.113.7"]
    assert new("--limit", "0") == ["192.0.2.10", "192.0.2.2", "192.0.2.1", "203.0.113.7"]

    empty = alice.cli("host", "log", HOME, "--since", "2099-01-01")
    assert empty.stdout.splitlines() == [
        f"no updates of {HOME} recorded since 2099-01-01 00:00:00 UTC"
    ]

    bad_since = alice.cli("host", "log", HOME, "--since", "yesterday")
    assert one_line_error(bad_since) == (
        "nicupdate-server: error: --since: 'yesterday' is not a duration (90s, 30m, "
        "12h, 7d, 2w) or a UTC date (2026-11-25, 2026-11-25T08:00)"
    )
    assert "--limit: 'ten'" in one_line_error(alice.cli("host", "log", HOME, "--limit", "ten"))
    unknown = alice.cli("host", "log", "nothere.dyn.example.test")
    assert "no host named 'nothere.dyn.example.test'" in one_line_error(unknown)

    removed = alice.cli("host", "remove", HOME)
    assert removed.returncode == 0, removed.stderr
    kept = alice.cli("host", "log", HOME, "--limit", "1").stdout.splitlines()
    assert "203.0.113.7" in kept[1]
    assert kept[2] == f"({HOME} has been removed; its history is kept until pruned)"


def test_history_days_must_be_a_whole_number_of_days(tmp_path: Path) -> None:
    assert load_config(None, environ={}).server.history_days == 90
    path = write_config(tmp_path, "history_days = -1")
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert str(caught.value).startswith("server.history_days: must be between 0 and 36500")


# --- pruning --------------------------------------------------------------------------


def test_old_history_is_pruned_in_small_batches_while_updates_go_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(history, "PRUNE_INTERVAL", 0.2)
    monkeypatch.setattr(history, "PRUNE_BATCH", 100)
    config = write_config(tmp_path, "history_days = 30")
    server = start_server(config)
    try:
        server.add_user(*ALICE)
        server.add_host(HOME, "alice")
        now = datetime.now(UTC)
        old = [
            (now - timedelta(days=40, seconds=i), f"A 192.0.2.{i % 250}", "good")
            for i in range(250)
        ]
        recent = [(now - timedelta(days=29), "A 198.51.100.1", "good")]
        with caplog.at_level(logging.INFO, logger="nicupdate.history"):
            add_rows(tmp_path / "state.db", old + recent)
            answers = [update(server, f"hostname={HOME}&myip=203.0.113.{i}") for i in range(1, 4)]
            pruned = "deleted 250 history row(s) older than 30 day(s) (server.history_days)"
            assert eventually(lambda: pruned in caplog.text, timeout=30), caplog.text
        assert answers == [f"good 203.0.113.{i}\n" for i in range(1, 4)]
        assert f"{pruned} in 3 transaction(s)" in caplog.text
        rows = log_json(server, HOME, "--limit", "0")
        assert [r["new"]["A"] for r in rows] == [["198.51.100.1"]] + [
            [f"203.0.113.{i}"] for i in range(1, 4)
        ]
    finally:
        stop_server(server)


def test_answers_reach_the_history_when_the_server_stops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(history, "FLUSH_DELAY", 3600.0)  # only the stop writes them
    server = start_server(write_config(tmp_path))
    server.add_user(*ALICE)
    server.add_host(HOME, "alice")
    with httpx.Client(base_url=server.url, auth=ALICE, timeout=10) as client:
        assert client.get(f"/nic/update?hostname={HOME}&myip=203.0.113.9").text.startswith("good")
        assert client.get(f"/nic/update?hostname={HOME}&myip=203.0.113.9").text.startswith("nochg")
    stop_server(server)
    with sqlite3.connect(tmp_path / "state.db") as db:
        answers = db.execute("SELECT answer FROM update_log").fetchall()
        stats = db.execute("SELECT nochg_count, last_result FROM hosts").fetchall()
    assert answers == [("good 203.0.113.9",)]
    assert stats == [(1, "nochg")]


def test_the_migration_splits_old_answers_into_answer_and_detail(tmp_path: Path) -> None:
    from alembic import command
    from nicupdate_server.migrations import alembic_config

    database = tmp_path / "old.db"
    settings = alembic_config(f"sqlite+aiosqlite:///{database}")
    command.upgrade(settings, "0003")  # as the previous version left it
    with sqlite3.connect(database) as db:
        db.executemany(
            "INSERT INTO update_log (at, fqdn, caller, user_agent, old_value, new_value, answer) "
            "VALUES ('2026-01-01 00:00:00.000000', ?, '', '', '', '', ?)",
            [
                (HOME, "good"),
                (HOME, "dnserr: 127.0.0.1 is a loopback address"),
                (HOME, "911: not stored: database or disk is full"),
            ],
        )
    command.upgrade(settings, "head")
    with sqlite3.connect(database) as db:
        rows = db.execute("SELECT answer, detail, confirmed_at FROM update_log ORDER BY id")
        assert rows.fetchall() == [
            ("good", "", None),
            ("dnserr", "127.0.0.1 is a loopback address", None),
            ("911", "not stored: database or disk is full", None),
        ]
    command.downgrade(settings, "0003")
    with sqlite3.connect(database) as db:
        answers = db.execute("SELECT answer FROM update_log ORDER BY id").fetchall()
    assert answers == [
        ("good",),
        ("dnserr: 127.0.0.1 is a loopback address",),
        ("911: not stored: database or disk is full",),
    ]
