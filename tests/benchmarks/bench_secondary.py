"""Updates with a real BIND secondary attached: the update rate, the secondary's lag, and
how many zone transfers the changes cost.

Run: ``python tests/benchmarks/bench_secondary.py [--duration SECONDS] [--quick] [--keep]``

In one run, on free 127.0.0.1 ports and a temporary directory, it:

1. creates a configuration, the account ``bench`` (through the CLI) and 1,000 hosts
   ``h0000..h0999.dyn.example.test`` (through :class:`nicupdate_server.admin.Admin`), as
   bench_update does, and a TSIG key in ``tsig-keygen``'s format. Two servers run on
   copies of that database: *plain*, the built-in DNS with no ``[dns.transfer]``, and
   *with-bind*, with ``[dns.transfer]`` (the key, ``allow = ["127.0.0.1/32"]`` and
   ``notify`` to BIND's port);
2. starts both servers, and BIND 9 as *with-bind*'s secondary, from the shipped
   ``deploy/secondaries/bind/named.conf`` as tests/server/secondaries.py rewrites it
   (``running_secondary``: ``named -f -d 3``, its incoming transfers logged), and
   waits until BIND serves the primary's serial;
3. **rate**: ``good`` updates cycling over the 1,000 hosts, each request a new address
   (bench_update's wrk script, ``wrk -t1 -c64``), against *plain* and *with-bind* in
   turn, 2 turns after a 1-second warm-up of each, the best turn of each counting.
   After each turn of *with-bind* it waits until BIND serves the serial the primary
   had when wrk stopped (how long that took is printed). After every turn it checks
   that the server's own DNS, and BIND, serve the last address sent to a sample of
   hosts. Prints with-bind / plain (target >= 90%), and the CPU time of nicupdate's
   HTTP and DNS processes and of BIND per second of load;
4. **transfers**: BIND's completed incoming transfers (from its xfer-in log: IXFR,
   or a whole zone, in answer to an AXFR or to an IXFR) during the turns of
   *with-bind* and until BIND caught up, per 1,000 ``good`` answers, with the NOTIFY
   messages BIND received;
5. **lag**: 200 updates (60 with ``--quick``), one every 100 ms, each a new address for
   another host, on *with-bind* alone; after each ``good`` answer BIND and, as the
   reference, the primary's own DNS are asked over UDP (every 5 ms, for at most 10 s)
   until they serve that address. Prints p50, p99 and the maximum of the time from
   ``good`` to BIND serving it (target p50 < 50 ms), the primary's p50 and p99, and,
   from the times in BIND's log, where BIND's time goes: when the NOTIFY arrived
   (relative to ``good``), from ``good`` to the transfer that brought the change
   starting (BIND first asks the primary for its SOA), to the primary's first answer,
   to the transfer completed, to BIND serving it. Each sample is also written to
   ``lag-samples.tsv`` in the temporary directory (kept with ``--keep``);
6. prints a summary with every figure, ratio and target.

Needs ``named`` (bind9) and ``wrk`` (``apt-get install``). Timings are printed, never
asserted: the exit status is non-zero only when something failed to run or answered
wrongly (an update not answered ``good``, a server or BIND not serving the last
address sent, BIND not following within the time allowed).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import bisect
import contextlib
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import dns.tsig

    from tests.server.secondaries import Secondary

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.benchmarks.bench_update import (
    BUSY_SHARE,
    CONFIG,
    CONNECTIONS,
    GOOD_LUA,
    HOSTS,
    PASSWORD,
    USER,
    WARMUP_SECONDS,
    ZONE,
    BenchError,
    Processes,
    WrkResult,
    add_account,
    check_dns,
    compile_server,
    free_port,
    met,
    missing_requirements,
    run_wrk,
    work_directory,
)

KEY_NAME = "xfr-key"
ALGORITHM = "hmac-sha256"
TURNS = 2  # plain and with-bind take turns this often; the best of each counts
SAMPLES = 200  # lag samples (60 with --quick)
QUICK_SAMPLES = 60
SPACING = 0.100  # seconds between two lag samples' updates
POLL_INTERVAL = 0.005  # seconds between two questions to BIND about one sample
LAG_TIMEOUT = 10.0  # a sample BIND does not serve within this has failed
CATCH_UP_TIMEOUT = 30.0  # BIND must serve the primary's serial within this after a load
DNS_TIMEOUT = 1.0

TARGET_RATE = 0.90
TARGET_LAG_P50_MS = 50.0

TRANSFER = """
[dns.transfer]
tsig_key_file = "{key_file}"
allow = ["127.0.0.1/32"]
notify = ["127.0.0.1:{secondary_port}"]
"""

KEY_FILE = """\
key "{name}" {{
\talgorithm {algorithm};
\tsecret "{secret}";
}};
"""

# BIND's log (print-time yes: local time to the millisecond). The lines that time a
# change's way to BIND, as named 9.18 writes them:
#   26-Nov-2026 12:33:57.510 client @0x7f.. 127.0.0.1#41234: received notify for zone
#     'dyn.example.test': TSIG 'xfr-key'
#   26-Nov-2026 12:33:57.520 zone dyn.example.test/IN: Transfer started.
#   26-Nov-2026 12:33:57.550 transfer of 'dyn.example.test/IN' from 127.0.0.1#5300:
#     got incremental response
#   26-Nov-2026 12:33:57.560 transfer of 'dyn.example.test/IN' from 127.0.0.1#5300:
#     Transfer completed: 1 messages, 4 records, 240 bytes, 0.001 secs (...)
BIND_TIME = r"^(?P<time>\d\d-\w{3}-\d{4} \d\d:\d\d:\d\d\.\d{3}) "
BIND_EVENTS = {
    "notify": re.compile(BIND_TIME + rf".*received notify for zone '{re.escape(ZONE)}'"),
    "started": re.compile(BIND_TIME + rf"zone {re.escape(ZONE)}/IN: Transfer started"),
    "response": re.compile(
        BIND_TIME + rf"transfer of '{re.escape(ZONE)}/IN' from \S+: got (non)?incremental response"
    ),
    "completed": re.compile(
        BIND_TIME + rf"transfer of '{re.escape(ZONE)}/IN' from \S+: Transfer completed"
    ),
}


def basic() -> str:
    return "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()


def host_name(index: int) -> str:
    return f"h{index:04d}.{ZONE}"


# ---------------------------------------------------------------------------- set-up


@dataclass
class Target:
    """One nicupdate server of the run: plain or with a secondary."""

    name: str
    config: Path
    http_port: int
    dns_port: int
    proc: subprocess.Popen[bytes] | None = None
    generated: int = 0  # requests the wrk script made so far (the next one's number)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"


def distinct_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def set_up(work: Path) -> tuple[Target, Target, int, dns.tsig.Key]:
    """The plain and with-bind servers' configurations on copies of one database with
    the account and hosts; BIND's port and the TSIG key."""
    import dns.tsig

    secret = base64.b64encode(secrets.token_bytes(32)).decode()
    key = dns.tsig.Key(f"{KEY_NAME}.", secret, ALGORITHM)
    key_file = work / "xfr.key"
    key_file.write_text(KEY_FILE.format(name=KEY_NAME, algorithm=ALGORITHM, secret=secret))
    ports = distinct_ports(5)
    secondary_port = ports[4]
    targets = []
    for name, (http_port, dns_port) in (("plain", ports[:2]), ("with-bind", ports[2:4])):
        config = work / f"{name}.toml"
        text = CONFIG.format(
            http_port=http_port,
            dns_port=dns_port,
            database=work / f"{name}.db",
            zone=ZONE,
            metrics="true",
        )
        if name == "with-bind":
            text += TRANSFER.format(key_file=key_file, secondary_port=secondary_port)
        config.write_text(text)
        targets.append(Target(name, config, http_port, dns_port))
    plain, with_bind = targets
    add_account(plain.config, work)
    compile_server()
    shutil.copyfile(work / "plain.db", work / "with-bind.db")  # closed: no WAL
    return plain, with_bind, secondary_port, key


