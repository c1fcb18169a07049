"""nicupdate's built-in DNS as the primary of real BIND, Knot and NSD secondaries.

Each test runs a nicupdate server (``[dns.transfer]``: a TSIG key from tsig-keygen,
``allow``, NOTIFY to the secondary) and secondaries started from deploy/secondaries, does
what a user does (updates over HTTP, restarts, a wrong key, a new zone) and checks what
they would look at: the secondary's answers, its log, and nicupdate's log lines

    IXFR of ZONE to ADDR: serial A to B, N changes
    AXFR of ZONE to ADDR: serial A, the whole zone
    zone transfer refused from ADDR: ZONE: REASON
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
import signal
import socket
import sqlite3
import struct
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.tsig
import httpx
import pytest
from nicupdate_server.admin import Admin
from nicupdate_server.config import load_config
from nicupdate_server.db import create_engine, ensure_schema

import tests.server.process as process
from tests.server.process import ALICE, HOME, ServerProcess, free_port, server_process, wait_for
from tests.server.secondaries import (
    KINDS,
    Kind,
    Secondary,
    parse_transfers,
    running_secondary,
)

ZONE = "dyn.example.test"
CATALOG = "catalog.invalid"
KEY_NAME = "xfr-key"
ALGORITHM = "hmac-sha256"
SECRET = base64.b64encode(b"nicupdate-e2e-transfer-secret-32").decode()
WRONG_SECRET = base64.b64encode(b"nicupdate-e2e-not-the-secret-32!").decode()
# A change is served by the secondary this soon after its `good` (NOTIFY, then IXFR).
PROPAGATION = 1.0
# Catching up after a restart or a burst: the secondary's own SOA check, then a transfer.
CATCH_UP = 15.0
# named applies a catalog change at most every min-update-interval (5 s by default).
CATALOG_CHANGE = 5.0 + CATCH_UP
# Updates in flight at once in a burst (a few busy clients).
THREADS = 16  # clients sending at once: a burst is over in a few seconds
# A burst of 1000 changes may take at most this many transfers to reach a secondary.
FEW_CHANGES_PER_TRANSFER = 10  # a burst's changes per transfer, at least

TRANSFER_LINE = re.compile(
    r"nicupdate\.dns\.transfer: (?P<type>AXFR|IXFR) of (?P<zone>\S+) to (?P<to>\S+): "
    r"serial (?P<serial>\d+)(?: to (?P<new>\d+), (?P<changes>\d+) changes|, the whole zone)$",
    re.M,
)
REFUSED_LINE = re.compile(r"^.* refused from (?P<source>[^\s:]+): (?P<reason>.*)$", re.M)
# What each secondary logs when it receives a NOTIFY for ZONE.
NOTIFY_RECEIVED = {
    "bind": f"received notify for zone '{ZONE}'",
    "knot": f"[{ZONE}.] notify, incoming",
    "nsd": f"notify for {ZONE}. from",
}
# What each secondary logs when the primary refuses it: a bad signature, or REFUSED.
REFUSAL_SEEN = {
    ("bind", "key"): f"zone {ZONE}/IN: refresh: failure trying primary 127.0.0.1",
    ("knot", "key"): "failed (failed to verify TSIG)",
    ("nsd", "key"): f"zone {ZONE}, from 127.0.0.1@",
    ("bind", "address"): "failed while receiving responses: REFUSED",
    ("knot", "address"): "server responded with error 'REFUSED'",
    ("nsd", "address"): f"zone {ZONE} received error code REFUSED",
}


# -- nicupdate as the primary ----------------------------------------------------------


def key(secret: str = SECRET) -> dns.tsig.Key:
    return dns.tsig.Key(KEY_NAME, secret, ALGORITHM)


def transfer_settings(
    tmp_path: Path,
    notify: Iterable[int],
    *,
    allow: str = "127.0.0.1/32",
    catalog: str | None = None,
    zones: Iterable[str] = (),
) -> str:
    """``[dns.transfer]`` as a user writes it (the key file is tsig-keygen's output),
    and more builtin ``zones``."""
    key_file = tmp_path / "xfr.key"
    key_file.write_text(
        f'key "{KEY_NAME}" {{\n\talgorithm {ALGORITHM};\n\tsecret "{SECRET}";\n}};\n'
    )
    targets = ", ".join(f'"127.0.0.1:{port}"' for port in notify)
    text = (
        f'[dns.transfer]\ntsig_key_file = "{key_file}"\nallow = ["{allow}"]\nnotify = [{targets}]\n'
    )
    if catalog is not None:
        text += f'catalog = "{catalog}"\n'
    return text + "".join(zone_table(zone) for zone in zones)


def zone_table(name: str) -> str:
    return f'\n[[zones]]\nname = "{name}"\nbackends = ["builtin"]\n'


def prepare(directory: Path, names: Sequence[str] = ()) -> None:
    """A new database in ``directory`` with alice and HOME, added as the CLI adds them
    (in this process: two CLI runs would cost two seconds a test), and alice's hosts
    ``names`` (inserted at once, as a database restored from a backup holds them)."""
    directory.mkdir()
    database = directory / "state.db"
    seed = directory / "seed.toml"  # server_process writes nicupdate.toml, with its ports
    seed.write_text(
        f'[server]\ndatabase = "sqlite+aiosqlite:///{database}"\n\n'
        f'[[zones]]\nname = "{ZONE}"\nbackends = ["builtin"]\n'
        'nameserver_addresses = ["127.0.0.1"]\n'
    )

    async def add() -> None:
        config = load_config(seed, environ={})
        url = config.server.database_url()
        engine = create_engine(url)
        try:
            await ensure_schema(engine, url)
            admin = Admin(engine, config)
            await admin.add_user(*ALICE)
            await admin.add_host(HOME, ALICE[0])
        finally:
            await engine.dispose()

    asyncio.run(add())
    with contextlib.closing(sqlite3.connect(database)) as db, db:
        db.executemany(
            "INSERT INTO hosts (fqdn, owner_id, token_digest, created_at, nochg_count) "
            "SELECT ?, id, NULL, '2026-01-01 00:00:00', 0 FROM users WHERE name = ?",
            [(name, ALICE[0]) for name in names],
        )


@contextlib.contextmanager
def nicupdate(tmp_path: Path, tables: str, names: Sequence[str] = ()) -> Iterator[ServerProcess]:
    """A nicupdate server in ``tmp_path``/nicupdate with ``tables`` and alice's hosts."""
    directory = tmp_path / "nicupdate"
    prepare(directory, names)
    with server_process(directory, tables=tables, accounts=False) as server:
        yield server


@contextlib.contextmanager
def primary_and_secondary(
    kind: Kind, tmp_path: Path, names: Sequence[str] = ()
) -> Iterator[tuple[ServerProcess, Secondary]]:
    """nicupdate and a ``kind`` secondary of ZONE that it notifies, once the secondary
    serves the zone."""
    port = free_port()
    with (
        nicupdate(tmp_path, transfer_settings(tmp_path, [port]), names) as server,
        running_secondary(kind, tmp_path, server.dns_port, [ZONE], key(), port=port) as secondary,
    ):
        secondary.wait_serial(ZONE, serial(server.dns_port))
        yield server, secondary


def update(
    server: ServerProcess, host: str, address: str, client: httpx.Client | None = None
) -> str:
    """A curl-like update of ``host`` to ``address``; nicupdate's answer line."""
    url = f"{server.url}/nic/update?hostname={host}&myip={address}"
    if client is None:
        return httpx.get(url, auth=ALICE, timeout=30).text.strip()
    return client.get(url).text.strip()


@contextlib.contextmanager
def burst(server: ServerProcess, changes: Sequence[tuple[str, str]]) -> Iterator[list[Future[str]]]:
    """Send ``changes`` (host, address) from THREADS clients at once: the answers to
    come, in order. Leaving the block waits for all of them."""
    local = threading.local()
    clients: list[httpx.Client] = []

    def send(host: str, address: str) -> str:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = httpx.Client(auth=ALICE, timeout=30)
            clients.append(client)
        return update(server, host, address, client)

    try:
        with ThreadPoolExecutor(THREADS) as pool:
            yield [pool.submit(send, host, address) for host, address in changes]
    finally:
        for client in clients:
            client.close()


def answers(futures: Iterable[Future[str]]) -> list[str]:
    return [future.result(timeout=60) for future in futures]


def hosts(count: int) -> list[str]:
    return [f"h{n:04d}.{ZONE}" for n in range(count)]


def address(n: int, round_: int = 0) -> str:
    """Host ``n``'s address in round ``round_`` of updates (n < 1000, round_ < 64)."""
    return f"198.18.{round_ * 4 + n // 250}.{n % 250 + 1}"


def sent(log: str) -> list[tuple[str, str, str, str, str | None]]:
    """The transfers in nicupdate's ``log``, oldest first: (type, zone, to, serial, new
    serial or None for the whole zone)."""
    return [
        (m["type"], m["zone"], m["to"], m["serial"], m["new"]) for m in TRANSFER_LINE.finditer(log)
    ]


def refusals(log: str) -> list[re.Match[str]]:
    return list(REFUSED_LINE.finditer(log))


# -- asking the DNS ----------------------------------------------------------------------


def lookup(port: int, names: Iterable[str], rdtype: str = "A") -> dict[str, list[str]]:
    """What the DNS server on 127.0.0.1:``port`` answers for each of ``names``, as
    `dig +short` prints it (the rcode instead, when not NOERROR)."""
    found: dict[str, list[str]] = {}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for name in names:
            query = dns.message.make_query(name, rdtype)
            reply = dns.query.udp(query, "127.0.0.1", port=port, timeout=2, sock=sock)
            if reply.rcode() != dns.rcode.NOERROR:
                found[name] = [dns.rcode.to_text(reply.rcode())]
            else:
                found[name] = sorted(rd.to_text() for rrset in reply.answer for rd in rrset)
    return found


def serial(port: int, zone: str = ZONE) -> int:
    """The serial of ``zone`` that the DNS server on 127.0.0.1:``port`` answers with."""
    reply = dns.query.udp(dns.message.make_query(zone, "SOA"), "127.0.0.1", port=port, timeout=2)
    assert reply.rcode() == dns.rcode.NOERROR and reply.answer, f"no SOA for {zone}:\n{reply}"
    return int(reply.answer[0][0].serial)


def serves(port: int, zone: str) -> bool:
    reply = dns.query.udp(dns.message.make_query(zone, "SOA"), "127.0.0.1", port=port, timeout=2)
    return reply.rcode() == dns.rcode.NOERROR and bool(reply.answer)


def transfer_query(port: int, signing: dns.tsig.Key) -> dns.message.Message:
    """`dig axfr ZONE -y KEY` to 127.0.0.1:``port``: the first reply (TSIG unchecked)."""
    query = dns.message.make_query(ZONE, dns.rdatatype.AXFR)
    query.use_tsig(signing)
    wire = query.to_wire()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(struct.pack("!H", len(wire)) + wire)
        size = struct.unpack("!H", sock.recv(2, socket.MSG_WAITALL))[0]
        return dns.message.from_wire(sock.recv(size, socket.MSG_WAITALL), keyring=False)


# -- 1. an update reaches the secondary at once, by IXFR --------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_an_update_is_served_by_the_secondary_within_a_second_by_ixfr(
    kind: Kind, tmp_path: Path
) -> None:
    with primary_and_secondary(kind, tmp_path) as (server, secondary):
        before = serial(server.dns_port)
        # In touch: the secondary has had nicupdate's NOTIFY of the zone at start-up.
        wait_for(lambda: NOTIFY_RECEIVED[kind] in secondary.log_text(), what="a NOTIFY")
        assert lookup(secondary.port, [HOME]) == {HOME: ["NXDOMAIN"]}  # no address yet

        assert update(server, HOME, "192.0.2.44") == "good 192.0.2.44"
        wait_for(
            lambda: lookup(secondary.port, [HOME]) == {HOME: ["192.0.2.44"]},
            timeout=PROPAGATION,
            what=f"{kind} to serve {HOME} 192.0.2.44",
        )

        after = serial(server.dns_port)
        assert secondary.serial(ZONE) == after > before
        assert secondary.transfers(ZONE) == ["AXFR", "IXFR"]
        assert sent(server.text()) == [
            ("AXFR", ZONE, "127.0.0.1", str(before), None),
            ("IXFR", ZONE, "127.0.0.1", str(before), str(after)),
        ]


