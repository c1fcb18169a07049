"""Updates through the rfc2136 backend against a real local BIND, next to the built-in one.

Run: ``python tests/benchmarks/bench_rfc2136.py [--duration SECONDS] [--rounds N]
[--quick] [--primary bind|powerdns] [--no-pin] [--keep]``

In one run, on free 127.0.0.1 ports and a temporary directory, it:

1. starts a BIND 9 primary (``named``) from the shipped ``deploy/bind`` example, with a
   fresh TSIG key (``--primary powerdns``: PowerDNS from ``deploy/powerdns``);
2. starts three nicupdate servers, each with its own database, account and 1,000 hosts:

   - ``builtin``: the built-in DNS backend (the reference);
   - ``rfc2136``: the rfc2136 backend with its default coalescing;
   - ``rfc2136, uncoalesced``: the same with ``coalesce_window = 0`` and
     ``max_records = 1``, one UPDATE message per host change;

   with two or more CPUs, the servers run on the first CPU and everything else (wrk,
   the primary, this script) on the others, so that the load generator and the
   primary do not take CPU time from the server being measured (``--no-pin``: no);
3. measures the ``good`` update rate of each through the HTTP endpoint at 64
   concurrent clients, every request a new address for one of the hosts (wrk with the
   script of bench_update.py), in ``--rounds`` turns (3; the median is reported). For
   the rfc2136 servers it counts the UPDATE messages the primary applied (its SOA
   serial rises by one per message) and checks that it serves the last address sent;
4. loads the coalescing rfc2136 server with 63 wrk connections while one more client
   updates its own hosts one at a time and, from each answer ``good`` on, asks the
   primary for the host's A record until it serves the new address: the visibility
   delay, p50 and p99. The query is the UDP query ``dig`` sends, made with dnspython so
   that starting a ``dig`` process does not count; afterwards real ``dig`` checks the
   last hosts;
5. prints a summary with the targets of issue 4: rfc2136 >= 80% of builtin, coalescing
   >= 2x the uncoalesced rate, p50 visibility < 5 ms.

Timings are printed, never asserted: the exit status is non-zero only when something
failed to run or answered wrongly.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.benchmarks.bench_update import (
    CONNECTIONS,
    GOOD_LUA,
    HOSTS,
    PASSWORD,
    USER,
    ZONE,
    BenchError,
    Processes,
    WrkResult,
    add_account,
    check_dns,
    free_port,
    latency,
    met,
    run_wrk,
    work_directory,
)

TARGET_SHARE = 0.80  # rfc2136 / builtin
TARGET_COALESCING = 2.0  # coalesced / uncoalesced
TARGET_VISIBLE_P50_MS = 5.0
VISIBILITY_TIMEOUT = 5.0  # give up on one sample after this long
PROBE_HOSTS = 64  # the last hosts, left to the probe client

SERVER = """\
[server]
listen = "127.0.0.1:{http_port}"
database = "sqlite+aiosqlite:///{database}"
access_log = false
log_level = "warning"

[dns]
{dns}

[limits]
host_update_interval = 0  # 64 connections over 1,000 hosts: past the per-host limit

{backend}

