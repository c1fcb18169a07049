"""The change log as a running server follows it: every CLI change reaches the server one
change at a time (never a reload of everything), a server whose position was pruned
reloads once, and an old `server.reload_interval` is accepted with a warning."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

import pytest
from nicupdate_server import changelog

from tests.server.conftest import (
    LiveServer,
    eventually,
    start_server,
    stop_server,
    write_config,
)

pytestmark = pytest.mark.usefixtures("clean_environment")

ZONE = "dyn.example.test"
PASSWORD = "bob-password-1"


def token_of(output: str) -> str:
    """The token the CLI printed (``...token...: TOKEN``)."""
    line = next(line for line in output.splitlines() if "token" in line)
    return line.rsplit(": ", 1)[1]


def answer(server: LiveServer, fqdn: str, address: str, auth: tuple[str, str]) -> str:
    return server.update(f"hostname={fqdn}&myip={address}", auth=auth).text.strip()


def test_cli_changes_reach_the_server_one_by_one(
    live_server: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    server = live_server
    caplog.set_level(logging.INFO)
    host = f"cli.{ZONE}"
    assert (
        server.cli("user", "add", "bob", "--password-stdin", stdin=PASSWORD + "\n").returncode == 0
    )
    added = server.cli("host", "add", host, "--owner", "bob")
    token = token_of(added.stdout)
    bob = ("bob", PASSWORD)
    assert eventually(lambda: answer(server, host, "203.0.113.1", bob) == "good 203.0.113.1")
    assert answer(server, host, "203.0.113.2", (host, token)) == "good 203.0.113.2"

    rotated = token_of(server.cli("host", "token", host).stdout)
    assert eventually(lambda: answer(server, host, "203.0.113.2", (host, token)) == "badauth")
    assert answer(server, host, "203.0.113.2", (host, rotated)) == "nochg 203.0.113.2"

    new_password = "bob-password-2"
    assert (
        server.cli(
            "user", "passwd", "bob", "--password-stdin", stdin=new_password + "\n"
        ).returncode
        == 0
    )
    assert eventually(lambda: answer(server, host, "203.0.113.2", bob) == "badauth")
    assert answer(server, host, "203.0.113.3", ("bob", new_password)) == "good 203.0.113.3"

    assert server.cli("host", "remove", host).returncode == 0
    assert eventually(
        lambda: answer(server, host, "203.0.113.3", ("bob", new_password)) == "nohost"
    )
    assert eventually(lambda: server.dns_query(host).rcode() == 3)  # NXDOMAIN
    assert server.cli("user", "remove", "bob").returncode == 0
    assert eventually(
        lambda: answer(server, host, "203.0.113.3", ("bob", new_password)) == "badauth"
    )

    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "reloaded" not in logged  # each change applied as it came, nothing reloaded
    for line in (
        "account bob added",
        f"host {host} added (owner bob)",
        f"host {host}: new token",
        "account bob changed",
        f"host {host} removed",
        "account bob removed",
    ):
        assert line in logged


def test_a_server_whose_position_was_pruned_reloads_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    server = start_server(write_config(tmp_path))
    try:
        feed = server.runtime.feed
        server.call(feed.close)  # away: it reads nothing for a while
        behind = feed.position
        host = f"late.{ZONE}"
        assert (
            server.cli("user", "add", "carol", "--password-stdin", stdin=PASSWORD + "\n").returncode
            == 0
        )
        assert server.cli("host", "add", host, "--owner", "carol").returncode == 0
        assert server.cli("host", "add", f"later.{ZONE}", "--owner", "carol").returncode == 0

        async def prune_all_but_the_newest() -> int:
            async with server.runtime.engine.begin() as conn:
                newest = await changelog.newest(conn)
                return await changelog.prune(conn, newest, timedelta(0), 1000)

        assert server.call(prune_all_but_the_newest) >= 2
        server.call(lambda: feed.start(behind))  # back, from where it was
        assert answer(server, host, "203.0.113.5", ("carol", PASSWORD)) == "good 203.0.113.5"
        logged = "\n".join(record.getMessage() for record in caplog.records)
        assert f"the change log no longer has the changes after {behind}" in logged
        assert logged.count("accounts and hosts reloaded") == 1
    finally:
        stop_server(server)


def test_an_old_reload_interval_is_accepted_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = start_server(write_config(tmp_path, "reload_interval = 1.0"))
    try:
        logged = "\n".join(record.getMessage() for record in caplog.records)
        assert "server.reload_interval is no longer used" in logged
        assert server.get("/healthz").status_code == 200
    finally:
        stop_server(server)
