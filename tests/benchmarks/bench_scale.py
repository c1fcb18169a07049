"""How the server scales with its number of hosts: start-up, memory, admin changes.

Run: ``python tests/benchmarks/bench_scale.py [--hosts 10000,100000,1000000] [--quick]``

It first starts the server with no host (start-up time and idle memory: the base of the
memory per host). Then, for each host count N (default 10,000 and 100,000), on free
127.0.0.1 ports and in a temporary directory, it:

1. builds a database of N hosts: the schema and the account ``bench`` through the CLI
   (``user add``), then the hosts ``h0000000.dyn.example.test ...``, each with one A
   record and a token, inserted in bulk (SQLAlchemy Core, one transaction, executemany
   in chunks);
2. starts ``python -m nicupdate_server --config PATH serve`` and times it from the
   launch to the first 200 from /healthz, then reads its resident memory when idle;
3. sends one update for ``h0000000`` (``good``), then runs ``wrk -t1 -c16 --latency``
   sending ``nochg`` for it while the CLI adds K hosts, one after the other
   (``host add NEWHOST --owner bench``; K = 10 with ``--quick``, 20 otherwise). After
   each add, from the moment the CLI starts, it polls the running server every 5 ms with
   an update for the new host (``nohost`` until the server has it) and times from the
   CLI's commit (its change-log row's time) to when the server knew the host (the update
   that got ``good`` was sent: how long the change took to reach the server) and to that
   ``good`` (which adds the update's own commit and DNS confirmation, under wrk's load).
   wrk is stopped (SIGINT) when the last add is served;
4. runs wrk the same way for as long again with no admin change: the reference;
5. prints one table (start-up, idle memory and its growth per host over the smallest N,
   for the smallest N over no host; host add known and good, p50 and max; nochg p99 and max
   latency with and without admin changes) and the targets of issue 12 for the largest
   N: start-up <= 15 s, idle memory <= 600 MB at 1,000,000 hosts (for smaller N,
   extrapolated per host), host add known p50 <= 100 ms, no request delayed more than 20 ms
   by an admin change (max latency with changes minus the reference's).

Then, on a database with one host, it starts ``serve --workers 1`` and ``--workers 2``
in turn and prints the ``nochg`` req/s of each (``wrk -t1 -c64``, 10 s; 5 s with
``--quick``) and their ratio. Last, it starts PostgreSQL (Debian's, as the tests do) and
three instances on it, and times 10 CLI ``host add`` until every instance answers for
the host, and 10 updates through one instance until the two others answer ``nochg``
for the new address (all polled every 5 ms).

Load comes from ``wrk`` (``apt-get install wrk``). Timings are printed, never asserted:
the exit status is non-zero only when something failed to run or answered wrongly.
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import contextlib
import math
import re
import sqlite3
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.benchmarks.bench_update import (
    CONFIG,
    PASSWORD,
    USER,
    ZONE,
    BenchError,
    Processes,
    child_env,
    compile_server,
    free_port,
    http_get,
    latency_ms,
    met,
    missing_requirements,
    rss_mb,
    tail,
    work_directory,
)

DEFAULT_HOSTS = (10_000, 100_000)
CHANGES = 20
QUICK_CHANGES = 10
CONNECTIONS = 16
NOCHG_HOST = f"h0000000.{ZONE}"
NOCHG_ADDRESS = "203.0.113.7"
NEW_ADDRESS = "203.0.113.9"
CHUNK = 50_000  # rows per executemany
POLL_INTERVAL = 0.005
STARTUP_TIMEOUT = 300.0  # a start-up slower than this is a failure, not a figure
CHANGE_TIMEOUT = 120.0  # the same for one host add to be served
CLI_TIMEOUT = 120.0
SETTLE_SECONDS = 1.0  # after start-up, before the memory is read
PAUSE_SECONDS = 0.2  # between one host add served and the next
WARMUP_SECONDS = 1
MIN_DURATION = 3
WRK_TIMEOUT = 300

WORKER_COUNTS = (1, 2)
WORKER_CONNECTIONS = 64
WORKER_SECONDS = 10
QUICK_WORKER_SECONDS = 5

TARGET_STARTUP_S = 15.0
TARGET_RSS_MB = 600.0
TARGET_RSS_HOSTS = 1_000_000
TARGET_ADD_MS = 100.0
TARGET_DELAY_MS = 20.0


def host_name(index: int) -> str:
    return f"h{index:07d}.{ZONE}"


def host_address(index: int) -> str:
    """The A record the bulk insert gives host ``index`` (never NOCHG_ADDRESS)."""
    return f"10.{(index >> 16) & 255}.{(index >> 8) & 255}.{index & 255}"


@dataclass
class Latency:
    """What one wrk run measured."""

    requests: int
    seconds: float
    p99_ms: float | None
    max_ms: float | None
    non_2xx: int
    socket_errors: str


@dataclass
class ScaleResult:
    hosts: int
    insert_s: float
    startup_s: float
    idle_mb: float
    add_ms: list[float]  # CLI exit -> the server knew the host (no longer `nohost`)
    good_ms: list[float]  # CLI exit -> that update's `good` received
    cli_s: list[float]  # how long each `host add` ran
    changes: Latency
    reference: Latency


def parse_latency(output: str, seconds: float) -> Latency:
    count = re.search(r"^\s*(\d+) requests in ", output, re.M)
    stats = re.search(r"^\s+Latency\s+(\S+)\s+(\S+)\s+(\S+)", output, re.M)
    if not count or not stats:
        raise BenchError(f"cannot read wrk's output:\n{output}")
    p99 = re.search(r"^\s+99(?:\.0+)?%\s+(\S+)", output, re.M)
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    errors = re.search(r"Socket errors:\s*(.+)", output)
    return Latency(
        requests=int(count.group(1)),
        seconds=seconds,
        p99_ms=latency_ms(p99.group(1)) if p99 else None,
        max_ms=latency_ms(stats.group(3)),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=errors.group(1).strip() if errors else "",
    )


def wrk_command(url: str, auth: str, seconds: int, connections: int = CONNECTIONS) -> list[str]:
    return [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{seconds}s",
        # A request kept waiting is measured, however long, not counted as an error.
        "--timeout",
        f"{WRK_TIMEOUT}s",
        "--latency",
        "-H",
        f"Authorization: {auth}",
        url,
    ]


def run_wrk(url: str, auth: str, seconds: int, connections: int = CONNECTIONS) -> Latency:
    command = wrk_command(url, auth, seconds, connections)
    started = time.monotonic()
    try:
        proc = subprocess.run(
            command, capture_output=True, text=True, timeout=seconds + 60, check=False
        )
    except subprocess.TimeoutExpired:
        raise BenchError(f"wrk did not finish: {' '.join(command)}") from None
    if proc.returncode != 0:
        raise BenchError(f"wrk failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout}")
    return parse_latency(proc.stdout, time.monotonic() - started)


def cli(config: Path, work: Path, *args: str, stdin: str | None = None) -> float:
    """Run ``python -m nicupdate_server --config CONFIG ARGS``; how long it ran (s)."""
    command = [sys.executable, "-m", "nicupdate_server", "--config", str(config), *args]
    started = time.monotonic()
    try:
        proc = subprocess.run(
            command,
            input=stdin,
            capture_output=True,
            text=True,
            env=child_env(),
            cwd=work,
            timeout=CLI_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise BenchError(f"{' '.join(args)} did not finish in {CLI_TIMEOUT:.0f} s") from None
    if proc.returncode != 0:
        raise BenchError(f"{' '.join(args)} failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return time.monotonic() - started


def insert_hosts(database: Path, count: int) -> float:
    """Add ``count`` hosts of ``bench`` with one A record and a token each (as real hosts
    have), in one transaction; the time it took (s)."""
    from nicupdate_server.auth import token_digest
    from nicupdate_server.tables import hosts, records, users
    from sqlalchemy import create_engine, func, select

    started = time.monotonic()
    engine = create_engine(f"sqlite:///{database}")
    try:
        with engine.begin() as conn:
            owner = conn.scalar(select(users.c.id).where(users.c.name == USER))
            if owner is None:
                raise BenchError(f"the CLI created no account {USER!r}")
            first = (conn.scalar(select(func.max(hosts.c.id))) or 0) + 1
            now = datetime.now(UTC)
            for start in range(0, count, CHUNK):
                indices = range(start, min(start + CHUNK, count))
                conn.execute(
                    hosts.insert(),
                    [
                        {
                            "id": first + i,
                            "fqdn": host_name(i),
                            "owner_id": owner,
                            "token_digest": token_digest(f"bench-{i}"),
                            "created_at": now,
                            "nochg_count": 0,
                        }
                        for i in indices
                    ],
                )
                conn.execute(
                    records.insert(),
                    [
                        {"host_id": first + i, "rtype": "A", "address": host_address(i)}
                        for i in indices
                    ],
                )
    finally:
        engine.dispose()
    return time.monotonic() - started


def wait_healthy(server: subprocess.Popen[bytes], url: str, log: Path) -> None:
    """Return at the server's first 200 from ``url``, polled every 10 ms."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise BenchError(f"the server exited ({server.returncode}) at start-up:\n{tail(log)}")
        try:
            status, _ = http_get(url, timeout=1.0)
        except OSError:
            status = 0
        if status == 200:
            return
        time.sleep(0.01)
    raise BenchError(f"the server did not answer {url} within {STARTUP_TIMEOUT:.0f} s")


