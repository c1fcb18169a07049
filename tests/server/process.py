"""``nicupdate-server serve`` as its own process, for tests that need one: its file
descriptor limit, its signals, its log, its exit status.

:func:`server_process` writes a configuration (conftest's zones, free ports, extra
``[server]`` and ``[limits]`` lines), adds alice and her host through the CLI, starts
the server and waits until ``/healthz`` answers. It is stopped by PID when the block ends.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.server.conftest import run_cli

ALICE = ("alice", "alice-secret-1")
HOME = "home.dyn.example.test"

CONFIG = """
[server]
listen = "127.0.0.1:{http_port}"
database = "{database}"
{server_extra}

[dns]
listen = "127.0.0.1:{dns_port}"

[dns.rate_limit]
# Tests ask the DNS from 127.0.0.1 again and again, as a monitoring probe would;
# response rate limiting is tested from other sources (tests/server/dns).
exempt_clients = ["127.0.0.1/32"]

[limits]
{limits}

[[zones]]
name = "dyn.example.test"
backends = [{backends}]
nameserver_addresses = ["127.0.0.1"]

{tables}
"""


def free_port() -> int:
    """A port free on 127.0.0.1 for TCP and UDP alike."""
    while True:
        with socket.socket() as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = int(tcp.getsockname()[1])
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                    udp.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


def stop_by_pid(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM by PID and wait for the process to end (SIGKILL after ``timeout`` s)."""
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()


def wait_for(check: Callable[[], object], timeout: float = 30.0, what: str = "it") -> None:
    """Poll ``check`` until it is true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@dataclass
class ServerProcess:
    proc: subprocess.Popen[bytes]
    config: Path
    log: Path
    http_port: int
    dns_port: int
    scheme: str = "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.http_port}"

    def text(self) -> str:
        """What the server has logged so far."""
        return self.log.read_text(errors="replace")

    def cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return run_cli("--config", str(self.config), *args, stdin=stdin, cwd=self.config.parent)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Send ``sig`` and return the exit status (kills it after ``timeout`` s)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                raise AssertionError(f"the server did not exit within {timeout} s") from None
        return self.proc.returncode


def _limit_descriptors(count: int | None) -> Callable[[], None] | None:
    if count is None:
        return None

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (count, count))

    return apply


def answers(url: str) -> bool:
    try:  # a test's own certificate: verified by the test, not here
        return httpx.get(url + "/healthz", timeout=2, verify=False).status_code in (200, 503)
    except httpx.HTTPError:
        return False


@contextlib.contextmanager
def server_process(
    directory: Path,
    *,
    server_extra: str = "",
    limits: str = "",
    descriptors: int | None = None,
    database: str | None = None,
    password_hash: str | None = None,
    accounts: bool = True,
    https: bool = False,
    backends: tuple[str, ...] = ("builtin",),
    tables: str = "",
) -> Iterator[ServerProcess]:
    """A running server with alice and her host HOME (password ALICE[1]).

    ``descriptors`` sets the server's file descriptor limit (soft and hard), as
    ``ulimit -n`` would; ``database`` is a database URL (default: SQLite in
    ``directory``); ``password_hash`` replaces alice's stored hash (SQLite only), as
    a hash made with other parameters before an upgrade would be. ``accounts=False``
    starts on the database as it is (a restart): alice and her host are not added.
    ``https``: the server listens with TLS (``server_extra`` names its files).
    ``backends``: the zone's; ``tables``: TOML added at the end (``[backends.NAME]``)."""
    http_port, dns_port = free_port(), free_port()
    while dns_port == http_port:
        dns_port = free_port()
    config = directory / "nicupdate.toml"
    config.write_text(
        CONFIG.format(
            http_port=http_port,
            dns_port=dns_port,
            database=database or f"sqlite+aiosqlite:///{directory / 'state.db'}",
            server_extra=server_extra,
            limits=limits,
            backends=", ".join(f'"{name}"' for name in backends),
            tables=tables,
        )
    )
    setup = (
        (("user", "add", ALICE[0], "--password-stdin"), ALICE[1] + "\n"),
        (("host", "add", HOME, "--owner", ALICE[0]), None),
    )
    for command, stdin in setup if accounts else ():
        done = run_cli("--config", str(config), *command, stdin=stdin, cwd=directory)
        assert done.returncode == 0, done.stderr
    if password_hash is not None:
        with contextlib.closing(sqlite3.connect(directory / "state.db")) as db, db:
            db.execute(
                "UPDATE users SET password_hash = ? WHERE name = ?", (password_hash, ALICE[0])
            )
    log = directory / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "nicupdate_server", "--config", str(config), "serve"],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=directory,
            env={k: v for k, v in os.environ.items() if not k.startswith("NICUPDATE_")},
            preexec_fn=_limit_descriptors(descriptors),
        )
    server = ServerProcess(proc, config, log, http_port, dns_port, "https" if https else "http")
    try:
        wait_for(lambda: answers(server.url) or proc.poll() is not None, what="the server to start")
        assert proc.poll() is None, f"the server exited at start-up:\n{server.text()}"
        yield server
    finally:
        stop_by_pid(proc)  # SIGTERM first: `serve --workers` stops its workers


def raise_own_descriptor_limit() -> int:
    """Let this (test) process hold many connections; returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]
