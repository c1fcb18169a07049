"""Lighthouse scores of the web UI: performance, accessibility and best practices.

Run: ``python tests/benchmarks/bench_web.py [--runs N] [--quick] [--all] [--keep]``

Needs Node.js with ``npm ci --prefix tests/browser`` (Lighthouse 12.2.3, pinned in
``tests/browser/package-lock.json``) and Debian's Chromium (``apt-get install
chromium``; another build with ``CHROME_PATH``). In one run, on free 127.0.0.1 ports and
in a temporary directory, it:

1. creates a configuration, the account ``bench`` (an admin, so that ``--all`` reaches
   every page) with its ``HOSTS`` hosts and an API token, and the account ``carol``
   (through :class:`nicupdate_server.admin.Admin`), and compiles the server's modules
   to bytecode, as ``pip install`` does;
2. starts ``python -m nicupdate_server --config PATH serve`` and gives the hosts a
   history through ``/nic/update``: one address each, and ``HISTORY`` changes of IPv4
   and IPv6 addresses (with a few ``nochg``) for the first, more than a page of it;
3. signs in as a browser does: it opens the page ``/`` sends a visitor to (the sign-in
   page), posts its form with the account's name and password and the form's hidden
   fields (the CSRF token), and keeps the session cookie. The hosts page is where the
   sign-in leads; the history page is the first host's link on it;
4. runs Lighthouse on the sign-in page, the hosts page and the history page (with
   ``--all``, on every other page a signed-in admin opens too), with the mobile preset
   (Lighthouse's default: a mid-range phone on a slow 4G network, simulated) and the
   desktop preset, the session cookie sent as an extra header (from a file, never on
   the command line), ``--runs`` times each (1 with ``--quick``; the median score of
   each category counts), within a time budget;
5. prints each category's score against the target of issue 15 (>= 95 each), with
   MISSED where missed, and for every page the audits that did not pass: their ids,
   titles, values and the elements or URLs they name, so a reader knows what to fix;
   and the audits Lighthouse could not run.

Scores are printed, never asserted: the exit status is non-zero only when something
failed to run (the server, the sign-in, Lighthouse), Lighthouse measured another page
than the one asked for (a sign-in page instead of the hosts page: the session was lost),
or the time budget ran out before every page was measured.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.benchmarks.bench_update import (
    BenchError,
    Processes,
    child_env,
    compile_server,
    free_port,
    met,
    missing_requirements,
    work_directory,
)

ROOT = Path(__file__).resolve().parents[2]
BROWSER = ROOT / "tests" / "browser"
LIGHTHOUSE = BROWSER / "node_modules" / "lighthouse" / "cli" / "index.js"
CHROME = os.environ.get("CHROME_PATH") or "/usr/bin/chromium"
# Headless, as root (no sandbox), and nothing that reaches out to the network.
CHROME_FLAGS = (
    "--headless --no-sandbox --disable-gpu --disable-quic --no-first-run "
    "--disable-background-networking --disable-component-update --disable-sync"
)
CATEGORIES = ("performance", "accessibility", "best-practices")
PRESETS = ("mobile", "desktop")
TARGET = 95

ZONE = "dyn.example.test"
USER = "bench"
OTHER = "carol"  # another account, for the admin's pages
PASSWORD = "bench-web-password-0123"
HOSTS = 12
HISTORY = 60  # changes of the first host: more than one page (50 rows)
RUNS = 3
QUICK_RUNS = 1
LIGHTHOUSE_TIMEOUT = 120.0  # seconds for one Lighthouse run
RETRIES = 2  # runs again of one that failed (a trace now and then has no navigation start)
# Seconds for the Lighthouse runs of --quick (three pages, two presets, one run each);
# more runs or pages have as much more.
BUDGET = 170.0

CONFIG = """\
[server]
listen = "127.0.0.1:{http_port}"
database = "sqlite+aiosqlite:///{database}"
access_log = false
log_level = "warning"