def check_update(url: str, auth: str, expected: str) -> None:
    status, body = http_get(url, auth)
    if status != 200 or body.strip() != expected:
        raise BenchError(f"{url} answered {status} {body.strip()!r}, not {expected!r}")


def commit_time(database: Path, fqdn: str) -> float:
    """When (time.time()) the CLI committed ``host add FQDN``: its change-log row's time."""
    with contextlib.closing(sqlite3.connect(database)) as db:
        row = db.execute(
            "SELECT at FROM changes WHERE kind = 'host.added' AND subject = ?", (fqdn,)
        ).fetchone()
    if row is None:
        raise BenchError(f"no change-log row for `host add {fqdn}`")
    return datetime.fromisoformat(row[0]).replace(tzinfo=UTC).timestamp()


def wait_for_host(
    base: str, auth: str, fqdn: str, log: Path, *, others: bool = False
) -> tuple[float, float]:
    """Poll an update for ``fqdn`` every 5 ms until it answers ``good`` (``nohost`` until
    the server has the host): when (time.time()) the request that got it was sent (the
    server knew the host by then), and when its answer came (which adds the update's own
    commit and DNS confirmation). ``others``: other processes update the host too, so
    ``nochg`` counts as well."""
    url = f"{base}/nic/update?hostname={fqdn}&myip={NEW_ADDRESS}"
    wanted = {f"good {NEW_ADDRESS}"} | ({f"nochg {NEW_ADDRESS}"} if others else set())
    deadline = time.monotonic() + CHANGE_TIMEOUT
    while time.monotonic() < deadline:
        sent = time.time()
        try:  # a server busy reloading may keep a request for seconds: part of the delay
            status, body = http_get(url, auth, timeout=max(1.0, deadline - time.monotonic()))
        except OSError:
            status, body = 0, "nohost"  # the server was not reached: poll again
        answer = body.strip()
        if status == 200 and answer in wanted:
            return sent, time.time()
        if answer != "nohost":
            raise BenchError(f"an update for the new host {fqdn} answered {status} {answer!r}")
        time.sleep(POLL_INTERVAL)
    raise BenchError(
        f"the server did not answer for the new host {fqdn} within {CHANGE_TIMEOUT:.0f} s "
        f"of `host add`; its log ends:\n{tail(log)}"
    )


