"""Slow, greedy and half-closing HTTP connections, against the real server.

Raw sockets send what real clients and attackers send: a head that never ends, a
request line too long, nothing at all, a request then EOF (``nc -N``, busybox ``nc``),
and a thousand idle connections against a server whose descriptor limit is 1024.
"""

from __future__ import annotations

import base64
import select
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.query
import dns.rdatatype
import httpx
import pytest
from argon2 import PasswordHasher

from tests.server.conftest import ALICE, LiveServer, start_server, stop_server, write_config
from tests.server.process import (
    HOME,
    raise_own_descriptor_limit,
    server_process,
    wait_for,
)

AUTH = base64.b64encode(f"{ALICE[0]}:{ALICE[1]}".encode()).decode()


def request(ip: str, version: str = "1.1") -> bytes:
    return (
        f"GET /nic/update?hostname={HOME}&myip={ip} HTTP/{version}\r\nHost: nicupdate\r\n"
        f"Authorization: Basic {AUTH}\r\n\r\n"
    ).encode()


def read_all(sock: socket.socket, timeout: float = 30.0) -> bytes:
    """Everything the server sends until it closes the connection."""
    sock.settimeout(timeout)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def status_and_body(response: bytes) -> tuple[str, str]:
    head, _, body = response.partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0].decode(), body.decode()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    path = write_config(tmp_path)
    path.write_text(path.read_text() + "\n[limits]\nheader_timeout = 2.0\n")
    live = start_server(path)
    live.add_user("alice", ALICE[1])
    live.add_host(HOME, "alice")
    yield live
    stop_server(live)


def connect(server: LiveServer, source: str = "127.0.0.1") -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.http.port), source_address=(source, 0))


# -- the request head ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sent", "status"),
    [
        (b"GET /nic/update?hostname=" + b"a" * 9000, "HTTP/1.1 414 Request-URI Too Long"),
        (
            b"GET /nic/update HTTP/1.1\r\nHost: x\r\nX-Filler: " + b"b" * 9000,
            "HTTP/1.1 431 Request Header Fields Too Large",
        ),
        (
            b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: v\r\n" % n for n in range(2000)),
            "HTTP/1.1 431 Request Header Fields Too Large",
        ),
        (b"BREW /coffee HTCPCP/1.0\r\n\r\n", "HTTP/1.1 400 Bad Request"),
    ],
    ids=["endless-url", "endless-header", "many-headers", "not-http"],
)
def test_an_oversized_or_malformed_head_is_refused_as_it_arrives(
    server: LiveServer, sent: bytes, status: str
) -> None:
    with connect(server) as sock:
        sock.sendall(sent)  # and nothing more: the server must not wait for the end
        line, body = status_and_body(read_all(sock))
    assert line == status
    assert body == status.split(" ", 1)[1] + "\n"


def test_a_held_back_429_ends_when_its_client_leaves(tmp_path: Path) -> None:
    # A locked-out source's answers are held back a minute; one that hangs up must not
    # leave its request waiting out that minute (a reconnecting flood would pile them up).
    path = write_config(tmp_path)
    path.write_text(
        path.read_text() + "\n[limits]\nauth_failures_per_source = 1\nthrottle_delay = 60\n"
    )
    live = start_server(path)
    try:
        guess = base64.b64encode(b"mallory:guess").decode()
        head = f"GET /nic/update?hostname={HOME} HTTP/1.1\r\nHost: x\r\n"
        head += f"Authorization: Basic {guess}\r\n\r\n"
        with connect(live, "127.0.8.1") as sock:  # the failure that locks the source out
            sock.sendall(head.encode())
            sock.settimeout(30)
            assert sock.recv(4096).startswith(b"HTTP/1.1 401 ")
        tasks = live.http.server_state.tasks
        with connect(live, "127.0.8.1") as sock:
            sock.sendall(head.encode())
            wait_for(lambda: len(tasks) == 1, what="the request to be held back")
        # Hung up: the request ends now, not after throttle_delay.
        wait_for(lambda: not tasks, timeout=10, what="the held-back request to end")
    finally:
        stop_server(live)


def test_a_head_streamed_forever_is_answered_while_it_streams(server: LiveServer) -> None:
    with connect(server) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Endless: ")
        for _ in range(10_000):  # bounded: 10 MB, far past the 8 KiB limit
            if select.select([sock], [], [], 0)[0]:
                break  # the server has answered: it did not wait for the end
            try:
                sock.sendall(b"z" * 1024)
            except (BrokenPipeError, ConnectionResetError):
                break
        line, _ = status_and_body(read_all(sock))
    assert line == "HTTP/1.1 431 Request Header Fields Too Large"