[dns]
listen = "127.0.0.1:{dns_port}"

[limits]
# The history is made by one client in a burst: not what the update limit is for.
host_update_interval = 0

[[zones]]
name = "{zone}"
backend = "builtin"
ttl = 60
"""


def host_name(index: int) -> str:
    return f"{('home', 'office', 'cabin', 'nas')[index % 4]}{index:02d}.{ZONE}"


# --all: the other pages a signed-in admin opens (the pages answering a form, such as
# a token shown once, are axe's: tests/server/web/test_axe.py).
MORE_PAGES = [
    ("add host", "/hosts/new"),
    ("remove host", f"/hosts/{host_name(1)}/remove"),
    ("api tokens", "/tokens"),
    ("account", "/account"),
    ("totp set-up", "/account/totp"),
    ("all hosts", "/hosts?all=1"),
    ("users", "/admin/users"),
    ("remove user", f"/admin/users/{OTHER}/remove"),
    ("status", "/admin/status"),
]


# The sign-in form ------------------------------------------------------------------------


@dataclass
class Form:
    action: str
    method: str
    inputs: list[dict[str, str]] = field(default_factory=list)


class _Forms(HTMLParser):
    """The forms of a page, with their inputs (``name``, ``type``, ``value``)."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []
        self.links: list[str] = []
        self._open: Form | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "form":
            self._open = Form(values.get("action", ""), values.get("method", "get").lower())
            self.forms.append(self._open)
        elif tag in ("input", "button") and self._open is not None and "name" in values:
            values.setdefault("type", "text" if tag == "input" else "submit")
            self._open.inputs.append(values)
        elif tag == "a" and values.get("href"):
            self.links.append(values["href"])

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._open = None


def parse_page(html: str) -> _Forms:
    parser = _Forms()
    parser.feed(html)
    return parser


def sign_in_form(html: str) -> Form | None:
    return next(
        (
            form
            for form in parse_page(html).forms
            if any(field.get("type") == "password" for field in form.inputs)
        ),
        None,
    )


def sign_in(base: str) -> tuple[str, str, str]:
    """Sign in as a browser would: (sign-in page URL, the page it leads to, the
    ``Cookie`` header of the session)."""
    import httpx

    with httpx.Client(base_url=base, timeout=30, follow_redirects=True) as client:
        page = client.get("/")
        form = sign_in_form(page.text)
        if page.status_code != 200 or form is None:
            raise BenchError(
                f"/ answered {page.status_code} at {page.url} with no sign-in form "
                "(a form with a password field): is the web UI mounted?"
            )
        signin_url = str(page.url)
        data: dict[str, str] = {}
        for entry in form.inputs:
            kind, name = entry["type"].lower(), entry["name"]
            if kind == "password":
                data[name] = PASSWORD
            elif kind in ("hidden", "submit"):  # the CSRF token, the button's value
                data[name] = entry.get("value", "")
            elif kind not in ("checkbox", "radio"):  # the account's name
                data[name] = USER
        action = urljoin(signin_url, form.action or signin_url)
        answer = client.post(action, data=data)
        landed = str(answer.url)
        if answer.status_code != 200 or sign_in_form(answer.text) is not None:
            raise BenchError(
                f"signing in as {USER!r} answered {answer.status_code} at {landed}, "
                "still with a sign-in form: the form's fields were not understood"
            )
        cookies = "; ".join(f"{name}={value}" for name, value in client.cookies.items())
    if not cookies:
        raise BenchError("signing in set no cookie")
    return signin_url, landed, cookies


def history_url(base: str, hosts_url: str, cookie: str) -> str:
    """The first host's page (its history): the hosts page's link that names it."""
    import httpx

    page = httpx.get(hosts_url, headers={"Cookie": cookie}, timeout=30)
    fqdn = host_name(0)
    links = [link for link in parse_page(page.text).links if fqdn in link]
    if page.status_code != 200 or not links:
        raise BenchError(
            f"the hosts page {hosts_url} ({page.status_code}) has no link naming {fqdn}"
        )
    return urljoin(hosts_url, links[0])