def prepare(count: int, work: Path) -> tuple[Path, str, float]:
    """A configuration and a database with ``count`` hosts: its path, the server's base
    URL and how long the hosts took to insert (s)."""
    http_port = free_port()
    dns_port = free_port()
    while dns_port == http_port:
        dns_port = free_port()
    database = work / "scale.db"
    config = work / "nicupdate.toml"
    config.write_text(
        # bench_update's, with metrics on (the default)
        CONFIG.format(
            http_port=http_port, dns_port=dns_port, database=database, zone=ZONE, metrics="true"
        )
    )
    cli(config, work, "user", "add", USER, "--password-stdin", stdin=PASSWORD + "\n")
    insert_s = insert_hosts(database, count) if count else 0.0
    if count:
        print(f"{count:,} hosts: inserted in {insert_s:.1f} s", flush=True)
    return config, f"http://127.0.0.1:{http_port}", insert_s


def start_server(
    processes: Processes, config: Path, base: str, work: Path, name: str = "nicupdate"
) -> tuple[subprocess.Popen[bytes], float, float]:
    """Start the server (``work``: where ``processes`` keeps the logs): it, its start-up
    time (s) and its idle memory (MB)."""
    command = [sys.executable, "-m", "nicupdate_server", "--config", str(config), "serve"]
    started = time.monotonic()
    server = processes.start(name, command)
    wait_healthy(server, f"{base}/healthz", work / f"{name}.log")
    startup_s = time.monotonic() - started
    time.sleep(SETTLE_SECONDS)
    return server, startup_s, rss_mb(server.pid)


