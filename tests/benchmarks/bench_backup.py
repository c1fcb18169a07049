"""`nicupdate-server backup` of a large live database: how long it takes, and what it
does to the updates the server answers meanwhile.

Run: ``python tests/benchmarks/bench_backup.py [--hosts N] [--quick]``

In one run, in a temporary directory, on free 127.0.0.1 ports, it:

1. creates the schema and an account (through the CLI), then ``--hosts`` hosts (default
   100,000), each with an A and an AAAA record and a history row, in bulk with sqlite3;
2. starts ``nicupdate-server serve`` and CLIENTS threads sending ``good`` updates (a new
   AAAA address each time) over 1,000 of the hosts, one request at a time each;
3. reference: the latency of the updates sent during REFERENCE_SECONDS without a backup;
4. runs ``nicupdate-server backup PATH`` (one step, as shipped) and measures the updates
   sent while it runs;
5. for comparison, copies the same live database with SQLite's backup API in steps of
   PAGES pages with a pause of PAGE_PAUSE between them, as a paged backup would: every
   commit of the server's restarts such a copy, and the run says how often and whether
   it finished within PAGED_LIMIT seconds.

It prints the backup's time and size and, per phase, the updates answered, the failed
ones and the latency (p50, p99, max) with its ratio to the reference. Timings are
printed, never asserted: the exit status is non-zero only when something failed to run.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ZONE = "dyn.example.test"
USER, PASSWORD = "bench", "bench-password-0123"
CLIENTS = 4
UPDATED_HOSTS = 1000
REFERENCE_SECONDS = 5.0
PAGES = 64
PAGE_PAUSE = 0.005  # between steps, to let the server's writes through
PAGED_LIMIT = 60.0
STARTUP_TIMEOUT = 120.0

CONFIG = """\
[server]
listen = "127.0.0.1:{http_port}"
database = "sqlite+aiosqlite:///{database}"
log_level = "warning"

[dns]
listen = "127.0.0.1:{dns_port}"

[dns.rate_limit]
# The benchmark's DNS probes ask the same question from 127.0.0.1 again and again, as a
# monitoring system would: not the flood response rate limiting is for.
exempt_clients = ["127.0.0.1/32"]

[limits]
host_update_interval = 0   # the clients update as fast as they can

