"""The built-in DNS against NSD and Knot: speed, isolation from HTTP, amplification, RRL.

Run: ``python tests/benchmarks/bench_dns.py [--duration SECONDS] [--quick] [--no-pin]``

In one run, on free 127.0.0.1 ports and a temporary directory, it:

1. creates a configuration, the account ``bench`` (through the CLI) and 1,000 hosts
   ``h0000..h0999.dyn.example.test`` (through :class:`nicupdate_server.admin.Admin`),
   starts ``python -m nicupdate_server --config PATH serve`` (zone backend ``builtin``,
   ``[dns] listen`` set, response rate limiting off) and gives every host an A record
   over HTTP, every tenth an AAAA too (dyndns2 updates, each answered ``good``). The
   same records go into a zone file, with nicupdate's SOA serial and the same SOA, NS
   and glue (``ns.dyn.example.test``), served by NSD (``nsd -d``, unprivileged, RRL
   off) and Knot (``knotd``, one UDP and one TCP worker), both started for the run;
2. asks all three the same questions (A and AAAA of a sample of hosts, SOA, NS and A at
   the apex, the nameserver's address, names that do not exist): the rcode, the AA bit
   and the answer RRsets must be the same everywhere, else the run fails. It also sends
   nicupdate a burst of 200 identical queries: all must be answered in full, or its
   answers are rate-limited and the run fails;
3. **speed**: ``dnsperf -c 4 -q 500`` for the duration against each server in turn, 3
   rounds (1 with ``--quick``), with a query mix of 70% A of random hosts, 15% AAAA of
   random hosts (most have none: NODATA, as dual-stack resolvers ask), 5% SOA and 5% NS
   at the apex and 5% names that do not exist (NXDOMAIN). With two or more CPUs the
   servers run on the second (nicupdate is started under ``taskset``, so that any
   process it starts stays there too) and dnsperf on the first. Prints the median
   queries/s of each and nicupdate's share of NSD's (target >= 50%) and of Knot's;
4. **isolation**: ``nochg`` answers for one host (``wrk -t1 -c64``, as bench_update)
   alone, then while dnsperf floods nicupdate's DNS as fast as it answers, with the
   CPUs shared in two ways (two or more CPUs; else unpinned, once):

   - *split* (the target's): wrk and nicupdate's HTTP side on the first CPU, its DNS
     side and the flood on the second, as on a server with a core for each side where
     the flood comes from elsewhere: what a flood costs HTTP beyond CPU time. The
     processes that answer DNS are found as those busy during a second of dnsperf
     alone; when that is the HTTP process itself (the DNS in its event loop, as before
     the DNS got a process of its own), all of nicupdate goes on the first CPU, so the
     flood's answers are paid for there;
   - *shared* (shown): nicupdate's processes on any CPU, wrk on the first, the flood on
     the second: a small two-core VPS where the DNS side may also take the HTTP side's
     CPU time.

   Prints nochg with the flood as a share of without (target >= 80%, split);
5. **amplification**: one UDP query of each kind (with EDNS and a 4,096-byte payload,
   as an attacker sends: plain A of a host, A with a small EDNS padding option, A
   padded to 468 bytes, ANY at the apex and at a host, SOA, NS, DNSKEY, a name that
   does not exist and a name outside the zone) to each server: bytes in, bytes out and
   out/in (target <= 3 for every kind but the plain A, which needs host names);
6. **response rate limiting**: nicupdate restarted with ``[dns.rate_limit]``
   ``responses_per_second = 20``, ``slip = 2``; 3,000 q/s of one A query from 127.0.0.1
   for the duration (1 s with ``--quick``, 3 s otherwise) while 127.0.1.1 (another /24)
   sends 20 q/s of it: the flood's answers in full (NOERROR, not truncated, with the
   answer; target <= 5% of sent), truncated and unanswered, and the other source's
   (target: all in full). Then 400 idle TCP connections from 127.0.0.1 and 20 TCP
   queries from 127.0.1.1 (target: all answered);
7. prints a summary with every figure, ratio and target.

Needs ``nsd``, ``knot``, ``dnsperf`` and ``wrk`` (``apt-get install``). Timings are
printed, never asserted: the exit status is non-zero only when something failed to run
or answered wrongly.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import concurrent.futures
import contextlib
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import dns.message

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from nicupdate_server.config import SOA_EXPIRE, SOA_REFRESH, SOA_RETRY

from tests.benchmarks.bench_update import (
    HOSTS,
    PASSWORD,
    USER,
    ZONE,
    BenchError,
    Processes,
    WrkResult,
    add_account,
    child_env,
    compile_server,
    free_port,
    http_get,
    met,
    missing_requirements,
    run_wrk,
    tail,
    work_directory,
)

AAAA_EVERY = 10  # every tenth host has an AAAA record as well
NS_NAME = f"ns.{ZONE}"
NS_ADDRESS = "192.0.2.53"
RNAME = f"hostmaster.{ZONE}"
TTL = 60
SOA_TIMERS = (
    SOA_REFRESH,
    SOA_RETRY,
    SOA_EXPIRE,
    TTL,
)  # refresh, retry, expire, minimum: nicupdate's
NOCHG_INDEX = 1  # the host of the isolation phase (no AAAA)
RRL_INDEX = 2  # the host of the RRL phase

DNSPERF_CLIENTS = 4
DNSPERF_OUTSTANDING = 500
QUERY_MIX = (("A", 70), ("AAAA", 15), ("SOA", 5), ("NS", 5), ("NXDOMAIN", 5))
QUERY_LINES = 10_000
WARMUP_SECONDS = 1
UPDATE_THREADS = 8
STARTUP_TIMEOUT = 30.0
DNS_TIMEOUT = 2.0

RRL_RATE = 20
RRL_SLIP = 2
FLOOD_QPS = 3000
OTHER_QPS = 20
FLOOD_SOURCE = "127.0.0.1"
OTHER_SOURCE = "127.0.1.1"  # loopback is a /8: another /24 for RRL
IDLE_TCP = 400
TCP_QUERIES = 20
BURST = 400  # q/s for half a second: the check that nicupdate's answers are unlimited

TARGET_NSD_SHARE = 0.50
TARGET_ISOLATION = 0.80
TARGET_AMPLIFICATION = 3.0
TARGET_RRL_FULL = 0.05

CONFIG = """\
[server]
listen = "127.0.0.1:{http_port}"
database = "sqlite+aiosqlite:///{database}"
access_log = false
log_level = "warning"

