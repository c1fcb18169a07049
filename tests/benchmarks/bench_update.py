"""Throughput and memory of the update server, against a bare Starlette route.

Run: ``python tests/benchmarks/bench_update.py [--duration SECONDS] [--quick]``

In one run, on free 127.0.0.1 ports and a temporary directory, it:

1. creates a configuration, one account (through the CLI) and 1,000 hosts
   ``h0000..h0999.dyn.example.test`` (through :class:`nicupdate_server.admin.Admin`),
   and compiles the server's modules to bytecode, as ``pip install`` does (a server run
   from a checkout with ``PYTHONDONTWRITEBYTECODE`` compiles them at every start, which
   leaves about 0.5 MB more in memory);
2. measures a bare Starlette plain-text route on one uvicorn worker (uvloop,
   httptools, no access log): the ceiling on this machine;
3. starts ``python -m nicupdate_server --config PATH serve`` with metrics off
   (``[metrics] enabled = false``), reads its resident memory when idle and measures
   authenticated ``nochg`` answers (one host, one unchanged address);
4. starts it again with metrics on (the default), has /metrics scraped once (as
   Prometheus would, before anyone looks at the memory), reads its idle memory and
   measures ``nochg`` again;
5. measures ``good`` updates cycling over the 1,000 hosts, each request with a new
   address (every one committed to SQLite before its answer), then asks the built-in
   DNS whether a few hosts serve the last address sent, and /metrics whether it
   counted every answer wrk got;
6. reads the resident memory again and prints a summary with the targets of issues 2
   and 11, with metrics on and off: ``nochg`` >= 50% of the ceiling, ``good`` >= 10%,
   idle memory < 60 MB.

Load comes from ``wrk -t1 -c64 -d<duration>s --latency`` (``apt-get install wrk``).
Timings are printed, never asserted: the exit status is non-zero only when something
failed to run or answered wrongly.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

HOSTS = 1000
ZONE = "dyn.example.test"
USER = "bench"
PASSWORD = "bench-password-0123"
NOCHG_HOST = f"h0000.{ZONE}"
NOCHG_ADDRESS = "203.0.113.7"
CONNECTIONS = 64
WARMUP_SECONDS = 1
# nochg with metrics on and off take turns this often; the best of each counts.
NOCHG_TURNS = 2
STARTUP_TIMEOUT = 30.0
# Other processes using more than this share of the CPUs during a phase disturb it.
BUSY_SHARE = 0.10

TARGET_NOCHG = 0.50
TARGET_GOOD = 0.10
TARGET_IDLE_MB = 60.0

CONFIG = """\
[server]
listen = "127.0.0.1:{http_port}"
database = "sqlite+aiosqlite:///{database}"
access_log = false
log_level = "warning"

[dns]
listen = "127.0.0.1:{dns_port}"

[dns.rate_limit]
# The benchmark's DNS probes ask the same question from 127.0.0.1 again and again, as a
# monitoring system would: not the flood response rate limiting is for.
exempt_clients = ["127.0.0.1/32"]

[limits]
# 64 connections updating one host (nochg) or 1,000 hosts as fast as they can: far
# past the per-host update limit, which is not what this benchmark measures.
host_update_interval = 0

[metrics]
enabled = {metrics}

[[zones]]
name = "{zone}"
backend = "builtin"
ttl = 60
"""

BARE_APP = """\
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route


async def hello(request):  # async: a sync endpoint would run in Starlette's threadpool
    return PlainTextResponse("ok")


app = Starlette(routes=[Route("/", hello)])
"""

# wrk script for the `good` phase. Request n (counted from {start}) goes to host
# n % 1000 with address number n // 1000 (see address_for below, which must agree):
# consecutive requests for one host always carry different addresses. response() counts
# every answer that is not HTTP 200 with a body starting "good"; done() reports the counts.
GOOD_LUA = """\
local hosts = {hosts}
local n = {start}
bad = 0
generated = 0
sample = ""

local function address(cycle)
  local a = cycle % 508
  if a < 254 then
    return "198.51.100." .. (a + 1)
  end
  return "203.0.113." .. (a - 253)
end

request = function()
  local host = n % hosts
  local cycle = math.floor(n / hosts)
  n = n + 1
  generated = n
  local path = string.format(
    "/nic/update?hostname=h%04d.{zone}&myip=%s", host, address(cycle))
  return wrk.format(nil, path)
end

