"""`nicupdate-client run`, end to end: real client processes, the real server, fake sources.

Where time must pass (back-off, ``Retry-After``), the run is the same one in this
process, on a clock the test moves (``ClientEnv.run_at``): no test sleeps for it.
"""

from __future__ import annotations

import email.utils
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from nicupdate_client.updater import NOTHING, OK, PERMANENT, TEMPORARY, USAGE, when

from tests.client.clientenv import (
    HOME_HOST,
    V4,
    V4_NEW,
    V4_OTHER,
    V6,
    ClientEnv,
    Clock,
    client_env,
)
from tests.client.echo import echo
from tests.server.conftest import ALICE, alice, live_server

__all__ = ["alice", "client_env", "echo", "live_server"]


def sent_queries(env: ClientEnv) -> list[dict[str, list[str]]]:
    return [parse_qs(seen.query) for seen in env.proxy.updates()]


def test_first_run_sends_the_address_once_then_nothing(client_env: ClientEnv) -> None:
    first = client_env.run("run", "--once")
    assert first.returncode == OK, first.stderr
    assert sent_queries(client_env) == [{"hostname": [HOME_HOST], "myip": [V4]}]
    assert client_env.server.addresses(HOME_HOST) == [V4]
    log = client_env.log()
    assert f"IPv4: {V4}" in log
    assert f"{HOME_HOST}: sending {V4} (first update)" in log
    assert f"{HOME_HOST}: the server answered good {V4}" in log

    again = client_env.run("run", "--once")
    assert again.returncode == NOTHING, again.stderr
    assert len(client_env.proxy.updates()) == 1
    assert "nothing to do" in client_env.log().splitlines()[-1]


def test_an_address_change_is_sent(client_env: ClientEnv) -> None:
    assert client_env.run("run", "--once").returncode == OK
    client_env.answers(v4=V4_NEW)
    changed = client_env.run("run", "--once")
    assert changed.returncode == OK, changed.stderr
    assert sent_queries(client_env)[-1]["myip"] == [V4_NEW]
    assert client_env.server.addresses(HOME_HOST) == [V4_NEW]
    assert f"sending {V4_NEW} (was {V4})" in client_env.log()


def test_both_families_go_in_one_request(client_env: ClientEnv) -> None:
    echo = client_env.echo
    client_env.write(ipv6={"sources": [echo.url("/a6", 6), echo.url("/b6", 6)], "quorum": 2})
    client_env.answers(v4=V4, v6=V6)
    result = client_env.run("run", "--once")
    assert result.returncode == OK, result.stderr
    assert sent_queries(client_env) == [{"hostname": [HOME_HOST], "myip": [f"{V4},{V6}"]}]
    assert client_env.server.addresses(HOME_HOST) == [V4]
    assert client_env.server.addresses(HOME_HOST, "AAAA") == [V6]
    # The IPv6 sources were asked over IPv6, the IPv4 ones over IPv4.
    assert {s.family for s in echo.seen("/a6")} == {6}
    assert {s.family for s in echo.seen("/a")} == {4}


def test_sources_that_disagree_send_nothing_and_the_log_says_who_said_what(
    client_env: ClientEnv,
) -> None:
    client_env.echo.set("/b", f"{V4_OTHER}\n")
    result = client_env.run("run", "--once")
    assert result.returncode == TEMPORARY
    assert client_env.proxy.updates() == []
    log = client_env.log()
    assert "no quorum" in log
    assert f"{client_env.echo.url('/a')} said {V4}" in log
    assert f"{client_env.echo.url('/b')} said {V4_OTHER}" in log


def test_a_lying_source_is_outvoted(client_env: ClientEnv) -> None:
    echo = client_env.echo
    echo.set("/liar", f"{V4_OTHER}\n")
    client_env.write(
        ipv4={"sources": [echo.url("/liar"), echo.url("/a"), echo.url("/b")], "quorum": 2}
    )
    assert client_env.run("run", "--once").returncode == OK
    assert sent_queries(client_env)[0]["myip"] == [V4]