[dns]
listen = "127.0.0.1:{dns_port}"
{rate_limit}
[limits]
# 1,000 set-up updates and wrk's nochg flood on one host: far past the per-host update
# limit, which is not what this benchmark measures.
host_update_interval = 0

[[zones]]
name = "{zone}"
backend = "builtin"
ttl = {ttl}
nameserver_addresses = ["{ns_address}"]
"""

RATE_LIMIT = """
[dns.rate_limit]
responses_per_second = {rate}  # 0 = off
slip = {slip}
"""

NSD_CONFIG = """\
server:
    ip-address: 127.0.0.1@{port}
    username: ""
    chroot: ""
    database: ""
    zonesdir: "{work}"
    pidfile: "{work}/nsd.pid"
    xfrdfile: "{work}/nsd-xfrd.state"
    xfrdir: "{work}"
    zonelistfile: "{work}/nsd-zone.list"
    server-count: 1
    verbosity: 1
    # Debian's NSD limits each source to 200 answers a second by default: off, like
    # nicupdate's during the speed phases.
    rrl-ratelimit: 0
remote-control:
    control-enable: no
zone:
    name: {zone}
    zonefile: "{zonefile}"
"""

KNOT_CONFIG = """\
server:
    rundir: "{work}/knot"
    listen: 127.0.0.1@{port}
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
control:
    listen: "{work}/knot/knot.sock"
database:
    storage: "{work}/knot"
log:
  - target: stderr
    any: warning
template:
  - id: default
    storage: "{work}/knot"
    zonefile-sync: -1
    journal-content: none
zone:
  - domain: {zone}
    file: "{zonefile}"
"""


def host_name(index: int) -> str:
    return f"h{index:04d}.{ZONE}"


def host_a(index: int) -> str:
    return f"198.51.100.{index % 250 + 1}"


def host_aaaa(index: int) -> str | None:
    return f"2001:db8::{index + 1:x}" if index % AAAA_EVERY == 0 else None


def basic() -> str:
    return "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()


# ---------------------------------------------------------------------------- servers


@dataclass
class Server:
    """One DNS server of the run."""

    name: str
    port: int
    proc: subprocess.Popen[bytes] | None = None


@dataclass
class Layout:
    """Which CPUs take what; empty when not pinned (one CPU, or --no-pin)."""

    load: int | None = None  # dnsperf (speed), wrk (isolation)
    server: int | None = None  # the servers (speed), dnsperf's flood (isolation)
    every: set[int] = field(default_factory=set)

    def taskset(self, cpu: int | None) -> list[str]:
        return [] if cpu is None else ["taskset", "-c", str(cpu)]

    def describe(self) -> str:
        if self.server is None:
            return "not pinned"
        return f"servers on CPU {self.server}, dnsperf on CPU {self.load}"


def nicupdate_config(
    path: Path, work: Path, http_port: int, dns_port: int, rate: int, slip: int
) -> None:
    rate_limit = RATE_LIMIT.format(rate=rate, slip=slip)
    path.write_text(
        CONFIG.format(
            http_port=http_port,
            dns_port=dns_port,
            database=work / "nicupdate.db",
            rate_limit=rate_limit,
            zone=ZONE,
            ttl=TTL,
            ns_address=NS_ADDRESS,
        )
    )


def wait_dns(server: Server, log: Path, serial: int | None = None) -> None:
    """Return when ``server`` answers the zone's SOA (with ``serial``, if given)."""
    import dns.exception
    import dns.rdatatype

    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if server.proc is not None and server.proc.poll() is not None:
            raise BenchError(
                f"{server.name} exited ({server.proc.returncode}) at start-up:\n{tail(log)}"
            )
        with contextlib.suppress(dns.exception.DNSException, OSError):
            reply = ask(server.port, ZONE, "SOA", timeout=0.5)
            for rrset in reply.answer:
                if rrset.rdtype == dns.rdatatype.SOA and serial in (None, rrset[0].serial):
                    return
        time.sleep(0.1)
    raise BenchError(f"{server.name} did not answer the SOA of {ZONE} within {STARTUP_TIMEOUT} s")


def start_nicupdate(
    processes: Processes, config: Path, http_port: int, cpu: list[str]
) -> subprocess.Popen[bytes]:
    command = [*cpu, sys.executable, "-m", "nicupdate_server", "--config", str(config), "serve"]
    proc = processes.start("nicupdate", command)
    processes.wait_http("nicupdate", f"http://127.0.0.1:{http_port}/healthz")
    return proc