response = function(status, headers, body)
  if status ~= 200 or string.sub(body, 1, 4) ~= "good" then
    bad = bad + 1
    if sample == "" then
      sample = status .. " " .. string.gsub(body, "%s+$", "")
    end
  end
end

local threads = {{}}

setup = function(thread)
  table.insert(threads, thread)
end

done = function(summary, latency, requests)
  local total_bad, total_generated, first = 0, 0, ""
  for _, thread in ipairs(threads) do
    total_bad = total_bad + thread:get("bad")
    total_generated = total_generated + thread:get("generated")
    if first == "" then
      first = thread:get("sample")
    end
  end
  io.write(string.format("BENCH generated=%d bad=%d sample=%s\\n",
                         total_generated, total_bad, first))
end
"""


def address_for(cycle: int) -> str:
    """The address the Lua script sends in round ``cycle`` over the hosts."""
    a = cycle % 508
    return f"198.51.100.{a + 1}" if a < 254 else f"203.0.113.{a - 253}"


class BenchError(Exception):
    """Something failed to run; printed as one line, exit status 1."""


@dataclass
class WrkResult:
    requests_per_s: float
    requests: int
    p50_ms: float | None
    p99_ms: float | None
    non_2xx: int
    socket_errors: str
    output: str
    server_cpu: float = 0.0  # CPU seconds of the server per second of load (1.0 = one core)
    other_cpu: float = 0.0  # share of all CPUs used by processes other than server and wrk


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def latency_ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not match:
        raise BenchError(f"cannot read wrk latency {text!r}")
    return float(match.group(1)) * _UNITS_MS[match.group(2)]


def parse_wrk(output: str) -> WrkResult:
    rate = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M)
    count = re.search(r"^\s*(\d+) requests in ", output, re.M)
    if not rate or not count:
        raise BenchError(f"cannot read wrk's output:\n{output}")
    percentiles = dict(re.findall(r"^\s+(50|99)(?:\.0+)?%\s+(\S+)", output, re.M))
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    errors = re.search(r"Socket errors:\s*(.+)", output)
    return WrkResult(
        requests_per_s=float(rate.group(1)),
        requests=int(count.group(1)),
        p50_ms=latency_ms(percentiles["50"]) if "50" in percentiles else None,
        p99_ms=latency_ms(percentiles["99"]) if "99" in percentiles else None,
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=errors.group(1).strip() if errors else "",
        output=output,
    )


def _cpu_sample(pid: int) -> tuple[float, float, float, float]:
    """(wall clock, busy CPU seconds of the machine, of the server, of us and our waited
    children, which include every finished wrk)."""
    import resource

    import psutil

    total = psutil.cpu_times()
    # Time in processes (guest time is already part of user); interrupt time, mostly
    # the loopback traffic of the benchmark itself, is left out.
    busy = total.user + total.nice + total.system + getattr(total, "steal", 0.0)
    server = psutil.Process(pid).cpu_times()
    ours = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        ours += usage.ru_utime + usage.ru_stime
    return time.monotonic(), busy, server.user + server.system, ours


def run_wrk(
    url: str,
    duration: int,
    server_pid: int,
    *,
    auth: str | None = None,
    script: Path | None = None,
    connections: int = CONNECTIONS,
) -> WrkResult:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency"]
    if auth:
        command += ["-H", f"Authorization: {auth}"]
    if script:
        command += ["-s", str(script)]
    command.append(url)
    before = _cpu_sample(server_pid)
    try:
        proc = subprocess.run(
            command, capture_output=True, text=True, timeout=duration + 60, check=False
        )
    except subprocess.TimeoutExpired:
        raise BenchError(f"wrk did not finish: {' '.join(command)}") from None
    if proc.returncode != 0:
        raise BenchError(f"wrk failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout}")
    after = _cpu_sample(server_pid)
    result = parse_wrk(proc.stdout)
    wall, busy, server, ours = (a - b for a, b in zip(after, before, strict=True))
    result.server_cpu = server / wall
    result.other_cpu = max(0.0, busy - server - ours) / (wall * (os.cpu_count() or 1))
    return result


def free_port() -> int:
    """A port free on 127.0.0.1 for both TCP and UDP (the built-in DNS needs both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = int(tcp.getsockname()[1])
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                    udp.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise BenchError("no free port on 127.0.0.1")


def child_env() -> dict[str, str]:
    """The environment for the children, without NICUPDATE_* overrides of ours."""
    return {k: v for k, v in os.environ.items() if not k.startswith("NICUPDATE_")}


def http_get(url: str, auth: str | None = None, timeout: float = 5.0) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Authorization": auth} if auth else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")


