"""/metrics: what a Prometheus user reads, checked by Debian's promtool and scraped by a
real Prometheus; where it is served (its own listener, the allow list) and to whom."""

from __future__ import annotations

import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import dns.rcode
import httpx
import pytest
from nicupdate_server.config import ConfigError, load_config
from prometheus_client.parser import text_string_to_metric_families

from tests.server.conftest import (
    ALICE,
    LiveServer,
    run_cli,
    start_server,
    stop_server,
    write_config,
)
from tests.server.primaries import running_bind
from tests.server.process import free_port, server_process, wait_for
from tests.server.relays import eventually

HOME = "home.dyn.example.test"
PROMTOOL = "/usr/bin/promtool"
PROMETHEUS = "/usr/bin/prometheus"
# The 429 answer is held back limits.throttle_delay; short here.
LIMITS = "\n[limits]\nauth_failures_per_user = 2\nthrottle_delay = 0.1\n"


def values(page: str) -> dict[str, float]:
    """``'name{label="value"}' -> value`` for every sample of a metrics page."""
    found = {}
    for family in text_string_to_metric_families(page):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            found[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return found


def scrape(server: LiveServer) -> dict[str, float]:
    answer = server.get("/metrics")
    assert answer.status_code == 200, answer.text
    return values(answer.text)


@pytest.fixture
def watched(tmp_path: Path) -> Iterator[LiveServer]:
    """A server with alice and her host, metrics on (the default), 2 failures lock out."""
    server = start_server(write_config(tmp_path, LIMITS))
    server.add_user(*ALICE)
    server.add_host(HOME, "alice")
    yield server
    stop_server(server)


def test_the_page_counts_answers_failures_and_dns_replies(watched: LiveServer) -> None:
    update = f"hostname={HOME}&myip=203.0.113.7"
    assert watched.update(update, auth=ALICE).text == "good 203.0.113.7\n"
    for _ in range(2):
        assert watched.update(update, auth=ALICE).text == "nochg 203.0.113.7\n"
    for _ in range(2):
        assert watched.update(update, auth=("alice", "wrong-password")).status_code == 401
    locked = watched.update(update, auth=("alice", "wrong-password"))
    assert (locked.status_code, locked.text) == (429, "911\n")
    assert watched.update(f"hostname=nobody.{HOME}", auth=ALICE).text == "nohost\n"
    assert watched.addresses(HOME) == ["203.0.113.7"]
    assert watched.dns_query(f"nothing.{HOME}").rcode() == dns.rcode.NXDOMAIN

    page = watched.get("/metrics")
    assert page.headers["content-type"].startswith("text/plain; version=0.0.4")
    # The DNS process reports its counts every second.
    dns_counted = 'nicupdate_dns_queries_total{rcode="NXDOMAIN"}'
    read = eventually(lambda: (r := values(watched.get("/metrics").text))[dns_counted] == 1 and r)
    assert read['nicupdate_updates_total{answer="good"}'] == 1
    assert read['nicupdate_updates_total{answer="nochg"}'] == 2
    assert read['nicupdate_updates_total{answer="badauth"}'] == 2
    assert read['nicupdate_updates_total{answer="911"}'] == 1
    assert read['nicupdate_updates_total{answer="nohost"}'] == 1
    assert read['nicupdate_updates_total{answer="abuse"}'] == 0
    assert read["nicupdate_updates_throttled_total"] == 1
    assert read["nicupdate_auth_failures_total"] == 2
    # Every answer but the held-back 429 is timed.
    assert read["nicupdate_update_duration_seconds_count"] == 6
    assert read['nicupdate_update_duration_seconds_bucket{le="+Inf"}'] == 6
    assert read['nicupdate_dns_queries_total{rcode="NOERROR"}'] == 1
    assert read['nicupdate_dns_queries_total{rcode="NXDOMAIN"}'] == 1
    assert read['nicupdate_backend_confirm_seconds_count{backend="builtin"}'] == 1
    assert read['nicupdate_backend_pending_changes{backend="builtin"}'] == 0
    assert read['nicupdate_backend_errors_total{backend="builtin",kind="transient"}'] == 0
    assert read["nicupdate_database_commit_seconds_count"] >= 1  # the change, and more
    assert read["nicupdate_database_writable"] == 1
    assert read["nicupdate_hosts"] == 1
    assert read["nicupdate_hosts_blocked"] == 0
    assert read["nicupdate_password_checks_waiting"] == 0
    assert read["nicupdate_http_connections"] >= 1  # this scrape's
    assert read["process_resident_memory_bytes"] > 10_000_000
    assert ALICE[1] not in page.text and "wrong-password" not in page.text


def test_promtool_finds_nothing_to_complain_about(watched: LiveServer) -> None:
    """promtool reads the text format (what curl gets); Prometheus itself asks for
    OpenMetrics, which the scrape below checks."""
    assert watched.update(f"hostname={HOME}&myip=203.0.113.7", auth=ALICE).status_code == 200
    watched.dns_query(HOME)
    page = watched.get("/metrics")
    assert page.status_code == 200
    checked = subprocess.run(
        [PROMTOOL, "check", "metrics"],
        input=page.text,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (checked.returncode, checked.stdout + checked.stderr) == (0, "")


def test_a_real_prometheus_scrapes_the_server(watched: LiveServer, tmp_path: Path) -> None:
    assert watched.update(f"hostname={HOME}&myip=203.0.113.7", auth=ALICE).status_code == 200
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        "scrape_configs:\n  - job_name: nicupdate\n    static_configs:\n"
        f'      - targets: ["127.0.0.1:{watched.http.port}"]\n'
    )
    port = free_port()
    log = (tmp_path / "prometheus.log").open("wb")
    prometheus = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:

        def query(expression: str) -> list[str]:
            """The values of an instant query; [] while Prometheus is not up yet."""
            try:
                answer = httpx.get(
                    f"http://127.0.0.1:{port}/api/v1/query",
                    params={"query": expression},
                    timeout=5,
                )
            except httpx.HTTPError:
                return []
            if answer.status_code != 200:
                return []
            return [item["value"][1] for item in answer.json()["data"]["result"]]

        good = 'nicupdate_updates_total{answer="good",job="nicupdate"}'
        wait_for(lambda: query(good) == ["1"], timeout=60, what="Prometheus to scrape")
        assert query('up{job="nicupdate"}') == ["1"]
        assert query("nicupdate_hosts") == ["1"]
        targets = httpx.get(f"http://127.0.0.1:{port}/api/v1/targets", timeout=5).json()
        (target,) = targets["data"]["activeTargets"]
        assert (target["health"], target["lastError"]) == ("up", "")
    finally:
        prometheus.terminate()
        prometheus.wait(30)
        log.close()


def test_metrics_on_their_own_listener_and_not_on_the_update_port(tmp_path: Path) -> None:
    server = start_server(write_config(tmp_path, '\n[metrics]\nlisten = "127.0.0.1:0"\n'))
    try:
        port = server.runtime.metrics.port if server.runtime.metrics else None
        assert port is not None and port != server.http.port
        page = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
        assert page.status_code == 200
        assert values(page.text)["nicupdate_hosts"] == 0
        assert httpx.get(f"http://127.0.0.1:{port}/nic/update", timeout=10).status_code == 404
        assert server.get("/metrics").status_code == 404
    finally:
        stop_server(server)
    with pytest.raises(httpx.ConnectError):  # closed with the server
        httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)