def test_badauth_stops_updates_until_the_secret_changes(client_env: ClientEnv) -> None:
    client_env.secret_path.write_text("wrong-password\n")
    refused = client_env.run("run", "--once")
    assert refused.returncode == PERMANENT
    assert len(client_env.proxy.updates()) == 1
    assert "the server answered badauth: the user name or secret is wrong" in client_env.log()

    asked = len(client_env.echo.seen())
    still = client_env.run("run", "--once")
    assert still.returncode == PERMANENT
    assert len(client_env.proxy.updates()) == 1, "a refused host must not be retried"
    assert len(client_env.echo.seen()) == asked, "no source is asked for a refused host"
    assert f"{HOME_HOST}: not updating: the server answered badauth" in client_env.log()
    status = client_env.run("status")
    assert "STOPPED      the server answered badauth" in status.stdout

    stored = client_env.run("set-secret", "--stdin", stdin=ALICE[1] + "\n")
    assert stored.returncode == OK, stored.stderr
    assert client_env.secret_path.read_text().strip() == ALICE[1]
    fixed = client_env.run("run", "--once")
    assert fixed.returncode == OK, fixed.stderr
    assert client_env.server.addresses(HOME_HOST) == [V4]


def test_a_configuration_change_lifts_a_refusal(client_env: ClientEnv) -> None:
    client_env.write(hostnames=["other.dyn.example.test"])
    assert client_env.run("run", "--once").returncode == PERMANENT  # nohost
    assert "nohost" in client_env.log()
    client_env.write(hostnames=[HOME_HOST])
    assert client_env.run("run", "--once").returncode == OK


def host_state(env: ClientEnv) -> dict[str, Any]:
    hosts: dict[str, dict[str, Any]] = json.loads(env.state_path.read_text())["hosts"]
    return hosts[HOME_HOST]


def test_911_backs_off_then_retries_without_anyone_asking(client_env: ClientEnv) -> None:
    client_env.write(backoff={"initial": 60, "maximum": 3600})
    clock = Clock()
    start = clock.start
    client_env.proxy.inject("911\n")
    assert client_env.run_at(clock) == TEMPORARY
    assert "911 (the server has a problem on its side); attempt 1 failed" in client_env.log()

    asked = len(client_env.echo.seen())
    clock.time = start + 59
    assert client_env.run_at(clock) == TEMPORARY
    assert len(client_env.proxy.updates()) == 1, "no request while backing off"
    assert len(client_env.echo.seen()) == asked
    assert "waiting after 1 failed attempt(s); next try at " in client_env.log()

    clock.time = start + 60
    assert client_env.run_at(clock) == OK
    assert len(client_env.proxy.updates()) == 2
    assert client_env.server.addresses(HOME_HOST) == [V4]


@pytest.mark.parametrize("jitter", [1.0, 0.0])
def test_backoff_grows_and_is_capped(client_env: ClientEnv, jitter: float) -> None:
    # initial 1 s doubling, capped at 8 s; the jitter takes between half and all of a step
    clock = Clock()
    delays = []
    for attempt in range(1, 6):
        client_env.proxy.inject("dnserr\n")
        assert client_env.run_at(clock, jitter=jitter) == TEMPORARY
        assert f"attempt {attempt} failed, next try at" in client_env.log()
        retry_at = host_state(client_env)["retry_at"]
        delays.append(retry_at - clock.time)
        clock.time = retry_at - 0.25
        assert client_env.run_at(clock, jitter=jitter) == TEMPORARY
        assert len(client_env.proxy.updates()) == attempt, "a request before the back-off ended"
        clock.time = retry_at
    half = 0.5 + 0.5 * jitter
    assert delays == [1 * half, 2 * half, 4 * half, 8 * half, 8 * half]
    assert client_env.run_at(clock, jitter=jitter) == OK


def test_429_waits_as_long_as_the_server_asked(client_env: ClientEnv) -> None:
    clock = Clock()
    start = clock.start
    client_env.proxy.inject("911\n", status=429, Retry_After="3600")
    assert client_env.run_at(clock) == TEMPORARY
    until = when(start + 3600)
    assert (
        f"{HOME_HOST}: HTTP 429 (the server is limiting requests: too many updates, too many "
        f"wrong passwords from this address, or too busy); the server asked to wait until "
        f"{until}; attempt 1 failed, next try at {until}"
    ) in client_env.log()
    status = client_env.run("status")
    assert status.returncode == OK, "a 429 is not a refusal"
    assert "last answer  HTTP 429" in status.stdout
    assert (
        f"retrying     at {until} (after 1 failure(s); the server asked to wait until {until})"
    ) in status.stdout

    clock.time = start + 3599
    assert client_env.run_at(clock) == TEMPORARY
    assert len(client_env.proxy.updates()) == 1, "a request before the server's Retry-After"
    assert (
        f"{HOME_HOST}: waiting after 1 failed attempt(s) (the server asked to wait until "
        f"{until}); next try at {until}"
    ) in client_env.log()

    clock.time = start + 3600
    assert client_env.run_at(clock) == OK
    assert len(client_env.proxy.updates()) == 2
    assert client_env.server.addresses(HOME_HOST) == [V4]