class Processes:
    """Children started by the benchmark; all of them stopped in :meth:`stop_all`."""

    def __init__(self, logs: Path) -> None:
        self._logs = logs
        self._procs: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}

    def start(self, name: str, command: list[str]) -> subprocess.Popen[bytes]:
        log = self._logs / f"{name}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=child_env(),
                cwd=self._logs,
            )
        self._procs[name] = (proc, log)
        return proc

    def wait_http(self, name: str, url: str) -> None:
        proc, log = self._procs[name]
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise BenchError(f"{name} exited ({proc.returncode}) at start-up:\n{tail(log)}")
            with contextlib.suppress(OSError):
                status, _ = http_get(url, timeout=1.0)
                if status == 200:
                    return
            time.sleep(0.1)
        raise BenchError(f"{name} did not answer {url} within {STARTUP_TIMEOUT:.0f} s")

    def stop(self, name: str) -> None:
        proc, log = self._procs.pop(name)
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        text = log.read_text(errors="replace")
        if "Traceback" in text:
            print(f"note: {name} logged a traceback:\n{tail(log)}", file=sys.stderr)

    def stop_all(self) -> None:
        for name in list(self._procs):
            with contextlib.suppress(Exception):
                self.stop(name)


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def rss_mb(pid: int) -> float:
    import psutil

    return float(psutil.Process(pid).memory_info().rss) / (1024 * 1024)


def children_rss_mb(pid: int) -> float:
    """The resident memory of the processes ``pid`` started (the DNS process)."""
    import psutil

    return sum(rss_mb(child.pid) for child in psutil.Process(pid).children(recursive=True))


async def _add_hosts(config_path: Path) -> None:
    from nicupdate_server.admin import Admin
    from nicupdate_server.config import load_config
    from nicupdate_server.db import create_engine, ensure_schema

    config = load_config(config_path, environ={})
    url = config.server.database_url()
    engine = create_engine(url)
    try:
        await ensure_schema(engine, url)
        admin = Admin(engine, config)
        for index in range(HOSTS):
            await admin.add_host(f"h{index:04d}.{ZONE}", USER)
    finally:
        await engine.dispose()


@dataclass
class Target:
    """One nicupdate server of the run: metrics on or off, its own ports and database."""

    name: str
    metrics: bool
    config: Path
    http_port: int
    dns_port: int

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"


def set_up(work: Path) -> dict[bool, Target]:
    """Two servers' configurations, metrics on and off (keys True, False), with the same
    account (CLI) and hosts (Admin API) in a database each."""
    ports: list[int] = []
    while len(ports) < 4:
        port = free_port()
        if port not in ports:
            ports.append(port)
    targets = {}
    for metrics, (http_port, dns_port) in ((True, ports[:2]), (False, ports[2:])):
        name = "nicupdate" if metrics else "nicupdate-nometrics"
        config = work / f"{name}.toml"
        config.write_text(
            CONFIG.format(
                http_port=http_port,
                dns_port=dns_port,
                database=work / f"{name}.db",
                zone=ZONE,
                metrics="true" if metrics else "false",
            )
        )
        targets[metrics] = Target(name, metrics, config, http_port, dns_port)
    add_account(targets[True].config, work)
    compile_server()
    shutil.copyfile(work / "nicupdate.db", work / "nicupdate-nometrics.db")  # closed: no WAL
    return targets


def compile_server() -> None:
    """Bytecode for the server's modules (``__pycache__``, as an installed package has)."""
    spec = importlib.util.find_spec("nicupdate_server")
    if spec is None or not spec.submodule_search_locations:
        raise BenchError("nicupdate_server is not importable")
    env = {k: v for k, v in child_env().items() if k != "PYTHONDONTWRITEBYTECODE"}
    package = next(iter(spec.submodule_search_locations))
    command = [sys.executable, "-m", "compileall", "-q", package]
    proc = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise BenchError(f"compileall failed: {proc.stdout.strip() or proc.stderr.strip()}")


