"""``serve --workers N``: N processes on one port (SO_REUSEPORT), coherent through the
change log, the built-in DNS and the reconcilers once, on SQLite and PostgreSQL."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.query
import httpx
import pytest

from tests.server.conftest import eventually, run_cli
from tests.server.postgres import running_postgres
from tests.server.primaries import Primary, running_bind
from tests.server.process import ALICE, HOME, ServerProcess, server_process, wait_for

pytestmark = pytest.mark.usefixtures("clean_environment")

ZONE = "dyn.example.test"


def listening_pids(port: int) -> set[int]:
    """The processes listening on TCP ``port``, as `ss -ltnp` shows them."""
    shown = subprocess.run(
        ["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout
    return {int(pid) for pid in re.findall(r"pid=(\d+)", shown)}


def update(server: ServerProcess, query: str, auth: tuple[str, str] = ALICE) -> str:
    """One update on a connection of its own (so the kernel picks a worker each time)."""
    return httpx.get(f"{server.url}/nic/update?{query}", auth=auth, timeout=10).text.strip()


def served(server: ServerProcess, name: str) -> list[str]:
    query = dns.message.make_query(name, "A")
    answer = dns.query.udp(query, "127.0.0.1", port=server.dns_port, timeout=3).answer
    return sorted(rd.to_text() for rrset in answer for rd in rrset)


def workers_up(server: ServerProcess, count: int) -> None:
    wait_for(
        lambda: server.text().count("serving HTTP") >= count or server.proc.poll() is not None,
        what=f"{count} workers to serve",
    )
    assert server.proc.poll() is None, server.text()


def check_coherent(server: ServerProcess, rounds: int = 12) -> None:
    """Every `good` is served by the built-in DNS at once, whichever worker answered;
    a host the CLI adds is known to every worker soon after."""
    for i in range(1, rounds + 1):
        address = f"203.0.113.{i}"
        assert update(server, f"hostname={HOME}&myip={address}") == f"good {address}"
        assert served(server, HOME) == [address]
    added = f"new.{ZONE}"
    done = server.cli("host", "add", added, "--owner", ALICE[0])
    assert done.returncode == 0, done.stderr
    query = f"hostname={added}&myip=198.51.100.9"
    assert eventually(lambda: update(server, query) == "good 198.51.100.9"), update(server, query)
    # No worker still says nohost; a worker that learnt the change from the log may
    # answer a repeat `good` (once the DNS worker serves it) before it says `nochg`.
    answers = {update(server, query) for _ in range(16)}
    assert answers <= {"good 198.51.100.9", "nochg 198.51.100.9"}, answers
    assert eventually(lambda: {update(server, query) for _ in range(8)} == {"nochg 198.51.100.9"})


@pytest.fixture
def two_workers(tmp_path: Path) -> Iterator[ServerProcess]:
    with server_process(tmp_path, server_extra="workers = 2") as server:
        workers_up(server, 2)
        yield server


def test_two_workers_listen_on_one_port_and_answer_alike(two_workers: ServerProcess) -> None:
    server = two_workers
    listeners = listening_pids(server.http_port)
    assert len(listeners) == 2 and server.proc.pid not in listeners  # two workers, not the parent
    # One built-in DNS: worker 0 binds the port and hands it to its DNS process.
    dns_listeners = listening_pids(server.dns_port)
    assert len(dns_listeners) == 2 and len(dns_listeners & listeners) == 1
    (dns_process,) = dns_listeners - listeners
    assert "nicupdate_server.dns" in Path(f"/proc/{dns_process}/cmdline").read_text()
    assert re.search(r"worker 0 of 2 \(pid \d+\): serving HTTP on \S+, DNS on", server.text())
    assert re.search(
        r"worker 1 of 2 \(pid \d+\): serving HTTP on \S+, no built-in DNS", server.text()
    )
    check_coherent(server)


def test_a_killed_worker_is_started_again(two_workers: ServerProcess) -> None:
    server = two_workers
    before = listening_pids(server.http_port)
    victim = max(before)
    subprocess.run(["kill", "-KILL", str(victim)], check=True)
    wait_for(
        lambda: (now := listening_pids(server.http_port)) and len(now) == 2 and victim not in now,
        what="the worker to be started again",
    )
    assert listening_pids(server.http_port) != before
    assert re.search(r"worker \d stopped \(exit status -9\); starting it again", server.text()), (
        server.text()
    )
    check_coherent(server, rounds=4)


def test_sigterm_stops_every_worker(two_workers: ServerProcess) -> None:
    server = two_workers
    workers = listening_pids(server.http_port)
    assert server.stop(signal.SIGTERM) == 0
    assert listening_pids(server.http_port) == set()
    for pid in workers:
        assert (
            not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
        )


def test_a_port_in_use_stops_the_group_with_one_line(tmp_path: Path) -> None:
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    port = blocker.getsockname()[1]
    config = tmp_path / "nicupdate.toml"
    config.write_text(
        f'[server]\nlisten = "127.0.0.1:{port}"\n'
        f'database = "sqlite+aiosqlite:///{tmp_path / "state.db"}"\nworkers = 2\n'
        '[dns]\nenabled = false\n[[zones]]\nname = "dyn.example.test"\nbackend = "builtin"\n'
    )
    try:
        done = run_cli("--config", str(config), "serve")
    finally:
        blocker.close()
    assert done.returncode == 3, done.stderr
    assert f"server.listen 127.0.0.1:{port} is in use" in done.stderr
    assert "Traceback" not in done.stderr


def test_two_workers_on_postgresql(tmp_path: Path) -> None:
    with (
        running_postgres() as url,
        server_process(tmp_path, server_extra="workers = 2", database=url) as server,
    ):
        workers_up(server, 2)
        check_coherent(server)


@pytest.fixture
def bind(tmp_path: Path) -> Iterator[Primary]:
    with running_bind(tmp_path / "bind") as primary:
        yield primary


def test_one_worker_reconciles_each_backend(tmp_path: Path, bind: Primary) -> None:
    (tmp_path / "nicupdate").mkdir()
    with server_process(
        tmp_path / "nicupdate",
        server_extra="workers = 3",
        backends=("builtin", "primary"),
        tables=bind.config_block("primary"),
    ) as server:
        workers_up(server, 3)
        for i in range(1, 9):
            address = f"192.0.2.{i}"
            assert update(server, f"hostname={HOME}&myip={address}") == f"good {address}"
            assert bind.query(HOME, "A") == [address]
        taken = re.findall(
            rf"\[worker (\d)\] nicupdate.leases: this process now does "
            rf"reconcile:primary:{re.escape(ZONE)}",
            server.text(),
        )
        assert len(taken) == 1, server.text()  # one worker reconciles BIND
        pids = dict(re.findall(r"worker (\d) of 3 \(pid (\d+)\): serving", server.text()))
        victim = int(pids[taken[0]])
        subprocess.run(["kill", "-KILL", str(victim)], check=True)
        wait_for(lambda: victim not in listening_pids(server.http_port), what="it to be gone")

        # Another worker takes BIND over, and every update answered meanwhile lands.
        answered = []
        for i in range(10, 30):
            address = f"192.0.2.{i}"
            answer = update(server, f"hostname={HOME}&myip={address}")
            assert answer in (f"good {address}", "911"), answer
            answered.append(address)
        assert eventually(lambda: bind.query(HOME, "A") == [answered[-1]])
        assert eventually(
            lambda: len(re.findall(r"now does reconcile:primary", server.text())) == 2
        ), server.text()