def give_addresses(http_port: int) -> float:
    """Every host's records, through dyndns2 updates; how long it took (s)."""
    auth = basic()

    def update(index: int) -> str | None:
        addresses = ",".join(a for a in (host_a(index), host_aaaa(index)) if a)
        url = (
            f"http://127.0.0.1:{http_port}/nic/update?hostname={host_name(index)}&myip={addresses}"
        )
        status, body = http_get(url, auth, timeout=30)
        if status != 200 or not body.startswith("good"):
            return f"{host_name(index)}: {status} {body.strip()!r}"
        return None

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(UPDATE_THREADS) as pool:
        problems = [p for p in pool.map(update, range(HOSTS)) if p]
    if problems:
        raise BenchError(f"{len(problems)} set-up updates failed, first: {problems[0]}")
    return time.monotonic() - started


def soa_serial(port: int) -> int:
    """nicupdate's SOA serial, for the zone file of NSD and Knot."""
    import dns.exception
    import dns.rdatatype

    try:
        reply = ask(port, ZONE, "SOA")
    except dns.exception.DNSException as exc:
        raise BenchError(f"nicupdate's DNS did not answer the SOA of {ZONE}: {exc!r}") from None
    for rrset in reply.answer:
        if rrset.rdtype == dns.rdatatype.SOA:
            return int(rrset[0].serial)
    raise BenchError(f"nicupdate's DNS answered no SOA for {ZONE}:\n{reply}")


def zone_file(serial: int) -> str:
    refresh, retry, expire, minimum = SOA_TIMERS
    lines = [
        f"$ORIGIN {ZONE}.",
        f"$TTL {TTL}",
        f"@ IN SOA {NS_NAME}. {RNAME}. {serial} {refresh} {retry} {expire} {minimum}",
        f"@ IN NS {NS_NAME}.",
        f"{NS_NAME}. IN A {NS_ADDRESS}",
    ]
    for index in range(HOSTS):
        lines.append(f"{host_name(index)}. IN A {host_a(index)}")
        aaaa = host_aaaa(index)
        if aaaa:
            lines.append(f"{host_name(index)}. IN AAAA {aaaa}")
    return "\n".join(lines) + "\n"


def start_references(
    processes: Processes, work: Path, serial: int, layout: Layout
) -> tuple[Server, Server]:
    zonefile = work / f"{ZONE}.zone"
    zonefile.write_text(zone_file(serial))
    (work / "knot").mkdir()
    nsd, knot = Server("NSD", free_port()), Server("Knot", free_port())
    while knot.port == nsd.port:
        knot.port = free_port()
    (work / "nsd.conf").write_text(
        NSD_CONFIG.format(port=nsd.port, work=work, zone=ZONE, zonefile=zonefile)
    )
    (work / "knot.conf").write_text(
        KNOT_CONFIG.format(port=knot.port, work=work, zone=ZONE, zonefile=zonefile)
    )
    cpu = layout.taskset(layout.server)
    nsd.proc = processes.start("nsd", [*cpu, "nsd", "-d", "-c", str(work / "nsd.conf")])
    knot.proc = processes.start("knot", [*cpu, "knotd", "-c", str(work / "knot.conf")])
    wait_dns(nsd, work / "nsd.log", serial)
    wait_dns(knot, work / "knot.log", serial)
    return nsd, knot


# ---------------------------------------------------------------------------- answers


def ask(port: int, name: str, rdtype: str, *, timeout: float = DNS_TIMEOUT) -> dns.message.Message:
    import dns.message
    import dns.query

    return dns.query.udp(
        dns.message.make_query(name, rdtype), "127.0.0.1", timeout=timeout, port=port
    )


def signature(reply: dns.message.Message) -> tuple[str, bool, tuple[str, ...]]:
    """What must be the same on every server: rcode, AA bit, answer records (sorted)."""
    import dns.flags
    import dns.rcode

    lines = sorted(line for rrset in reply.answer for line in rrset.to_text().splitlines())
    return dns.rcode.to_text(reply.rcode()), bool(reply.flags & dns.flags.AA), tuple(lines)


def questions() -> list[tuple[str, str]]:
    sample = [(host_name(i), t) for i in range(0, HOSTS, 37) for t in ("A", "AAAA")]
    return [
        *sample,
        (host_name(HOSTS - 1), "A"),
        (ZONE, "SOA"),
        (ZONE, "NS"),
        (ZONE, "A"),
        (NS_NAME, "A"),
        (f"nx0001.{ZONE}", "A"),
        (f"nx0002.{ZONE}", "AAAA"),
        (f"below.{host_name(3)}", "A"),
        (host_name(3).upper(), "A"),
    ]


def compare_answers(servers: list[Server]) -> tuple[int, list[str]]:
    """(questions asked, the differences found)."""
    import dns.exception

    problems = []
    asked = questions()
    for name, rdtype in asked:
        seen: dict[str, tuple[str, bool, tuple[str, ...]] | str] = {}
        for server in servers:
            try:
                seen[server.name] = signature(ask(server.port, name, rdtype))
            except dns.exception.DNSException as exc:
                seen[server.name] = f"no answer ({exc.__class__.__name__})"
        if len(set(seen.values())) > 1:
            problems.append(
                f"{name} {rdtype}: "
                + "; ".join(f"{server} {answer}" for server, answer in seen.items())
            )
    return len(asked), problems


# ---------------------------------------------------------------------------- dnsperf


@dataclass
class Perf:
    qps: float
    sent: int
    completed: int
    lost: int
    rcodes: dict[str, int]