[[zones]]
name = "{zone}"
backend = "builtin"
"""


class BenchError(Exception):
    """Something failed to run; printed as one line, exit status 1."""


@dataclass
class Sample:
    started: float
    seconds: float
    good: bool


@dataclass
class Load:
    """CLIENTS threads updating until :meth:`stop`; every request's start and latency."""

    url: str
    samples: list[Sample] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for index in range(CLIENTS):
            thread = threading.Thread(target=self._client, args=(index,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def _client(self, index: int) -> None:
        # Each client its own hosts: no two requests wait for the same host.
        hosts = [f"h{n:06d}.{ZONE}" for n in range(index, UPDATED_HOSTS, CLIENTS)]
        n = 0
        with httpx.Client(base_url=self.url, auth=(USER, PASSWORD), timeout=30) as client:
            while not self._stop.is_set() and n < 10_000_000:
                n += 1
                host = hosts[n % len(hosts)]
                query = f"hostname={host}&myip=2001:db8:{index:x}::{n:x}"
                started = time.monotonic()
                try:
                    text = client.get(f"/nic/update?{query}").text
                except httpx.HTTPError as exc:
                    text = f"{type(exc).__name__}: {exc}"
                self.samples.append(Sample(started, time.monotonic() - started, text[:4] == "good"))
                if text[:4] != "good" and len(self.errors) < 5:
                    self.errors.append(text.strip())

    def between(self, start: float, end: float) -> list[Sample]:
        return [s for s in list(self.samples) if start <= s.started < end]


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cli(config: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "nicupdate_server", "--config", str(config), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("NICUPDATE_")},
        cwd=config.parent,
    )
    if done.returncode != 0:
        raise BenchError(f"{' '.join(args[:2])} failed: {done.stderr.strip()}")
    return done


def fill(database: Path, hosts: int) -> None:
    """``hosts`` hosts of USER with records and a history row each, as a busy server has."""
    now = "2026-01-01 00:00:00.000000"
    with contextlib.closing(sqlite3.connect(database)) as db, db:
        owner = db.execute("SELECT id FROM users WHERE name = ?", (USER,)).fetchone()[0]
        db.executemany(
            "INSERT INTO hosts (id, fqdn, owner_id, token_digest, created_at, nochg_count) "
            "VALUES (?, ?, ?, ?, ?, 0)",
            ((n + 1, f"h{n:06d}.{ZONE}", owner, f"{n:064x}", now) for n in range(hosts)),
        )
        db.executemany(
            "INSERT INTO records (host_id, rtype, address) VALUES (?, ?, ?)",
            (
                row
                for n in range(hosts)
                for row in (
                    (n + 1, "A", f"198.51.100.{n % 254 + 1}"),
                    (n + 1, "AAAA", f"2001:db8:ffff::{n:x}"),
                )
            ),
        )
        db.executemany(
            "INSERT INTO update_log (at, fqdn, caller, user_agent, old_value, new_value, "
            "answer, detail) VALUES (?, ?, '192.0.2.1', 'bench', '', ?, ?, '')",
            (
                (now, f"h{n:06d}.{ZONE}", f"A 198.51.100.{n % 254 + 1}", "good")
                for n in range(hosts)
            ),
        )


def paged_copy(database: Path, target: Path) -> tuple[bool, int, float]:
    """SQLite's backup in steps of PAGES, PAGE_PAUSE apart: (finished, restarts, seconds)."""
    restarts, last = 0, -1
    started = time.monotonic()

    def progress(_status: int, remaining: int, _total: int) -> None:
        nonlocal restarts, last
        if last >= 0 and remaining > last:
            restarts += 1
        last = remaining
        if time.monotonic() - started > PAGED_LIMIT:
            raise TimeoutError
        time.sleep(PAGE_PAUSE)

    with (
        contextlib.closing(sqlite3.connect(database, timeout=10)) as live,
        contextlib.closing(sqlite3.connect(target)) as copy,
    ):
        try:
            live.backup(copy, pages=PAGES, progress=progress, sleep=0.001)
        except TimeoutError:
            return False, restarts, time.monotonic() - started
    return True, restarts, time.monotonic() - started


def report(name: str, samples: list[Sample], reference: list[Sample] | None) -> None:
    if not samples:
        print(f"{name:<24} no update was sent")
        return
    latencies = [s.seconds * 1000 for s in samples]
    p50, p99, top = percentile(latencies, 0.5), percentile(latencies, 0.99), max(latencies)
    failed = sum(not s.good for s in samples)
    line = (
        f"{name:<24} {len(samples):6d} updates, {failed} failed; "
        f"latency p50 {p50:6.1f} ms, p99 {p99:6.1f} ms, max {top:6.1f} ms"
    )
    if reference:
        ref = [s.seconds * 1000 for s in reference]
        line += (
            f"  (x{p50 / percentile(ref, 0.5):.2f}, x{p99 / percentile(ref, 0.99):.2f},"
            f" x{top / max(ref):.2f} of the reference)"
        )
    print(line)


def run(work: Path, hosts: int, reference_seconds: float) -> None:
    database = work / "nicupdate.db"
    config = work / "nicupdate.toml"
    http_port, dns_port = free_port(), free_port()
    config.write_text(
        CONFIG.format(http_port=http_port, dns_port=dns_port, database=database, zone=ZONE)
    )
    cli(config, "user", "add", USER, "--password-stdin", stdin=PASSWORD + "\n")
    started = time.monotonic()
    fill(database, hosts)
    size = database.stat().st_size / 1e6
    print(f"set-up: {hosts} hosts, {size:.0f} MB, in {time.monotonic() - started:.1f} s")

    log = (work / "server.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "nicupdate_server", "--config", str(config), "serve"],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        cwd=work,
        env={k: v for k, v in os.environ.items() if not k.startswith("NICUPDATE_")},
    )
    url = f"http://127.0.0.1:{http_port}"
    load = Load(url)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                    break
            if server.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"the server did not start: {(work / 'server.log').read_text()}")
            time.sleep(0.2)
        load.start()
        time.sleep(1.0)  # warm-up: the account's password checked once, connections open
        begin = time.monotonic()
        time.sleep(reference_seconds)
        reference = load.between(begin, time.monotonic())

        backup = work / "copy.db"
        begin = time.monotonic()
        done = cli(config, "backup", str(backup))
        end = time.monotonic()
        backup_seconds = end - begin
        during = load.between(begin, end)
        time.sleep(1.0)
        after = load.between(end, time.monotonic())

        begin = time.monotonic()
        finished, restarts, seconds = paged_copy(database, work / "paged.db")
        paged = load.between(begin, time.monotonic())
    finally:
        load.stop()
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)
        log.close()

    print(done.stdout.strip())
    print(f"backup command: {backup_seconds:.2f} s wall, copy {backup.stat().st_size / 1e6:.0f} MB")
    report("reference (no backup)", reference, None)
    report("during `backup`", during, reference)
    report("1 s after it", after, reference)
    state = f"finished in {seconds:.1f} s" if finished else f"gave up after {PAGED_LIMIT:.0f} s"
    print(
        f"paged copy ({PAGES} pages a step, {PAGE_PAUSE * 1000:g} ms apart): {state}, "
        f"restarted {restarts} time(s) by the server's commits"
    )
    report("during the paged copy", paged, reference)
    if load.errors:
        print(f"failed answers (first {len(load.errors)}): {load.errors}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--hosts", type=int, default=100_000)
    parser.add_argument("--quick", action="store_true", help="10,000 hosts, 2 s of reference")
    args = parser.parse_args()
    hosts = 10_000 if args.quick else args.hosts
    with tempfile.TemporaryDirectory(prefix="nicupdate-bench-backup-") as work:
        try:
            run(Path(work), hosts, 2.0 if args.quick else REFERENCE_SECONDS)
        except BenchError as exc:
            print(f"bench_backup: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
