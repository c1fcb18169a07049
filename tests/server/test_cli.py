"""``nicupdate-server`` user, host and serve commands, run as a user runs them.

Every command runs as ``python -m nicupdate_server`` on a temporary configuration;
where a change must reach a running server, the server is the real one from
conftest (it looks for CLI changes every 0.2 s), asked over HTTP and DNS.
"""

from __future__ import annotations

import os
import queue
import re
import shlex
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import httpx
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

PASSWORD = "alice-secret-1"
HOME = "home.dyn.example.test"
OFFICE = "office.dyn.example.test"
WHEN = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")


pytestmark = pytest.mark.usefixtures("clean_environment")


def one_line(stderr: str) -> str:
    assert "Traceback" not in stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


def token_from(stdout: str) -> str:
    match = re.search(r"token .*: (\S+)$", stdout, re.MULTILINE)
    assert match, stdout
    return match.group(1)


def answer(server: LiveServer, fqdn: str, auth: tuple[str, str], ip: str = "203.0.113.7") -> str:
    return server.update(f"hostname={fqdn}&myip={ip}", auth=auth).text.strip()


def add_user(cli: Callable[..., subprocess.CompletedProcess[str]], name: str = "alice") -> None:
    done = cli("user", "add", name, "--password-stdin", stdin=PASSWORD + "\n")
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    assert done.stdout.strip() == f"user {name} added"


def add_host(cli: Callable[..., subprocess.CompletedProcess[str]], fqdn: str) -> str:
    done = cli("host", "add", fqdn, "--owner", "alice")
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    return token_from(done.stdout)