@pytest.mark.parametrize("kind", KINDS)
def test_a_secondary_that_comes_up_late_gets_the_next_update_within_a_second(
    kind: Kind, tmp_path: Path
) -> None:
    """The secondary was down when nicupdate started (its NOTIFYs went unanswered),
    then came up and transferred the zone: the next update is fetched at once (NSD
    then waits up to a second more before it serves a transfer that comes within a
    second of its last one: xfrd-reload-timeout)."""
    port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as down:
        down.bind(("127.0.0.1", port))  # the secondary's port, where nobody answers yet
        down.settimeout(10)
        with nicupdate(tmp_path, transfer_settings(tmp_path, [port])) as server:
            down.recvfrom(4096)  # the NOTIFY at start-up
            down.recvfrom(4096)  # and the first try again, a second later
            down.close()
            with running_secondary(
                kind, tmp_path, server.dns_port, [ZONE], key(), port=port
            ) as secondary:
                secondary.wait_serial(ZONE, serial(server.dns_port))

                before = serial(server.dns_port)
                assert update(server, HOME, "192.0.2.45") == "good 192.0.2.45"
                after = serial(server.dns_port)
                fetched = ("IXFR", ZONE, "127.0.0.1", str(before), str(after))
                wait_for(
                    lambda: fetched in sent(server.text()),
                    timeout=PROPAGATION,
                    what=f"{kind} to fetch the change (an IXFR line in nicupdate's log)",
                )
                wait_for(
                    lambda: lookup(secondary.port, [HOME]) == {HOME: ["192.0.2.45"]},
                    timeout=CATCH_UP,
                    what=f"{kind} to serve {HOME} 192.0.2.45",
                )


