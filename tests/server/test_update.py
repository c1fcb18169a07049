"""The update endpoint over real HTTP, checked by what clients and resolvers see."""

from __future__ import annotations

import base64
import dataclasses
import socket
import subprocess
import time
from pathlib import Path

import dns.rcode
import pytest

from tests.server.conftest import (
    ALICE,
    LiveServer,
    eventually,
    start_server,
    stop_server,
    write_config,
)

HOME = "home.dyn.example.test"
OFFICE = "office.dyn.example.test"


@pytest.fixture
def two_hosts(alice: LiveServer) -> LiveServer:
    alice.add_host(OFFICE, "alice")
    return alice


def raw_http10(server: LiveServer, target: str, headers: dict[str, str]) -> tuple[int, str]:
    """Send one request exactly as inadyn does: raw HTTP/1.0, then read to EOF."""
    lines = [
        f"GET {target} HTTP/1.0",
        "Host: 127.0.0.1",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    with socket.create_connection(("127.0.0.1", server.http.port), timeout=5) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
    head, _, body = data.decode().partition("\r\n\r\n")
    return int(head.split()[1]), body


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@dataclasses.dataclass(frozen=True)
class Dialect:
    name: str
    path: str
    user_agent: str
    expect: str
    a: list[str]
    aaaa: list[str]
    credentials: str = "basic"  # basic | query | token | none
    http10: bool = False


DIALECTS = [
    Dialect(
        "ddclient 3.11, two hosts and both families in one request",
        f"/nic/update?system=dyndns&hostname={HOME},{OFFICE}&myip=203.0.113.7,2001:db8::7",
        "ddclient/3.11.2",
        "good 203.0.113.7,2001:db8::7\ngood 203.0.113.7,2001:db8::7\n",
        ["203.0.113.7"],
        ["2001:db8::7"],
    ),
    Dialect(
        "inadyn, raw HTTP/1.0",
        f"/nic/update?hostname={HOME}&myip=203.0.113.8",
        "inadyn/2.12.0 https://github.com/troglobit/inadyn/issues",
        "good 203.0.113.8\n",
        ["203.0.113.8"],
        [],
        http10=True,
    ),
    Dialect(
        "OpenWrt ddns-scripts, credentials in the query",
        f"/update?username=alice&password=alice-secret-1&hostname={HOME}&myip=203.0.113.9",
        "Wget/1.21",
        "good 203.0.113.9\n",
        ["203.0.113.9"],
        [],
        credentials="query",
    ),
    Dialect(
        "pfSense, with the parameters it always sends",
        f"/nic/update?system=dyndns&hostname={HOME}&myip=203.0.113.10&wildcard=OFF&mx=&backmx=NO",
        "phpDynDNS/0.7",
        "good 203.0.113.10\n",
        ["203.0.113.10"],
        [],
    ),
    Dialect(
        "FRITZ!Box without IPv6: an empty item",
        f"/nic/update?hostname={HOME}&myip=203.0.113.11,",
        "Fritz!Box DDNS/1.0.1",
        "good 203.0.113.11\n",
        ["203.0.113.11"],
        [],
    ),
    Dialect(
        "FRITZ!Box with <ip6lanprefix>: the prefix is not a host address",
        f"/nic/update?hostname={HOME}&myip=203.0.113.12,2001:db8:1:2::/64",
        "Fritz!Box DDNS/1.0.1",
        "good 203.0.113.12\n",
        ["203.0.113.12"],
        [],
    ),
    Dialect(
        "FRITZ!Box with an address/len",
        f"/nic/update?hostname={HOME}&myip=203.0.113.13,2001:db8:1:2::13/64",
        "Fritz!Box DDNS/1.0.1",
        "good 203.0.113.13,2001:db8:1:2::13\n",
        ["203.0.113.13"],
        ["2001:db8:1:2::13"],
    ),
    Dialect(
        "Speedport order: v6 first",
        f"/nic/update?hostname={HOME}&myip=2001:db8::14,203.0.113.14",
        "Speedport",
        "good 2001:db8::14,203.0.113.14\n",
        ["203.0.113.14"],
        ["2001:db8::14"],
    ),
    Dialect(
        "separate myipv6 parameter",
        f"/v3/update?hostname={HOME}&myip=203.0.113.15&myipv6=2001:db8::15",
        "script",
        "good 203.0.113.15,2001:db8::15\n",
        ["203.0.113.15"],
        ["2001:db8::15"],
    ),
    Dialect(
        "curl in a script with the host token",
        f"/nic/update?hostname={HOME}&myip=203.0.113.16",
        "curl/8.5.0",
        "good 203.0.113.16\n",
        ["203.0.113.16"],
        [],
        credentials="token",
    ),
]


@pytest.mark.parametrize("dialect", DIALECTS, ids=[d.name for d in DIALECTS])
def test_client_dialects(two_hosts: LiveServer, dialect: Dialect) -> None:
    headers = {"User-Agent": dialect.user_agent}
    if dialect.credentials == "basic":
        headers["Authorization"] = basic(*ALICE)
    elif dialect.credentials == "token":
        headers["Authorization"] = basic(HOME, two_hosts.tokens[HOME])
    if dialect.http10:
        status, body = raw_http10(two_hosts, dialect.path, headers)
    else:
        response = two_hosts.get(dialect.path, headers=headers)
        status, body = response.status_code, response.text
    assert (status, body) == (200, dialect.expect)
    assert two_hosts.addresses(HOME, "A") == dialect.a
    assert two_hosts.addresses(HOME, "AAAA") == dialect.aaaa
    assert two_hosts.ttl(HOME, "A") == 60
    again = (
        raw_http10(two_hosts, dialect.path, headers)[1]
        if dialect.http10
        else two_hosts.get(dialect.path, headers=headers).text
    )
    assert again == dialect.expect.replace("good", "nochg")


def test_dig_sees_the_update(alice: LiveServer) -> None:
    alice.update(f"hostname={HOME}&myip=203.0.113.7", auth=ALICE)
    dig = subprocess.run(
        ["dig", "@127.0.0.1", "-p", str(alice.dns_port), HOME, "A", "+noall", "+answer"],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    assert dig.stdout.split() == [f"{HOME}.", "60", "IN", "A", "203.0.113.7"]


def test_inadyn_style_separate_families_keep_each_other(alice: LiveServer) -> None:
    assert alice.update(f"hostname={HOME}&myip=203.0.113.20", auth=ALICE).text == (
        "good 203.0.113.20\n"
    )
    assert alice.update(f"hostname={HOME}&myip=2001:db8::20", auth=ALICE).text == (
        "good 2001:db8::20\n"
    )
    assert alice.addresses(HOME, "A") == ["203.0.113.20"]
    assert alice.addresses(HOME, "AAAA") == ["2001:db8::20"]
    # A new IPv4 address leaves the AAAA record alone, and the reverse.
    alice.update(f"hostname={HOME}&myip=203.0.113.21", auth=ALICE)
    assert alice.addresses(HOME, "AAAA") == ["2001:db8::20"]
    alice.update(f"hostname={HOME}&myipv6=2001:db8::21", auth=ALICE)
    assert alice.addresses(HOME, "A") == ["203.0.113.21"]
    assert alice.addresses(HOME, "AAAA") == ["2001:db8::21"]


def test_offline_removes_both_families(alice: LiveServer) -> None:
    alice.update(f"hostname={HOME}&myip=203.0.113.7,2001:db8::7", auth=ALICE)
    assert alice.update(f"hostname={HOME}&offline=YES", auth=ALICE).text == "good\n"
    assert alice.dns_query(HOME).rcode() == dns.rcode.NXDOMAIN
    assert alice.update(f"hostname={HOME}&offline=YES", auth=ALICE).text == "nochg\n"
    # Coming back online restores the record.
    assert alice.update(f"hostname={HOME}&myip=203.0.113.8", auth=ALICE).text == (
        "good 203.0.113.8\n"
    )
    assert alice.addresses(HOME) == ["203.0.113.8"]


def test_serial_rises_on_every_change(alice: LiveServer) -> None:
    def serial() -> int:
        return int(alice.dns_query("dyn.example.test", "SOA").answer[0][0].serial)

    before = serial()
    alice.update(f"hostname={HOME}&myip=203.0.113.7", auth=ALICE)
    after_first = serial()
    alice.update(f"hostname={HOME}&myip=203.0.113.7", auth=ALICE)  # nochg: no zone change
    assert serial() == after_first
    alice.update(f"hostname={HOME}&myip=203.0.113.8", auth=ALICE)
    assert before < after_first < serial()


def test_no_credentials_is_challenged(alice: LiveServer) -> None:
    response = alice.update(f"hostname={HOME}&myip=203.0.113.7")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith('Basic realm="nicupdate"')
    assert response.text == "badauth\n"


def test_unknown_user_and_wrong_password_look_the_same(alice: LiveServer) -> None:
    wrong = alice.update(f"hostname={HOME}&myip=203.0.113.7", auth=("alice", "not-it-at-all"))
    unknown = alice.update(f"hostname={HOME}&myip=203.0.113.7", auth=("mallory", "whatever1"))
    assert (
        (wrong.status_code, wrong.text) == (unknown.status_code, unknown.text) == (401, "badauth\n")
    )
    assert alice.dns_query(HOME).rcode() == dns.rcode.NXDOMAIN


def test_overlong_password_is_badauth_not_an_error(alice: LiveServer) -> None:
    response = alice.update(f"hostname={HOME}&myip=203.0.113.7", auth=("alice", "x" * 5000))
    assert (response.status_code, response.text) == (401, "badauth\n")


def test_hosts_of_others_are_nohost(two_hosts: LiveServer) -> None:
    two_hosts.add_user("bob", "bob-secret-12")
    two_hosts.add_host("bob.dyn.example.test", "bob")
    query = f"hostname={HOME},bob.dyn.example.test,missing.dyn.example.test,x.other.test"
    response = two_hosts.update(query + "&myip=203.0.113.7", auth=ALICE)
    assert response.text == "good 203.0.113.7\nnohost\nnohost\nnohost\n"
    assert two_hosts.dns_query("bob.dyn.example.test").rcode() == dns.rcode.NXDOMAIN
    # A host token updates its own host only.
    token = ("bob.dyn.example.test", two_hosts.tokens["bob.dyn.example.test"])
    response = two_hosts.update(
        f"hostname=bob.dyn.example.test,{HOME}&myip=203.0.113.9", auth=token
    )
    assert response.text == "good 203.0.113.9\nnohost\n"
    assert two_hosts.addresses(HOME) == ["203.0.113.7"]


@pytest.mark.parametrize(
    ("myip", "why"),
    [
        ("300.1.2.3", "not an address"),
        ("0.0.0.0", "unspecified"),
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("255.255.255.255", "reserved"),
        ("::ffff:203.0.113.7", "IPv4-mapped"),
        ("203.0.113.7,hello", "one bad item"),
    ],
)
def test_unusable_addresses_are_dnserr_and_change_nothing(
    two_hosts: LiveServer, myip: str, why: str
) -> None:
    two_hosts.update(f"hostname={HOME}&myip=198.51.100.1", auth=ALICE)
    response = two_hosts.update(f"hostname={HOME},{OFFICE}&myip={myip}", auth=ALICE)
    assert (response.status_code, response.text) == (200, "dnserr\ndnserr\n"), why
    assert two_hosts.addresses(HOME) == ["198.51.100.1"]
    assert two_hosts.addresses(HOME, "AAAA") == []
    assert two_hosts.dns_query(OFFICE).rcode() == dns.rcode.NXDOMAIN


def test_public_only_zone_refuses_private_addresses(alice: LiveServer) -> None:
    alice.add_host("nas.public.example.net", "alice")
    query = f"hostname=nas.public.example.net,{HOME}&myip="
    assert alice.update(query + "192.168.1.10", auth=ALICE).text == ("dnserr\ngood 192.168.1.10\n")
    assert alice.dns_query("nas.public.example.net").rcode() == dns.rcode.NXDOMAIN
    assert alice.update(query + "8.8.4.4", auth=ALICE).text == "good 8.8.4.4\ngood 8.8.4.4\n"
    assert alice.addresses("nas.public.example.net") == ["8.8.4.4"]
    assert alice.ttl("nas.public.example.net") == 300


@pytest.mark.parametrize(
    ("query", "expect"),
    [
        ("myip=203.0.113.7", "notfqdn\n"),  # no hostname at all: answered once
        ("hostname=&myip=203.0.113.7", "notfqdn\n"),
        (f"hostname=-bad-.dyn.example.test,{HOME}&myip=203.0.113.7", "notfqdn\ngood 203.0.113.7\n"),
        ("hostname=nodots&myip=203.0.113.7", "notfqdn\n"),
        (f"hostname={HOME}%ff&myip=203.0.113.7", "notfqdn\n"),  # invalid UTF-8
        ("hostname=" + ",".join(f"h{i}.dyn.example.test" for i in range(21)), "numhost\n"),
        (f"hostname={HOME}&myip=203.0.113.7&pad=" + "x" * 5000, "notfqdn\n"),
    ],
)
def test_malformed_requests_get_protocol_answers(
    alice: LiveServer, query: str, expect: str
) -> None:
    response = alice.update(query, auth=ALICE)
    assert (response.status_code, response.text) == (200, expect)


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "OPTIONS"])
def test_wrong_method_is_badagent(alice: LiveServer, method: str) -> None:
    import httpx

    response = httpx.request(
        method, f"{alice.url}/nic/update?hostname={HOME}&myip=203.0.113.7", auth=ALICE, timeout=5
    )
    assert (response.status_code, response.text) == (200, "badagent\n")
    assert alice.dns_query(HOME).rcode() == dns.rcode.NXDOMAIN


