"""nicupdate in front of a real BIND or PowerDNS primary: updates land, and none is lost.

The server runs for real (uvicorn on 127.0.0.1, in-process, or as a child process for
the SIGKILL test) with an ``rfc2136`` backend pointed at a primary that the fixtures
start from the shipped examples in deploy/bind and deploy/powerdns.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.server.conftest import ALICE, LiveServer, run_cli, start_server, stop_server
from tests.server.primaries import Primary, running_bind, running_powerdns
from tests.server.relays import DDCLIENT, ddclient, eventually

ZONE = "dyn.example.test"
HOME = f"home.{ZONE}"
KINDS = ["bind", "powerdns"]

CONFIG = """
[server]
listen = "127.0.0.1:{http_port}"
database = "sqlite+aiosqlite:///{db}"
apply_deadline = {deadline}
retry_initial = 0.1
retry_max = 0.5

[dns]
enabled = false

{backend}
{backend_extra}
{zones}"""

ZONE_TABLE = """
[[zones]]
name = "{zone}"
backend = "primary"
ttl = 60
"""


def write_server_config(
    directory: Path,
    primary: Primary,
    *,
    backend_extra: str = "",
    deadline: float = 2.0,
    http_port: int = 0,
) -> Path:
    path = directory / "nicupdate.toml"
    path.write_text(
        CONFIG.format(
            http_port=http_port,
            db=directory / "state.db",
            deadline=deadline,
            backend=primary.config_block("primary"),
            backend_extra=backend_extra,
            zones="".join(
                ZONE_TABLE.format(zone=zone) for zone in (primary.zone, *primary.more_zones)
            ),
        )
    )
    return path


@pytest.fixture(params=KINDS)
def primary(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Primary]:
    start = running_bind if request.param == "bind" else running_powerdns
    with start(tmp_path / request.param) as running:
        yield running


@contextlib.contextmanager
def serving(directory: Path, primary: Primary, **options: object) -> Iterator[LiveServer]:
    """A live nicupdate server in front of ``primary``, with the account alice."""
    server = start_server(write_server_config(directory, primary, **options))  # type: ignore[arg-type]
    try:
        server.add_user(*ALICE)
        yield server
    finally:
        stop_server(server)


@pytest.fixture
def live(tmp_path: Path, primary: Primary) -> Iterator[LiveServer]:
    with serving(tmp_path, primary) as server:
        server.add_host(HOME, "alice")
        yield server


def test_a_ddclient_update_lands_at_the_primary_with_ttl_60(
    live: LiveServer, primary: Primary
) -> None:
    answer = ddclient(live, f"system=dyndns&hostname={HOME}&myip=203.0.113.7,2001:db8::7")
    assert answer.text == "good 203.0.113.7,2001:db8::7\n"
    # `good` means the primary confirmed it: it is there already, no waiting.
    assert primary.query(HOME, "A") == ["203.0.113.7"]
    assert primary.query(HOME, "AAAA") == ["2001:db8::7"]
    assert primary.ttl(HOME, "A") == 60
    assert primary.dig(HOME, "A").strip() == "203.0.113.7"
    again = ddclient(live, f"system=dyndns&hostname={HOME}&myip=203.0.113.7,2001:db8::7")
    assert again.text == "nochg 203.0.113.7,2001:db8::7\n"


def test_v4_only_leaves_aaaa_and_offline_removes(live: LiveServer, primary: Primary) -> None:
    assert ddclient(live, f"hostname={HOME}&myip=203.0.113.7,2001:db8::7").text.startswith("good")
    assert ddclient(live, f"hostname={HOME}&myip=203.0.113.8").text == "good 203.0.113.8\n"
    assert primary.query(HOME, "A") == ["203.0.113.8"]
    assert primary.query(HOME, "AAAA") == ["2001:db8::7"]
    assert ddclient(live, f"hostname={HOME}&offline=yes").text.startswith("good")
    assert primary.query(HOME, "A") == []
    assert primary.query(HOME, "AAAA") == []


def test_500_hosts_land_in_few_messages(tmp_path: Path, primary: Primary) -> None:
    with serving(tmp_path, primary, deadline=HOLD_DEADLINE, backend_extra=HOLD_BACKEND) as server:
        names = [f"h{i}.{ZONE}" for i in range(500)]
        server.admin(lambda a: _add_hosts(a, names))
        backend = server.runtime.backends["primary"]
        before = int(getattr(backend, "messages_sent", 0))

        lines = burst_while_held(server, primary, names)
        assert lines == [f"good {address_of(i)}" for i in range(len(names))]
        messages = int(getattr(backend, "messages_sent", 0)) - before
        # One message was in flight while the other changes queued; they go in one more.
        assert messages <= 2, f"{messages} UPDATE messages for 500 hosts"
        for index in (0, 123, 499):
            assert primary.query(names[index], "A") == [address_of(index)]


@pytest.mark.parametrize("start", [running_bind, running_powerdns], ids=KINDS)
def test_several_zones_share_one_backend(tmp_path: Path, start: Callable[..., object]) -> None:
    lab = "lab.example.test"
    with start(tmp_path / "primary", more_zones=(lab,)) as primary:  # type: ignore[attr-defined]
        assert isinstance(primary, Primary)
        with serving(
            tmp_path, primary, deadline=HOLD_DEADLINE, backend_extra=HOLD_BACKEND
        ) as server:
            names = [f"h{i}.{zone}" for zone in (ZONE, lab) for i in range(100)]
            server.admin(lambda a: _add_hosts(a, names))
            # One request, a host in each zone: one backend, two UPDATE messages.
            answer = ddclient(server, f"hostname=h0.{ZONE},h0.{lab}&myip=203.0.113.9")
            assert answer.text == "good 203.0.113.9\ngood 203.0.113.9\n"
            assert primary.query(f"h0.{ZONE}", "A") == ["203.0.113.9"]
            assert primary.query(f"h0.{lab}", "A") == ["203.0.113.9"]

            backend = server.runtime.backends["primary"]
            before = int(getattr(backend, "messages_sent", 0))
            lines = burst_while_held(server, primary, names)
            assert lines == [f"good {address_of(i)}" for i in range(len(names))]
            messages = int(getattr(backend, "messages_sent", 0)) - before
            # Per zone, one message in flight and one for what queued behind it.
            assert messages <= 4, f"{messages} UPDATE messages for 200 hosts in two zones"
            for index in (1, 99, 100, 199):
                assert primary.query(names[index], "A") == [address_of(index)]

            # The drift check reads both zones back.
            primary.edit(f"h5.{lab}", "A", ["192.0.2.66"])
            primary.edit(f"h5.{ZONE}", "A", [])
            report = server.call(lambda: server.runtime.reconciler.check_drift("primary"))
            assert report.checked == 200 and report.error is None
            assert sorted(report.repaired) == [
                f"h5.{ZONE} A: DNS had nothing, should have {address_of(5)}",
                f"h5.{lab} A: DNS had 192.0.2.66, should have {address_of(105)}",
            ]
            assert eventually(lambda: primary.query(f"h5.{lab}", "A") == [address_of(105)])
            assert eventually(lambda: primary.query(f"h5.{ZONE}", "A") == [address_of(5)])


def test_a_zone_with_two_backends_applies_and_retries_each_on_its_own(tmp_path: Path) -> None:
    with (
        running_bind(tmp_path / "bind") as bind,
        running_powerdns(tmp_path / "powerdns") as pdns,
    ):
        config = tmp_path / "nicupdate.toml"
        config.write_text(
            CONFIG.format(
                http_port=0,
                db=tmp_path / "state.db",
                # Long, so that `good` never turns into 911 on a slow machine; the 911
                # below comes from PowerDNS refusing the connection, not from this.
                deadline=HOLD_DEADLINE,
                backend=bind.config_block("bind") + "\n" + pdns.config_block("pdns"),
                backend_extra="",
                zones=f'[[zones]]\nname = "{ZONE}"\nbackends = ["bind", "pdns"]\n',
            )
        )
        server = start_server(config)
        try:
            server.add_user(*ALICE)
            server.add_host(HOME, "alice")
            answer = ddclient(server, f"hostname={HOME}&myip=203.0.113.7")
            assert answer.text == "good 203.0.113.7\n"  # both confirmed it
            assert bind.query(HOME, "A") == pdns.query(HOME, "A") == ["203.0.113.7"]

            pdns.stop()
            answer = ddclient(server, f"hostname={HOME}&myip=203.0.113.8")
            # Stored; PowerDNS refused the connection, so not every backend has it. The
            # answer comes as soon as PowerDNS's worker knows that, while BIND's may still
            # be sending its own message: BIND has it soon after, with PowerDNS still down.
            assert answer.text == "911\n"
            assert eventually(lambda: bind.query(HOME, "A") == ["203.0.113.8"])

            def pending_at_pdns_only() -> bool:  # confirmations reach the database lazily
                row = host_row(config, HOME)
                dns_column = row.split("pdns: A pending")[0]
                return (
                    "pdns: A pending" in row
                    and "bind:" not in dns_column
                    and "pdns: cannot connect" in row
                )

            assert eventually(pending_at_pdns_only), host_row(config, HOME)

            pdns.start()  # no client retries
            assert eventually(lambda: pdns.query(HOME, "A") == ["203.0.113.8"])

            def listed_as_applied() -> bool:
                row = host_row(config, HOME)
                return " applied " in row and "pending" not in row and "cannot" not in row

            assert eventually(listed_as_applied), host_row(config, HOME)
            # Both confirmed it: a client coming back with the same address is told so.
            assert (
                ddclient(server, f"hostname={HOME}&myip=203.0.113.8").text == "nochg 203.0.113.8\n"
            )
        finally:
            stop_server(server)


def host_row(config: Path, fqdn: str) -> str:
    """The line `host list` prints for ``fqdn``."""
    listed = run_cli("--config", str(config), "host", "list").stdout
    return next(line for line in listed.splitlines() if line.startswith(f"{fqdn} "))


def burst(server: LiveServer, queries: list[str], clients: int = 64) -> list[str]:
    """Send the updates from ``clients`` concurrent connections, as many routers would."""
    with httpx.Client(
        base_url=server.url,
        auth=ALICE,
        headers={"User-Agent": DDCLIENT},
        timeout=60,
        limits=httpx.Limits(max_connections=clients),
    ) as client:
        client.get("/nic/update?hostname=nonexistent.invalid")  # one password check, then cached

        def send(query: str) -> str:
            return client.get("/nic/update?" + query).text

        with ThreadPoolExecutor(clients) as pool:
            return list(pool.map(send, queries))


# While the primary is held, the requests wait for it (up to the longest apply_deadline)
# and so does the message in flight (up to the backend's timeout): both must outlast
# the burst on a busy machine, and only a hang would reach them.
HOLD_DEADLINE = 60.0
HOLD_BACKEND = "timeout = 60\n"
HOSTS_PER_REQUEST = 10


@contextlib.contextmanager
def held(primary: Primary) -> Iterator[None]:
    """The primary stopped (SIGSTOP) for the block: the kernel still accepts connections
    and messages for it, but it answers nothing until it goes on (SIGCONT) at the end."""
    assert primary.pid is not None
    os.kill(primary.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(primary.pid, signal.SIGCONT)


def burst_while_held(server: LiveServer, primary: Primary, names: list[str]) -> list[str]:
    """Update ``names`` at once, with the primary answering nothing until every change
    is queued; the answer line of each name.

    The names go HOSTS_PER_REQUEST to a request, as ddclient sends the hosts that share
    an address, and every request has a connection of its own: so every change can be
    waiting at once (a connection per host would need more files open than a limit of
    1024 allows). The first change wakes the backend's worker, whose message then waits
    for the held primary; the others queue behind it. The primary goes on once all of
    them are stored and waiting for DNS, so how many messages they take no longer
    depends on how fast this machine sends the burst.
    """
    step = HOSTS_PER_REQUEST
    queries = [
        f"hostname={','.join(names[start : start + step])}&myip={address_of(start)}"
        for start in range(0, len(names), step)
    ]
    reconciler = server.runtime.reconciler

    async def all_waiting() -> bool:  # `behind`: stored, not yet confirmed by DNS
        return reconciler.behind.issuperset(names)

    with ThreadPoolExecutor(1) as background:
        with held(primary):
            sending = background.submit(burst, server, queries, len(queries))
            queued = eventually(lambda: sending.done() or server.call(all_waiting), timeout=45)
        answers = sending.result()
    assert queued, "the burst's changes were not all queued within 45 s"
    return [line for answer in answers for line in answer.splitlines()]


def address_of(index: int) -> str:
    """The address :func:`burst_while_held` gives the ``index``-th of its names."""
    return f"198.51.100.{index // HOSTS_PER_REQUEST + 1}"


async def _add_hosts(admin: object, names: list[str]) -> None:
    for name in names:
        await admin.add_host(name, "alice")  # type: ignore[attr-defined]


def test_a_wrong_tsig_secret_is_dnserr_with_a_clear_log(
    tmp_path: Path, primary: Primary, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = tmp_path / "wrong.secret"
    wrong.write_text("c2VjcmV0LXRoYXQtaXMtbm90LXRoZS1zZXJ2ZXJzLWtleQ==\n")
    original = primary.secret_file
    primary.secret_file = wrong  # the config block nicupdate gets names the wrong secret
    with serving(tmp_path, primary) as server:
        primary.secret_file = original
        server.add_host(HOME, "alice")
        with caplog.at_level(logging.WARNING):
            answer = ddclient(server, f"hostname={HOME}&myip=203.0.113.7")
        assert answer.text == "dnserr\n"
        assert primary.query(HOME, "A") == []
        logged = "\n".join(r.getMessage() for r in caplog.records)
        assert "ddns-key" in logged and "secret" in logged
        assert "c2VjcmV0" not in logged
        listed = run_cli("--config", str(server.config_path), "host", "list").stdout
        assert "refused" in listed


@pytest.mark.parametrize("start", [running_bind, running_powerdns], ids=KINDS)
def test_a_zone_that_is_not_dynamic_is_dnserr(
    tmp_path: Path, start: Callable[..., object], caplog: pytest.LogCaptureFixture
) -> None:
    with start(tmp_path / "static", dynamic=False) as static:  # type: ignore[attr-defined]
        with serving(tmp_path, static) as server:
            server.add_host(HOME, "alice")
            with caplog.at_level(logging.WARNING):
                answer = ddclient(server, f"hostname={HOME}&myip=203.0.113.7")
            assert answer.text == "dnserr\n"
            assert static.query(HOME, "A") == []
            logged = "\n".join(r.getMessage() for r in caplog.records)
            assert "REFUSED" in logged or "NOTAUTH" in logged


def test_primary_down_then_up_loses_none_of_100_updates(tmp_path: Path, primary: Primary) -> None:
    with serving(tmp_path, primary, deadline=1.0) as server:
        names = [f"d{i}.{ZONE}" for i in range(100)]
        server.admin(lambda a: _add_hosts(a, names))
        primary.stop()

        answers = burst(server, [f"hostname={n}&myip=192.0.2.{i + 1}" for i, n in enumerate(names)])
        assert answers == ["911\n"] * 100
        server.call(server.runtime.rebuild)  # what the server writes within 10 s anyway
        listed = run_cli("--config", str(server.config_path), "host", "list").stdout
        row = next(line for line in listed.splitlines() if line.startswith(f"d7.{ZONE} "))
        # The answer the router got, what DNS lacks, and why.
        assert "911: stored, DNS pending" in row and "primary: A pending" in row
        assert "connection refused" in row or "did not answer" in row

        primary.start()  # nobody sends anything again
        assert eventually(
            lambda: all(primary.query(n, "A") == [f"192.0.2.{i + 1}"] for i, n in enumerate(names))
        ), "not every stored update reached the primary"
        # Now a client coming back with the same address is told nothing changed.
        assert ddclient(server, f"hostname={names[5]}&myip=192.0.2.6").text == "nochg 192.0.2.6\n"


def test_sigkill_with_changes_pending_then_restart_applies_them(
    tmp_path: Path, primary: Primary
) -> None:
    with_port = write_server_config(tmp_path, primary, deadline=0.5, http_port=_free_port())
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    setup = ["--config", str(with_port)]
    added = run_cli(*setup, "user", "add", "alice", "--password-stdin", stdin=ALICE[1] + "\n")
    assert added.returncode == 0, added.stderr
    names = [f"k{i}.{ZONE}" for i in range(10)]
    for name in names:
        assert run_cli(*setup, "host", "add", name, "--owner", "alice").returncode == 0
    primary.stop()
    server = _spawn(with_port, env)
    try:
        url = _url(with_port)
        for i, name in enumerate(names):
            answer = httpx.get(
                f"{url}/nic/update?hostname={name}&myip=192.0.2.{i + 1}", auth=ALICE, timeout=10
            )
            assert answer.text == "911\n"
    finally:
        server.send_signal(signal.SIGKILL)
        server.wait(10)
    primary.start()
    again = _spawn(with_port, env)
    try:
        assert eventually(
            lambda: all(primary.query(n, "A") == [f"192.0.2.{i + 1}"] for i, n in enumerate(names))
        ), "changes pending at the SIGKILL were not applied after the restart"
    finally:
        again.send_signal(signal.SIGTERM)
        assert again.wait(20) == 0


def test_a_record_edited_behind_our_back_is_restored(
    tmp_path: Path, primary: Primary, caplog: pytest.LogCaptureFixture
) -> None:
    with serving(tmp_path, primary, backend_extra="drift_check_interval = 0.5\n") as server:
        server.add_host(HOME, "alice")
        assert ddclient(server, f"hostname={HOME}&myip=203.0.113.7").text == "good 203.0.113.7\n"
        with caplog.at_level(logging.WARNING, logger="nicupdate.reconcile"):
            # The drift check may run, and restore the record, before this test could
            # look at the edit: the log line shows that it saw the edit and why it acted.
            primary.edit(HOME, "A", ["203.0.113.66"])
            drift = f"primary: drift: {HOME} A: DNS had 203.0.113.66, should have 203.0.113.7"
            assert eventually(lambda: any(drift in m for m in caplog.messages)), caplog.messages
        assert eventually(lambda: primary.query(HOME, "A") == ["203.0.113.7"])


def test_reconcile_command_repairs_and_reports(tmp_path: Path, primary: Primary) -> None:
    with serving(tmp_path, primary) as server:
        server.add_host(HOME, "alice")
        assert ddclient(server, f"hostname={HOME}&myip=203.0.113.7").text == "good 203.0.113.7\n"
        primary.edit(HOME, "A", ["203.0.113.66"])
        result = run_cli("--config", str(server.config_path), "reconcile")
        assert result.returncode == 0, result.stdout + result.stderr
        assert "primary: 1 names checked, 1 differed from DNS" in result.stdout
        assert (
            f"re-applied {HOME} A: DNS had 203.0.113.66, should have 203.0.113.7" in result.stdout
        )
        assert primary.query(HOME, "A") == ["203.0.113.7"]
        clean = run_cli("--config", str(server.config_path), "reconcile")
        assert (
            "0 differed" in clean.stdout and "all backends have the desired records" in clean.stdout
        )


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _url(config: Path) -> str:
    for line in config.read_text().splitlines():
        if line.startswith("listen = "):
            return "http://" + line.split('"')[1]
    raise AssertionError("no listen line")


def _spawn(config: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", "nicupdate_server", "--config", str(config), "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = _url(config)
    if not eventually(lambda: _answers(url), timeout=30):
        process.kill()
        process.wait()
        raise AssertionError("the server did not start")
    return process


def _answers(url: str) -> bool:
    try:
        return httpx.get(url + "/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