def measure_empty(work: Path) -> tuple[float, float]:
    """Start-up time (s) and idle memory (MB) of the server with no host: the base that
    the memory per host is counted from when one host count is measured."""
    config, base, _ = prepare(0, work)
    processes = Processes(work)
    try:
        _, startup_s, idle_mb = start_server(processes, config, base, work)
        processes.stop("nicupdate")
    finally:
        processes.stop_all()
    print(f"no hosts: up in {startup_s:.2f} s, {idle_mb:.1f} MB idle", flush=True)
    return startup_s, idle_mb


def measure(count: int, changes: int, work: Path) -> ScaleResult:
    """Build, start and measure one server with ``count`` hosts."""
    config, base, insert_s = prepare(count, work)
    auth = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    processes = Processes(work)
    try:
        server, startup_s, idle_mb = start_server(processes, config, base, work)
        print(f"{count:,} hosts: up in {startup_s:.2f} s, {idle_mb:.1f} MB idle", flush=True)

        url = f"{base}/nic/update?hostname={NOCHG_HOST}&myip={NOCHG_ADDRESS}"
        check_update(url, auth, f"good {NOCHG_ADDRESS}")
        check_update(url, auth, f"nochg {NOCHG_ADDRESS}")
        run_wrk(url, auth, WARMUP_SECONDS)

        # wrk for as long as the changes take (stopped by SIGINT), at most this long.
        longest = changes * (CHANGE_TIMEOUT + CLI_TIMEOUT)
        print(f"{count:,} hosts: {changes} host adds under wrk ...", flush=True)
        wrk_started = time.monotonic()
        wrk = processes.start("wrk-changes", wrk_command(url, auth, math.ceil(longest)))
        time.sleep(1.0)  # wrk's connections are up and answered before the first change
        add_ms: list[float] = []
        good_ms: list[float] = []
        cli_s: list[float] = []
        database = work / "scale.db"
        for number in range(changes):
            fqdn = f"new{number:03d}.{ZONE}"
            with concurrent.futures.ThreadPoolExecutor(1) as pool:  # polls from the start
                poller = pool.submit(wait_for_host, base, auth, fqdn, work / "nicupdate.log")
                cli_s.append(cli(config, work, "host", "add", fqdn, "--owner", USER))
                known, good = poller.result()
            committed = commit_time(database, fqdn)
            add_ms.append(1000 * max(0.0, known - committed))
            good_ms.append(1000 * (good - committed))
            if wrk.poll() is not None:
                raise BenchError(f"wrk stopped during the changes ({wrk.returncode})")
            time.sleep(PAUSE_SECONDS)
        processes.stop("wrk-changes")  # SIGINT: wrk prints its figures and exits
        seconds = time.monotonic() - wrk_started
        if wrk.returncode != 0:
            raise BenchError(f"wrk failed ({wrk.returncode}):\n{tail(work / 'wrk-changes.log')}")
        with_changes = parse_latency((work / "wrk-changes.log").read_text(), seconds)

        duration = max(MIN_DURATION, math.ceil(seconds))
        print(f"{count:,} hosts: reference, {duration} s of wrk ...", flush=True)
        reference = run_wrk(url, auth, duration)
        check_update(url, auth, f"nochg {NOCHG_ADDRESS}")
        if server.poll() is not None:
            raise BenchError(f"the server exited during the run ({server.returncode})")
        processes.stop("nicupdate")
    finally:
        processes.stop_all()
    return ScaleResult(
        count, insert_s, startup_s, idle_mb, add_ms, good_ms, cli_s, with_changes, reference
    )


@dataclass
class WorkersResult:
    workers: int
    requests: int
    seconds: float
    p99_ms: float | None

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