def query_file(path: Path) -> None:
    """dnsperf's input: QUERY_LINES questions in the QUERY_MIX, in a fixed random order."""
    rng = random.Random(53)
    lines = []
    for kind, percent in QUERY_MIX:
        for _ in range(QUERY_LINES * percent // 100):
            host = host_name(rng.randrange(HOSTS))
            if kind in ("A", "AAAA"):
                lines.append(f"{host} {kind}")
            elif kind == "NXDOMAIN":
                lines.append(f"nx{rng.randrange(10_000):04d}.{ZONE} A")
            else:
                lines.append(f"{ZONE} {kind}")
    rng.shuffle(lines)
    path.write_text("\n".join(lines) + "\n")


def dnsperf_command(port: int, queries: Path, seconds: int, cpu: list[str]) -> list[str]:
    return [
        *cpu,
        "dnsperf",
        "-s",
        "127.0.0.1",
        "-p",
        str(port),
        "-d",
        str(queries),
        "-l",
        str(seconds),
        "-c",
        str(DNSPERF_CLIENTS),
        "-q",
        str(DNSPERF_OUTSTANDING),
    ]


def parse_dnsperf(output: str) -> Perf:
    def number(label: str) -> float:
        match = re.search(rf"^\s*{label}:\s+([\d.]+)", output, re.M)
        if not match:
            raise BenchError(f"cannot read dnsperf's {label!r}:\n{output}")
        return float(match.group(1))

    codes = re.search(r"^\s*Response codes:\s+(.*)$", output, re.M)
    rcodes = {
        code: int(count)
        for code, count in re.findall(r"([A-Z]+) (\d+) \(", codes.group(1) if codes else "")
    }
    return Perf(
        qps=number("Queries per second"),
        sent=int(number("Queries sent")),
        completed=int(number("Queries completed")),
        lost=int(number("Queries lost")),
        rcodes=rcodes,
    )


def finish_dnsperf(proc: subprocess.CompletedProcess[str] | tuple[int, str, str]) -> Perf:
    code, out, err = (
        proc if isinstance(proc, tuple) else (proc.returncode, proc.stdout, proc.stderr)
    )
    if code != 0:
        raise BenchError(f"dnsperf failed ({code}): {err.strip() or out.strip()}")
    return parse_dnsperf(out)


def run_dnsperf(port: int, queries: Path, seconds: int, cpu: list[str]) -> Perf:
    command = dnsperf_command(port, queries, seconds, cpu)
    try:
        proc = subprocess.run(
            command, capture_output=True, text=True, timeout=seconds + 60, check=False
        )
    except subprocess.TimeoutExpired:
        raise BenchError(f"dnsperf did not finish: {' '.join(command)}") from None
    return finish_dnsperf(proc)


def wrong_rcodes(name: str, perf: Perf) -> list[str]:
    """The speed mix only has answers and names that do not exist."""
    odd = {code: n for code, n in perf.rcodes.items() if code not in ("NOERROR", "NXDOMAIN")}
    if not perf.completed:
        return [f"{name}: dnsperf got no answer at all"]
    return [f"{name}: dnsperf got {odd}"] if odd else []


# ---------------------------------------------------------------------------- isolation


@contextlib.contextmanager
def affinity(cpu: int | None) -> Iterator[None]:
    """Run the calling thread (and what it starts, e.g. wrk) on ``cpu``."""
    if cpu is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def pin_processes(pids: list[int], cpus: set[int]) -> None:
    """Run ``pids`` (every thread of each) on ``cpus``."""
    for pid in pids:
        with contextlib.suppress(OSError):
            for thread in os.listdir(f"/proc/{pid}/task"):
                with contextlib.suppress(OSError):
                    os.sched_setaffinity(int(thread), cpus)


def server_tree(pid: int) -> list[int]:
    import psutil

    root = psutil.Process(pid)
    return [pid, *(child.pid for child in root.children(recursive=True))]


def dns_processes(pid: int, dns_port: int, queries: Path, cpu: list[str]) -> tuple[list[int], Perf]:
    """The processes of the server that answer DNS: those busy (a quarter of a CPU or
    more) during a second of dnsperf, which loads nothing else. Also dnsperf's result."""
    import psutil

    def cpu_seconds() -> dict[int, float]:
        seconds = {}
        for child in server_tree(pid):
            with contextlib.suppress(psutil.Error):
                times = psutil.Process(child).cpu_times()
                seconds[child] = times.user + times.system
        return seconds

    before = cpu_seconds()
    started = time.monotonic()
    perf = run_dnsperf(dns_port, queries, WARMUP_SECONDS, cpu)
    wall = time.monotonic() - started
    after = cpu_seconds()
    busy = {p: (after[p] - before.get(p, 0.0)) / wall for p in after}
    found = [p for p, share in busy.items() if share >= 0.25]
    return found or [max(busy, key=lambda p: busy[p])], perf


@dataclass
class Isolation:
    pinning: str  # how the CPUs were shared, for the report
    alone: WrkResult
    flooded: WrkResult
    flood: Perf

    @property
    def share(self) -> float:
        return self.flooded.requests_per_s / self.alone.requests_per_s


def check_nochg(url: str, auth: str) -> None:
    status, body = http_get(url, auth)
    if status != 200 or not body.startswith("nochg"):
        raise BenchError(f"the isolation host answered {status} {body.strip()!r}, not nochg")


def isolation_pinnings(layout: Layout) -> list[tuple[str, str]]:
    """(key, description) of each way of sharing the CPUs to measure, the target's first;
    the server's processes are pinned by :func:`apply_pinning`."""
    if layout.server is None:
        return [("unpinned", "not pinned")]
    return [
        (
            "split",
            f"wrk and nicupdate's HTTP side on CPU {layout.load}, its DNS side and the "
            f"flood on CPU {layout.server}",
        ),
        (
            "shared",
            f"wrk on CPU {layout.load}, the flood on CPU {layout.server}, nicupdate on any",
        ),
    ]


def apply_pinning(key: str, pid: int, dns: list[int], layout: Layout) -> str:
    """Pin the server's processes for ``key``; a note on what that did."""
    tree = server_tree(pid)
    if key == "unpinned":
        return ""
    assert layout.load is not None and layout.server is not None
    if key == "shared":
        pin_processes(tree, layout.every)
        return ""
    if pid in dns:  # DNS answered by the HTTP process itself: it cannot be split
        pin_processes(tree, {layout.load})
        return "DNS answered in the HTTP process: all of nicupdate on the HTTP side's CPU"
    pin_processes([p for p in tree if p not in dns], {layout.load})
    pin_processes(dns, {layout.server})
    return f"DNS answered by {len(dns)} process(es) of its own"


def measure_isolation(
    args: argparse.Namespace, http_port: int, pid: int, dns_port: int, queries: Path, layout: Layout
) -> tuple[list[Isolation], str, list[str]]:
    """nochg alone and under a DNS flood, for each pinning; the best turn of each."""
    fqdn = host_name(NOCHG_INDEX)
    url = f"http://127.0.0.1:{http_port}/nic/update?hostname={fqdn}&myip={host_a(NOCHG_INDEX)}"
    auth = basic()
    check_nochg(url, auth)
    duration = args.duration
    flood_cpu = layout.taskset(layout.server)
    problems: list[str] = []
    dns, probe = dns_processes(pid, dns_port, queries, flood_cpu)
    problems += wrong_rcodes("the DNS probe", probe)
    note = ""
    best: dict[str, Isolation] = {}
    with affinity(layout.load):
        run_wrk(url, WARMUP_SECONDS, pid, auth=auth)
    for _turn in range(min(args.rounds, 2)):
        for key, description in isolation_pinnings(layout):
            note = apply_pinning(key, pid, dns, layout) or note
            print(f"isolation ({key}): nochg, {duration} s of wrk alone ...", flush=True)
            with affinity(layout.load):
                alone = run_wrk(url, duration, pid, auth=auth)
            print(
                f"isolation ({key}): nochg, {duration} s of wrk under a DNS flood ...", flush=True
            )
            seconds = duration + 2 * WARMUP_SECONDS
            flood_proc = subprocess.Popen(
                dnsperf_command(dns_port, queries, seconds, flood_cpu),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=child_env(),
            )
            try:
                time.sleep(WARMUP_SECONDS)  # the flood under way first
                with affinity(layout.load):
                    flooded = run_wrk(url, duration, pid, auth=auth)
                out, err = flood_proc.communicate(timeout=seconds + 60)
            finally:
                if flood_proc.poll() is None:
                    flood_proc.kill()
                    flood_proc.wait(10)
            flood = finish_dnsperf((flood_proc.returncode, out, err))
            problems += wrong_rcodes("the DNS flood", flood)
            turn = Isolation(description, alone, flooded, flood)
            if key not in best or turn.share > best[key].share:
                best[key] = turn
    check_nochg(url, auth)
    return list(best.values()), note, problems


# ---------------------------------------------------------------------------- amplification


@dataclass
class Sized:
    sent: int
    received: int | None  # None: no answer
    rcode: str = ""
    truncated: bool = False

    @property
    def ratio(self) -> float | None:
        return None if self.received is None else self.received / self.sent


def amplification_queries() -> list[tuple[str, bytes]]:
    """(kind, query wire): with EDNS and a 4,096-byte payload, as an attacker asks."""
    import dns.edns
    import dns.message

    host = host_name(0)  # with A and AAAA

    def query(name: str, rdtype: str, **extra: object) -> bytes:
        message = dns.message.make_query(name, rdtype, use_edns=0, payload=4096, **extra)  # type: ignore[arg-type]
        return bytes(message.to_wire())

    padding = [dns.edns.GenericOption(dns.edns.OptionType.PADDING, b"\0" * 8)]
    return [
        ("A of a host", query(host, "A")),
        ("A, padding option (8 B)", query(host, "A", options=padding)),
        ("A, padded to 468 B", query(host, "A", pad=468)),
        ("ANY at the apex", query(ZONE, "ANY")),
        ("ANY at a host", query(host, "ANY")),
        ("SOA", query(ZONE, "SOA")),
        ("NS", query(ZONE, "NS")),
        ("DNSKEY", query(ZONE, "DNSKEY")),
        ("name that does not exist", query(f"nx9999.{ZONE}", "A")),
        ("name outside the zone", query("www.example.org", "A")),
    ]


def send_once(port: int, wire: bytes) -> Sized:
    import dns.rcode

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(DNS_TIMEOUT)
        sock.connect(("127.0.0.1", port))
        sock.send(wire)
        try:
            reply = sock.recv(65535)
        except (TimeoutError, ConnectionRefusedError):
            return Sized(len(wire), None)
    if len(reply) < 12:
        return Sized(len(wire), len(reply), "short")
    rcode = dns.rcode.to_text(dns.rcode.Rcode(reply[3] & 0x0F))
    return Sized(len(wire), len(reply), rcode, bool(reply[2] & 0x02))


def measure_amplification(servers: list[Server]) -> list[tuple[str, dict[str, Sized]]]:
    return [
        (kind, {server.name: send_once(server.port, wire) for server in servers})
        for kind, wire in amplification_queries()
    ]


# ---------------------------------------------------------------------------- RRL


@dataclass
class UdpCounts:
    sent: int = 0
    full: int = 0
    truncated: int = 0
    other: int = 0  # answered otherwise (an error, or an empty answer)
    wrong: int = 0  # answered in full with an address the host does not have

    @property
    def unanswered(self) -> int:
        return self.sent - self.full - self.truncated - self.other


class _Counter(asyncio.DatagramProtocol):
    def __init__(self, counts: UdpCounts, expected: bytes, check: bool) -> None:
        self.counts = counts
        self.expected = expected  # the A record's address, 4 bytes
        self.check = check
        self.seen: set[int] = set()

    def datagram_received(self, data: bytes, addr: object) -> None:
        if len(data) < 12:
            self.counts.other += 1
            return
        query_id = int.from_bytes(data[:2], "big")
        if query_id in self.seen:
            return
        self.seen.add(query_id)
        truncated, rcode = bool(data[2] & 0x02), data[3] & 0x0F
        answers = int.from_bytes(data[6:8], "big")
        if truncated:
            self.counts.truncated += 1
        elif rcode == 0 and answers:
            self.counts.full += 1
            if self.check and self.expected not in data:
                self.counts.wrong += 1
        else:
            self.counts.other += 1


async def udp_sender(
    source: str, port: int, query: bytes, rate: int, seconds: float, *, check: bool
) -> UdpCounts:
    """Send ``query`` (a new id each time) at ``rate`` per second for ``seconds`` from
    ``source``, then wait a second for late answers."""
    loop = asyncio.get_running_loop()
    counts = UdpCounts()
    expected = socket.inet_aton(host_a(RRL_INDEX))
    transport, _ = await loop.create_datagram_endpoint(
        lambda: _Counter(counts, expected, check),
        local_addr=(source, 0),
        remote_addr=("127.0.0.1", port),
    )
    total = int(rate * seconds)
    try:
        started = loop.time()
        while counts.sent < total and loop.time() - started < seconds + 1:
            due = min(total, int(rate * (loop.time() - started)) + 1)
            while counts.sent < due:
                transport.sendto((counts.sent & 0xFFFF).to_bytes(2, "big") + query[2:])
                counts.sent += 1
            await asyncio.sleep(0.005)
        await asyncio.sleep(1.0)
    finally:
        transport.close()
    return counts


async def tcp_query(source: str, port: int, query: bytes) -> bool:
    try:
        async with asyncio.timeout(DNS_TIMEOUT):
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, local_addr=(source, 0)
            )
            try:
                writer.write(len(query).to_bytes(2, "big") + query)
                size = int.from_bytes(await reader.readexactly(2), "big")
                reply = await reader.readexactly(size)
            finally:
                writer.close()
    except (OSError, TimeoutError, asyncio.IncompleteReadError):
        return False
    return reply[:2] == query[:2] and reply[3] & 0x0F == 0 and reply[6:8] != b"\0\0"