def test_a_head_not_sent_in_time_gets_408_and_silence_gets_closed(server: LiveServer) -> None:
    with connect(server) as sock:
        sock.sendall(b"GET /nic/update HTTP/1.1\r\nHost: x\r\n")  # ...and no end
        line, _ = status_and_body(read_all(sock))
    assert line == "HTTP/1.1 408 Request Timeout"
    with connect(server) as idle:
        assert read_all(idle) == b""  # sent nothing: closed without a word


def test_a_request_and_keep_alive_still_work(server: LiveServer) -> None:
    with httpx.Client(timeout=10) as http:
        for n in (1, 2, 2):
            answer = http.get(
                f"{server.url}/nic/update?hostname={HOME}&myip=203.0.113.{n}", auth=ALICE
            )
            assert answer.status_code == 200
        assert answer.text == "nochg 203.0.113.2\n"


def test_a_body_nobody_reads_is_not_read_for_nothing(server: LiveServer) -> None:
    with connect(server) as sock:
        sock.sendall(
            b"POST /nic/update?hostname=" + HOME.encode() + b"&myip=203.0.113.30 HTTP/1.1\r\n"
            b"Host: x\r\nAuthorization: Basic " + AUTH.encode() + b"\r\n"
            b"Content-Length: 100000000\r\n\r\n" + b"b" * 1000
        )
        line, body = status_and_body(read_all(sock))  # answered, then closed
    assert (line, body) == ("HTTP/1.1 200 OK", "good 203.0.113.30\n")


# -- half-closing clients --------------------------------------------------------------


@pytest.mark.parametrize("version", ["1.0", "1.1"])
def test_a_client_that_half_closes_gets_its_answer(server: LiveServer, version: str) -> None:
    with connect(server) as sock:
        sock.sendall(request("203.0.113.20", version))
        sock.shutdown(socket.SHUT_WR)  # as `nc -N` does once its input ends
        line, body = status_and_body(read_all(sock))
    assert (line, body) == ("HTTP/1.1 200 OK", "good 203.0.113.20\n")


def test_pipelined_requests_then_eof_are_all_answered(server: LiveServer) -> None:
    with connect(server) as sock:
        sock.sendall(request("203.0.113.21") + request("203.0.113.21"))
        sock.shutdown(socket.SHUT_WR)
        text = read_all(sock).decode()
    assert text.count("HTTP/1.1 200 OK") == 2
    assert "good 203.0.113.21\n" in text and text.endswith("nochg 203.0.113.21\n")