def start_server(processes: Processes, target: Target) -> None:
    command = [sys.executable, "-m", "nicupdate_server", "--config", str(target.config), "serve"]
    target.proc = processes.start(target.name, command)
    processes.wait_http(target.name, f"{target.base}/healthz")


def primary_serial(target: Target) -> int:
    import dns.exception
    import dns.message
    import dns.query
    import dns.rdatatype

    query = dns.message.make_query(ZONE, dns.rdatatype.SOA)
    try:
        reply = dns.query.udp(query, "127.0.0.1", port=target.dns_port, timeout=DNS_TIMEOUT)
    except (dns.exception.DNSException, OSError) as exc:
        raise BenchError(f"{target.name}: its DNS did not answer the SOA: {exc!r}") from None
    for rrset in reply.answer:
        if rrset.rdtype == dns.rdatatype.SOA:
            return int(rrset[0].serial)
    raise BenchError(f"{target.name}: its DNS answered no SOA for {ZONE}:\n{reply}")


def wait_caught_up(
    secondary: Secondary, target: Target, timeout: float, since: float | None = None
) -> float:
    """Wait until BIND serves the primary's current serial; how long that took (s),
    from ``since`` (a time.monotonic()) if given."""
    import dns.serial

    started = time.monotonic()
    since = started if since is None else since
    wanted = primary_serial(target)
    deadline = started + timeout
    while True:
        current = secondary.serial(ZONE)
        if current is not None and dns.serial.Serial(current) >= wanted:
            return time.monotonic() - since
        if time.monotonic() > deadline:
            raise BenchError(
                f"BIND serves {ZONE} with serial {current}, not {wanted}, {timeout:g} s "
                f"after the primary had it; its log:\n{secondary.log_text()[-3000:]}"
            )
        time.sleep(0.002)