# Set-up ----------------------------------------------------------------------------------


async def _populate(config_path: Path) -> None:
    from nicupdate_server.admin import Admin
    from nicupdate_server.apitokens import ApiTokens
    from nicupdate_server.config import load_config
    from nicupdate_server.db import create_engine, ensure_schema

    config = load_config(config_path, environ={})
    url = config.server.database_url()
    engine = create_engine(url)
    try:
        await ensure_schema(engine, url)
        admin = Admin(engine, config)
        await admin.add_user(USER, PASSWORD, admin=True)  # every page is open to it
        await admin.add_user(OTHER, PASSWORD)
        for index in range(HOSTS):
            await admin.add_host(host_name(index), USER)
        await ApiTokens(engine).add(USER, "backup script", read_only=True, expires_days=90)
    finally:
        await engine.dispose()


def set_up(work: Path) -> tuple[Path, int]:
    """The configuration, the account and its hosts; the HTTP port."""
    http_port = free_port()
    dns_port = free_port()
    while dns_port == http_port:
        dns_port = free_port()
    config = work / "nicupdate.toml"
    config.write_text(
        CONFIG.format(
            http_port=http_port, dns_port=dns_port, database=work / "nicupdate.db", zone=ZONE
        )
    )
    asyncio.run(_populate(config))
    compile_server()
    return config, http_port


def make_history(base: str) -> None:
    """One address for each host, and ``HISTORY`` changes for the first."""
    import httpx

    auth = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    updates = [(host_name(i), f"myip=198.51.100.{10 + i}") for i in range(1, HOSTS)]
    first, address = host_name(0), ""
    for n in range(HISTORY):
        if n % 3 == 2:
            updates.append((first, f"myipv6=2001:db8:{n:x}::1"))
        elif n % 10 == 9:  # the same address again: nochg
            updates.append((first, f"myip={address}"))
        else:
            address = f"203.0.113.{n % 200 + 1}"
            updates.append((first, f"myip={address}"))
    with httpx.Client(base_url=base, headers={"Authorization": auth}, timeout=30) as client:
        for fqdn, query in updates:
            answer = client.get(f"/nic/update?hostname={fqdn}&{query}")
            if answer.status_code != 200 or answer.text.split()[0] not in ("good", "nochg"):
                raise BenchError(f"update {fqdn} {query}: {answer.status_code} {answer.text!r}")


# Lighthouse ------------------------------------------------------------------------------


@dataclass
class Audit:
    id: str
    title: str
    score: float
    value: str
    items: list[str]


@dataclass
class Measured:
    """One page with one preset: the median score of each category over the runs."""

    page: str
    preset: str
    url: str
    scores: dict[str, int]
    metrics: dict[str, str]
    failing: dict[str, list[Audit]]  # category -> audits that did not pass (last run)
    broken: dict[str, str]  # audit id -> why Lighthouse could not run it (any run)
    warnings: list[str]
    seconds: float


_METRICS = {
    "first-contentful-paint": "FCP",
    "largest-contentful-paint": "LCP",
    "total-blocking-time": "TBT",
    "cumulative-layout-shift": "CLS",
    "speed-index": "SI",
}


def _value(value: object) -> str:
    """A table cell's value: a number, or Lighthouse's ``{"type": "numeric", ...}``."""
    if isinstance(value, dict):
        value = value.get("value", "")
    return f"{value:,}" if isinstance(value, int | float) else str(value)