def test_429_with_an_http_date(client_env: ClientEnv) -> None:
    """A real process: the date is absolute, so when the run starts does not matter."""
    until = int(time.time()) + 7200
    header = email.utils.formatdate(until, usegmt=True)  # "Wed, 25 Nov 2026 21:00:00 GMT"
    client_env.proxy.inject("911\n", status=429, Retry_After=header)
    assert client_env.run("run", "--once").returncode == TEMPORARY
    assert f"the server asked to wait until {when(until)}; attempt 1 failed" in client_env.log()
    assert host_state(client_env)["retry_at"] == pytest.approx(until, abs=0.5)
    waiting = client_env.run("run", "--once")
    assert waiting.returncode == TEMPORARY
    assert len(client_env.proxy.updates()) == 1

    # `resume` lifts refusals and our own back-off, not the server's wait.
    resumed = client_env.run("resume")
    assert resumed.stdout == "No host is stopped: nothing to resume.\n"
    status = client_env.run("status")
    assert f"retrying     at {when(until)} (the server asked to wait until {when(until)})" in (
        status.stdout
    )


@pytest.mark.parametrize(
    ("retry_after", "waits", "asked"),
    [
        (None, 600, None),  # no header: the usual back-off
        ("soon", 600, None),  # not a number or a date: the same
        ("10", 600, 10),  # the back-off is longer: it wins
        ("7200", 7200, 7200),
        ("9999999", 86400, 86400),  # at most a day
    ],
)
def test_429_retry_after_or_backoff_whichever_is_longer(
    client_env: ClientEnv, retry_after: str | None, waits: int, asked: int | None
) -> None:
    client_env.write(backoff={"initial": 600, "maximum": 3600})
    headers = {} if retry_after is None else {"Retry_After": retry_after}
    client_env.proxy.inject("911\n", status=429, **headers)
    clock = Clock()
    start = clock.start
    assert client_env.run_at(clock) == TEMPORARY
    assert host_state(client_env)["retry_at"] == start + waits
    status = client_env.run("status").stdout
    if asked is None:
        assert f"retrying     at {when(start + waits)} (after 1 failure(s))\n" in status
        assert "asked to wait" not in status + client_env.log()
    else:
        assert f"the server asked to wait until {when(start + asked)})" in status


def test_429_never_stops_the_host(client_env: ClientEnv) -> None:
    clock = Clock()
    # The status decides: even a 429 whose body reads like a refusal is temporary.
    for attempt, body in enumerate(["911\n", "911\n", "abuse\n"], start=1):
        client_env.proxy.inject(body, status=429, Retry_After="60")
        assert client_env.run_at(clock) == TEMPORARY
        assert host_state(client_env)["refused"] is None
        status = client_env.run("status")
        assert status.returncode == OK
        assert f"after {attempt} failure(s)" in status.stdout
        assert "STOPPED" not in status.stdout
        clock.time = host_state(client_env)["retry_at"]
    assert client_env.run_at(clock) == OK
    assert len(client_env.proxy.updates()) == 4
    assert client_env.server.addresses(HOME_HOST) == [V4]


def test_abuse_stops_the_host_until_unblocked_and_resumed(client_env: ClientEnv) -> None:
    hint = (
        "the server blocked this host for repeated needless updates: ask the server's "
        f"operator to run 'nicupdate-server host unblock {HOME_HOST}', then run "
        "'nicupdate-client resume'"
    )
    client_env.proxy.inject("abuse\n")
    assert client_env.run("run", "--once").returncode == PERMANENT
    assert f"{HOME_HOST}: the server answered abuse: {hint}." in client_env.log()
    assert client_env.run("run", "--once").returncode == PERMANENT
    assert len(client_env.proxy.updates()) == 1, "a host blocked for abuse must not be retried"
    status = client_env.run("status")
    assert status.returncode == PERMANENT
    assert f"STOPPED      the server answered abuse: {hint}\n" in status.stdout

    # The operator ran `host unblock`; the user resumes.
    resumed = client_env.run("resume")
    assert resumed.returncode == OK, resumed.stderr
    assert resumed.stdout == f"Resumed {HOME_HOST} (abuse): the next run sends the update again.\n"
    assert client_env.run("status").returncode == OK
    assert client_env.run("run", "--once").returncode == OK
    assert len(client_env.proxy.updates()) == 2
    assert client_env.server.addresses(HOME_HOST) == [V4]
    again = client_env.run("resume")
    assert again.stdout == "No host is stopped: nothing to resume.\n"


