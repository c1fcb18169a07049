"""The server's log as a user reads it: text by default, one JSON object per line with
``server.log_format = "json"``; never a password or token in either."""

from __future__ import annotations

import json
import logging
import re
import signal
import sys
from pathlib import Path
from typing import Any

import httpx
from nicupdate_server.jsonlines import JsonLines

from tests.server.process import ALICE, HOME, ServerProcess, server_process, wait_for

WRONG = "wrong-secret-9"
ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
TEXT_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR) \S+: ")


def send_updates(server: ServerProcess, headers: dict[str, str] | None = None) -> list[str]:
    """good (credentials in the query), nochg (Basic auth), a host token, a wrong
    password in the query; returns the secrets that were sent."""
    token_line = server.cli("host", "token", HOME).stdout.splitlines()[0]
    token = token_line.rsplit(": ", 1)[1].strip()  # new host token for HOST: TOKEN
    wait_for(lambda: f"host {HOME}: new token" in server.text(), what="the new token")
    update = f"{server.url}/nic/update?hostname={HOME}&myip=203.0.113.7"
    with httpx.Client(timeout=10, headers=headers or {}) as http:
        first = http.get(f"{update}&username={ALICE[0]}&password={ALICE[1]}")
        assert first.text == "good 203.0.113.7\n"
        assert http.get(update, auth=ALICE).text == "nochg 203.0.113.7\n"
        assert http.get(update, auth=(HOME, token)).text == "nochg 203.0.113.7\n"
        assert http.get(f"{update}&username={ALICE[0]}&password={WRONG}").status_code == 401
    return [ALICE[1], token, WRONG]


def stopped_log(server: ServerProcess) -> str:
    assert server.stop(signal.SIGTERM) == 0, server.text()[-3000:]
    return server.text()


def json_lines(text: str) -> list[dict[str, Any]]:
    records = []
    for line in text.splitlines():
        record = json.loads(line)  # every line is one JSON object
        assert isinstance(record, dict), line
        assert ISO_UTC.fullmatch(record["time"]), line
        assert record["level"] in ("debug", "info", "warning", "error"), line
        assert record["logger"] and isinstance(record["event"], str), line
        records.append(record)
    return records


def update_requests(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The access log's lines of update requests (not of the /healthz start-up checks)."""
    return [
        r
        for r in records
        if r["logger"] == "uvicorn.access" and r["path"].startswith("/nic/update?")
    ]


def test_json_lines_carry_host_caller_answer_and_request_id(tmp_path: Path) -> None:
    extra = 'log_format = "json"\naccess_log = true\nlog_level = "debug"'
    with server_process(tmp_path, server_extra=extra) as server:
        # Not from a trusted proxy: its X-Request-ID is not believed.
        secrets = send_updates(server, headers={"X-Request-ID": "chosen-by-the-client"})
        text = stopped_log(server)
    for secret in secrets:
        assert secret not in text
    records = json_lines(text)
    (good,) = [r for r in records if r.get("answer") == "good 203.0.113.7"]
    assert good["logger"] == "nicupdate.update"
    assert good["event"].startswith(f"{HOME}: good 203.0.113.7 (from 127.0.0.1")
    assert (good["host"], good["caller"], good["level"]) == (HOME, "127.0.0.1", "info")
    assert re.fullmatch(r"[0-9a-f]{16}", good["request_id"])
    # The access log line of the same request has the same id, its password masked.
    (access,) = [
        r
        for r in records
        if r["logger"] == "uvicorn.access" and r.get("request_id") == good["request_id"]
    ]
    assert access["path"].endswith(f"&username={ALICE[0]}&password=***")
    assert (access["method"], access["status"]) == ("GET", 200)
    assert access["peer"].startswith("127.0.0.1:")
    nochg = [r for r in records if r.get("answer") == "nochg 203.0.113.7"]
    assert len(nochg) == 2 and all(r["level"] == "debug" for r in nochg)  # debug only
    assert len({r["request_id"] for r in nochg} | {good["request_id"]}) == 3
    assert len(update_requests(records)) == 4
    assert "chosen-by-the-client" not in text


def test_a_trusted_proxy_names_the_caller_and_the_request_id(tmp_path: Path) -> None:
    extra = 'log_format = "json"\naccess_log = true\ntrusted_proxies = ["127.0.0.1"]'
    with server_process(tmp_path, server_extra=extra) as server:
        for request_id in ("proxy-id-42", "not an id"):
            answer = httpx.get(
                f"{server.url}/nic/update?hostname={HOME}&myip=203.0.113.9",
                auth=ALICE,
                headers={"X-Request-ID": request_id, "X-Forwarded-For": "198.51.100.4"},
                timeout=10,
            )
            assert answer.status_code == 200
        text = stopped_log(server)
    records = json_lines(text)
    (good,) = [r for r in records if r.get("answer") == "good 203.0.113.9"]
    assert (good["caller"], good["request_id"]) == ("198.51.100.4", "proxy-id-42")
    ids = [r["request_id"] for r in update_requests(records)]
    assert ids[0] == "proxy-id-42"
    assert re.fullmatch(r"[0-9a-f]{16}", ids[1])  # spaces: not taken, one made instead


def test_text_stays_the_default_and_masks_secrets(tmp_path: Path) -> None:
    with server_process(tmp_path, server_extra="access_log = true") as server:
        secrets = send_updates(server)
        text = stopped_log(server)
    for secret in secrets:
        assert secret not in text
    lines = text.splitlines()
    assert all(TEXT_LINE.match(line) for line in lines), text
    assert any(
        re.search(
            rf"INFO nicupdate\.update: {re.escape(HOME)}: good 203\.0\.113\.7 \(from 127", line
        )
        for line in lines
    ), text
    assert sum("password=***" in line for line in lines) == 2


def test_a_traceback_stays_on_its_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord(
            "nicupdate", logging.ERROR, __file__, 1, "update failed", (), sys.exc_info()
        )
    line = JsonLines().format(record)
    assert "\n" not in line
    decoded = json.loads(line)
    assert decoded["event"] == "update failed"
    assert decoded["exception"].startswith("Traceback")
    assert decoded["exception"].endswith("ValueError: boom")


def test_a_reload_switches_text_to_json(tmp_path: Path) -> None:
    with server_process(tmp_path) as server:
        server.config.write_text(
            server.config.read_text().replace("[server]\n", '[server]\nlog_format = "json"\n', 1)
        )
        server.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: '"event": "configuration reloaded"' in server.text(), what="a reload")
        answer = httpx.get(
            f"{server.url}/nic/update?hostname={HOME}&myip=203.0.113.5", auth=ALICE, timeout=10
        )
        assert answer.text == "good 203.0.113.5\n"
        text = stopped_log(server)
    before, _, after = text.partition("configuration reloaded")
    assert TEXT_LINE.match(before.splitlines()[0])  # text until the reload
    records = json_lines(after.split("\n", 1)[1])  # JSON from the line after it on
    assert [r["answer"] for r in records if "answer" in r] == ["good 203.0.113.5"]