[[zones]]
name = "{zone}"
backend = "{backend_name}"
ttl = 60
"""


@dataclass
class Phase:
    name: str
    backend_name: str  # "builtin" or "primary"
    backend_extra: str = ""  # lines added to the [backends.primary] table


PHASES = (
    Phase("builtin", "builtin"),
    Phase("rfc2136", "primary"),
    Phase("rfc2136, uncoalesced", "primary", "coalesce_window = 0\nmax_records = 1\n"),
)


@dataclass
class Measured:
    phase: Phase
    wrk: WrkResult
    bad: int
    bad_sample: str
    messages: int | None  # UPDATE messages the primary applied during the load
    dns_ok: bool
    primary_cpu: float  # CPU seconds of the primary per second of load
    generated: int  # the wrk script's request counter at the end


@dataclass
class Visibility:
    delays_ms: list[float] = field(default_factory=list)
    first_query: int = 0  # samples whose first query already saw the new address
    not_good: list[str] = field(default_factory=list)
    timeouts: int = 0
    sent: int = 0  # probe updates sent


def primary_serial(port: int) -> int:
    import dns.message
    import dns.query
    import dns.rdatatype

    answer = dns.query.tcp(
        dns.message.make_query(ZONE, dns.rdatatype.SOA), "127.0.0.1", port=port, timeout=5
    )
    for rrset in answer.answer:
        for rdata in rrset:
            return int(rdata.serial)  # type: ignore[attr-defined]
    raise BenchError(f"the primary on port {port} has no SOA for {ZONE}")


def pin(pid: int, cpus: set[int]) -> None:
    """Keep every thread of process ``pid`` on ``cpus``."""
    for thread in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(int(thread), cpus)


def cpu_layout(args: argparse.Namespace) -> tuple[set[int], set[int]] | None:
    """(CPUs for the nicupdate server, CPUs for wrk, the primary and the rest), or None
    when the benchmark does not pin (--no-pin, one CPU, or no sched_setaffinity)."""
    if not args.pin or not hasattr(os, "sched_setaffinity"):
        return None
    available = sorted(os.sched_getaffinity(0))
    if len(available) < 2:
        return None
    return {available[0]}, set(available[1:])


def cpu_seconds(pid: int) -> float:
    import psutil

    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def start_server(
    processes: Processes, work: Path, phase: Phase, block: str
) -> tuple[subprocess.Popen[bytes], int]:
    directory = work / phase.name.replace(", ", "-")
    directory.mkdir()
    http_port = free_port()
    if phase.backend_name == "builtin":
        dns, backend = f'listen = "127.0.0.1:{free_port()}"', ""
    else:
        dns, backend = "enabled = false", block + phase.backend_extra
    config = directory / "nicupdate.toml"
    config.write_text(
        SERVER.format(
            http_port=http_port,
            database=directory / "state.db",
            dns=dns,
            backend=backend,
            backend_name=phase.backend_name,
            zone=ZONE,
        )
    )
    add_account(config, directory)
    name = f"nicupdate {phase.name}"
    server = processes.start(
        name, [sys.executable, "-m", "nicupdate_server", "--config", str(config), "serve"]
    )
    processes.wait_http(name, f"http://127.0.0.1:{http_port}/healthz")
    return server, http_port


def measure(
    phase: Phase,
    server: subprocess.Popen[bytes],
    http_port: int,
    primary: tuple[int, int],  # port, pid
    work: Path,
    duration: int,
    auth: str,
    start: int,
) -> Measured:
    """One wrk run of ``duration`` seconds, its script counting requests from ``start``."""
    primary_port, primary_pid = primary
    script = work / "good.lua"
    script.write_text(GOOD_LUA.format(hosts=HOSTS, zone=ZONE, start=start))
    serial = primary_serial(primary_port) if phase.backend_name != "builtin" else 0
    primary_before = cpu_seconds(primary_pid)
    print(f"{phase.name}: {duration} s of wrk over {HOSTS} hosts ...", flush=True)
    started = time.monotonic()
    result = run_wrk(
        f"http://127.0.0.1:{http_port}/nic/update", duration, server.pid, auth=auth, script=script
    )
    primary_cpu = (cpu_seconds(primary_pid) - primary_before) / (time.monotonic() - started)
    counts = re.search(r"^BENCH generated=(\d+) bad=(\d+) sample=(.*)$", result.output, re.M)
    if not counts:
        raise BenchError(f"the wrk script reported no counts:\n{result.output}")
    generated, bad = int(counts.group(1)), int(counts.group(2))
    time.sleep(0.5)  # requests still in flight when wrk stopped
    messages: int | None = None
    dns_ok = True
    if phase.backend_name != "builtin":
        messages = primary_serial(primary_port) - serial
        problems = check_dns(generated, primary_port, start=start)
        for problem in problems:
            print(f"FAILED ({phase.name}): {problem}", file=sys.stderr)
        dns_ok = not problems
    if server.poll() is not None:
        raise BenchError(f"the {phase.name} server exited during the run ({server.returncode})")
    return Measured(phase, result, bad, counts.group(3), messages, dns_ok, primary_cpu, generated)


def probe(
    http_port: int, primary_port: int, auth: str, stop: threading.Event, result: Visibility
) -> None:
    """One client updating the probe hosts one after another until ``stop``; after each
    ``good`` it asks the primary (the UDP query dig sends) until it serves the address."""
    import dns.message
    import dns.query
    import dns.rdatatype
    import httpx

    with httpx.Client(
        base_url=f"http://127.0.0.1:{http_port}",
        headers={"Authorization": auth, "User-Agent": "bench_rfc2136/1.0"},
        timeout=30,
    ) as http:
        sample = 0
        while not stop.is_set():
            fqdn, address = probe_update(sample)
            sample += 1
            result.sent = sample
            answer = http.get("/nic/update", params={"hostname": fqdn, "myip": address})
            answered = time.perf_counter()
            if answer.text.strip() != f"good {address}":
                result.not_good.append(f"{fqdn} {address}: {answer.status_code} {answer.text!r}")
                continue
            query = dns.message.make_query(fqdn, dns.rdatatype.A)
            first = True
            while True:
                served = dns.query.udp(query, "127.0.0.1", port=primary_port, timeout=2)
                if [rdata.to_text() for rrset in served.answer for rdata in rrset] == [address]:
                    result.delays_ms.append(1000 * (time.perf_counter() - answered))
                    result.first_query += first
                    break
                first = False
                if time.perf_counter() - answered > VISIBILITY_TIMEOUT:
                    result.timeouts += 1
                    break


def probe_update(sample: int) -> tuple[str, str]:
    """The host and address of probe update ``sample``: the probe hosts in turn, each
    time with another address from 192.0.2.0/24 (the wrk script uses the other two)."""
    host = HOSTS - PROBE_HOSTS + sample % PROBE_HOSTS
    return f"h{host:04d}.{ZONE}", f"192.0.2.{sample % 254 + 1}"


def measure_visibility(
    work: Path, http_port: int, primary_port: int, auth: str, duration: int, start: int
) -> tuple[Visibility, WrkResult]:
    """63 wrk connections updating hosts as fast as they can, and one probe client."""
    script = work / "visibility.lua"
    script.write_text(GOOD_LUA.format(hosts=HOSTS - PROBE_HOSTS, zone=ZONE, start=start))
    result = Visibility()
    stop = threading.Event()
    prober = threading.Thread(
        target=probe, args=(http_port, primary_port, auth, stop, result), daemon=True
    )
    print(f"visibility: {duration} s of wrk with {CONNECTIONS - 1} connections and one probe ...")
    prober.start()
    try:
        load = run_wrk(
            f"http://127.0.0.1:{http_port}/nic/update",
            duration,
            os.getpid(),
            auth=auth,
            script=script,
            connections=CONNECTIONS - 1,
        )
    finally:
        stop.set()
        prober.join(VISIBILITY_TIMEOUT + 35)
    return result, load


def check_with_dig(primary_port: int, samples: int) -> list[str]:
    """Real dig against the primary for the last probe hosts updated."""
    problems = []
    for sample in range(max(0, samples - 4), samples):
        fqdn, expected = probe_update(sample)
        shown = subprocess.run(
            ["dig", "@127.0.0.1", "-p", str(primary_port), "+short", fqdn, "A"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        ).stdout.split()
        if shown != [expected]:
            problems.append(f"dig shows {fqdn} as {shown}, the last address sent was {expected}")
    return problems


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


@contextlib.contextmanager
def running_primary(kind: str, work: Path) -> Iterator[object]:
    from tests.server.primaries import running_bind, running_powerdns

    start = running_bind if kind == "bind" else running_powerdns
    with start(work / kind, zone=ZONE) as primary:
        yield primary


def run(args: argparse.Namespace, work: Path) -> int:
    from tests.server.primaries import Primary

    auth = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    processes = Processes(work)
    results: dict[str, list[Measured]] = {phase.name: [] for phase in PHASES}
    failures: list[str] = []
    with running_primary(args.primary, work) as running:
        assert isinstance(running, Primary) and running.pid is not None
        block = running.config_block("primary")
        primary = (running.port, running.pid)
        print(f"{args.primary} primary on 127.0.0.1:{running.port} (pid {running.pid})")
        layout = args.layout = cpu_layout(args)
        if layout is not None:
            server_cpus, other_cpus = layout
            os.sched_setaffinity(0, other_cpus)  # this script, and wrk (its child)
            pin(running.pid, other_cpus)
        try:
            servers = {phase.name: start_server(processes, work, phase, block) for phase in PHASES}
            if layout is not None:
                for server, _ in servers.values():
                    pin(server.pid, server_cpus)
            # Rounds take turns, so that whatever else the machine does hits every phase.
            for _ in range(args.rounds):
                for phase in PHASES:
                    server, http_port = servers[phase.name]
                    done = results[phase.name]
                    # Each run counts on from the last: every request is a new address.
                    start = (done[-1].generated // HOSTS + 2) * HOSTS if done else 0
                    done.append(
                        measure(phase, server, http_port, primary, work, args.duration, auth, start)
                    )
            coalescing = PHASES[1].name
            _, http_port = servers[coalescing]
            start = (results[coalescing][-1].generated // HOSTS + 2) * (HOSTS - PROBE_HOSTS)
            visibility, background = measure_visibility(
                work, http_port, running.port, auth, args.duration, start
            )
            failures += check_with_dig(running.port, visibility.sent)
        finally:
            processes.stop_all()

    for measured in (m for runs in results.values() for m in runs):
        if measured.bad:
            failures.append(
                f"{measured.phase.name}: {measured.bad} answers were not 'good' "
                f"(first: {measured.bad_sample})"
            )
        if not measured.dns_ok:
            failures.append(f"{measured.phase.name}: the primary missed a last address")
    failures += [f"visibility: not good: {line}" for line in visibility.not_good[:5]]
    if visibility.timeouts:
        failures.append(
            f"visibility: {visibility.timeouts} updates answered good were not served "
            f"within {VISIBILITY_TIMEOUT:g} s"
        )
    report(args, results, visibility, background, failures)
    for problem in failures:
        print(f"FAILED: {problem}", file=sys.stderr)
    return 1 if failures else 0


def report(
    args: argparse.Namespace,
    results: dict[str, list[Measured]],
    visibility: Visibility,
    background: WrkResult,
    failures: list[str],
) -> None:
    rates = {
        name: statistics.median(m.wrk.requests_per_s for m in runs)
        for name, runs in results.items()
    }
    builtin, coalesced, uncoalesced = (rates[phase.name] for phase in PHASES)
    share = coalesced / builtin if builtin else 0.0
    factor = coalesced / uncoalesced if uncoalesced else 0.0
    width = 27
    print()
    rounds = f"median of {args.rounds} rounds" if args.rounds > 1 else "one round"
    print(
        f"wrk -t1 -c{CONNECTIONS} -d{args.duration}s --latency, {rounds}, "
        f"{os.cpu_count()} CPUs, {args.primary} primary"
    )
    layout = args.layout
    if layout is not None:
        print(
            f"CPUs: nicupdate server on {sorted(layout[0])}; wrk, the primary and the probe "
            f"on {sorted(layout[1])}"
        )
    else:
        print("CPUs: not pinned; every process shares every CPU")
    for phase in PHASES:
        runs = results[phase.name]
        middle = sorted(runs, key=lambda m: m.wrk.requests_per_s)[len(runs) // 2]
        line = (
            f"{phase.name:<{width}}{rates[phase.name]:>8.0f} updates/s  {latency(middle.wrk)}  "
            f"server CPU {middle.wrk.server_cpu:.2f}"
        )
        if middle.messages is not None:
            changes = sum(m.wrk.requests for m in runs)
            messages = sum(m.messages or 0 for m in runs)
            per = changes / messages if messages else 0.0
            line += (
                f", {args.primary} CPU {middle.primary_cpu:.2f}; "
                f"{messages} UPDATE messages, {per:.1f} host changes each"
            )
        print(line)
        if len(runs) > 1:
            each = ", ".join(f"{m.wrk.requests_per_s:.0f}" for m in runs)
            print(f"{'':<{width}}rounds: {each}")
    print(
        f"{'rfc2136 / builtin':<{width}}{share:>8.0%}  (target >= {TARGET_SHARE:.0%}: "
        f"{met(share >= TARGET_SHARE)})"
    )
    print(
        f"{'coalesced / uncoalesced':<{width}}{factor:>7.1f}x  (target >= "
        f"{TARGET_COALESCING:g}x: {met(factor >= TARGET_COALESCING)})"
    )
    if not visibility.delays_ms:
        failures.append("visibility: no update was measured")
        return
    p50 = statistics.median(visibility.delays_ms)
    p99 = percentile(visibility.delays_ms, 0.99)
    print(
        f"{'good -> primary serves it':<{width}}p50 {p50:.2f} ms, p99 {p99:.2f} ms, max "
        f"{max(visibility.delays_ms):.2f} ms  (target p50 < {TARGET_VISIBLE_P50_MS:g} ms: "
        f"{met(p50 < TARGET_VISIBLE_P50_MS)})"
    )
    print(
        f"{'':<{width}}{len(visibility.delays_ms)} probe updates beside "
        f"{background.requests_per_s:.0f} updates/s from {CONNECTIONS - 1} wrk connections"
        f"; the first query saw the new address for {visibility.first_query} of them"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--duration", type=int, default=None, help="seconds of load per phase (default 10)"
    )
    parser.add_argument(
        "--rounds", type=int, default=None, help="runs of each phase, in turns (default 3)"
    )
    parser.add_argument("--quick", action="store_true", help="3 rounds of 2 s (for CI)")
    parser.add_argument("--primary", choices=("bind", "powerdns"), default="bind")
    parser.add_argument(
        "--no-pin",
        dest="pin",
        action="store_false",
        help="do not give the nicupdate server a CPU of its own (the default with 2+ CPUs)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary directory (configs, logs, dbs)"
    )
    args = parser.parse_args(argv)
    if args.duration is None:
        args.duration = 2 if args.quick else 10
    if args.rounds is None:
        args.rounds = 3
    if args.duration < 1 or args.rounds < 1:
        parser.error("--duration and --rounds must be at least 1")
    needed = {"wrk": "wrk", "dig": "bind9-dnsutils"}
    needed["named" if args.primary == "bind" else "pdns_server"] = (
        "bind9" if args.primary == "bind" else "pdns-server pdns-backend-sqlite3"
    )
    missing = [package for command, package in needed.items() if shutil.which(command) is None]
    if missing:
        print(
            f"bench_rfc2136: install {' '.join(dict.fromkeys(missing))} "
            "(apt-get install ...) and run again",
            file=sys.stderr,
        )
        return 2
    with work_directory(args.keep) as work:
        try:
            return run(args, work)
        except (BenchError, RuntimeError) as exc:
            print(f"bench_rfc2136: {exc}", file=sys.stderr)
            return 1


if __name__ == "__main__":
    sys.exit(main())