def test_unreachable_server_is_a_temporary_failure(client_env: ClientEnv) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    client_env.write(server=f"http://127.0.0.1:{port}")
    result = client_env.run("run", "--once")
    assert result.returncode == TEMPORARY
    assert f"cannot reach http://127.0.0.1:{port}" in client_env.log()


def test_an_unchanged_address_is_refreshed_after_the_long_interval(client_env: ClientEnv) -> None:
    client_env.write(refresh_days=1.0 / 86400)  # one second
    assert client_env.run("run", "--once").returncode == OK
    time.sleep(1.1)
    refreshed = client_env.run("run", "--once")
    assert refreshed.returncode == OK
    assert len(client_env.proxy.updates()) == 2
    assert "refreshing" in client_env.log()
    assert f"the server answered nochg {V4}" in client_env.log()


def test_a_source_that_answered_429_is_not_asked_on_the_next_run(client_env: ClientEnv) -> None:
    echo = client_env.echo
    echo.set("/busy", "slow down\n", 429, Retry_After="3600")
    client_env.write(
        ipv4={"sources": [echo.url("/busy"), echo.url("/a"), echo.url("/b")], "quorum": 2}
    )
    assert client_env.run("run", "--once").returncode == OK
    assert len(echo.seen("/busy")) == 1
    client_env.answers(v4=V4_NEW)
    assert client_env.run("run", "--once").returncode == OK
    assert len(echo.seen("/busy")) == 1, "the cooled-down source was asked again"
    assert client_env.server.addresses(HOME_HOST) == [V4_NEW]


def test_no_network_after_boot_waits_then_sends(client_env: ClientEnv) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/ip"
    client_env.write(network_wait=30, ipv4={"sources": [url], "quorum": 1})
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nicupdate_client",
            "run",
            "--once",
            "--config",
            str(client_env.config_path),
        ],
        env=client_env.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    class Late(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = f"{V4}\n".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    deadline = time.time() + 20
    while "no network yet" not in client_env.log() and time.time() < deadline:
        time.sleep(0.1)
    late = ThreadingHTTPServer(("127.0.0.1", port), Late)  # the network comes up
    threading.Thread(target=late.serve_forever, daemon=True).start()
    try:
        _, stderr = process.communicate(timeout=40)
    finally:
        late.shutdown()
        late.server_close()
    assert process.returncode == OK, stderr
    assert "no network yet" in client_env.log()
    assert client_env.server.addresses(HOME_HOST) == [V4]


def test_runs_without_a_console(client_env: ClientEnv) -> None:
    """As under pythonw.exe: no stdout, no stderr; everything goes to the log file."""
    code = (
        "import sys; sys.stdout = sys.stderr = None\n"
        "from nicupdate_client.cli import main\n"
        f"raise SystemExit(main(['run', '--once', '--config', {str(client_env.config_path)!r}]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=client_env.env(),
        timeout=60,
        check=False,
    )
    assert result.returncode == OK
    assert (result.stdout, result.stderr) == ("", "")
    assert f"the server answered good {V4}" in client_env.log()


@pytest.mark.skipif(sys.platform == "win32", reason="Ctrl+C is a console event there, not SIGINT")
def test_the_foreground_loop_updates_and_stops_cleanly(client_env: ClientEnv) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "nicupdate_client", "run", "--config", str(client_env.config_path)],
        env=client_env.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 20
    while "the server answered" not in client_env.log() and time.time() < deadline:
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=20)
    assert process.returncode == 130
    assert "Traceback" not in stderr
    assert client_env.server.addresses(HOME_HOST) == [V4]


def test_the_secret_never_reaches_the_log_state_config_or_status(client_env: ClientEnv) -> None:
    client_env.run("run", "--once")
    client_env.proxy.inject("911\n")
    client_env.answers(v4=V4_NEW)
    client_env.run("run", "--once")
    status = client_env.run("status")
    detect = client_env.run("detect")
    places = [
        client_env.log(),
        client_env.state_path.read_text(),
        client_env.config_path.read_text(),
    ]
    places += [status.stdout, status.stderr, detect.stdout, detect.stderr]
    assert all(ALICE[1] not in place for place in places)