def add_account(config_path: Path, work: Path) -> None:
    """The benchmark's account (through the CLI) and its hosts (through the Admin API)."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "nicupdate_server",
            "--config",
            str(config_path),
            "user",
            "add",
            USER,
            "--password-stdin",
        ],
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        env=child_env(),
        cwd=work,
        timeout=120,
        check=False,
    )
    if proc.returncode != 0:
        raise BenchError(f"user add failed: {proc.stderr.strip() or proc.stdout.strip()}")
    started = time.monotonic()
    asyncio.run(_add_hosts(config_path))
    print(f"set-up: user {USER!r} and {HOSTS} hosts in {time.monotonic() - started:.1f} s")


def dns_a(fqdn: str, port: int) -> list[str]:
    import dns.message
    import dns.query
    import dns.rdatatype

    query = dns.message.make_query(fqdn, dns.rdatatype.A)
    answer = dns.query.udp(query, "127.0.0.1", port=port, timeout=3)
    return sorted(
        rdata.to_text()
        for rrset in answer.answer
        if rrset.rdtype == dns.rdatatype.A
        for rdata in rrset
    )


def check_dns(generated: int, dns_port: int, samples: int = 5, start: int = 0) -> list[str]:
    """Problems found: hosts whose DNS answer is not the last address sent to them, by a
    wrk script that counted its requests from ``start`` up to ``generated``.

    The last few requests may still have been in flight when wrk stopped, so the
    sample is taken among hosts whose last request left well before the end."""
    problems = []
    if generated - start < 2 * CONNECTIONS + samples:
        return [f"only {generated - start} requests were generated: too few to check"]
    newest = generated - 1 - 2 * CONNECTIONS  # index of the newest request to check
    oldest = max(start, generated - HOSTS)  # every host's last request is at or after this
    step = max(1, (newest - oldest) // samples)
    for index in range(newest, oldest - 1, -step)[:samples]:
        host = index % HOSTS
        fqdn = f"h{host:04d}.{ZONE}"
        expected = [address_for(index // HOSTS)]
        served = dns_a(fqdn, dns_port)
        if served != expected:
            problems.append(f"{fqdn}: DNS serves {served}, the last address sent was {expected}")
    return problems


def pct(value: float, ceiling: float) -> float:
    return 100.0 * value / ceiling if ceiling else 0.0


def latency(result: WrkResult) -> str:
    def ms(value: float | None) -> str:
        return "?" if value is None else f"{value:.2f}"

    return f"p50 {ms(result.p50_ms)} ms, p99 {ms(result.p99_ms)} ms"


def met(ok: bool) -> str:
    return "met" if ok else "MISSED"


@contextlib.contextmanager
def work_directory(keep: bool) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="nicupdate-bench-"))
    try:
        yield path
    finally:
        if keep:
            print(f"kept {path}")
        else:
            shutil.rmtree(path, ignore_errors=True)


def metrics_counts(base: str) -> dict[str, float]:
    """``answer -> count`` of nicupdate_updates_total on the server's /metrics page."""
    status, page = http_get(f"{base}/metrics")
    if status != 200:
        raise BenchError(f"/metrics answered {status}")
    return {
        answer: float(value)
        for answer, value in re.findall(
            r'^nicupdate_updates_total\{answer="([^"]+)"\} (\S+)$', page, re.M
        )
    }


def start_server(processes: Processes, target: Target) -> subprocess.Popen[bytes]:
    """Start ``target`` and send it its first update (``good``)."""
    command = [sys.executable, "-m", "nicupdate_server", "--config", str(target.config), "serve"]
    server = processes.start(target.name, command)
    processes.wait_http(target.name, f"{target.base}/healthz")
    return server


def check_nochg(target: Target, auth: str, when: str) -> str:
    """The nochg URL of ``target``, after checking that it answers nochg there."""
    url = f"{target.base}/nic/update?hostname={NOCHG_HOST}&myip={NOCHG_ADDRESS}"
    for expected in ("good", "nochg") if when == "first" else ("nochg",):
        status, body = http_get(url, auth)
        if status != 200 or body.strip() != f"{expected} {NOCHG_ADDRESS}":
            raise BenchError(f"{target.name}: {when} update answered {status} {body.strip()!r}")
    return url