def check_unlimited(port: int) -> list[str]:
    """The speed phases need every query answered: a burst of one query, answered in full?"""
    import dns.message

    query = bytes(dns.message.make_query(host_name(RRL_INDEX), "A").to_wire())
    counts = asyncio.run(udp_sender(FLOOD_SOURCE, port, query, BURST, 0.5, check=True))
    if counts.full == counts.sent and not counts.wrong:
        return []
    return [
        f"nicupdate answered only {counts.full} of {counts.sent} identical queries in full "
        f"({counts.truncated} truncated, {counts.unanswered} unanswered, {counts.wrong} wrong): "
        "it limits its answers, so dnsperf's figures would be wrong"
    ]


@dataclass
class Rrl:
    flood: UdpCounts
    other: UdpCounts
    idle_opened: int
    idle_kept: int  # of those, still open half a second later
    tcp_answered: int


async def _rrl(port: int, seconds: float) -> Rrl:
    import dns.message

    query = bytes(dns.message.make_query(host_name(RRL_INDEX), "A").to_wire())
    flood, other = await asyncio.gather(
        udp_sender(FLOOD_SOURCE, port, query, FLOOD_QPS, seconds, check=False),
        udp_sender(OTHER_SOURCE, port, query, OTHER_QPS, seconds, check=True),
    )
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    try:
        async with asyncio.timeout(30):
            for _ in range(IDLE_TCP):
                try:
                    idle.append(await asyncio.open_connection(FLOOD_SOURCE, port))
                except OSError:
                    break
            await asyncio.sleep(0.5)  # the server closes those it does not keep
            still_open = sum(not reader.at_eof() for reader, _ in idle)
            answered = 0
            for _ in range(TCP_QUERIES):
                answered += await tcp_query(OTHER_SOURCE, port, query)
    finally:
        for _, writer in idle:
            writer.close()
    return Rrl(flood, other, len(idle), still_open, answered)