# -- 2. a burst of updates: few transfers, the same records ------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_a_burst_of_1000_updates_reaches_the_secondary_in_few_transfers(
    kind: Kind, tmp_path: Path
) -> None:
    names = hosts(1000)
    with primary_and_secondary(kind, tmp_path, names) as (server, secondary):
        sent_before = len(sent(server.text()))
        taken_before = len(secondary.transfers(ZONE))

        started = time.monotonic()
        with burst(server, [(name, address(n)) for n, name in enumerate(names)]) as futures:
            results = answers(futures)
        took = time.monotonic() - started
        assert results == [f"good {address(n)}" for n in range(len(names))]
        secondary.wait_serial(ZONE, serial(server.dns_port), timeout=CATCH_UP)

        made = sent(server.text())[sent_before:]
        taken = secondary.transfers(ZONE)[taken_before:]
        assert {(zone, to) for _, zone, to, *_ in made} == {(ZONE, "127.0.0.1")}
        # NOTIFY leaves at most every INTERVAL: far fewer transfers than changes.
        few = len(names) / FEW_CHANGES_PER_TRANSFER
        assert 1 <= len(made) <= few, (
            f"1000 updates in {took:.1f} s reached {kind} in {len(made)} transfers "
            f"({len(taken)} in its log)"
        )
        assert 1 <= len(taken) <= few
        served = lookup(server.dns_port, names)
        assert served == {name: [address(n)] for n, name in enumerate(names)}
        assert lookup(secondary.port, names) == served