def test_status_shows_what_was_sent_and_what_is_next(client_env: ClientEnv) -> None:
    client_env.run("run", "--once")
    status = client_env.run("status")
    assert status.returncode == OK, status.stderr
    out = status.stdout
    assert f"Configuration  {client_env.config_path}" in out
    assert f"secret: {client_env.secret_path}" in out
    assert f"IPv4         {V4} (accepted " in out
    assert f"last answer  good {V4}" in out
    assert "next due     on the next change of address; refresh by " in out
    assert "Schedule       " in out


def test_detect_prints_each_source_and_the_verdict(client_env: ClientEnv) -> None:
    echo = client_env.echo
    echo.set("/broken", "oops", 500)
    client_env.write(
        ipv4={"sources": [echo.url("/broken"), echo.url("/a"), echo.url("/b")], "quorum": 2}
    )
    result = client_env.run("detect")
    assert result.returncode == OK, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "IPv4"
    assert any(echo.url("/broken") in line and "HTTP 500" in line for line in lines)
    assert any(line.split() == [echo.url("/a"), V4] for line in lines)
    assert any(line.split() == [echo.url("/b"), V4] for line in lines), "detect asks them all"
    assert lines[-1].startswith(f"  verdict: {V4}")
    assert client_env.proxy.updates() == [], "detect never updates"

    echo.set("/b", f"{V4_OTHER}\n")
    disagree = client_env.run("detect")
    assert disagree.returncode == TEMPORARY
    assert "no quorum" in disagree.stdout


def test_a_bad_configuration_is_a_usage_error_naming_the_key(client_env: ClientEnv) -> None:
    client_env.write(ipv4={"sources": [client_env.echo.url("/a")], "quorum": 3})
    result = client_env.run("run", "--once")
    assert result.returncode == USAGE
    assert "ipv4.quorum: 3 cannot be met by 1 source(s)" in result.stderr
    assert "Traceback" not in result.stderr
    missing = client_env.run("run", "--once", config=False)
    assert missing.returncode == USAGE
    assert "run 'nicupdate-client init'" in missing.stderr


def test_no_secret_is_a_usage_error_saying_what_to_do(client_env: ClientEnv) -> None:
    settings = dict(client_env.settings)
    del settings["secret_file"]
    client_env.settings = settings
    client_env.write()
    result = client_env.run("run", "--once")
    assert result.returncode == USAGE
    assert "run 'nicupdate-client set-secret'" in result.stderr
    assert client_env.proxy.updates() == []


def test_state_file_damage_costs_one_update_not_a_stuck_client(client_env: ClientEnv) -> None:
    client_env.run("run", "--once")
    client_env.state_path.write_text("{not json")
    result = client_env.run("run", "--once")
    assert result.returncode == OK
    assert "ignoring the unreadable state file" in client_env.log()
    assert f"the server answered nochg {V4}" in client_env.log()


def test_log_file_rotates(client_env: ClientEnv, tmp_path: Path) -> None:
    from nicupdate_client import logs

    assert logs.MAX_BYTES <= 1_000_000
    client_env.log_path.parent.mkdir(parents=True, exist_ok=True)
    client_env.log_path.write_text("x" * (logs.MAX_BYTES + 10))
    client_env.run("run", "--once")
    assert (client_env.log_path.parent / "client.log.1").exists()
    assert client_env.log_path.stat().st_size < logs.MAX_BYTES


@pytest.mark.parametrize(
    ("answer", "hint"),
    [
        ("notfqdn", "the server does not accept this as a fully qualified host name"),
        ("badagent", "the server refused this client"),
        ("abuse", "the server blocked this host for repeated needless updates"),
        ("numhost", "too many host names in one request"),
    ],
)
def test_every_refusal_stops_that_host(client_env: ClientEnv, answer: str, hint: str) -> None:
    client_env.proxy.inject(answer + "\n")
    assert client_env.run("run", "--once").returncode == PERMANENT
    assert f"the server answered {answer}: {hint}" in client_env.log()
    assert client_env.run("run", "--once").returncode == PERMANENT
    assert len(client_env.proxy.updates()) == 1
    status = client_env.run("status")
    assert status.returncode == PERMANENT
    assert f"STOPPED      the server answered {answer}: {hint}" in status.stdout