@pytest.fixture(scope="session")
def migrated_database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty database at the newest schema, copied so each test skips the migration."""
    path = tmp_path_factory.mktemp("template") / "state.db"
    done = subprocess.run(
        [sys.executable, "-m", "nicupdate_server.migrations"],
        env={**os.environ, "NICUPDATE_MIGRATE_URL": f"sqlite+aiosqlite:///{path}"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return path


@pytest.fixture
def config_path(tmp_path: Path, migrated_database: Path) -> Path:
    """A test configuration (conftest's) whose database already has the schema."""
    for suffix in ("", "-wal"):
        source = migrated_database.with_name(migrated_database.name + suffix)
        if source.exists():
            copy = tmp_path / f"state.db{suffix}"
            shutil.copyfile(source, copy)
            copy.chmod(0o600)  # as the server makes it (a wider mode is narrowed, with a warning)
    return write_config(tmp_path)


@pytest.fixture
def live_server(config_path: Path) -> Iterator[LiveServer]:
    server = start_server(config_path)
    try:
        yield server
    finally:
        stop_server(server)


@pytest.fixture
def cli(config_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return run_cli("--config", str(config_path), *args, stdin=stdin, cwd=config_path.parent)

    return run


# --- accounts -----------------------------------------------------------------------


def test_user_add_list_and_refusals(tmp_path: Path) -> None:
    config = write_config(tmp_path)  # no database yet: the first command creates it

    def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return run_cli("--config", str(config), *args, stdin=stdin, cwd=tmp_path)

    empty = cli("user", "list")
    assert empty.returncode == 0
    assert "no users yet" in empty.stdout
    assert "user add" in empty.stdout

    add_user(cli)

    again = cli("user", "add", "alice", "--password-stdin", stdin="another-password\n")
    assert (again.returncode, again.stdout) == (1, "")
    line = one_line(again.stderr)
    assert line.startswith("nicupdate-server: error: ")
    assert "'alice' already exists" in line

    short = cli("user", "add", "bob", "--password-stdin", stdin="short\n")
    assert (short.returncode, short.stdout) == (1, "")
    assert "too short" in one_line(short.stderr)

    no_password = cli("user", "add", "bob", "--password-stdin", stdin="")
    assert no_password.returncode == 1
    assert "no password" in one_line(no_password.stderr)

    bad_name = cli("user", "add", "bob smith", "--password-stdin", stdin=PASSWORD + "\n")
    assert bad_name.returncode == 1
    assert "not a valid user name" in one_line(bad_name.stderr)

    listed = cli("user", "list")
    assert listed.returncode == 0
    rows = [line.split("\t") for line in listed.stdout.splitlines()]
    assert [row[:2] for row in rows] == [["alice", "0 host(s)"]]
    assert WHEN.search(rows[0][2])


def test_user_add_without_a_terminal_says_to_use_password_stdin(
    cli: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    done = cli("user", "add", "alice", stdin=PASSWORD + "\n")
    assert (done.returncode, done.stdout) == (1, "")
    line = one_line(done.stderr)
    assert "terminal" in line
    assert "--password-stdin" in line
    assert "no users yet" in cli("user", "list").stdout


def test_user_remove_refuses_while_the_user_owns_hosts(
    cli: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    add_user(cli)
    add_host(cli, HOME)
    assert "alice\t1 host(s)\t" in cli("user", "list").stdout

    refused = cli("user", "remove", "alice")
    assert (refused.returncode, refused.stdout) == (1, "")
    line = one_line(refused.stderr)
    assert "owns 1 host(s)" in line
    assert "--with-hosts" in line
    assert "alice\t1 host(s)\t" in cli("user", "list").stdout

    removed = cli("user", "remove", "alice", "--with-hosts")
    assert (removed.returncode, removed.stderr) == (0, "")
    assert removed.stdout.strip() == "user alice removed with 1 host(s)"
    assert "no users yet" in cli("user", "list").stdout
    assert "no hosts yet" in cli("host", "list").stdout


def test_user_passwd_reaches_the_running_server(live_server: LiveServer) -> None:
    add_user(live_server.cli)
    add_host(live_server.cli, HOME)
    old = ("alice", PASSWORD)
    assert eventually(lambda: answer(live_server, HOME, old) == "good 203.0.113.7")

    changed = live_server.cli("user", "passwd", "alice", "--password-stdin", stdin="new-secret-2\n")
    assert (changed.returncode, changed.stderr) == (0, "")
    assert changed.stdout.strip() == "password of alice changed"

    new = ("alice", "new-secret-2")
    assert eventually(lambda: answer(live_server, HOME, new) == "nochg 203.0.113.7")
    assert answer(live_server, HOME, old) == "badauth"
    assert answer(live_server, HOME, new, ip="203.0.113.8") == "good 203.0.113.8"

    unknown = live_server.cli("user", "passwd", "bob", "--password-stdin", stdin=PASSWORD + "\n")
    assert unknown.returncode == 1
    assert "no user named 'bob'" in one_line(unknown.stderr)


# --- hosts --------------------------------------------------------------------------


def test_host_token_updates_only_its_host_and_rotates(live_server: LiveServer) -> None:
    add_user(live_server.cli)
    added = live_server.cli("host", "add", HOME, "--owner", "alice")
    assert (added.returncode, added.stderr) == (0, "")
    assert f"host {HOME} added for alice" in added.stdout
    token = token_from(added.stdout)
    assert len(token) >= 32
    add_host(live_server.cli, OFFICE)

    listing = live_server.cli("host", "list").stdout
    assert HOME in listing
    assert token not in listing  # shown once, never again

    # The owner's password updates both hosts; the token of one only that one.
    owner = ("alice", PASSWORD)
    office = "good 203.0.113.8"
    assert eventually(lambda: answer(live_server, OFFICE, owner, ip="203.0.113.8") == office)
    old = (HOME, token)
    assert answer(live_server, HOME, old) == "good 203.0.113.7"
    assert answer(live_server, OFFICE, old) == "nohost"
    assert live_server.addresses(OFFICE) == ["203.0.113.8"]
    assert answer(live_server, HOME, (OFFICE, token)) == "badauth"

    rotated = live_server.cli("host", "token", HOME)
    assert (rotated.returncode, rotated.stderr) == (0, "")
    new_token = token_from(rotated.stdout)
    assert new_token != token

    new = (HOME, new_token)
    assert eventually(lambda: answer(live_server, HOME, new) == "nochg 203.0.113.7")
    assert answer(live_server, HOME, old) == "badauth"
    assert answer(live_server, HOME, new, ip="203.0.113.9") == "good 203.0.113.9"
    assert live_server.addresses(HOME) == ["203.0.113.9"]

    missing = live_server.cli("host", "token", "nothere.dyn.example.test")
    assert missing.returncode == 1
    assert "no host named" in one_line(missing.stderr)


def test_host_add_refusals(cli: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    outside = cli("host", "add", "www.example.org", "--owner", "alice")
    assert (outside.returncode, outside.stdout) == (1, "")
    line = one_line(outside.stderr)
    assert "www.example.org" in line
    assert "dyn.example.test" in line
    assert "public.example.net" in line

    no_owner = cli("host", "add", HOME, "--owner", "alice")
    assert no_owner.returncode == 1
    assert "no user named 'alice'" in one_line(no_owner.stderr)

    add_user(cli)
    add_host(cli, HOME)
    twice = cli("host", "add", HOME.upper(), "--owner", "alice")
    assert twice.returncode == 1
    assert f"host {HOME} already exists" in one_line(twice.stderr)

    bad_name = cli("host", "add", "bad..dyn.example.test", "--owner", "alice")
    assert bad_name.returncode == 1
    one_line(bad_name.stderr)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("dyn.example.test", "the apex of zone dyn.example.test"),
        ("NS.dyn.example.test.", "a nameserver of zone dyn.example.test"),
        ("public.example.net", "the apex of zone public.example.net"),
        ("ns.public.example.net", "a nameserver of zone public.example.net"),
    ],
)
def test_names_that_are_not_hosts_cannot_be_added(
    cli: Callable[..., subprocess.CompletedProcess[str]], name: str, reason: str
) -> None:
    add_user(cli)
    refused = cli("host", "add", name, "--owner", "alice")
    assert (refused.returncode, refused.stdout) == (1, "")
    line = one_line(refused.stderr)
    assert f"cannot be a host: it is {reason}" in line


def test_a_nameserver_host_from_before_is_warned_about_and_never_updated(
    tmp_path: Path, config_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return run_cli("--config", str(config_path), *args, stdin=stdin, cwd=tmp_path)

    add_user(cli)
    glue = "ns.dyn.example.test"
    with sqlite3.connect(tmp_path / "state.db") as db:  # as an older version let it be added
        db.execute(
            "INSERT INTO hosts (fqdn, owner_id, token_digest, created_at, nochg_count) "
            "SELECT ?, id, NULL, '2026-01-01 00:00:00', 0 FROM users WHERE name = 'alice'",
            (glue,),
        )
    checked = cli("check-config")
    assert checked.returncode == 0
    assert checked.stderr == (
        f"warning: host {glue} is a nameserver of zone dyn.example.test (its NS record and "
        f"glue), not a host name: its updates are refused; remove it with "
        f"`nicupdate-server host remove {glue}`\n"
    )
    server = start_server(config_path)
    try:
        assert (
            f"host {glue} is a nameserver of zone dyn.example.test (its NS record and glue), "
            "not a host name: its updates are refused (nohost)"
        ) in caplog.text
        refused = server.update(f"hostname={glue}&myip=203.0.113.66", auth=("alice", PASSWORD))
        assert refused.text == "nohost\n"
        assert server.addresses(glue) == ["127.0.0.1"]  # the glue is intact
    finally:
        stop_server(server)


def test_host_list_shows_addresses_last_update_and_result(live_server: LiveServer) -> None:
    add_user(live_server.cli)
    add_host(live_server.cli, HOME)
    add_host(live_server.cli, OFFICE)
    before = live_server.cli("host", "list").stdout.splitlines()
    assert before[0].split() == [
        "HOST", "OWNER", "A", "AAAA", "LAST", "UPDATE", "LAST", "RESULT", "LAST", "SEEN", "NOCHG",
        "DNS", "BACKEND", "ERROR", "MORE",
    ]  # fmt: skip
    assert before[1].split() == [
        HOME, "alice", "-", "-", "-", "-", "-", "0", "applied", "-", "-",
    ]  # fmt: skip

    auth = ("alice", PASSWORD)
    query = f"hostname={HOME}&myip=203.0.113.7,2001:db8::7"
    first = eventually(lambda: live_server.update(query, auth=auth).text.startswith("good"))
    assert first
    assert live_server.addresses(HOME, "AAAA") == ["2001:db8::7"]

    def listed() -> dict[str, str]:
        """The rows of `host list` once HOME's shows its answer (written as it went out)."""
        lines = live_server.cli("host", "list").stdout.splitlines()
        rows = {line.split()[0]: line for line in lines}
        return rows if "good" in rows[HOME].split() else {}

    rows = eventually(listed)
    assert rows, live_server.cli("host", "list").stdout
    home = rows[HOME]
    cells = home.split()
    assert cells[:4] == [HOME, "alice", "203.0.113.7", "2001:db8::7"]
    assert WHEN.search(home)
    assert "good" in cells
    assert rows[OFFICE].split()[:4] == [OFFICE, "alice", "-", "-"]


def test_host_remove_takes_the_name_out_of_dns(live_server: LiveServer) -> None:
    add_user(live_server.cli)
    add_host(live_server.cli, HOME)
    auth = ("alice", PASSWORD)
    assert eventually(lambda: answer(live_server, HOME, auth) == "good 203.0.113.7")
    assert live_server.addresses(HOME) == ["203.0.113.7"]

    removed = live_server.cli("host", "remove", HOME)
    assert (removed.returncode, removed.stderr) == (0, "")
    assert removed.stdout.strip() == f"host {HOME} removed"

    def gone() -> bool:
        return live_server.dns_query(HOME).rcode() == dns.rcode.NXDOMAIN

    assert eventually(gone)
    assert live_server.dns_query(HOME, "AAAA").rcode() == dns.rcode.NXDOMAIN
    assert answer(live_server, HOME, auth) == "nohost"
    assert "no hosts yet" in live_server.cli("host", "list").stdout
    assert "alice\t0 host(s)\t" in live_server.cli("user", "list").stdout

    again = live_server.cli("host", "remove", HOME)
    assert again.returncode == 1
    assert "no host named" in one_line(again.stderr)


# --- serve --------------------------------------------------------------------------


def free_port() -> int:
    """A port free on 127.0.0.1 for both TCP and UDP (the DNS listens on both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = int(tcp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
        return port
    raise RuntimeError("no free port")


class Serving:
    def __init__(self, proc: subprocess.Popen[str], http_port: int, dns_port: int) -> None:
        self.proc = proc
        self.http_port = http_port
        self.dns_port = dns_port
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def read_until(self, pattern: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no line matching {pattern!r} in {self.seen}") from None
            if line is None:
                raise AssertionError(f"serve ended without {pattern!r}: {self.seen}")
            self.seen.append(line)
            if re.search(pattern, line):
                return line

    def stop(self) -> int:
        """SIGTERM, as systemd or docker stop sends it; the exit status."""
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=10)


def serve_config(directory: Path, http_port: int, dns_port: int, dns_extra: str = "") -> Path:
    config = directory / "serve.toml"
    config.write_text(
        f'[server]\nlisten = "127.0.0.1:{http_port}"\n'
        f'database = "sqlite+aiosqlite:///{directory / "serve.db"}"\n'
        f'[dns]\nlisten = "127.0.0.1:{dns_port}"\n{dns_extra}'
    )
    return config


@contextmanager
def serving(directory: Path, *args: str, dns_extra: str = "") -> Iterator[Serving]:
    http_port, dns_port = free_port(), free_port()
    while dns_port == http_port:
        dns_port = free_port()
    config = serve_config(directory, http_port, dns_port, dns_extra)
    with (directory / "serve.log").open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "nicupdate_server", "--config", str(config), "serve", *args],
            cwd=directory,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
    try:
        yield Serving(proc, http_port, dns_port)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        assert proc.stdout is not None
        proc.stdout.close()


def test_serve_demo_works_in_one_minute(tmp_path: Path) -> None:
    with serving(tmp_path, "--demo") as server:
        server.read_until(r"^Demo account ready")
        curl = server.read_until(r"^\s*curl ")
        dig = server.read_until(r"^\s*dig ")
        words = shlex.split(curl)
        assert words[:2] == ["curl", "-u"]
        user, _, password = words[2].partition(":")
        url = words[3]
        assert url == (
            f"http://127.0.0.1:{server.http_port}/nic/update"
            "?hostname=demo.dyn.example.test&myip=203.0.113.7"
        )
        assert shlex.split(dig) == [
            "dig", "@127.0.0.1", "-p", str(server.dns_port), "demo.dyn.example.test", "A",
        ]  # fmt: skip

        def request() -> httpx.Response | None:
            try:
                return httpx.get(url, auth=(user, password), timeout=5)
            except httpx.ConnectError:  # printed before the listener is up
                return None

        response = eventually(request, timeout=15)
        assert response is not None, server.seen
        assert (response.status_code, response.text) == (200, "good 203.0.113.7\n")

        query = dns.message.make_query("demo.dyn.example.test", dns.rdatatype.A)
        reply = dns.query.udp(query, "127.0.0.1", port=server.dns_port, timeout=3)
        assert reply.rcode() == dns.rcode.NOERROR
        assert [(rd.to_text(), rrset.ttl) for rrset in reply.answer for rd in rrset] == [
            ("203.0.113.7", 60)
        ]
        assert server.stop() == 0


def test_serve_demo_prints_a_dig_line_only_for_a_dns_server_that_listens(
    tmp_path: Path,
) -> None:
    with serving(tmp_path, "--demo", dns_extra="enabled = false\n") as server:
        server.read_until(r"^Demo account ready")
        server.read_until(r"no built-in DNS here: dns.enabled is off or no zone uses it")
        assert not any("dig" in line for line in server.seen)
        assert server.stop() == 0


@pytest.mark.parametrize("busy", ["server.listen", "dns.listen"])
def test_a_port_in_use_stops_serve_with_one_line_naming_the_key(tmp_path: Path, busy: str) -> None:
    http_port, dns_port = free_port(), free_port()
    while dns_port == http_port:
        dns_port = free_port()
    config = serve_config(tmp_path, http_port, dns_port)
    # Another program holds the port: TCP for HTTP, UDP (what a DNS server binds first).
    kind = socket.SOCK_STREAM if busy == "server.listen" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as other:
        other.bind(("127.0.0.1", http_port if busy == "server.listen" else dns_port))
        if kind == socket.SOCK_STREAM:
            other.listen()
        done = run_cli("--config", str(config), "serve", cwd=tmp_path)
    port = http_port if busy == "server.listen" else dns_port
    assert done.returncode == 3, done.stderr
    assert one_line(done.stderr) == (
        f"nicupdate-server: cannot start: {busy} 127.0.0.1:{port} is in use: another "
        f"program listens there (see `ss -lntup`); stop it or choose another port for {busy}"
    )


@pytest.mark.parametrize(
    ("listen", "shown"),
    [
        ('listen = "0.0.0.0"', "HTTP 0.0.0.0:8245, DNS 127.0.0.1:5300,"),
        ('listen = "[::1]:9000"', "HTTP [::1]:9000, DNS 127.0.0.1:5300,"),
    ],
)
def test_check_config_prints_the_addresses_with_their_ports(
    tmp_path: Path, listen: str, shown: str
) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f'[server]\n{listen}\n[dns]\nlisten = "127.0.0.1:5300"\n')
    done = run_cli("--config", str(config), "check-config", cwd=tmp_path)
    assert (done.returncode, done.stderr) == (0, "")
    assert shown in done.stdout


def test_check_config_names_a_database_directory_that_does_not_exist(
    tmp_path: Path,
) -> None:
    config = tmp_path / "c.toml"
    missing = tmp_path / "no" / "such"
    config.write_text(f'[server]\ndatabase = "sqlite+aiosqlite:///{missing / "state.db"}"\n')
    done = run_cli("--config", str(config), "check-config", cwd=tmp_path)
    assert (done.returncode, one_line(done.stderr)) == (
        2,
        f"nicupdate-server: config error: server.database: the directory {missing} "
        "does not exist (create it first)",
    )
    assert not missing.exists()  # `serve` says it too (test_migrations)


def test_check_config_names_a_database_directory_that_is_not_writable(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a read-only tmpfs needs root (CI runs tests/run.sh as root)")
    mount = tmp_path / "ro"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(mount)], check=True)
    try:
        config = tmp_path / "c.toml"
        config.write_text(f'[server]\ndatabase = "sqlite+aiosqlite:///{mount / "state.db"}"\n')
        done = run_cli("--config", str(config), "check-config", cwd=tmp_path)
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
    assert (done.returncode, one_line(done.stderr)) == (
        2,
        f"nicupdate-server: config error: server.database: the directory {mount} "
        "is not writable by this user",
    )


def test_serve_with_an_empty_database_says_how_to_create_an_account(tmp_path: Path) -> None:
    with serving(tmp_path) as server:
        server.read_until(r"^No accounts yet")
        server.read_until(r"user add alice")
        server.read_until(r"host add home\.dyn\.example\.test --owner alice")
        server.read_until(r"serve --demo")

        def up() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{server.http_port}/healthz").is_success
            except httpx.ConnectError:
                return False

        assert eventually(up, timeout=15)
        assert server.stop() == 0


def test_check_config_reads_the_transfer_key(tmp_path: Path) -> None:
    """A key file that cannot be used is one line naming it; a good one is named."""
    key = tmp_path / "xfr.key"
    config = tmp_path / "c.toml"
    config.write_text(
        f'[dns.transfer]\ntsig_key_file = "{key}"\nallow = ["192.0.2.2/32"]\n'
        'notify = ["192.0.2.2"]\n'
    )
    done = run_cli("--config", str(config), "check-config", cwd=tmp_path)
    assert (done.returncode, one_line(done.stderr)) == (
        2,
        f"nicupdate-server: config error: dns.transfer: {key}: no such file",
    )
    key.write_text('key "xfr-key" {\n\talgorithm hmac-sha257;\n\tsecret "c2VjcmV0";\n};\n')
    done = run_cli("--config", str(config), "check-config", cwd=tmp_path)
    assert done.returncode == 2 and "unknown algorithm 'hmac-sha257'" in done.stderr
    assert "c2VjcmV0" not in done.stderr
    key.write_text('key "xfr-key" {\n\talgorithm hmac-sha256;\n\tsecret "c2VjcmV0";\n};\n')
    done = run_cli("--config", str(config), "check-config", cwd=tmp_path)
    assert (done.returncode, done.stderr) == (0, "")
    assert "transfers signed with key xfr-key to 192.0.2.2/32, NOTIFY to 192.0.2.2" in done.stdout