def measure_workers(work: Path, seconds: int) -> list[WorkersResult]:
    """nochg req/s for one host with ``serve --workers N``, N = 1 and 2, on the same
    database (wrk -t1 -c64; each server started afresh)."""
    config, base, _ = prepare(0, work)
    auth = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    cli(config, work, "host", "add", NOCHG_HOST, "--owner", USER)
    url = f"{base}/nic/update?hostname={NOCHG_HOST}&myip={NOCHG_ADDRESS}"
    results = []
    for workers in WORKER_COUNTS:
        text = config.read_text()
        config.write_text(
            re.sub(r"(?m)^workers = \d+\n", "", text).replace(
                "[server]\n", f"[server]\nworkers = {workers}\n", 1
            )
        )
        processes = Processes(work)
        try:
            start_server(processes, config, base, work)
            check_update(url, auth, f"{'good' if workers == 1 else 'nochg'} {NOCHG_ADDRESS}")
            run_wrk(url, auth, WARMUP_SECONDS, WORKER_CONNECTIONS)
            latency = run_wrk(url, auth, seconds, WORKER_CONNECTIONS)
            if latency.non_2xx or latency.socket_errors:
                raise BenchError(f"{workers} worker(s): wrk saw errors ({latency})")
            results.append(
                WorkersResult(workers, latency.requests, latency.seconds, latency.p99_ms)
            )
            print(f"{workers} worker(s): {results[-1].rate:,.0f} nochg/s", flush=True)
            processes.stop("nicupdate")
        finally:
            processes.stop_all()
    return results


INSTANCES = 3
INSTANCE_CHANGES = 10


@dataclass
class InstancesResult:
    add_ms: list[float]  # CLI commit -> the last of the instances knew the new host
    update_ms: list[float]  # good from instance 0 -> the last other instance says nochg


def measure_instances(work: Path, changes: int) -> InstancesResult:
    """Three instances on one PostgreSQL: how long a CLI `host add` and an update made
    through one instance take to be answered by all of them (polled every 5 ms)."""
    from tests.server.postgres import running_postgres

    auth = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    result = InstancesResult([], [])
    with running_postgres() as url:
        processes = Processes(work)
        try:
            bases = []
            for index in range(INSTANCES):
                directory = work / f"instance{index}"
                directory.mkdir()
                config = directory / "nicupdate.toml"
                http_port, dns_port = free_port(), free_port()
                config.write_text(
                    CONFIG.format(
                        http_port=http_port,
                        dns_port=dns_port,
                        database="",
                        zone=ZONE,
                        metrics="false",
                    ).replace('"sqlite+aiosqlite:///"', f'"{url}"')
                )
                if index == 0:
                    cli(
                        config,
                        directory,
                        "user",
                        "add",
                        USER,
                        "--password-stdin",
                        stdin=PASSWORD + "\n",
                    )
                base = f"http://127.0.0.1:{http_port}"
                start_server(processes, config, base, work, name=f"instance{index}")
                bases.append(base)
            first = work / "instance0" / "nicupdate.toml"
            for number in range(changes):
                fqdn = f"multi{number:03d}.{ZONE}"
                with concurrent.futures.ThreadPoolExecutor(INSTANCES) as pool:
                    pollers = [
                        pool.submit(
                            wait_for_host, base, auth, fqdn, work / "instance0.log", others=True
                        )
                        for base in bases
                    ]
                    cli(first, work, "host", "add", fqdn, "--owner", USER)
                    known = max(poller.result()[0] for poller in pollers)
                committed = commit_time_postgres(url, fqdn)
                result.add_ms.append(1000 * max(0.0, known - committed))
                # A change through instance 0, then how soon the others say nochg for it.
                address = f"198.51.100.{number + 1}"
                query = f"/nic/update?hostname={fqdn}&myip={address}"
                status, body = http_get(bases[0] + query, auth)
                answered = time.time()
                if body.strip() != f"good {address}":
                    raise BenchError(f"instance 0 answered {status} {body!r}")
                last = max(
                    wait_for_answer(base + query, auth, f"nochg {address}") for base in bases[1:]
                )
                result.update_ms.append(1000 * max(0.0, last - answered))
        finally:
            processes.stop_all()
    return result