def run(args: argparse.Namespace, work: Path) -> int:
    duration = args.duration
    processes = Processes(work)
    failures: list[str] = []
    try:
        targets = set_up(work)
        auth = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()

        # The ceiling: a bare Starlette route, run alone.
        (work / "bench_bare_app.py").write_text(BARE_APP)
        bare_port = free_port()
        bare_proc = processes.start(
            "bare",
            [
                sys.executable,
                "-m",
                "uvicorn",
                "bench_bare_app:app",
                "--app-dir",
                str(work),
                "--host",
                "127.0.0.1",
                "--port",
                str(bare_port),
                "--loop",
                "uvloop",
                "--http",
                "httptools",
                "--no-access-log",
                "--no-server-header",  # nicupdate sends none either
                "--log-level",
                "warning",
            ],
        )
        bare_url = f"http://127.0.0.1:{bare_port}/"
        processes.wait_http("bare", bare_url)
        time.sleep(1.0)
        bare_idle_mb = rss_mb(bare_proc.pid)
        run_wrk(bare_url, WARMUP_SECONDS, bare_proc.pid)
        print(f"bare starlette: {duration} s of wrk ...", flush=True)
        bare = run_wrk(bare_url, duration, bare_proc.pid)
        processes.stop("bare")

        # Both servers at once, idle but for the load of the phase: metrics on and off
        # take turns, so that what else the machine does weighs on both alike.
        servers = {metrics: start_server(processes, target) for metrics, target in targets.items()}
        metrics_counts(targets[True].base)  # scraped, as Prometheus would, before anyone
        time.sleep(1.0)  # looks at the memory
        idle_mb = {metrics: rss_mb(server.pid) for metrics, server in servers.items()}
        dns_mb = children_rss_mb(servers[True].pid)
        urls = {metrics: check_nochg(target, auth, "first") for metrics, target in targets.items()}
        nochg: dict[bool, WrkResult] = {}
        answered = 0  # nochg answers wrk got from the server with metrics
        for turn in range(NOCHG_TURNS):
            for metrics in (False, True):
                pid = servers[metrics].pid
                if turn == 0:
                    warmup = run_wrk(urls[metrics], WARMUP_SECONDS, pid, auth=auth)
                    answered += warmup.requests if metrics else 0
                print(f"{targets[metrics].name}: nochg, {duration} s of wrk ...", flush=True)
                result = run_wrk(urls[metrics], duration, pid, auth=auth)
                answered += result.requests if metrics else 0
                best = nochg.get(metrics)
                if best is None or result.requests_per_s > best.requests_per_s:
                    nochg[metrics] = result
        for target in targets.values():
            check_nochg(target, auth, "after the load, the")
        processes.stop(targets[False].name)

        target, server = targets[True], servers[True]
        counted_before = metrics_counts(target.base)
        script = work / "good.lua"
        script.write_text(GOOD_LUA.format(hosts=HOSTS, zone=ZONE, start=0))
        print(f"good: {duration} s of wrk over {HOSTS} hosts ...", flush=True)
        good = run_wrk(f"{target.base}/nic/update", duration, server.pid, auth=auth, script=script)
        counts = re.search(r"^BENCH generated=(\d+) bad=(\d+) sample=(.*)$", good.output, re.M)
        if not counts:
            raise BenchError(f"the wrk script reported no counts:\n{good.output}")
        generated, bad, bad_sample = int(counts.group(1)), int(counts.group(2)), counts.group(3)
        time.sleep(0.5)  # let requests still in flight when wrk stopped finish
        dns_problems = check_dns(generated, target.dns_port)
        failures += dns_problems
        # /metrics counted at least the answers wrk got (wrk may not have read the last).
        counted = metrics_counts(target.base)
        nochg_counted = counted_before.get("nochg", 0)
        good_counted = counted.get("good", 0) - counted_before.get("good", 0)
        if nochg_counted < answered or good_counted < good.requests - bad:
            failures.append(
                f"/metrics counted {nochg_counted:.0f} nochg and {good_counted:.0f} good "
                f"answers, fewer than wrk got ({answered} and {good.requests - bad})"
            )
        if server.poll() is not None:
            raise BenchError(f"the server exited during the run ({server.returncode})")
        after_mb = rss_mb(server.pid)
        processes.stop(target.name)
    finally:
        processes.stop_all()

    ceiling = bare.requests_per_s
    good_share = pct(good.requests_per_s, ceiling)
    width = 28
    print()
    print(f"wrk -t1 -c{CONNECTIONS} -d{duration}s --latency, {os.cpu_count()} CPUs")
    print(f"{'bare starlette ceiling':<{width}}{bare.requests_per_s:>9.0f} req/s  {latency(bare)}")
    for metrics in (False, True):
        result = nochg[metrics]
        label = f"nochg, metrics {'on' if metrics else 'off'}"
        share = pct(result.requests_per_s, ceiling)
        print(
            f"{label:<{width}}{result.requests_per_s:>9.0f} req/s  {latency(result)}"
            f"  ({share:.0f}% of ceiling; target >= {TARGET_NOCHG:.0%}: "
            f"{met(share >= 100 * TARGET_NOCHG)})"
        )
    off, on = nochg[False], nochg[True]
    if off.requests_per_s and on.requests_per_s:
        # CPU time per answer tells the cost of metrics even on a busy machine.
        off_us, on_us = (1e6 * r.server_cpu / r.requests_per_s for r in (off, on))
        print(
            f"{'  metrics on / off':<{width}}{on.requests_per_s / off.requests_per_s:>9.2f}"
            f"  (best of {NOCHG_TURNS} turns each; server CPU per nochg: {off_us:.0f} us off, "
            f"{on_us:.0f} us on)"
        )
    print(
        f"{f'good ({HOSTS:,} hosts)':<{width}}{good.requests_per_s:>9.0f} req/s  {latency(good)}"
        f"  ({good_share:.0f}% of ceiling; target >= {TARGET_GOOD:.0%}: "
        f"{met(good_share >= 100 * TARGET_GOOD)})"
    )
    print(
        f"{'RSS idle, metrics off / on':<{width}}{idle_mb[False]:>6.1f} MB / {idle_mb[True]:.1f} MB"
        f"  (target < {TARGET_IDLE_MB:.0f} MB: {met(idle_mb[False] < TARGET_IDLE_MB)} / "
        f"{met(idle_mb[True] < TARGET_IDLE_MB)}; bare starlette idle {bare_idle_mb:.1f} MB)"
    )
    print(f"{'RSS of its DNS process, idle':<{width}}{dns_mb:>6.1f} MB (not in the figures above)")
    print(f"{'RSS after load, metrics on':<{width}}{after_mb:>6.1f} MB")
    print(
        f"{'good answers checked':<{width}}{good.requests} answered, {bad} not 'good'"
        + (f" (first: {bad_sample})" if bad else "")
        + f"; DNS serves the last address sent: {'yes' if not dns_problems else 'NO'}"
    )
    phases = (("bare", bare), ("nochg-off", off), ("nochg-on", on), ("good", good))
    print(
        "server CPU during the load (1.0 = one core): "
        + ", ".join(f"{name} {result.server_cpu:.2f}" for name, result in phases)
    )
    busy = [(name, result.other_cpu) for name, result in phases if result.other_cpu > BUSY_SHARE]
    if busy:
        print(
            "WARNING: other processes used the CPUs during "
            + ", ".join(f"{name} ({share:.0%} of all CPUs)" for name, share in busy)
            + ": those figures are low; run again on a quiet machine"
        )
    for name, result in phases:
        if result.non_2xx or result.socket_errors:
            print(
                f"  {name}: {result.non_2xx} non-2xx answers"
                + (f", socket errors: {result.socket_errors}" if result.socket_errors else "")
            )
    for problem in failures:
        print(f"FAILED: {problem}", file=sys.stderr)
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--duration", type=int, default=None, help="seconds of load per phase (default 10)"
    )
    parser.add_argument("--quick", action="store_true", help="3 seconds per phase (for CI)")
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary directory (config, logs, db)"
    )
    args = parser.parse_args(argv)
    if args.duration is None:
        args.duration = 3 if args.quick else 10
    if args.duration < 1:
        parser.error("--duration must be at least 1 second")
    missing = missing_requirements({"wrk": "wrk"}, ("psutil", "dns", "nicupdate_server"))
    if missing:
        print(f"bench_update: {missing}", file=sys.stderr)
        return 2
    with work_directory(args.keep) as work:
        try:
            return run(args, work)
        except BenchError as exc:
            print(f"bench_update: {exc}", file=sys.stderr)
            return 1


def missing_requirements(tools: dict[str, str], modules: tuple[str, ...]) -> str | None:
    """What to install before a benchmark can run (``tools``: command -> Debian
    package; ``modules``: Python packages), as one line; None when nothing is missing."""
    packages = [package for command, package in tools.items() if shutil.which(command) is None]
    if packages:
        return f"install {' '.join(packages)} (apt-get install ...) and run again"
    absent = [module for module in modules if not importable(module)]
    if absent:
        return f"missing Python package(s) {', '.join(absent)}: pip install -e '.[server,test]'"
    return None


def importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


if __name__ == "__main__":
    sys.exit(main())