def test_the_allow_list_judges_the_caller_behind_a_trusted_proxy(tmp_path: Path) -> None:
    """The update port faces the internet, often behind a proxy on loopback: /metrics
    goes to the caller the proxy names, not to the proxy."""
    extra = 'trusted_proxies = ["127.0.0.1"]\n\n[metrics]\nallow = ["192.0.2.0/24", "::1"]\n'
    server = start_server(write_config(tmp_path, extra))
    try:
        unknown = server.get("/no-such-page")
        refused = server.get("/metrics", headers={"X-Forwarded-For": "198.51.100.9"})
        assert (refused.status_code, refused.text) == (unknown.status_code, unknown.text)
        assert refused.status_code == 404
        assert server.get("/metrics").status_code == 404  # the proxy itself: not listed
        posted = httpx.post(f"{server.url}/metrics", timeout=10)  # nor with another method
        assert (posted.status_code, posted.text) == (404, unknown.text)
        allowed = server.get("/metrics", headers={"X-Forwarded-For": "192.0.2.7"})
        assert allowed.status_code == 200
        assert "nicupdate_updates_total" in allowed.text
    finally:
        stop_server(server)


def test_metrics_off_means_no_page(tmp_path: Path) -> None:
    server = start_server(write_config(tmp_path, "\n[metrics]\nenabled = false\n"))
    try:
        server.add_user(*ALICE)
        server.add_host(HOME, "alice")
        assert server.update(f"hostname={HOME}&myip=203.0.113.7", auth=ALICE).status_code == 200
        assert server.get("/metrics").status_code == 404
    finally:
        stop_server(server)


