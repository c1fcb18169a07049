"""Random requests against the real endpoint: every answer is a valid dyndns2 answer,
and nothing changes unless the answer says so."""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.server.conftest import ALICE, LiveServer, start_server, stop_server, write_config

HOME = "home.dyn.example.test"
LINE = re.compile(
    r"^(?:(?:good|nochg)(?: [0-9a-f:.]+(?:,[0-9a-f:.]+)*)?"
    r"|badauth|badagent|abuse|numhost|notfqdn|nohost|dnserr|911)$"
)

KEYS = [
    "hostname",
    "myip",
    "myipv6",
    "ipv6",
    "myipv4",
    "ip",
    "offline",
    "system",
    "wildcard",
    "mx",
    "backmx",
    "url",
    "username",
    "password",
]
VALUES = st.one_of(
    st.sampled_from(
        [
            HOME,
            f"{HOME},{HOME}",
            "other.dyn.example.test",
            "",
            ",",
            "YES",
            "NO",
            "203.0.113.7",
            "2001:db8::7",
            "203.0.113.7,2001:db8::7",
            "127.0.0.1",
            "2001:db8:1::/64",
            "10.0.0.1",
            "alice",
            "alice-secret-1",
            "-.dyn.example.test",
            "x" * 300,
        ]
    ),
    st.text(max_size=40),
    st.ip_addresses().map(str),
)


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    path: Path = tmp_path_factory.mktemp("fuzz")
    server = start_server(write_config(path))
    server.add_user("alice", "alice-secret-1")
    server.add_host(HOME, "alice")
    yield server
    stop_server(server)


def served(server: LiveServer) -> tuple[list[str], list[str]]:
    return server.addresses(HOME, "A"), server.addresses(HOME, "AAAA")


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    pairs=st.lists(st.tuples(st.sampled_from(KEYS), VALUES), max_size=8),
    raw_tail=st.binary(max_size=30),
    method=st.sampled_from(["GET", "GET", "GET", "POST", "PUT", "DELETE"]),
    auth=st.sampled_from(["alice", "wrong", "none", "garbage"]),
)
def test_every_answer_is_a_dyndns2_answer(
    fuzz_server: LiveServer, pairs: list[tuple[str, str]], raw_tail: bytes, method: str, auth: str
) -> None:
    query = urllib.parse.urlencode(pairs) + "&" + urllib.parse.quote_from_bytes(raw_tail)
    headers = {}
    if auth == "alice":
        headers["Authorization"] = httpx.BasicAuth(*ALICE)._auth_header
    elif auth == "wrong":
        headers["Authorization"] = httpx.BasicAuth("alice", "wrong-password")._auth_header
    elif auth == "garbage":
        headers["Authorization"] = "Basic %%%"
    before = served(fuzz_server)
    response = httpx.request(
        method, f"{fuzz_server.url}/nic/update?{query}", headers=headers, timeout=10
    )
    assert response.status_code in (200, 401)
    assert response.headers["content-type"].startswith("text/plain")
    lines = response.text.splitlines()
    assert response.text.endswith("\n") and lines
    for line in lines:
        assert LINE.match(line), line
    if response.status_code == 401:
        assert lines == ["badauth"]
    if not any(line.startswith("good") for line in lines):
        assert served(fuzz_server) == before