def _items(details: dict[str, Any] | None, limit: int = 4) -> list[str]:
    """What an audit names: elements (selector and snippet), URLs or messages."""
    if not details:
        return []
    found: list[str] = []
    for item in details.get("items", []) or []:
        if not isinstance(item, dict):
            continue
        node = item.get("node") or {}
        if isinstance(node, dict) and node.get("selector"):
            snippet = " ".join(str(node.get("snippet", "")).split())[:120]
            statistic = (
                f"{item['statistic']} {_value(item.get('value'))}: "
                if item.get("statistic")
                else ""
            )
            found.append(f"{statistic}{node['selector']}  {snippet}".strip())
        elif item.get("url") or item.get("source"):
            url = item.get("url") or (item.get("sourceLocation") or {}).get("url", "")
            what = item.get("description") or item.get("label") or ""
            found.append(f"{url} {what}".strip())
        elif item.get("description"):
            found.append(str(item["description"]))
        for sub in (item.get("subItems") or {}).get("items", [])[:2]:
            related = (
                (sub.get("relatedNode") or {}).get("selector") if isinstance(sub, dict) else None
            )
            if related:
                found.append(f"  related: {related}")
        if len(found) >= limit:
            break
    return found[:limit]


def failing_audits(report: dict[str, Any]) -> dict[str, list[Audit]]:
    """The audits of each category that did not pass (Lighthouse's own line: a
    score under 0.9), biggest weight first."""
    audits = report["audits"]
    failing: dict[str, list[Audit]] = {}
    for category in CATEGORIES:
        refs = sorted(
            report["categories"][category]["auditRefs"], key=lambda ref: -ref.get("weight", 0)
        )
        found = []
        for ref in refs:
            audit = audits.get(ref["id"], {})
            score = audit.get("score")
            mode = audit.get("scoreDisplayMode")
            if score is None or score >= 0.9 or mode in ("informative", "manual"):
                continue
            items = _items(audit.get("details"))
            if ref["id"] in _BLOCKING_METRICS:
                items = _main_thread(audits)
            found.append(
                Audit(
                    ref["id"],
                    audit.get("title", ""),
                    float(score),
                    audit.get("displayValue", ""),
                    items,
                )
            )
        failing[category] = found
    return failing


# Metrics made of the main thread's long tasks: what kept it busy says what to fix.
_BLOCKING_METRICS = ("total-blocking-time", "max-potential-fid", "interactive")


def _main_thread(audits: dict[str, Any]) -> list[str]:
    """The longest tasks (with their script) and where the main thread's time went."""
    found = []
    tasks = ((audits.get("long-tasks") or {}).get("details") or {}).get("items") or []
    for task in tasks[:3]:
        found.append(f"long task {task.get('duration', 0):.0f} ms: {task.get('url', '?')}")
    groups = ((audits.get("mainthread-work-breakdown") or {}).get("details") or {}).get("items")
    if groups:
        spent = [
            f"{g.get('groupLabel') or g.get('group', '?')} {g.get('duration', 0):.0f} ms"
            for g in groups[:4]
        ]
        found.append("main thread: " + ", ".join(spent))
    return found


def broken_audits(report: dict[str, Any]) -> dict[str, str]:
    """The audits of the categories that Lighthouse could not run: id -> its weight in
    the score and why."""
    weights = {
        ref["id"]: ref.get("weight", 0)
        for category in CATEGORIES
        for ref in report["categories"][category]["auditRefs"]
    }
    return {
        audit_id: f"(weight {weights[audit_id]}) "
        + " ".join(str(audit.get("errorMessage", "")).split())[:160]
        for audit_id, audit in report["audits"].items()
        if audit_id in weights and audit.get("scoreDisplayMode") == "error"
    }


class LighthouseFailed(BenchError):
    """Lighthouse could not measure the page this time (its own advice: run it again)."""