def test_post_works_like_get(alice: LiveServer) -> None:
    import httpx

    response = httpx.post(
        f"{alice.url}/nic/update?hostname={HOME}&myip=203.0.113.7", auth=ALICE, timeout=5
    )
    assert response.text == "good 203.0.113.7\n"


def test_without_trusted_proxies_forwarded_headers_are_ignored(alice: LiveServer) -> None:
    headers = {"X-Forwarded-For": "198.51.100.20", "X-Real-IP": "198.51.100.20"}
    assert alice.get("/myip", headers=headers).text == "127.0.0.1\n"
    # No myip: the caller's own address is meant, and loopback is refused.
    assert alice.update(f"hostname={HOME}", auth=ALICE, headers=headers).text == "dnserr\n"
    assert alice.dns_query(HOME).rcode() == dns.rcode.NXDOMAIN


@pytest.fixture
def behind_proxy(tmp_path: Path):  # type: ignore[no-untyped-def]
    server = start_server(write_config(tmp_path, 'trusted_proxies = ["127.0.0.0/8"]'))
    server.add_user("alice", "alice-secret-1")
    server.add_host(HOME, "alice")
    yield server
    stop_server(server)


def test_trusted_proxy_forwarded_for_gives_the_callers_address(behind_proxy: LiveServer) -> None:
    # The first hop from the right that is not a trusted proxy is the caller.
    xff = {"X-Forwarded-For": "192.0.2.99, 203.0.113.50, 127.0.0.2"}
    assert behind_proxy.get("/myip", headers=xff).text == "203.0.113.50\n"
    response = behind_proxy.update(f"hostname={HOME}", auth=ALICE, headers=xff)
    assert response.text == "good 203.0.113.50\n"
    assert behind_proxy.addresses(HOME) == ["203.0.113.50"]
    # An IPv6 caller sets the AAAA record and leaves A alone.
    v6 = {"X-Forwarded-For": "2001:db8::50"}
    assert behind_proxy.update(f"hostname={HOME}", auth=ALICE, headers=v6).text == (
        "good 2001:db8::50\n"
    )
    assert behind_proxy.addresses(HOME) == ["203.0.113.50"]
    assert behind_proxy.addresses(HOME, "AAAA") == ["2001:db8::50"]