def measure_rrl(
    processes: Processes, config: Path, work: Path, ports: tuple[int, int], seconds: float
) -> Rrl:
    http_port, dns_port = ports
    processes.stop("nicupdate")
    nicupdate_config(config, work, http_port, dns_port, RRL_RATE, RRL_SLIP)
    start_nicupdate(processes, config, http_port, [])
    print(
        f"rrl: {FLOOD_QPS} q/s from {FLOOD_SOURCE} and {OTHER_QPS} q/s from {OTHER_SOURCE} "
        f"for {seconds:g} s, then {IDLE_TCP} idle TCP connections ...",
        flush=True,
    )
    return asyncio.run(_rrl(dns_port, seconds))


# ---------------------------------------------------------------------------- the run


@dataclass
class Results:
    layout: Layout
    setup_s: float = 0.0
    asked: int = 0
    differences: list[str] = field(default_factory=list)
    speed: dict[str, list[Perf]] = field(default_factory=dict)
    isolation: list[Isolation] = field(default_factory=list)
    isolation_note: str = ""
    amplification: list[tuple[str, dict[str, Sized]]] = field(default_factory=list)
    rrl: Rrl | None = None
    problems: list[str] = field(default_factory=list)

    def median(self, name: str) -> float:
        return statistics.median(p.qps for p in self.speed[name])


