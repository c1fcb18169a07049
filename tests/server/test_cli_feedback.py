"""What the account CLI tells the operator: the password prompts at a terminal, and when a
running server starts answering for a host the CLI just added.

The prompts run the real ``python -m nicupdate_server`` on a pseudo-terminal, as an
operator types at it; the host's answers come from the real server of conftest.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from tests.server.conftest import (
    LiveServer,
    eventually,
    run_cli,
    start_server,
    stop_server,
    write_config,
)

T = TypeVar("T")

GOOD = "bob-secret-1"
HOST = "bob.dyn.example.test"
TOO_SHORT = "the password is too short: use at least 8 characters"


pytestmark = pytest.mark.usefixtures("clean_environment")


class Terminal:
    """``nicupdate-server ARGS`` with a pseudo-terminal as its standard input and output."""

    def __init__(self, *args: str, cwd: Path) -> None:
        self.master, slave = os.openpty()
        # A new session has no controlling terminal, so getpass reads the pseudo-terminal
        # on standard input (echo off), not the terminal pytest may have been started from.
        self.process = subprocess.Popen(
            [sys.executable, "-m", "nicupdate_server", *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            cwd=cwd,
            start_new_session=True,
        )
        os.close(slave)
        self.transcript = b""
        self.seen = 0  # what expect() has matched so far

    def expect(self, text: str, timeout: float = 60.0) -> None:
        """Wait until ``text`` appears after what was matched before (the CPU may be busy)."""
        wanted = text.encode()
        deadline = time.monotonic() + timeout
        while wanted not in self.transcript[self.seen :] and time.monotonic() < deadline:
            if select.select([self.master], [], [], 0.2)[0]:
                try:
                    chunk = os.read(self.master, 4096)
                except OSError:  # the program ended and closed the terminal
                    break
                if not chunk:
                    break
                self.transcript += chunk
        at = self.transcript.find(wanted, self.seen)
        assert at >= 0, f"{text!r} not seen in:\n{self.text()}"
        self.seen = at + len(wanted)

    def type(self, line: str) -> None:
        os.write(self.master, line.encode() + b"\n")

    def finish(self) -> int:
        """The exit status, once the rest of the output is read."""
        try:
            status = self.process.wait(timeout=60)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait(timeout=10)
        while select.select([self.master], [], [], 0)[0]:
            try:
                chunk = os.read(self.master, 4096)
            except OSError:
                break
            if not chunk:
                break
            self.transcript += chunk
        os.close(self.master)
        return status

    def text(self) -> str:
        return self.transcript.decode(errors="replace").replace("\r\n", "\n")


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    return write_config(tmp_path)  # no database yet: the first command creates it


# --- passwords at a terminal ------------------------------------------------------------


def test_user_add_asks_again_after_a_refused_password(config_path: Path) -> None:
    terminal = Terminal("--config", str(config_path), "user", "add", "bob", cwd=config_path.parent)
    terminal.expect("Password: ")
    terminal.type("short")
    terminal.expect(f"{TOO_SHORT}; try again")
    terminal.expect("Password: ")
    terminal.type(GOOD)
    terminal.expect("Repeat password: ")
    terminal.type(GOOD + "-typo")
    terminal.expect("the passwords do not match; try again")
    terminal.expect("Password: ")
    terminal.type(GOOD)
    terminal.expect("Repeat password: ")
    terminal.type(GOOD)
    terminal.expect("user bob added")
    assert terminal.finish() == 0, terminal.text()
    assert GOOD not in terminal.text(), "the password was echoed"
    assert "Traceback" not in terminal.text()

    listed = run_cli("--config", str(config_path), "user", "list", cwd=config_path.parent)
    assert listed.stdout.startswith("bob\t0 host(s)\t"), listed.stdout

    # The account holds the password given last, as a running server checks it.
    added = run_cli("--config", str(config_path), "host", "add", HOST, "--owner", "bob")
    assert added.returncode == 0, added.stderr
    server = start_server(config_path)
    try:
        update = f"hostname={HOST}&myip=203.0.113.9"
        assert server.update(update, auth=("bob", GOOD)).text.strip() == "good 203.0.113.9"
        assert server.update(update, auth=("bob", "short")).text.strip() == "badauth"
    finally:
        stop_server(server)


def test_user_add_gives_up_after_three_refused_passwords(config_path: Path) -> None:
    terminal = Terminal("--config", str(config_path), "user", "add", "bob", cwd=config_path.parent)
    for _ in range(3):
        terminal.expect("Password: ")
        terminal.type("short")
    terminal.expect(f"nicupdate-server: error: no password set after 3 attempts: {TOO_SHORT}")
    assert terminal.finish() == 1
    text = terminal.text()
    assert text.count("Password: ") == 3
    assert text.count("; try again") == 2  # the third refusal is the error line
    assert "Repeat password: " not in text
    assert "Traceback" not in text
    listed = run_cli("--config", str(config_path), "user", "list", cwd=config_path.parent)
    assert "no users yet" in listed.stdout


def test_user_passwd_asks_again_when_the_repeat_differs(config_path: Path) -> None:
    done = run_cli(
        "--config", str(config_path), "user", "add", "bob", "--password-stdin", stdin=GOOD + "\n"
    )
    assert done.returncode == 0, done.stderr
    terminal = Terminal(
        "--config", str(config_path), "user", "passwd", "bob", cwd=config_path.parent
    )
    for repeat in ("other-secret-1", "another-one-2", "third-time-3"):
        terminal.expect("Password: ")
        terminal.type("new-secret-2")
        terminal.expect("Repeat password: ")
        terminal.type(repeat)
    terminal.expect(
        "nicupdate-server: error: no password set after 3 attempts: the passwords do not match"
    )
    assert terminal.finish() == 1
    assert "password of bob changed" not in terminal.text()


# --- a new host and a running server ----------------------------------------------------


@pytest.fixture
def running(config_path: Path) -> Iterator[LiveServer]:
    server = start_server(config_path)
    try:
        yield server
    finally:
        stop_server(server)


@pytest.mark.parametrize(
    ("environment", "every"),
    [({}, "within 0.05 s"), ({"NICUPDATE_SERVER__POLL_INTERVAL": "2.5"}, "within 2.5 s")],
    ids=["configured", "from-the-environment"],
)
def test_host_add_says_when_a_running_server_answers_for_it(
    running: LiveServer, environment: dict[str, str], every: str
) -> None:
    running.add_user("bob", GOOD)
    added = run_cli(
        "--config", str(running.config_path), "host", "add", HOST, "--owner", "bob", env=environment
    )
    assert (added.returncode, added.stderr) == (0, "")
    assert added.stdout.splitlines()[0] == f"host {HOST} added for bob"
    assert added.stdout.splitlines()[2] == (
        f"a running server answers for it once it reads the change ({every}, "
        "server.poll_interval); until then: nohost"
    )
    # And so it does: the update is answered for the host once the server has read it.
    update = f"hostname={HOST}&myip=203.0.113.9"
    good = eventually(
        lambda: running.update(update, auth=("bob", GOOD)).text.strip() == "good 203.0.113.9"
    )
    assert good, running.update(update, auth=("bob", GOOD)).text