def test_blocked_agents_get_badagent(tmp_path: Path) -> None:
    server = start_server(write_config(tmp_path, 'blocked_agents = ["BadRouter/1"]'))
    try:
        server.add_user("alice", "alice-secret-1")
        server.add_host(HOME, "alice")
        blocked = server.update(
            f"hostname={HOME}&myip=203.0.113.7", auth=ALICE, headers={"User-Agent": "BadRouter/1.2"}
        )
        assert (blocked.status_code, blocked.text) == (200, "badagent\n")
        fine = server.update(
            f"hostname={HOME}&myip=203.0.113.7",
            auth=ALICE,
            headers={"User-Agent": "ddclient/3.11.2"},
        )
        assert fine.text == "good 203.0.113.7\n"
    finally:
        stop_server(server)


def test_health_and_unknown_paths(live_server: LiveServer) -> None:
    assert (live_server.get("/healthz").status_code, live_server.get("/healthz").text) == (
        200,
        "ok\n",
    )
    assert live_server.get("/nope").status_code == 404


def test_healthz_reports_a_stopped_history_writer(live_server: LiveServer) -> None:
    """A bug that ends the task writing the update history does not go unnoticed."""
    recorder = live_server.runtime.recorder
    for task in recorder._tasks:
        live_server.loop.call_soon_threadsafe(task.cancel)
    eventually(lambda: not recorder.healthy())
    answer = live_server.get("/healthz")
    assert (answer.status_code, answer.text) == (
        503,
        "unhealthy\nupdate history: its writer stopped (host log, host list)\n",
    )