def run(args: argparse.Namespace, work: Path) -> int:
    available = sorted(os.sched_getaffinity(0))
    layout = Layout()
    if args.pin and len(available) >= 2:
        layout = Layout(load=available[0], server=available[1], every=set(available))
    results = Results(layout)
    processes = Processes(work)
    ports: list[int] = []
    while len(ports) < 2:
        port = free_port()
        if port not in ports:
            ports.append(port)
    http_port, dns_port = ports
    config = work / "nicupdate.toml"
    try:
        nicupdate_config(config, work, http_port, dns_port, 0, RRL_SLIP)
        add_account(config, work)
        compile_server()
        server_proc = start_nicupdate(processes, config, http_port, layout.taskset(layout.server))
        results.setup_s = give_addresses(http_port)
        print(f"set-up: A records of {HOSTS} hosts over HTTP in {results.setup_s:.1f} s")
        nicupdate = Server("nicupdate", dns_port)
        serial = soa_serial(dns_port)
        nsd, knot = start_references(processes, work, serial, layout)
        servers = [nicupdate, nsd, knot]

        results.asked, results.differences = compare_answers(servers)
        results.problems += [f"answers differ: {d}" for d in results.differences]
        results.problems += check_unlimited(dns_port)

        queries = work / "queries.txt"
        query_file(queries)
        load_cpu = layout.taskset(layout.load)
        for server in servers:
            run_dnsperf(server.port, queries, WARMUP_SECONDS, load_cpu)
            results.speed[server.name] = []
        for round_ in range(args.rounds):
            for server in servers:
                print(
                    f"speed {round_ + 1}/{args.rounds}: {server.name}, "
                    f"{args.duration} s of dnsperf ...",
                    flush=True,
                )
                perf = run_dnsperf(server.port, queries, args.duration, load_cpu)
                results.speed[server.name].append(perf)
                results.problems += wrong_rcodes(server.name, perf)

        results.amplification = measure_amplification(servers)

        results.isolation, results.isolation_note, problems = measure_isolation(
            args, http_port, server_proc.pid, dns_port, queries, layout
        )
        results.problems += problems

        for server in servers:
            proc = server.proc or server_proc
            if proc.poll() is not None:
                raise BenchError(f"{server.name} exited during the run ({proc.returncode})")
        rrl = measure_rrl(processes, config, work, (http_port, dns_port), args.rrl_seconds)
        results.rrl = rrl
        if rrl.other.wrong or rrl.flood.wrong:
            results.problems.append(
                f"RRL phase: {rrl.other.wrong} answers with a wrong address for "
                f"{host_name(RRL_INDEX)}"
            )
    finally:
        processes.stop_all()
    report(args, results)
    for problem in results.problems:
        print(f"FAILED: {problem}", file=sys.stderr)
    return 1 if results.problems else 0


# ---------------------------------------------------------------------------- report


def ratio_text(sized: Sized) -> str:
    if sized.received is None:
        return "no answer"
    flags = f"{sized.rcode}{', TC' if sized.truncated else ''}"
    return f"{sized.received:>5} {sized.ratio:>5.1f}  {flags:<13}"