def test_a_backend_that_is_down_shows_pending_changes_and_errors(tmp_path: Path) -> None:
    with running_bind(tmp_path / "bind") as bind:
        config = tmp_path / "nicupdate.toml"
        config.write_text(
            f"""
[server]
listen = "127.0.0.1:0"
database = "sqlite+aiosqlite:///{tmp_path / "state.db"}"
apply_deadline = 0.5
retry_initial = 0.1
retry_max = 0.5

[dns]
enabled = false

{bind.config_block("bind")}

[[zones]]
name = "{bind.zone}"
backend = "bind"
"""
        )
        server = start_server(config)
        try:
            server.add_user(*ALICE)
            server.add_host(f"home.{bind.zone}", "alice")
            update = f"hostname=home.{bind.zone}&myip=203.0.113."
            assert server.update(update + "7", auth=ALICE).text == "good 203.0.113.7\n"
            bind.stop()
            assert server.update(update + "8", auth=ALICE).text == "911\n"
            down = scrape(server)
            assert down['nicupdate_backend_pending_changes{backend="bind"}'] == 1
            assert down['nicupdate_backend_errors_total{backend="bind",kind="transient"}'] >= 1
            assert down['nicupdate_backend_errors_total{backend="bind",kind="permanent"}'] == 0
            assert down['nicupdate_backend_confirm_seconds_count{backend="bind"}'] == 1
            assert down['nicupdate_updates_total{answer="911"}'] == 1
            bind.start()  # the client does nothing: the change is applied anyway

            def caught_up() -> bool:
                read = scrape(server)
                return (
                    read['nicupdate_backend_pending_changes{backend="bind"}'] == 0
                    and read['nicupdate_backend_confirm_seconds_count{backend="bind"}'] == 2
                )

            assert eventually(caught_up), scrape(server)
            assert bind.query(f"home.{bind.zone}", "A") == ["203.0.113.8"]
        finally:
            stop_server(server)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (
            'listen = "localhost:9100"',
            "metrics.listen: 'localhost:9100' is not IP:PORT (an IP literal, e.g. 127.0.0.1:8245)",
        ),
        ('allow = "127.0.0.1"', "metrics.allow: must be a list of CIDRs (got '127.0.0.1')"),
        ('allow = ["intranet"]', "metrics.allow: 'intranet' is not an address or network (CIDR)"),
        ('enabled = "yes"', "metrics.enabled: must be true or false (got 'yes')"),
    ],
)
def test_a_bad_metrics_key_is_one_line_naming_it(tmp_path: Path, table: str, message: str) -> None:
    path = tmp_path / "nicupdate.toml"
    path.write_text(f"[metrics]\n{table}\n")
    with pytest.raises(ConfigError) as raised:
        load_config(path, environ={})
    assert str(raised.value) == f"{message} (in {path})"


def test_a_metrics_port_in_use_stops_start_up_with_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = write_config(tmp_path, f'\n[metrics]\nlisten = "127.0.0.1:{port}"\n')
        done = run_cli("--config", str(config), "serve", cwd=tmp_path)
    assert done.returncode == 3, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"nicupdate-server: cannot start: metrics.listen 127.0.0.1:{port} is in use: another "
        "program listens there (see `ss -lntup`); stop it or choose another port for "
        "metrics.listen"
    ]


def test_a_reload_applies_a_new_allow_list(tmp_path: Path) -> None:
    with server_process(tmp_path) as server:
        assert httpx.get(f"{server.url}/metrics", timeout=10).status_code == 200
        with server.config.open("a") as config:
            config.write('\n[metrics]\nallow = ["192.0.2.0/24"]\n')
        server.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "configuration reloaded" in server.text(), what="a reload")
        assert httpx.get(f"{server.url}/metrics", timeout=10).status_code == 404
        assert server.stop() == 0