def lighthouse(url: str, preset: str, headers: Path | None, out: Path) -> dict[str, Any]:
    """One Lighthouse run on ``url``: its report. Raises :class:`LighthouseFailed`."""
    out.unlink(missing_ok=True)
    command = [
        "node",
        str(LIGHTHOUSE),
        url,
        f"--chrome-path={CHROME}",
        f"--chrome-flags={CHROME_FLAGS}",
        f"--only-categories={','.join(CATEGORIES)}",
        "--output=json",
        f"--output-path={out}",
        "--quiet",
        "--no-enable-error-reporting",
        "--max-wait-for-load=30000",
        "--disable-full-page-screenshot",  # for the HTML report's pictures only
    ]
    if preset == "desktop":
        command.append("--preset=desktop")
    if headers is not None:
        command.append(f"--extra-headers={headers}")
    env = {**child_env(), "CHROME_PATH": CHROME}
    try:
        proc = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=LIGHTHOUSE_TIMEOUT,
            env=env,
            cwd=out.parent,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise LighthouseFailed(f"took more than {LIGHTHOUSE_TIMEOUT:.0f} s") from None
    if proc.returncode != 0 or not out.exists():
        raise LighthouseFailed(f"exit status {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    report: dict[str, Any] = json.loads(out.read_text())
    error = report.get("runtimeError")
    if error:
        raise LighthouseFailed(f"{error.get('code')}: {error.get('message')}")
    final = report.get("finalDisplayedUrl") or report.get("finalUrl")
    if final != url:
        raise BenchError(
            f"Lighthouse asked for {url} but measured {final} (was it sent elsewhere?)"
        )
    return report


def measure(
    page: str, url: str, preset: str, headers: Path | None, runs: int, work: Path
) -> Measured:
    started = time.monotonic()
    reports = []
    retried: list[str] = []
    for run in range(runs):
        out = work / f"lighthouse-{page}-{preset}-{run}.json"
        for attempt in range(1 + RETRIES):
            try:
                reports.append(lighthouse(url, preset, headers, out))
                break
            except LighthouseFailed as exc:
                if attempt == RETRIES:
                    raise BenchError(f"Lighthouse failed on {url} ({preset}): {exc}") from None
                retried.append(" ".join(str(exc).split())[:200])
    scores = {
        category: round(
            100 * statistics.median(float(r["categories"][category]["score"] or 0) for r in reports)
        )
        for category in CATEGORIES
    }
    last = reports[-1]
    metrics = {
        short: str(last["audits"][audit].get("displayValue", "?")).replace("\xa0", " ")
        for audit, short in _METRICS.items()
        if audit in last["audits"]
    }
    warnings = sorted({str(w) for r in reports for w in r.get("runWarnings", [])})
    warnings += [f"run again after: {why}" for why in retried]
    broken = {k: v for r in reports for k, v in broken_audits(r).items()}
    return Measured(
        page,
        preset,
        url,
        scores,
        metrics,
        failing_audits(last),
        broken,
        warnings,
        time.monotonic() - started,
    )


# The run ---------------------------------------------------------------------------------


def report(results: list[Measured], runs: int, environment: str) -> int:
    """Print the table and what to fix; the number of scores under the target."""
    print()
    print(f"{environment}; {runs} run(s) per page and preset (median score)")
    page_width = max(len(r.page) for r in results) + 2
    print(
        f"{'page':<{page_width}}{'preset':<9}"
        + "".join(f"{category:<17}" for category in CATEGORIES)
        + "metrics (last run)"
    )
    missed = 0
    for result in results:
        cells = []
        for category in CATEGORIES:
            score = result.scores[category]
            ok = score >= TARGET
            missed += not ok
            cells.append(f"{score:<4}{met(ok):<13}")
        metrics = ", ".join(f"{name} {value}" for name, value in result.metrics.items())
        print(f"{result.page:<{page_width}}{result.preset:<9}" + "".join(cells) + metrics)
    total = len(results) * len(CATEGORIES)
    print(f"{total - missed} of {total} scores met the target of issue 15 (>= {TARGET} each)")
    print()
    for result in results:
        failing = [(c, a) for c in CATEGORIES for a in result.failing[c]]
        if not failing and not result.warnings:
            continue
        print(f"{result.page}, {result.preset} ({result.url}): audits not passed")
        for category, audit in failing:
            value = f" [{audit.value}]" if audit.value else ""
            print(f"  {category}: {audit.id} ({audit.score:.2f}): {audit.title}{value}")
            for item in audit.items:
                print(f"      {item}")
        for warning in result.warnings:
            print(f"  Lighthouse warning: {warning}")
    broken = {k: v for result in results for k, v in result.broken.items()}
    if broken:
        print("audits Lighthouse could not run (their advice is missing):")
        for audit_id, why in sorted(broken.items()):
            print(f"  {audit_id}: {why}")
    return missed


def run(args: argparse.Namespace, work: Path) -> int:
    processes = Processes(work)
    runs = args.runs
    begun = time.monotonic()
    try:
        config, http_port = set_up(work)
        base = f"http://127.0.0.1:{http_port}"
        command = [sys.executable, "-m", "nicupdate_server", "--config", str(config), "serve"]
        processes.start("nicupdate", command)
        processes.wait_http("nicupdate", f"{base}/healthz")
        make_history(base)
        signin_url, hosts_url, cookie = sign_in(base)
        detail_url = history_url(base, hosts_url, cookie)
        print(
            f"set-up: {HOSTS} hosts of {USER!r}, {HISTORY} changes of {host_name(0)}, "
            f"signed in, in {time.monotonic() - begun:.1f} s",
            flush=True,
        )
        headers = work / "headers.json"
        headers.touch(mode=0o600)
        headers.write_text(json.dumps({"Cookie": cookie}))
        pages = [
            ("sign-in", signin_url, None),
            ("hosts", hosts_url, headers),
            ("history", detail_url, headers),
        ]
        if args.all:
            pages += [(page, base + path, headers) for page, path in MORE_PAGES]
        budget = BUDGET * runs * len(pages) / 3
        started = time.monotonic()
        results: list[Measured] = []
        skipped: list[str] = []
        for page, url, sent in pages:
            for preset in PRESETS:
                if time.monotonic() - started > budget:
                    skipped.append(f"{page} {preset}")
                    continue
                print(f"lighthouse: {page} ({url}), {preset}, {runs} run(s) ...", flush=True)
                results.append(measure(page, url, preset, sent, runs, work))
        first = json.loads((work / "lighthouse-sign-in-mobile-0.json").read_text())
    finally:
        processes.stop_all()
    agent = str(first["environment"]["hostUserAgent"])
    browser = next((part for part in agent.split() if "Chrome/" in part), agent)
    report(
        results, runs, f"Lighthouse {first['lighthouseVersion']}, {browser}, {os.cpu_count()} CPUs"
    )
    print(f"Lighthouse runs took {time.monotonic() - started:.0f} s")
    if skipped:
        print(
            f"FAILED: over the time budget of {budget:.0f} s, not measured: {', '.join(skipped)}",
            file=sys.stderr,
        )
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--runs", type=int, default=None, help=f"Lighthouse runs per page and preset ({RUNS})"
    )
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_RUNS} run each (for CI)")
    parser.add_argument(
        "--all", action="store_true", help="also every other page an admin opens (slower)"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary directory (reports, logs, db)"
    )
    args = parser.parse_args(argv)
    if args.runs is None:
        args.runs = QUICK_RUNS if args.quick else RUNS
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    missing = missing_requirements({"node": "nodejs"}, ("httpx", "nicupdate_server"))
    if missing is None and shutil.which(CHROME) is None:
        missing = f"no Chromium at {CHROME}: apt-get install chromium (or set CHROME_PATH)"
    if missing is None and not LIGHTHOUSE.exists():
        missing = f"no Lighthouse in {BROWSER}: run npm ci --prefix tests/browser"
    if missing:
        print(f"bench_web: {missing}", file=sys.stderr)
        return 2
    with work_directory(args.keep) as work:
        try:
            return run(args, work)
        except BenchError as exc:
            print(f"bench_web: {exc}", file=sys.stderr)
            return 1


if __name__ == "__main__":
    sys.exit(main())