def commit_time_postgres(url: str, fqdn: str) -> float:
    """When the CLI committed ``host add FQDN`` on PostgreSQL (its change-log row)."""
    from tests.server.postgres import psql_value

    text = psql_value(
        url,
        "SELECT extract(epoch FROM at) FROM changes "
        f"WHERE kind = 'host.added' AND subject = '{fqdn}'",
    )
    return float(text)


def wait_for_answer(url: str, auth: str, expected: str) -> float:
    """Poll ``url`` every 5 ms until it answers ``expected``; when (time.time()) the
    request that did was sent."""
    deadline = time.monotonic() + CHANGE_TIMEOUT
    while time.monotonic() < deadline:
        sent = time.time()
        _, body = http_get(url, auth)
        if body.strip() == expected:
            return sent
        time.sleep(POLL_INTERVAL)
    raise BenchError(f"{url} did not answer {expected!r} within {CHANGE_TIMEOUT:.0f} s")


def report_instances(result: InstancesResult) -> None:
    print()
    print(f"{INSTANCES} instances on one PostgreSQL, {len(result.add_ms)} changes (5 ms polls):")
    print(f"  CLI host add -> answered by every instance: {spread(result.add_ms)} ms (p50 / max)")
    print(
        f"  good through one instance -> nochg from every other: "
        f"{spread(result.update_ms)} ms (p50 / max; target of issue 12: within 100 ms)"
    )


def report_workers(results: list[WorkersResult]) -> None:
    reference = results[0]
    print()
    print(f"serve --workers N: nochg for one host, wrk -t1 -c{WORKER_CONNECTIONS}")
    for result in results:
        print(
            f"  {result.workers} worker(s): {result.rate:>8,.0f} req/s "
            f"({result.rate / reference.rate:.2f}x one worker), p99 {ms(result.p99_ms)} ms"
        )


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.0f} / {max(values):.0f}"


def ms(value: float | None) -> str:
    return "?" if value is None else f"{value:.1f}"


def delay_ms(result: ScaleResult) -> float | None:
    """How much longer the slowest request took with admin changes than without."""
    if result.changes.max_ms is None or result.reference.max_ms is None:
        return None
    return result.changes.max_ms - result.reference.max_ms


