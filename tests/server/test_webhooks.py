"""Webhooks against a real receiver on loopback that checks every signature.

The receiver (:class:`Receiver`, http.server in a thread) records each request and
answers what the test tells it (500s, a pause); the server runs in a thread
(``start_server``) or, for SIGKILL, as its own process (``server_process``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import signal
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from nicupdate_server.cli import main
from nicupdate_server.config import load_config
from nicupdate_server.reload import reconfigure

from tests.server.conftest import (
    ALICE,
    LiveServer,
    eventually,
    start_server,
    stop_server,
    write_config,
)
from tests.server.process import free_port, server_process

pytestmark = pytest.mark.usefixtures("clean_environment")

HOME = "home.dyn.example.test"
SECRET = "whsec-5f1c0b9e-never-in-a-log"
ALL_KEYS = {"id", "event", "at", "host", "owner"}


@dataclass(frozen=True)
class Request:
    path: str
    status: int  # what the receiver answered
    signed: bool  # the signature matched the body
    headers: dict[str, str]
    body: bytes

    @property
    def id(self) -> int:
        return int(self.headers["x-nicupdate-delivery"])

    @property
    def event(self) -> str:
        return self.headers["x-nicupdate-event"]

    def json(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data


@dataclass
class Receiver:
    """A webhook receiver on 127.0.0.1: ``answers`` are the statuses of the next
    requests (then 200), each held ``pause`` seconds before it is answered."""

    secret: str = SECRET
    port: int = 0
    answers: list[int] = field(default_factory=list)
    pause: float = 0.0
    requests: list[Request] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                expected = (
                    "sha256=" + hmac.new(receiver.secret.encode(), body, hashlib.sha256).hexdigest()
                )
                signed = hmac.compare_digest(
                    self.headers.get("x-nicupdate-signature-256", ""), expected
                )
                with receiver._lock:
                    status = receiver.answers.pop(0) if receiver.answers else 200
                if receiver.pause:
                    threading.Event().wait(receiver.pause)  # a slow receiver
                headers = {k.lower(): v for k, v in self.headers.items()}
                with receiver._lock:
                    receiver.requests.append(Request(self.path, status, signed, headers, body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def delivered(self, path: str = "/hook") -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.path == path and 200 <= r.status < 300]

    def all(self) -> list[Request]:
        with self._lock:
            return list(self.requests)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    started = Receiver().start()
    yield started
    started.stop()


def secret_file(directory: Path, secret: str = SECRET) -> Path:
    path = directory / "hook.secret"
    path.write_text(secret + "\n")
    return path


def webhook_table(name: str, url: str, secret: Path, events: list[str] | None = None) -> str:
    lines = [
        "[[webhooks]]",
        f'name = "{name}"',
        f'url = "{url}"',
        f'secret_file = "{secret}"',
        "timeout = 2",
    ]
    if events is not None:
        lines.append(f"events = {json.dumps(events)}")
    return "\n" + "\n".join(lines) + "\n"


def hooked_server(directory: Path, tables: str, limits: str = "") -> LiveServer:
    path = write_config(directory)
    extra = f"\n[limits]\n{limits}\n" if limits else ""
    path.write_text(path.read_text() + extra + tables)
    return start_server(path)


def with_alice(server: LiveServer) -> LiveServer:
    server.add_user(*ALICE)
    server.add_host(HOME, "alice")
    return server


def stored_position(directory: Path, name: str) -> int:
    with closing(sqlite3.connect(directory / "state.db")) as db:
        row = db.execute(
            "SELECT position FROM feed_positions WHERE consumer = ?", (f"webhook:{name}",)
        ).fetchone()
    return int(row[0]) if row else -1


def log_ids(directory: Path, kind: str) -> list[int]:
    with closing(sqlite3.connect(directory / "state.db")) as db:
        rows = db.execute("SELECT id FROM changes WHERE kind = ? ORDER BY id", (kind,))
        return [int(row[0]) for row in rows]


# --- what is sent ------------------------------------------------------------------------


def test_events_arrive_in_order_signed_and_only_the_subscribed_ones(
    tmp_path: Path, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = secret_file(tmp_path)
    tables = webhook_table("all", receiver.url("/all"), secret) + webhook_table(
        "blocks", receiver.url("/blocks"), secret, ["host.blocked", "host.unblocked"]
    )
    server = with_alice(hooked_server(tmp_path, tables, "abuse_nochg_threshold = 1"))
    try:
        update = f"hostname={HOME}&myip=203.0.113.7"
        answers = [server.update(update, auth=ALICE).text for _ in range(3)]
        assert answers == ["good 203.0.113.7\n", "nochg 203.0.113.7\n", "abuse\n"]
        eventually(lambda: len(receiver.delivered("/all")) >= 3)  # blocked: stored
        assert server.admin(lambda a: a.unblock_host(HOME))
        server.admin(lambda a: a.remove_host(HOME))

        sent = eventually(
            lambda: len(receiver.delivered("/all")) >= 5 and receiver.delivered("/all")
        )
        assert [r.event for r in sent] == [
            "host.added",
            "records",
            "host.blocked",
            "host.unblocked",
            "host.removed",
        ]
        ids = [r.id for r in sent]
        assert ids == sorted(ids) and len(set(ids)) == 5
        bodies = [r.json() for r in sent]
        for request, body in zip(sent, bodies, strict=True):
            assert request.signed
            assert request.headers["content-type"] == "application/json"
            assert request.headers["user-agent"].startswith("nicupdate/")
            assert (body["id"], body["event"]) == (request.id, request.event)
            assert (body["host"], body["owner"]) == (HOME, "alice")
            assert body["at"].endswith("Z")
        assert [set(body) - ALL_KEYS for body in bodies] == [
            set(),
            {"records", "previous"},
            set(),
            set(),
            set(),
        ]
        assert (bodies[1]["records"], bodies[1]["previous"]) == ({"A": ["203.0.113.7"]}, {})
        # No token digest, no password hash: nothing but the keys above went out.
        assert all("digest" not in r.body.decode() for r in sent)

        # The other webhook got the two events it asked for, and no other once it
        # had passed the removal.
        eventually(lambda: stored_position(tmp_path, "blocks") >= ids[-1])
        blocks = receiver.delivered("/blocks")
        assert [(r.event, r.id, r.body) for r in blocks] == [
            (r.event, r.id, r.body) for r in sent[2:4]
        ]
        assert all(r.signed for r in receiver.all())
        assert len(receiver.all()) == 7  # each once: every answer was 200
    finally:
        stop_server(server)
    assert SECRET not in caplog.text
    assert "webhook" in caplog.text  # the webhooks did log (and never their secret)


def test_a_receiver_answering_500_gets_the_same_event_until_it_takes_it(
    tmp_path: Path, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="nicupdate.webhooks")
    table = webhook_table("h", receiver.url(), secret_file(tmp_path), ["records"])
    server = with_alice(hooked_server(tmp_path, table))
    try:
        receiver.answers = [500, 503]
        for n in (1, 2):
            assert server.update(f"hostname={HOME}&myip=203.0.113.{n}", auth=ALICE).text == (
                f"good 203.0.113.{n}\n"
            )
        delivered = eventually(lambda: len(receiver.delivered()) == 2 and receiver.delivered())
        assert [r.json()["records"] for r in delivered] == [
            {"A": ["203.0.113.1"]},
            {"A": ["203.0.113.2"]},
        ]
        tried = receiver.all()
        assert [r.status for r in tried] == [500, 503, 200, 200]
        assert len({(r.id, r.body) for r in tried[:3]}) == 1  # the same event, retried
        assert delivered[0].id < delivered[1].id
        assert log_ids(tmp_path, "records") == [r.id for r in delivered]  # none skipped
    finally:
        stop_server(server)
    lines = [r.getMessage() for r in caplog.records if r.name == "nicupdate.webhooks"]
    failing = [line for line in lines if "not delivered (HTTP 500)" in line]
    recovered = [line for line in lines if "takes events again" in line]
    assert (len(failing), len(recovered)) == (1, 1), lines  # not one per attempt
    assert "after 2 failed attempts" in recovered[0]


def test_a_receiver_that_is_down_gets_the_events_when_it_comes_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="nicupdate.webhooks")
    port = free_port()  # nothing listens there yet
    down = Receiver(port=port)
    table = webhook_table("h", down.url(), secret_file(tmp_path), ["records"])
    server = with_alice(hooked_server(tmp_path, table))
    receiver = None
    try:
        assert server.update(f"hostname={HOME}&myip=203.0.113.9", auth=ALICE).status_code == 200
        assert eventually(lambda: "not delivered (ConnectError" in caplog.text), caplog.text
        receiver = Receiver(port=port).start()
        delivered = eventually(lambda: receiver.delivered())
        assert [r.event for r in delivered] == ["records"]
        assert delivered[0].json()["records"] == {"A": ["203.0.113.9"]}
        assert eventually(lambda: "takes events again" in caplog.text)
    finally:
        stop_server(server)
        if receiver is not None:
            receiver.stop()


def test_sigkill_while_the_receiver_is_slow_loses_nothing(tmp_path: Path) -> None:
    receiver = Receiver(answers=[500], pause=0.3).start()
    secret = secret_file(tmp_path)
    table = webhook_table("h", receiver.url(), secret)
    # [[webhooks]] after the [server] keys: a table of its own in the same file.
    extra = 'log_level = "debug"\n' + table
    addresses = [f"203.0.113.{n}" for n in range(1, 9)]
    logs = []
    try:
        with server_process(tmp_path, server_extra=extra) as server:
            for address in addresses:
                answer = httpx.get(
                    f"{server.url}/nic/update?hostname={HOME}&myip={address}",
                    auth=ALICE,
                    timeout=10,
                )
                assert answer.text == f"good {address}\n"
            assert eventually(lambda: len(receiver.delivered()) >= 2)
            assert server.stop(signal.SIGKILL) == -signal.SIGKILL
            logs.append(server.text())
        assert len(receiver.delivered()) < len(addresses)  # killed mid-delivery
        receiver.pause = 0.0
        with server_process(tmp_path, server_extra=extra, accounts=False) as again:
            wanted = set(log_ids(tmp_path, "records"))
            assert len(wanted) == len(addresses)
            assert eventually(lambda: {r.id for r in receiver.delivered()} >= wanted)
            logs.append(again.text())
    finally:
        receiver.stop()
    requests = receiver.all()
    assert all(r.signed for r in requests)
    by_id: dict[int, set[bytes]] = {}
    for request in requests:
        by_id.setdefault(request.id, set()).add(request.body)
    assert all(len(bodies) == 1 for bodies in by_id.values())  # a duplicate is the same
    first = [r.id for r in receiver.delivered()]
    order = list(dict.fromkeys(first))
    assert order == sorted(order)  # in log order, duplicates aside
    records = [json.loads(next(iter(by_id[i])))["records"]["A"][0] for i in sorted(wanted)]
    assert records == addresses
    assert "webhook h: change" in logs[0]  # not delivered (HTTP 500): it did log
    assert all(SECRET not in text for text in logs)  # with log_level debug


# --- the configuration -------------------------------------------------------------------


def check_config(capsys: pytest.CaptureFixture[str], path: Path) -> str:
    assert main(["--config", str(path), "check-config"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize(
    ("table", "error"),
    [
        (
            'name = "h"\nurl = "http://127.0.0.1:9/"',
            "webhooks[0].secret_file: missing (required)",
        ),
        (
            'name = "h"\nurl = "http://127.0.0.1:9/"\nsecret_file = "{missing}"',
            "webhooks[0].secret_file: cannot read {missing}",
        ),
        (
            'name = "h"\nurl = "http://127.0.0.1:9/"\nsecret_file = "{secret}"\n'
            'events = ["records", "host.renamed"]',
            "webhooks[0].events: unknown event 'host.renamed'",
        ),
        (
            'name = "H!"\nurl = "http://127.0.0.1:9/"\nsecret_file = "{secret}"',
            "webhooks[0].name: 'H!' must be 1-64 of a-z, 0-9 and -",
        ),
        (
            'name = "h"\nurl = "ftp://user:pw@host/"\nsecret_file = "{secret}"',
            "webhooks[0].url: must be an http:// or https:// URL with a host name",
        ),
    ],
)
def test_config_errors_are_one_line_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], table: str, error: str
) -> None:
    secret = secret_file(tmp_path)
    names = {"missing": tmp_path / "nope.secret", "secret": secret}
    path = tmp_path / "nicupdate.toml"
    path.write_text("[[webhooks]]\n" + table.format(**names) + "\n")
    line = check_config(capsys, path)
    assert error.format(**names) in line
    assert SECRET not in line and "pw@" not in line


def test_a_webhook_name_is_used_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    secret = secret_file(tmp_path)
    path = tmp_path / "nicupdate.toml"
    path.write_text(
        webhook_table("h", "http://127.0.0.1:9/", secret) * 2
        + webhook_table("g", "http://127.0.0.1:9/", secret)
    )
    assert "webhooks[1].name: webhook 'h' is listed twice" in check_config(capsys, path)


# --- reloads and a log that no longer reaches back ---------------------------------------


def test_a_reload_starts_new_webhooks_and_stops_removed_ones(
    tmp_path: Path, receiver: Receiver
) -> None:
    server = with_alice(hooked_server(tmp_path, ""))
    try:
        server.update(f"hostname={HOME}&myip=203.0.113.1", auth=ALICE)  # before: not sent
        secret = secret_file(tmp_path)
        server.config_path.write_text(
            server.config_path.read_text() + webhook_table("h", receiver.url(), secret)
        )
        new = load_config(server.config_path, environ={})
        server.call(lambda: reconfigure(server.runtime, new))
        server.update(f"hostname={HOME}&myip=203.0.113.2", auth=ALICE)
        sent = eventually(lambda: receiver.delivered())
        assert [r.json()["records"] for r in sent] == [{"A": ["203.0.113.2"]}]

        old = load_config(write_config(tmp_path), environ={})  # the webhook is gone again
        server.call(lambda: reconfigure(server.runtime, old))
        assert stored_position(tmp_path, "h") == -1  # it holds back no pruning
        server.update(f"hostname={HOME}&myip=203.0.113.3", auth=ALICE)
        server.call(server.runtime.feed.catch_up)
        assert server.runtime.webhooks.hooks == {}
        assert len(receiver.all()) == 1
    finally:
        stop_server(server)


def test_changes_pruned_before_delivery_are_counted_and_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="nicupdate.webhooks")
    port = free_port()
    url = f"http://127.0.0.1:{port}/hook"
    server = with_alice(
        hooked_server(tmp_path, webhook_table("h", url, secret_file(tmp_path), ["records"]))
    )
    try:
        for n in (1, 2, 3):
            server.update(f"hostname={HOME}&myip=203.0.113.{n}", auth=ALICE)
        assert eventually(lambda: "not delivered" in caplog.text)
    finally:
        stop_server(server)  # stores the position: before the first records change
    first, *_, last = log_ids(tmp_path, "records")
    assert stored_position(tmp_path, "h") < first
    with closing(sqlite3.connect(tmp_path / "state.db")) as db, db:
        db.execute("DELETE FROM changes WHERE id < ?", (last,))  # as 7 days would

    receiver = Receiver(port=port).start()
    again = start_server(server.config_path)
    try:
        assert eventually(lambda: "were lost" in caplog.text)
        again.update(f"hostname={HOME}&myip=203.0.113.4", auth=ALICE)
        sent = eventually(lambda: len(receiver.delivered()) >= 2 and receiver.delivered())
        assert [r.json()["records"]["A"] for r in sent] == [["203.0.113.3"], ["203.0.113.4"]]
    finally:
        stop_server(again)
        receiver.stop()
    lost = [r.getMessage() for r in caplog.records if "were lost" in r.getMessage()]
    position = stored_position(tmp_path, "h")
    assert len(lost) == 1 and f"going on with change {last}" in lost[0], lost
    assert position > last


# --- several instances on one PostgreSQL ---------------------------------------------------


def delivered_count(server: LiveServer, name: str) -> float:
    """What the instance's /metrics says it delivered for webhook ``name``."""
    page = server.get("/metrics").text
    wanted = f'nicupdate_webhook_attempts_total{{result="delivered",webhook="{name}"}}'
    for line in page.splitlines():
        if line.startswith(wanted):
            return float(line.split()[-1])
    return 0.0


