"""The one-shot client command against the real server."""

from __future__ import annotations

import subprocess
import sys

import pytest
from nicupdate_client.cli import OK, PERMANENT, TEMPORARY, classify

from tests.server.conftest import LiveServer

HOME = "home.dyn.example.test"


def client(*args: str, password: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nicupdate_client", *args],
        input=password + "\n",
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def update_args(server: str, myip: str, username: str) -> list[str]:
    return [
        "update",
        "--server",
        server,
        "--hostname",
        HOME,
        "--myip",
        myip,
        "--username",
        username,
        "--password-stdin",
    ]


def test_update_then_nochg_then_badauth(alice: LiveServer) -> None:
    args = update_args(alice.url, "203.0.113.7", "alice")
    first = client(*args, password="alice-secret-1")
    assert (first.returncode, first.stdout) == (OK, "good 203.0.113.7\n")
    assert alice.addresses(HOME) == ["203.0.113.7"]
    second = client(*args, password="alice-secret-1")
    assert (second.returncode, second.stdout) == (OK, "nochg 203.0.113.7\n")
    wrong = client(*args, password="wrong-password")
    assert (wrong.returncode, wrong.stdout) == (PERMANENT, "badauth\n")


def test_host_token(alice: LiveServer) -> None:
    result = client(*update_args(alice.url, "2001:db8::7", HOME), password=alice.tokens[HOME])
    assert (result.returncode, result.stdout) == (OK, "good 2001:db8::7\n")


def test_unreachable_server_is_temporary() -> None:
    result = client(
        "update",
        "--server",
        "http://127.0.0.1:9",
        "--hostname",
        HOME,
        "--username",
        "alice",
        "--password-stdin",
        password="pw",
    )
    assert result.returncode == TEMPORARY
    assert "cannot reach http://127.0.0.1:9" in result.stderr
    assert "pw" not in result.stderr.split("cannot reach")[0]


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (200, "good 203.0.113.7\n", OK),
        (200, "nochg 203.0.113.7\ngood 203.0.113.7\n", OK),
        (401, "badauth\n", PERMANENT),
        (200, "good 1.2.3.4\nnohost\n", PERMANENT),
        (200, "911\n", TEMPORARY),
        (200, "dnserr\n", TEMPORARY),
        (200, "", TEMPORARY),
        (200, "abuse\n", PERMANENT),
        (429, "911\n", TEMPORARY),
        (429, "abuse\n", TEMPORARY),  # a 429 never stops
        (503, "", TEMPORARY),
    ],
)
def test_classify(status: int, body: str, expected: int) -> None:
    assert classify(status, body) == expected