def test_state_survives_a_restart(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    server = start_server(config)
    server.add_user("alice", "alice-secret-1")
    server.add_host(HOME, "alice")
    server.update(f"hostname={HOME}&myip=203.0.113.7,2001:db8::7", auth=ALICE)
    serial = server.dns_query("dyn.example.test", "SOA").answer[0][0].serial
    stop_server(server)
    again = start_server(config)
    try:
        assert again.addresses(HOME) == ["203.0.113.7"]
        assert again.addresses(HOME, "AAAA") == ["2001:db8::7"]
        assert again.dns_query("dyn.example.test", "SOA").answer[0][0].serial >= serial
        assert (
            again.update(f"hostname={HOME}&myip=203.0.113.7,2001:db8::7", auth=ALICE).text
            == "nochg 203.0.113.7,2001:db8::7\n"
        )
    finally:
        stop_server(again)


def test_update_log_records_changes(alice: LiveServer) -> None:
    alice.update(
        f"hostname={HOME}&myip=203.0.113.7", auth=ALICE, headers={"User-Agent": "ddclient/3.11.2"}
    )
    alice.update(
        f"hostname={HOME}&myip=203.0.113.8", auth=ALICE, headers={"User-Agent": "ddclient/3.11.2"}
    )
    from nicupdate_server.models import UpdateLog
    from sqlalchemy import select

    async def rows() -> list[tuple[str, str, str, str, str]]:
        async with alice.runtime.engine.connect() as conn:
            result = await conn.execute(
                select(
                    UpdateLog.fqdn,
                    UpdateLog.user_agent,
                    UpdateLog.old_value,
                    UpdateLog.new_value,
                    UpdateLog.answer,
                ).order_by(UpdateLog.id)
            )
            return [tuple(row) for row in result]  # type: ignore[misc]

    expected = [
        (HOME, "ddclient/3.11.2", "", "A 203.0.113.7", "good 203.0.113.7"),
        (HOME, "ddclient/3.11.2", "A 203.0.113.7", "A 203.0.113.8", "good 203.0.113.8"),
    ]
    # The answer as sent is written just after it is sent: wait for it, a bounded while.
    deadline = time.monotonic() + 10
    while alice.call(rows) != expected and time.monotonic() < deadline:
        time.sleep(0.05)
    assert alice.call(rows) == expected


def test_offline_ignores_myip_and_says_so(alice: LiveServer) -> None:
    alice.update(f"hostname={HOME}&myip=203.0.113.7", auth=ALICE)
    response = alice.update(f"hostname={HOME}&myip=203.0.113.9&offline=YES", auth=ALICE)
    assert response.text == "good\n"
    assert alice.dns_query(HOME).rcode() == dns.rcode.NXDOMAIN


def test_sqlite_database_is_in_wal_mode(alice: LiveServer) -> None:
    import sqlite3

    alice.update(f"hostname={HOME}&myip=203.0.113.7", auth=ALICE)
    database = alice.config_path.parent / "state.db"
    with sqlite3.connect(database) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert (alice.config_path.parent / "state.db-wal").exists()
