"""UPDATE messages to nicupdate for a zone a real BIND or PowerDNS serves behind it.

No zone uses the built-in DNS here: its port opens for UPDATE messages because a key
exists when the server starts. nicupdate applies each change to the primary with its
``rfc2136`` backend and answers NOERROR once the primary has it, SERVFAIL when the
primary does not answer in time (the change is applied when it does).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import dns.rcode
import dns.update
import pytest

from tests.server.conftest import ALICE, LiveServer, eventually, run_cli, start_server, stop_server
from tests.server.primaries import Primary, running_bind, running_powerdns
from tests.server.rfc2136in.clients import HOME, ZONE, Key, send, signed

CONFIG = """
[server]
listen = "127.0.0.1:0"
database = "sqlite+aiosqlite:///{db}"
apply_deadline = {deadline}
retry_initial = 0.1
retry_max = 0.5

[dns]
listen = "127.0.0.1:0"

{backend}
[[zones]]
name = "{zone}"
backend = "primary"
ttl = 60
"""


@pytest.fixture(params=["bind", "powerdns"])
def primary(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Primary]:
    start = running_bind if request.param == "bind" else running_powerdns
    with start(tmp_path / request.param) as running:
        yield running


@contextlib.contextmanager
def serving(
    directory: Path, primary: Primary, deadline: float = 2.0
) -> Iterator[tuple[LiveServer, Key]]:
    """nicupdate in front of ``primary``, with alice, her host and her key ``router``
    (made before the server starts, as an operator would)."""
    config = directory / "nicupdate.toml"
    config.write_text(
        CONFIG.format(
            db=directory / "state.db",
            deadline=deadline,
            backend=primary.config_block("primary"),
            zone=primary.zone,
        )
    )

    def cli(*args: str, stdin: str | None = None) -> str:
        done = run_cli("--config", str(config), *args, stdin=stdin)
        assert done.returncode == 0, done.stderr
        return done.stdout

    cli("user", "add", ALICE[0], "--password-stdin", stdin=ALICE[1] + "\n")
    cli("host", "add", HOME, "--owner", "alice")
    key = Key("router", "hmac-sha256", cli("key", "add", "router", "--owner", "alice"))
    server = start_server(config)
    try:
        yield server, key
    finally:
        stop_server(server)


def test_nsupdate_to_nicupdate_lands_at_the_primary(tmp_path: Path, primary: Primary) -> None:
    with serving(tmp_path, primary) as (server, key):
        key_file = tmp_path / "router.key"
        key_file.write_text(key.clause)
        script = (
            f"server 127.0.0.1 {server.dns_port}\nzone {ZONE}\n"
            f"update add {HOME} 300 A 203.0.113.7\nupdate add {HOME} 300 AAAA 2001:db8::7\nsend\n"
        )
        done = subprocess.run(
            ["nsupdate", "-k", str(key_file)],
            input=script,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        # NOERROR came once the primary had it: it is there when nsupdate returns.
        assert primary.query(HOME, "A") == ["203.0.113.7"]
        assert primary.query(HOME, "AAAA") == ["2001:db8::7"]
        assert primary.ttl(HOME, "A") == 60


@contextlib.contextmanager
def held(primary: Primary) -> Iterator[None]:
    """The primary stopped (SIGSTOP) for the block: it answers nothing until the end."""
    assert primary.pid is not None
    os.kill(primary.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(primary.pid, signal.SIGCONT)


def test_a_primary_that_does_not_confirm_in_time_is_servfail_and_applied_later(
    tmp_path: Path, primary: Primary
) -> None:
    with serving(tmp_path, primary, deadline=1.0) as (server, key):
        update = signed(key)
        update.replace("home", 60, "A", "198.51.100.4")
        with held(primary):
            assert send(server, update) == dns.rcode.SERVFAIL
        # Stored, and applied without the client doing anything.
        assert eventually(lambda: primary.query(HOME, "A") == ["198.51.100.4"])
        again = signed(key)
        again.replace("home", 60, "A", "198.51.100.4")
        assert send(server, again) == dns.rcode.NOERROR