@pytest.mark.parametrize(
    "command",
    [["nc.openbsd", "-N"], ["busybox", "nc"]],
    ids=["openbsd-nc-N", "busybox-nc"],
)
def test_router_scripts_with_nc_get_their_answer(server: LiveServer, command: list[str]) -> None:
    if shutil.which(command[0]) is None:
        pytest.fail(f"{command[0]} is not installed (tests/run.sh installs it)")
    done = subprocess.run(
        [*command, "127.0.0.1", str(server.http.port)],
        input=request("203.0.113.22", "1.0"),
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert status_and_body(done.stdout) == ("HTTP/1.1 200 OK", "good 203.0.113.22\n")
    assert server.addresses(HOME) == ["203.0.113.22"]


# -- connection caps -------------------------------------------------------------------


def still_open(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(1) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


def test_one_source_cannot_hold_more_than_its_share(tmp_path: Path) -> None:
    raise_own_descriptor_limit()
    with server_process(tmp_path, limits="max_connections_per_source = 20") as server:
        held = [
            socket.create_connection(
                ("127.0.0.1", server.http_port), source_address=("127.0.0.7", 0)
            )
            for _ in range(50)
        ]
        try:
            wait_for(lambda: sum(still_open(s) for s in held) == 20, what="20 connections left")
            # The newest ones stayed: the oldest idle ones made room for them.
            assert all(still_open(s) for s in held[-20:])
            with httpx.Client(
                transport=httpx.HTTPTransport(local_address="127.0.0.7"), timeout=10
            ) as http:
                answer = http.get(
                    f"{server.url}/nic/update?hostname={HOME}&myip=203.0.113.5", auth=ALICE
                )
            assert answer.text == "good 203.0.113.5\n"  # that source's own request still gets in
        finally:
            for sock in held:
                sock.close()


def test_connections_refused_at_the_limit_are_logged_once_and_reported_by_healthz(
    tmp_path: Path,
) -> None:
    # 16 connections (the least there can be), each busy with a request whose password
    # waits for the one hashing thread: none of them idle, so none can make room. Alice's
    # hash is a costly one (~0.3 s a check here): the 16 stay busy long enough to be seen.
    limits = (
        "max_connections = 16\nhash_workers = 1\nmax_pending_checks = 100\n"
        "max_pending_checks_per_source = 100\nauth_failures_per_source = 1000\n"
        "auth_failures_per_user = 1000"
    )
    costly = PasswordHasher(time_cost=6, memory_cost=65536, parallelism=1).hash(ALICE[1])
    with server_process(tmp_path, limits=limits, password_hash=costly) as server:
        guesses = []
        for n in range(16):
            sock = socket.create_connection(
                ("127.0.0.1", server.http_port), source_address=(f"127.0.7.{n + 1}", 0)
            )
            wrong = base64.b64encode(f"{ALICE[0]}:guess{n}".encode()).decode()
            sock.sendall(
                f"GET /nic/update?hostname={HOME} HTTP/1.1\r\nHost: nicupdate\r\n"
                f"Authorization: Basic {wrong}\r\nConnection: close\r\n\r\n".encode()
            )
            guesses.append(sock)
        health: httpx.Response | None = None
        refused = 0
        for _ in range(5000):  # bounded: until a guess is answered and frees a place
            try:
                health = httpx.get(f"{server.url}/healthz", timeout=5)
                break
            except httpx.TransportError:
                refused += 1
        answers = [status_and_body(read_all(sock))[0] for sock in guesses]
        for sock in guesses:
            sock.close()
        assert refused > 0, "no connection was refused while 16 were busy"
        assert answers == ["HTTP/1.1 401 Unauthorized"] * 16  # answered in the end
        assert health is not None and health.status_code == 503
        assert "connections: at the limit of 16 with none idle" in health.text
        assert server.text().count("HTTP connections open, the limit") == 1


def dns_answers(port: int, count: int) -> int:
    """How many of ``count`` UDP queries for HOME the built-in DNS answered."""
    answered = 0
    for _ in range(count):
        query = dns.message.make_query(HOME, dns.rdatatype.A)
        try:
            dns.query.udp(query, "127.0.0.1", port=port, timeout=5)
            answered += 1
        except dns.exception.Timeout:
            pass
    return answered


def test_a_thousand_idle_connections_and_an_endless_head_do_not_shut_out_an_update(
    tmp_path: Path,
) -> None:
    raise_own_descriptor_limit()
    with server_process(tmp_path, descriptors=1024) as server:
        stop = threading.Event()
        refused = []

        def endless_head() -> None:
            for _ in range(1000):  # bounded: reconnects at most this often
                if stop.is_set():
                    return
                try:
                    with socket.create_connection(
                        ("127.0.0.1", server.http_port), source_address=("127.0.0.9", 0)
                    ) as sock:
                        sock.sendall(b"GET / HTTP/1.1\r\nX-Endless: ")
                        for _ in range(10_000):
                            if stop.is_set():
                                return
                            sock.sendall(b"y" * 512)
                except OSError:
                    refused.append(1)  # cut off: start again

        streamer = threading.Thread(target=endless_head, daemon=True)
        streamer.start()
        idle = []
        try:
            for n in range(1000):  # ten sources, 100 idle connections each
                idle.append(
                    socket.create_connection(
                        ("127.0.0.1", server.http_port),
                        source_address=(f"127.0.4.{n // 100 + 1}", 0),
                    )
                )
            assert refused, "the endless head was never cut off"
            answer = httpx.get(
                f"{server.url}/nic/update?hostname={HOME}&myip=203.0.113.44", auth=ALICE, timeout=10
            )
            assert (answer.status_code, answer.text) == (200, "good 203.0.113.44\n")
            assert dns_answers(server.dns_port, 50) == 50
            health = httpx.get(f"{server.url}/healthz", timeout=10)
            assert (health.status_code, health.text) == (200, "ok\n")
        finally:
            stop.set()
            streamer.join(30)
            for sock in idle:
                sock.close()
        log = server.text()
        assert "431 Request Header Fields Too Large (headers) from 127.0.0.9" in log
        assert log.count("HTTP connections open, the limit") == 1  # logged once
        assert "at most 960 HTTP connections: the file descriptor limit is 1024" in log
        assert len(log.splitlines()) < 40  # summarised, not one line per connection
        assert "Traceback" not in log