# -- 3. a secondary that was down catches up --------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_a_secondary_stopped_during_500_updates_catches_up_when_started(
    kind: Kind, tmp_path: Path
) -> None:
    names = hosts(100)
    changes = [(name, address(n, round_)) for round_ in range(5) for n, name in enumerate(names)]
    with primary_and_secondary(kind, tmp_path, names) as (server, secondary):
        with burst(server, changes) as futures:
            wait_for(lambda: sum(f.done() for f in futures) >= 100, what="100 updates")
            secondary.stop()
            stopped_at = serial(server.dns_port)
            assert all(answer.startswith("good ") for answer in answers(futures))
        final = serial(server.dns_port)
        assert final > stopped_at  # it missed changes
        assert lookup(server.dns_port, names) == {
            name: [address(n, 4)] for n, name in enumerate(names)
        }
        log_before = len(secondary.log_text())
        sent_before = len(sent(server.text()))

        secondary.start()
        assert secondary.wait_serial(ZONE, final, timeout=CATCH_UP) == final
        assert lookup(secondary.port, names) == lookup(server.dns_port, names)
        caught_up = sent(server.text())[sent_before:]
        assert caught_up, "nicupdate logged no transfer after the secondary started again"
        assert {(zone, to) for _, zone, to, *_ in caught_up} == {(ZONE, "127.0.0.1")}
        since = secondary.log_text()[log_before:]
        assert parse_transfers(kind, since, ZONE), f"{kind} logged no transfer:\n{since}"