def test_on_postgresql_one_instance_delivers_and_another_takes_over(
    tmp_path: Path, receiver: Receiver
) -> None:
    from tests.server.postgres import running_postgres

    secret = secret_file(tmp_path)
    table = webhook_table("h", receiver.url(), secret, ["records"])
    with running_postgres() as url:
        paths = []
        for name in ("one", "two"):
            (tmp_path / name).mkdir()
            path = write_config(tmp_path / name)
            text = re.sub(r'database = ".*"', f'database = "{url}"', path.read_text())
            path.write_text(text + table)
            paths.append(path)
        first = with_alice(start_server(paths[0]))  # takes the webhook at its start
        second = start_server(paths[1])
        try:
            assert eventually(lambda: HOME in second.runtime.state.hosts)
            for n, server in enumerate((first, second, first), 1):
                answer = server.update(f"hostname={HOME}&myip=203.0.113.{n}", auth=ALICE)
                assert answer.text == f"good 203.0.113.{n}\n"
            assert eventually(lambda: len(receiver.delivered()) == 3)
            assert (delivered_count(first, "h"), delivered_count(second, "h")) == (3.0, 0.0)
            stop_server(first)  # the other instance takes over within seconds
            answer = second.update(f"hostname={HOME}&myip=203.0.113.4", auth=ALICE)
            assert answer.text == "good 203.0.113.4\n"
            assert eventually(lambda: len(receiver.delivered()) >= 4)
            assert delivered_count(second, "h") >= 1.0
        finally:
            stop_server(first)
            stop_server(second)
    sent = [r.json()["records"]["A"] for r in receiver.delivered()]
    assert list(dict.fromkeys(map(tuple, sent))) == [(f"203.0.113.{n}",) for n in range(1, 5)]