def report(args: argparse.Namespace, results: Results) -> None:
    summary: list[tuple[str, str, str, str]] = []  # figure, value, target, verdict
    print()
    print(
        f"dnsperf -c {DNSPERF_CLIENTS} -q {DNSPERF_OUTSTANDING} -l {args.duration}, "
        f"{args.rounds} round(s); {os.cpu_count()} CPUs, {results.layout.describe()}"
    )
    print(f"{'server':<12}{'median q/s':>12}  rounds (q/s, lost)")
    for name, perfs in results.speed.items():
        rounds = ", ".join(f"{p.qps:.0f} ({p.lost} lost)" for p in perfs)
        print(f"{name:<12}{results.median(name):>12.0f}  {rounds}")
        summary.append((f"{name} q/s (median)", f"{results.median(name):,.0f}", "", ""))
    ours, nsd, knot = (results.median(n) for n in ("nicupdate", "NSD", "Knot"))
    nsd_share = ours / nsd if nsd else 0.0
    summary.append(
        (
            "nicupdate / NSD",
            f"{nsd_share:.1%}",
            f">= {TARGET_NSD_SHARE:.0%}",
            met(nsd_share >= TARGET_NSD_SHARE),
        )
    )
    summary.append(("nicupdate / Knot", f"{ours / knot if knot else 0.0:.1%}", "", ""))
    summary.append(
        (
            f"same answers ({results.asked} questions)",
            "yes" if not results.differences else f"NO ({len(results.differences)} differ)",
            "all the same",
            met(not results.differences),
        )
    )

    if results.isolation:
        print()
        print(f"isolation: wrk -t1 -c64 -d{args.duration}s nochg, alone and under a DNS flood")
        if results.isolation_note:
            print(f"  ({results.isolation_note})")
        for index, iso in enumerate(results.isolation):
            print(
                f"  {iso.pinning}:\n    alone {iso.alone.requests_per_s:.0f} req/s, with the "
                f"flood {iso.flooded.requests_per_s:.0f} req/s "
                f"(p99 {iso.flooded.p99_ms or 0:.1f} ms), {iso.share:.0%}; the flood got "
                f"{iso.flood.qps:.0f} DNS q/s ({iso.flood.lost} lost)"
            )
            key = "nochg flooded / alone" + ("" if index == 0 else " (CPUs shared)")
            target = (
                (f">= {TARGET_ISOLATION:.0%}", met(iso.share >= TARGET_ISOLATION))
                if index == 0
                else ("", "")
            )
            summary += [
                (
                    "nochg alone / flooded, req/s" + ("" if index == 0 else " (CPUs shared)"),
                    f"{iso.alone.requests_per_s:,.0f} / {iso.flooded.requests_per_s:,.0f}",
                    "",
                    "",
                ),
                (key, f"{iso.share:.0%}", *target),
            ]
        summary.append(
            ("DNS q/s during the flood", f"{results.isolation[0].flood.qps:,.0f}", "", "")
        )

    if results.amplification:
        print()
        print("amplification (UDP, EDNS payload 4096): bytes out, out/in, rcode")
        names = list(results.amplification[0][1])
        header = "".join(f"{name:<26}" for name in names)
        print(f"{'query':<26}{'in':>5}  {header}")
        worst: tuple[float, str] = (0.0, "")
        for kind, by_server in results.amplification:
            sent = next(iter(by_server.values())).sent
            cells = "".join(f"{ratio_text(by_server[name]):<26}" for name in names)
            print(f"{kind:<26}{sent:>5}  {cells}")
            ratio = by_server["nicupdate"].ratio
            if kind != "A of a host" and ratio is not None and ratio > worst[0]:
                worst = (ratio, kind)
        summary.append(
            (
                f"nicupdate out/in, worst ({worst[1]})",
                f"{worst[0]:.1f}",
                f"<= {TARGET_AMPLIFICATION:g}",
                met(worst[0] <= TARGET_AMPLIFICATION),
            )
        )

    print()
    rrl = results.rrl
    if rrl is not None:
        flood, other = rrl.flood, rrl.other
        full_share = flood.full / flood.sent if flood.sent else 1.0
        print(
            f"RRL ({RRL_RATE}/s, slip {RRL_SLIP}): flood from {FLOOD_SOURCE}: sent "
            f"{flood.sent}, in full {flood.full}, truncated {flood.truncated}, other "
            f"{flood.other}, unanswered {flood.unanswered}; {OTHER_SOURCE}: sent {other.sent}, "
            f"in full {other.full}, truncated {other.truncated}, unanswered {other.unanswered}"
        )
        print(
            f"TCP: {rrl.idle_opened} idle connections opened from {FLOOD_SOURCE}, "
            f"{rrl.idle_kept} kept open by the server; {rrl.tcp_answered}/{TCP_QUERIES} "
            f"queries from {OTHER_SOURCE} answered"
        )
        summary += [
            (
                "RRL flood answered in full",
                f"{flood.full}/{flood.sent} ({full_share:.1%})",
                f"<= {TARGET_RRL_FULL:.0%}",
                met(full_share <= TARGET_RRL_FULL),
            ),
            ("RRL flood truncated (slip)", f"{flood.truncated}", "", ""),
            ("RRL flood unanswered", f"{flood.unanswered}", "", ""),
            (
                "RRL other source in full",
                f"{other.full}/{other.sent}",
                "all",
                met(other.full == other.sent),
            ),
            (
                f"TCP queries beside {IDLE_TCP} idle",
                f"{rrl.tcp_answered}/{TCP_QUERIES} ({rrl.idle_kept} idle kept)",
                "all",
                met(rrl.tcp_answered == TCP_QUERIES),
            ),
        ]

    print()
    width = max(len(row[0]) for row in summary) + 2
    value_width = max(len(row[1]) for row in summary) + 2
    print(f"{'summary':<{width}}{'value':<{value_width}}{'target':<14}verdict")
    for figure, value, target, verdict in summary:
        print(f"{figure:<{width}}{value:<{value_width}}{target:<14}{verdict}".rstrip())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--duration", type=int, default=None, help="seconds of load per measure (default 10)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="3 s per measure, one round, 1 s of RRL (for CI)"
    )
    parser.add_argument("--no-pin", dest="pin", action="store_false", help="do not pin CPUs")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    if args.duration is None:
        args.duration = 3 if args.quick else 10
    if args.duration < 1:
        parser.error("--duration must be at least 1 second")
    args.rounds = 1 if args.quick else 3
    args.rrl_seconds = 1.0 if args.quick else 3.0
    tools = {"nsd": "nsd", "knotd": "knot", "dnsperf": "dnsperf", "wrk": "wrk"}
    if args.pin:
        tools["taskset"] = "util-linux"
    missing = missing_requirements(tools, ("psutil", "dns", "nicupdate_server"))
    if missing:
        print(f"bench_dns: {missing}", file=sys.stderr)
        return 2
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:  # the RRL phase holds hundreds of TCP connections
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    with work_directory(args.keep) as work:
        try:
            return run(args, work)
        except BenchError as exc:
            print(f"bench_dns: {exc}", file=sys.stderr)
            return 1


if __name__ == "__main__":
    sys.exit(main())