# ---------------------------------------------------------------------------- CPU


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    import psutil

    seconds = {}
    for name, pid in pids.items():
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.Error:
            continue
        seconds[name] = times.user + times.system
    return seconds


def process_ids(target: Target, secondary: Secondary | None) -> dict[str, int]:
    """nicupdate's HTTP process, its DNS process (its child) and BIND, by role."""
    import psutil

    assert target.proc is not None
    pids = {"http": target.proc.pid}
    for child in psutil.Process(target.proc.pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if "nicupdate_server.dns" in child.cmdline():
                pids["dns"] = child.pid
    if secondary is not None and secondary.pid is not None:
        pids["bind"] = secondary.pid
    return pids


# ---------------------------------------------------------------------------- load


@dataclass
class Turn:
    """One measured load of one server."""

    wrk: WrkResult
    good: int  # answers "good"
    bad: int
    cpu: dict[str, float]  # CPU seconds per second of load, by process role
    # With BIND: how long after wrk stopped BIND served the primary's serial, its
    # transfers ("IXFR", or "AXFR" for a whole zone) and the NOTIFY messages it received.
    catch_up_s: float | None = None
    transfers: list[str] = field(default_factory=list)
    notifies: int = 0
    # From each transfer BIND started to the primary's first answer (BIND's log), ms.
    answers_ms: list[float] = field(default_factory=list)
    seconds: float = 0.0  # of load

    @property
    def others(self) -> float:
        """The share of all CPUs that processes other than nicupdate's, BIND, wrk and
        this benchmark used during the load."""
        ours = (self.cpu.get("dns", 0.0) + self.cpu.get("bind", 0.0)) / (os.cpu_count() or 1)
        return max(0.0, self.wrk.other_cpu - ours)


def load(
    target: Target,
    work: Path,
    duration: int,
    auth: str,
    secondary: Secondary | None,
    failures: list[str],
) -> Turn:
    """``duration`` seconds of wrk's good updates on ``target``; with ``secondary``,
    wait until BIND caught up, count its transfers and check what it serves."""
    assert target.proc is not None
    start = target.generated
    script = work / f"good-{target.name}.lua"
    script.write_text(GOOD_LUA.format(hosts=HOSTS, zone=ZONE, start=start))
    pids = process_ids(target, secondary)
    log_before = secondary.log_text() if secondary is not None else ""
    before = cpu_seconds(pids)
    began = time.monotonic()
    result = run_wrk(
        f"{target.base}/nic/update", duration, target.proc.pid, auth=auth, script=script
    )
    ended = time.monotonic()
    wall = ended - began
    after = cpu_seconds(pids)
    caught_up = None
    if secondary is not None:  # the serial of the changes answered when wrk stopped
        caught_up = wait_caught_up(secondary, target, CATCH_UP_TIMEOUT, since=ended)
    counts = re.search(r"^BENCH generated=(\d+) bad=(\d+) sample=(.*)$", result.output, re.M)
    if not counts:
        raise BenchError(f"the wrk script reported no counts:\n{result.output}")
    generated, bad, sample = int(counts.group(1)), int(counts.group(2)), counts.group(3)
    target.generated = generated
    if bad:
        failures.append(f"{target.name}: {bad} updates not answered 'good' (first: {sample})")
    turn = Turn(
        wrk=result,
        good=result.requests - bad,
        bad=bad,
        cpu={role: (after[role] - before.get(role, 0.0)) / wall for role in after},
        catch_up_s=caught_up,
        seconds=wall,
    )
    time.sleep(0.5)  # let requests still in flight when wrk stopped finish
    for problem in check_dns(generated, target.dns_port, start=start):
        failures.append(f"{target.name}: {problem}")
    if secondary is not None:
        wait_caught_up(secondary, target, CATCH_UP_TIMEOUT)  # and the last in flight
        for problem in check_dns(generated, secondary.port, start=start):
            failures.append(f"BIND: {problem}")
        log = log_since(secondary, log_before)
        events = bind_events(log)
        turn.transfers = transfers_in(log)
        turn.notifies = len(events["notify"])
        turn.answers_ms = answer_times(events)
    return turn


# ---------------------------------------------------------------------------- lag


@dataclass
class Sample:
    host: str
    address: str
    answered: float  # time.time() of the good answer
    lag_s: float | None = None  # from the good answer to BIND serving it; None: never
    primary_s: float | None = None  # ... to the primary's own DNS serving it


async def _until_served(port: int, sample: Sample, started: float) -> float | None:
    """Ask the DNS on ``port`` (every POLL_INTERVAL, for at most LAG_TIMEOUT) until it
    serves ``sample``'s address; the seconds from ``started`` until it did, or None."""
    import dns.asyncquery
    import dns.exception
    import dns.message
    import dns.rdatatype

    deadline = started + LAG_TIMEOUT
    while time.monotonic() < deadline:
        query = dns.message.make_query(sample.host, dns.rdatatype.A)
        with contextlib.suppress(dns.exception.DNSException, OSError):
            reply = await dns.asyncquery.udp(query, "127.0.0.1", port=port, timeout=DNS_TIMEOUT)
            served = [
                rdata.to_text()
                for rrset in reply.answer
                if rrset.rdtype == dns.rdatatype.A
                for rdata in rrset
            ]
            if served == [sample.address]:
                return time.monotonic() - started
        await asyncio.sleep(POLL_INTERVAL)
    return None


async def _follow(target: Target, port: int, sample: Sample, started: float) -> None:
    sample.primary_s, sample.lag_s = await asyncio.gather(
        _until_served(target.dns_port, sample, started), _until_served(port, sample, started)
    )


async def _lag(target: Target, port: int, count: int, auth: str) -> tuple[list[Sample], list[str]]:
    """``count`` updates, one every SPACING, each followed on the primary and on BIND
    (``port``) until they serve it."""
    import httpx

    samples: list[Sample] = []
    problems: list[str] = []
    pollers: list[asyncio.Task[None]] = []
    limits = httpx.Limits(max_connections=1)
    async with httpx.AsyncClient(
        base_url=target.base, headers={"Authorization": auth}, timeout=10.0, limits=limits
    ) as client:
        next_at = time.monotonic()
        for index in range(count):
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            next_at += SPACING
            # Every sample another host, and an address the load never sent (it sends
            # 198.51.100.x and 203.0.113.x).
            host = host_name(index * 7 % HOSTS)
            address = f"192.0.2.{index % 254 + 1}"
            try:
                reply = await client.get("/nic/update", params={"hostname": host, "myip": address})
            except httpx.HTTPError as exc:
                problems.append(f"lag sample {host}: no answer ({exc!r})")
                continue
            started = time.monotonic()
            if reply.status_code != 200 or reply.text.strip() != f"good {address}":
                problems.append(
                    f"lag sample {host}: answered {reply.status_code} {reply.text.strip()!r}"
                )
                continue
            sample = Sample(host, address, time.time())
            samples.append(sample)
            pollers.append(asyncio.create_task(_follow(target, port, sample, started)))
        await asyncio.gather(*pollers)
    for sample in samples:
        for who, lag in (("the primary", sample.primary_s), ("BIND", sample.lag_s)):
            if lag is None:
                problems.append(
                    f"{who} did not serve {sample.address} for {sample.host} within "
                    f"{LAG_TIMEOUT:g} s of the good answer"
                )
    return samples, problems


def write_samples(path: Path, samples: list[Sample]) -> None:
    """The lag samples, for a look beside BIND's log (kept with --keep)."""
    lines = ["host\taddress\tanswered (local time)\tprimary ms\tBIND ms"]
    for sample in samples:
        answered = datetime.fromtimestamp(sample.answered).strftime("%H:%M:%S.%f")[:-3]
        lags = (
            "-" if lag is None else f"{1000 * lag:.1f}" for lag in (sample.primary_s, sample.lag_s)
        )
        lines.append("\t".join([sample.host, sample.address, answered, *lags]))
    path.write_text("\n".join(lines) + "\n")


def log_since(secondary: Secondary, before: str) -> str:
    """What BIND logged since its log read ``before``."""
    log = secondary.log_text()
    return log[len(before) :] if log.startswith(before) else log


def transfers_in(log: str) -> list[str]:
    """BIND's completed incoming transfers of the zone in ``log``: "IXFR", or "AXFR" for
    a whole zone (tests/server/secondaries.py reads them)."""
    from tests.server.secondaries import parse_transfers

    return parse_transfers("bind", log, ZONE)


def bind_events(log: str) -> dict[str, list[float]]:
    """The times (seconds since the epoch) of each event of :data:`BIND_EVENTS`."""
    events: dict[str, list[float]] = {name: [] for name in BIND_EVENTS}
    for line in log.splitlines():
        for name, pattern in BIND_EVENTS.items():
            match = pattern.search(line)
            if match:
                when = datetime.strptime(match["time"], "%d-%b-%Y %H:%M:%S.%f")
                events[name].append(when.timestamp())  # BIND logs local time
                break
    for times in events.values():
        times.sort()
    return events


def answer_times(events: dict[str, list[float]]) -> list[float]:
    """For each transfer BIND started, the ms until the primary's first answer to it
    (the primary takes its snapshot of the zone, and reads the changes for an IXFR,
    before that answer)."""
    times = []
    for started in events["started"]:
        index = bisect.bisect_left(events["response"], started)
        if index < len(events["response"]):
            times.append(1000 * (events["response"][index] - started))
    return times


def stages(samples: list[Sample], events: dict[str, list[float]]) -> dict[str, list[float]]:
    """Where each served sample's time went, in ms, from the times in BIND's log (which
    are cut to a few ms). The transfer that brought the sample is the last one BIND
    completed before it served it; the stages: from ``good`` to that transfer starting
    (BIND checks the primary's SOA first), to the primary's first answer to it, to the
    transfer completed, to BIND serving it (as polled). And the NOTIFY nearest to the
    ``good`` answer, received before it (< 0) or after it.

    "good -> transfer started" holds BIND's wait before it asks the primary for the
    SOA: its SOA queries pass a rate limiter (``serial-query-rate``, 20 a second by
    default, which named 9.18 runs as a 500 ms tick letting 10 through), so a NOTIFY
    waits up to 500 ms for the next tick (with its default category logged at debug
    level, named logs ``queue_soa_query: enter`` and, that much later, ``soa_query:
    enter``)."""
    slack = 0.004  # BIND's clock in its log is coarse: a few ms

    def last(name: str, moment: float) -> float | None:
        """The last ``name`` at ``moment`` or before."""
        times = events[name]
        index = bisect.bisect_right(times, moment) - 1
        return times[index] if index >= 0 else None

    def nearest(name: str, moment: float) -> float | None:
        times = events[name]
        index = bisect.bisect_left(times, moment)
        close = [times[i] for i in (index - 1, index) if 0 <= i < len(times)]
        best = min(close, key=lambda t: abs(t - moment), default=None)
        return best if best is not None and abs(best - moment) < SPACING / 2 else None

    found: dict[str, list[float]] = {
        "NOTIFY received - good": [],
        "good -> transfer started": [],
        "started -> primary answered": [],
        "answered -> completed": [],
        "completed -> served (polled)": [],
    }
    for sample in samples:
        if sample.lag_s is None:
            continue
        notified = nearest("notify", sample.answered)
        if notified is not None:
            found["NOTIFY received - good"].append(1000 * (notified - sample.answered))
        served = sample.answered + sample.lag_s
        completed = last("completed", served + slack)
        started = last("started", completed) if completed is not None else None
        answered = last("response", completed) if completed is not None else None
        if completed is None or started is None or answered is None or answered < started:
            continue
        for name, begin, end in (
            ("good -> transfer started", sample.answered, started),
            ("started -> primary answered", started, answered),
            ("answered -> completed", answered, completed),
            ("completed -> served (polled)", completed, served),
        ):
            found[name].append(1000 * max(0.0, end - begin))
    return found


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


# ---------------------------------------------------------------------------- run


@dataclass
class Results:
    turns: dict[str, list[Turn]] = field(default_factory=lambda: {"plain": [], "with-bind": []})
    lags_ms: list[float] = field(default_factory=list)
    primary_ms: list[float] = field(default_factory=list)
    samples: int = 0
    stages: dict[str, list[float]] = field(default_factory=dict)
    lag_transfers: list[str] = field(default_factory=list)
    lag_notifies: int = 0

    def best(self, name: str) -> Turn:
        return max(self.turns[name], key=lambda turn: turn.wrk.requests_per_s)


def run(args: argparse.Namespace, work: Path) -> int:
    from tests.server.secondaries import running_secondary

    processes = Processes(work)
    failures: list[str] = []
    results = Results()
    auth = basic()
    try:
        plain, target, secondary_port, key = set_up(work)
        start_server(processes, plain)
        start_server(processes, target)
        with contextlib.ExitStack() as stack:
            try:
                secondary = stack.enter_context(
                    running_secondary(
                        "bind", work, target.dns_port, [ZONE], key, port=secondary_port
                    )
                )
            except RuntimeError as exc:
                raise BenchError(f"BIND did not start: {exc}") from None
            started = time.monotonic()
            wait_caught_up(secondary, target, CATCH_UP_TIMEOUT)
            print(f"set-up: BIND has {ZONE} after {time.monotonic() - started:.1f} s")

            # A short load of each first, so that both (and BIND) are warm when measured.
            for server, attached in ((plain, None), (target, secondary)):
                load(server, work, WARMUP_SECONDS, auth, attached, failures)
            for turn in range(args.turns):
                for server, attached in ((plain, None), (target, secondary)):
                    print(
                        f"{server.name}: good, {args.duration} s of wrk over {HOSTS} hosts "
                        f"(turn {turn + 1}/{args.turns}) ...",
                        flush=True,
                    )
                    results.turns[server.name].append(
                        load(server, work, args.duration, auth, attached, failures)
                    )
            if plain.proc is not None and plain.proc.poll() is not None:
                raise BenchError(f"{plain.name} exited during the run ({plain.proc.returncode})")
            processes.stop(plain.name)

            print(
                f"lag: {args.samples} updates, one every {SPACING * 1000:.0f} ms, "
                "each awaited on BIND ...",
                flush=True,
            )
            log_before = secondary.log_text()
            samples, problems = asyncio.run(_lag(target, secondary.port, args.samples, auth))
            failures += problems
            time.sleep(0.2)  # BIND's last log lines
            log = log_since(secondary, log_before)
            events = bind_events(log)
            write_samples(work / "lag-samples.tsv", samples)
            results.samples = len(samples)
            results.lags_ms = [1000 * s.lag_s for s in samples if s.lag_s is not None]
            results.primary_ms = [1000 * s.primary_s for s in samples if s.primary_s is not None]
            results.stages = stages(samples, events)
            results.lag_transfers = transfers_in(log)
            results.lag_notifies = len(events["notify"])
            if target.proc is not None and target.proc.poll() is not None:
                raise BenchError(f"{target.name} exited during the run ({target.proc.returncode})")
            processes.stop(target.name)
    finally:
        processes.stop_all()
    report(args, results)
    for problem in failures:
        print(f"FAILED: {problem}", file=sys.stderr)
    return 1 if failures else 0


# ---------------------------------------------------------------------------- report


def report(args: argparse.Namespace, results: Results) -> None:
    width = 32
    plain, with_bind = results.best("plain"), results.best("with-bind")
    print()
    print(
        f"wrk -t1 -c{CONNECTIONS} -d{args.duration}s, good updates over {HOSTS:,} hosts, "
        f"best of {args.turns} turn(s) each"
    )
    for label, turn in (("plain (no [dns.transfer])", plain), ("with a BIND secondary", with_bind)):
        result = turn.wrk
        print(
            f"{label:<{width}}{result.requests_per_s:>8.0f} good/s  "
            f"p50 {result.p50_ms or 0:.2f} ms, p99 {result.p99_ms or 0:.2f} ms"
        )
    ratio = (
        with_bind.wrk.requests_per_s / plain.wrk.requests_per_s if plain.wrk.requests_per_s else 0.0
    )
    print(
        f"{'  with / plain':<{width}}{ratio:>8.0%}  "
        f"(target >= {TARGET_RATE:.0%}: {met(ratio >= TARGET_RATE)})"
    )
    for label, turn in (("plain", plain), ("with BIND", with_bind)):
        print(
            f"{'  CPU, ' + label:<{width}}"
            + ", ".join(f"{role} {share:.2f}" for role, share in turn.cpu.items())
            + "  (cores, during the best turn)"
        )
    print(
        f"{'  every turn':<{width}}"
        + "; ".join(
            f"{name} " + ", ".join(f"{turn.wrk.requests_per_s:.0f}" for turn in turns)
            for name, turns in results.turns.items()
        )
        + " good/s"
    )
    busy = [
        f"{name} turn {number} ({turn.others:.0%} of all CPUs)"
        for name, turns in results.turns.items()
        for number, turn in enumerate(turns, 1)
        if turn.others > BUSY_SHARE
    ]
    if busy:
        print(
            "WARNING: other processes used the CPUs during "
            + ", ".join(busy)
            + ": those figures are low; run again on a quiet machine"
        )

    bind_turns = results.turns["with-bind"]
    changes = sum(turn.good for turn in bind_turns)
    transfers = [kind for turn in bind_turns for kind in turn.transfers]
    notifies = sum(turn.notifies for turn in bind_turns)
    per_1000 = 1000 * len(transfers) / changes if changes else 0.0
    print(
        f"{'transfers per 1,000 changes':<{width}}{per_1000:>8.1f}  "
        f"({len(transfers)} transfers: {transfers.count('IXFR')} incremental, "
        f"{transfers.count('AXFR')} whole zone; {notifies} NOTIFY received by BIND; "
        f"{changes:,} good answers in {len(bind_turns)} turn(s))"
    )
    if changes and transfers:
        print(f"{'  changes per transfer':<{width}}{changes / len(transfers):>8.1f}")
    answers = [ms for turn in bind_turns for ms in turn.answers_ms]
    seconds = sum(turn.seconds for turn in bind_turns)
    if answers and seconds:
        print(
            f"{'  transfer -> first answer':<{width}}p50 {statistics.median(answers):.0f} ms, "
            f"max {max(answers):.0f} ms, in all {sum(answers) / 10 / seconds:.0f}% of the "
            "load's time  (BIND's log: from each transfer started to the primary's first "
            "message)"
        )
    catch_up = [turn.catch_up_s for turn in bind_turns if turn.catch_up_s is not None]
    if catch_up:
        print(
            f"{'BIND caught up after load':<{width}}{1000 * max(catch_up):>8.0f} ms  "
            "(after wrk stopped, the longest of the turns)"
        )

    lags = results.lags_ms
    if lags:
        p50, p99 = statistics.median(lags), percentile(lags, 0.99)
        print(
            f"{'good -> served by BIND':<{width}}p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
            f"max {max(lags):.1f} ms  (target p50 < {TARGET_LAG_P50_MS:.0f} ms: "
            f"{met(p50 < TARGET_LAG_P50_MS)})"
        )
        print(
            f"{'':<{width}}{len(lags)} of {results.samples} updates, one every "
            f"{SPACING * 1000:.0f} ms, each polled every {POLL_INTERVAL * 1000:.0f} ms"
        )
    else:
        print(f"{'good -> served by BIND':<{width}}no update was served")
    primary = results.primary_ms
    if primary:
        print(
            f"{'good -> served by the primary':<{width}}p50 {statistics.median(primary):.1f} ms, "
            f"p99 {percentile(primary, 0.99):.1f} ms  (the reference: nicupdate's own DNS)"
        )
    print(
        f"{'  during the lag samples':<{width}}{len(results.lag_transfers)} transfers, "
        f"{results.lag_notifies} NOTIFY received by BIND"
    )
    for stage, values in results.stages.items():
        if values:
            print(
                f"{'  ' + stage:<{width}}p50 {statistics.median(values):.1f} ms, "
                f"p99 {percentile(values, 0.99):.1f} ms  ({len(values)} samples, BIND's log)"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--duration", type=int, default=None, help="seconds of load per turn (default 10)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"3 s per turn, {QUICK_SAMPLES} lag samples (for CI)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    if args.duration is None:
        args.duration = 3 if args.quick else 10
    if args.duration < 1:
        parser.error("--duration must be at least 1 second")
    args.turns = TURNS
    args.samples = QUICK_SAMPLES if args.quick else SAMPLES
    missing = missing_requirements(
        {"wrk": "wrk", "named": "bind9"}, ("psutil", "dns", "httpx", "nicupdate_server")
    )
    if missing:
        print(f"bench_secondary: {missing}", file=sys.stderr)
        return 2
    with work_directory(args.keep) as work:
        try:
            return run(args, work)
        except BenchError as exc:
            print(f"bench_secondary: {exc}", file=sys.stderr)
            return 1


if __name__ == "__main__":
    sys.exit(main())