def report(results: list[ScaleResult], changes: int, empty: tuple[float, float]) -> list[str]:
    """Print the table and the targets; the problems found in wrk's answers. ``empty``:
    start-up (s) and idle memory (MB) of the server with no host."""
    smallest = results[0]
    # Memory per host: over the smallest host count; for the smallest, over no host.
    per_host: dict[int, float] = {}
    for result in results:
        base_hosts, base_mb = (smallest.hosts, smallest.idle_mb)
        if result is smallest:
            base_hosts, base_mb = 0, empty[1]
        per_host[result.hosts] = 1024 * (result.idle_mb - base_mb) / (result.hosts - base_hosts)
    print()
    print(
        f"wrk -t1 -c{CONNECTIONS} --latency (nochg for one host); {changes} `host add` per "
        "host count, each timed from the CLI's commit until the server knew the host "
        "(known: the update that got `good` was sent) and until that `good` came (its "
        "commit and DNS confirmation under the wrk load included)"
    )
    header = (
        f"{'hosts':>10} {'insert s':>9} {'start-up s':>11} {'idle RSS MB':>12} "
        f"{'KB/host':>8} {'known p50/max ms':>17} {'good p50/max ms':>16} "
        f"{'nochg p99/max ms, changes':>26} {'reference':>14}"
    )
    print(header)
    print(f"{0:>10} {'':>9} {empty[0]:>11.2f} {empty[1]:>12.1f}")
    for result in results:
        slope = per_host[result.hosts]
        changes_text = f"{ms(result.changes.p99_ms)} / {ms(result.changes.max_ms)}"
        reference_text = f"{ms(result.reference.p99_ms)} / {ms(result.reference.max_ms)}"
        print(
            f"{result.hosts:>10,} {result.insert_s:>9.1f} {result.startup_s:>11.2f} "
            f"{result.idle_mb:>12.1f} {slope:>8.2f} "
            f"{spread(result.add_ms):>17} {spread(result.good_ms):>16} "
            f"{changes_text:>26} {reference_text:>14}"
        )
    for result in results:
        print(
            f"  {result.hosts:,} hosts: `host add` ran {statistics.median(result.cli_s):.2f} s "
            f"(median); wrk {result.changes.requests:,} answers in "
            f"{result.changes.seconds:.0f} s with changes, {result.reference.requests:,} in "
            f"{result.reference.seconds:.0f} s without"
        )

    largest = results[-1]
    print()
    print(f"targets of issue 12, at {largest.hosts:,} hosts:")
    print(
        f"  start-up {largest.startup_s:.2f} s (target <= {TARGET_STARTUP_S:.0f} s: "
        f"{met(largest.startup_s <= TARGET_STARTUP_S)})"
    )
    if largest.hosts >= TARGET_RSS_HOSTS:
        rss, how = largest.idle_mb, "measured"
    else:
        slope = per_host[largest.hosts]
        over = "no host" if largest is smallest else f"{smallest.hosts:,} hosts"
        basis = f"{slope:.2f} KB per host over {over}"
        rss = largest.idle_mb + slope * (TARGET_RSS_HOSTS - largest.hosts) / 1024
        how = f"extrapolated from {largest.idle_mb:.1f} MB at {largest.hosts:,}, {basis}"
    print(
        f"  idle RSS at {TARGET_RSS_HOSTS:,} hosts {rss:.0f} MB ({how}; target <= "
        f"{TARGET_RSS_MB:.0f} MB: {met(rss <= TARGET_RSS_MB)})"
    )
    add_p50 = statistics.median(largest.add_ms)
    print(
        f"  host add known p50 {add_p50:.0f} ms, max {max(largest.add_ms):.0f} ms; its first "
        f"update's `good` p50 {statistics.median(largest.good_ms):.0f} ms "
        f"(target p50 <= {TARGET_ADD_MS:.0f} ms: {met(add_p50 <= TARGET_ADD_MS)})"
    )
    delay = delay_ms(largest)
    print(
        f"  delay by an admin change {ms(delay)} ms (max latency {ms(largest.changes.max_ms)} ms"
        f" with changes, {ms(largest.reference.max_ms)} ms without; target <= "
        f"{TARGET_DELAY_MS:.0f} ms: {met(delay is not None and delay <= TARGET_DELAY_MS)})"
    )

    problems = []
    for result in results:
        for name, latency in (("with changes", result.changes), ("reference", result.reference)):
            if latency.non_2xx or latency.socket_errors:
                problems.append(
                    f"{result.hosts:,} hosts, wrk {name}: {latency.non_2xx} non-2xx answers"
                    + (f", socket errors: {latency.socket_errors}" if latency.socket_errors else "")
                )
    return problems


def host_counts(text: str) -> list[int]:
    try:
        counts = sorted({int(part.replace("_", "")) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of numbers: {text!r}") from None
    if not counts or counts[0] < 1:
        raise argparse.ArgumentTypeError("host counts must be at least 1")
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--hosts",
        type=host_counts,
        default=None,
        help="host counts, comma-separated (default 10000,100000)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK_CHANGES} host adds per host count, shorter worker runs",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary directory (config, logs, db)"
    )
    args = parser.parse_args(argv)
    counts = args.hosts or list(DEFAULT_HOSTS)
    changes = QUICK_CHANGES if args.quick else CHANGES
    missing = missing_requirements({"wrk": "wrk"}, ("psutil", "sqlalchemy", "nicupdate_server"))
    if missing:
        print(f"bench_scale: {missing}", file=sys.stderr)
        return 2
    with work_directory(args.keep) as work:
        try:
            compile_server()
            empty_dir = work / "hosts-0"
            empty_dir.mkdir()
            empty = measure_empty(empty_dir)
            results = []
            for count in counts:
                directory = work / f"hosts-{count}"
                directory.mkdir()
                results.append(measure(count, changes, directory))
            problems = report(results, changes, empty)
            workers_dir = work / "workers"
            workers_dir.mkdir()
            seconds = QUICK_WORKER_SECONDS if args.quick else WORKER_SECONDS
            report_workers(measure_workers(workers_dir, seconds))
            instances_dir = work / "instances"
            instances_dir.mkdir()
            report_instances(measure_instances(instances_dir, INSTANCE_CHANGES))
        except BenchError as exc:
            print(f"bench_scale: {exc}", file=sys.stderr)
            return 1
    for problem in problems:
        print(f"FAILED: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