# -- 4. nicupdate restarted --------------------------------------------------------------


class SerialWatch:
    """Asks the secondary for ZONE's serial every 20 ms (for 2 minutes at most) and
    keeps each serial it saw, in order."""

    def __init__(self, secondary: Secondary) -> None:
        self.secondary = secondary
        self.seen: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + 120
        while not self._stop.is_set() and time.monotonic() < deadline:
            current = self.secondary.serial(ZONE)
            if current is not None and (not self.seen or self.seen[-1] != current):
                self.seen.append(current)
            self._stop.wait(0.02)

    def __enter__(self) -> SerialWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


@pytest.mark.parametrize("kind", KINDS)
def test_the_secondary_stays_in_sync_across_a_restart_of_nicupdate(
    kind: Kind, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = hosts(20)
    port = free_port()
    tables = transfer_settings(tmp_path, [port])
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(nicupdate(tmp_path, tables, names))
        secondary = stack.enter_context(
            running_secondary(kind, tmp_path, server.dns_port, [ZONE], key(), port=port)
        )
        watch = stack.enter_context(SerialWatch(secondary))
        for n, name in enumerate(names):
            assert update(server, name, address(n)) == f"good {address(n)}"
        before = secondary.wait_serial(ZONE, serial(server.dns_port), timeout=CATCH_UP)
        assert lookup(secondary.port, names) == lookup(server.dns_port, names)

        # Restarted as systemd restarts it: the same configuration, database and ports
        # (server_process takes free ports, and the secondary knows the DNS port).
        assert server.stop() == 0
        assert secondary.serial(ZONE) == before  # it serves on while nicupdate is down
        ports = iter([server.http_port, server.dns_port])
        monkeypatch.setattr(process, "free_port", lambda: next(ports))
        again = stack.enter_context(
            server_process(server.config.parent, tables=tables, accounts=False)
        )
        assert again.dns_port == server.dns_port
        assert serial(again.dns_port) == before

        assert update(again, names[0], "192.0.2.99") == "good 192.0.2.99"
        after = serial(again.dns_port)
        wait_for(
            lambda: lookup(secondary.port, [names[0]]) == {names[0]: ["192.0.2.99"]},
            timeout=CATCH_UP,
            what=f"{kind} to serve the update made after the restart",
        )
        assert secondary.serial(ZONE) == after > before
        assert lookup(secondary.port, names) == lookup(again.dns_port, names)
        # The change log survived the restart: the change went out as an IXFR. (NSD may
        # take the whole zone first, when it failed to apply several IXFRs at once.)
        assert sent(again.text())[-1] == ("IXFR", ZONE, "127.0.0.1", str(before), str(after))
    assert watch.seen == sorted(watch.seen), f"the serial went back: {watch.seen}"
    assert watch.seen[-1] == after


# -- 5. secondaries that may not transfer ------------------------------------------------


@pytest.mark.parametrize("problem", ["key", "address"])
@pytest.mark.parametrize("kind", KINDS)
def test_a_secondary_with_a_wrong_key_or_address_gets_nothing_and_one_log_line(
    kind: Kind, problem: str, tmp_path: Path
) -> None:
    port = free_port()
    # The secondary asks from 127.0.0.1: with a wrong secret, or not in `allow`.
    signing = key(WRONG_SECRET) if problem == "key" else key()
    allow = "127.0.0.2/32" if problem == "address" else "127.0.0.1/32"
    with (
        nicupdate(tmp_path, transfer_settings(tmp_path, [port], allow=allow)) as server,
        running_secondary(kind, tmp_path, server.dns_port, [ZONE], signing, port=port) as secondary,
    ):
        assert update(server, HOME, "192.0.2.46") == "good 192.0.2.46"
        seen = REFUSAL_SEEN[(kind, problem)]
        wait_for(lambda: seen in secondary.log_text(), what=f"{kind} to log {seen!r}")

        assert secondary.serial(ZONE) is None
        assert secondary.query(HOME, "A").rcode() == dns.rcode.SERVFAIL
        assert secondary.transfers() == []
        log = server.text()
        assert sent(log) == []
        lines = refusals(log)
        assert len(lines) == 1, f"refusals logged: {[m.group(0) for m in lines]}\n{log}"
        assert lines[0]["source"] == "127.0.0.1"
        reason = "TSIG" if problem == "key" else "not in the allowed networks"
        assert ZONE in lines[0]["reason"] and reason in lines[0]["reason"], lines[0].group(0)
        assert SECRET not in log and WRONG_SECRET not in log

        # What `dig axfr` with the secondary's key gets.
        refused = transfer_query(server.dns_port, signing)
        assert refused.rcode() == (dns.rcode.NOTAUTH if problem == "key" else dns.rcode.REFUSED)
        assert refused.answer == []
        assert len(refusals(server.text())) == 1  # repeats are counted, not logged


# -- 6. the catalog zone -----------------------------------------------------------------


def test_bind_and_knot_provision_every_builtin_zone_from_the_catalog(tmp_path: Path) -> None:
    ports: dict[Kind, int] = {"bind": free_port(), "knot": free_port()}
    tables = transfer_settings(
        tmp_path, ports.values(), catalog=CATALOG, zones=["one.example.test"]
    )
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(nicupdate(tmp_path, tables))
        secondaries = [
            stack.enter_context(
                running_secondary(
                    kind, tmp_path, server.dns_port, [ZONE], key(), catalog=CATALOG, port=port
                )
            )
            for kind, port in ports.items()
        ]
        # Only ZONE is in their configuration: one.example.test comes from the catalog.
        for secondary in secondaries:
            for zone in (ZONE, "one.example.test"):
                secondary.wait_serial(zone, serial(server.dns_port, zone), timeout=CATCH_UP)
            assert secondary.serial("two.example.test") is None

        # A new zone in nicupdate's configuration, and `systemctl reload nicupdate`.
        server.config.write_text(server.config.read_text() + zone_table("two.example.test"))
        server.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: serves(server.dns_port, "two.example.test"), what="the new zone")
        new = serial(server.dns_port, "two.example.test")
        for secondary in secondaries:
            assert secondary.wait_serial("two.example.test", new, timeout=CATALOG_CHANGE) == new
            soa = secondary.query("two.example.test", "SOA")
            assert [rd.mname.to_text() for rd in soa.answer[0]] == ["ns.two.example.test."]
        assert ("AXFR", "two.example.test") in {
            (what, zone) for what, zone, *_ in sent(server.text())
        }
