"""The acme-dns compatible API under /acme-dns, its CLI, and a certificate from a real CA.

Checked as clients see it: the JSON answers acme-dns gives, the TXT records the built-in
DNS serves at ``_acme-challenge.<host>``, the log, and lego (Debian's) getting a
wildcard certificate from pebble (Let's Encrypt's test CA, tests/server/acme_ca.py).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import re
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from nicupdate_server.acmedns.protocol import Update, parse_update

from tests.server.acme_ca import pebble_ca
from tests.server.conftest import (
    ALICE,
    LiveServer,
    eventually,
    start_server,
    stop_server,
    write_config,
)
from tests.server.primaries import running_bind

pytestmark = pytest.mark.usefixtures("clean_environment")

HOME = "home.dyn.example.test"
OFFICE = "office.dyn.example.test"
CHALLENGE = f"_acme-challenge.{HOME}"
UPDATE = "/acme-dns/update"

Account = dict[str, Any]


def token(n: int) -> str:
    """An ACME DNS-01 value as a CA makes it: base64url of a SHA-256, 43 characters."""
    digest = hashlib.sha256(str(n).encode()).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def acme_add(server: LiveServer, fqdn: str) -> Account:
    result = server.cli("acme", "add", fqdn)
    assert result.returncode == 0, result.stderr
    account: Account = json.loads(result.stdout)
    return account


def post(
    server: LiveServer,
    account: Account,
    content: bytes | str,
    *,
    key: str | None = None,
    path: str = UPDATE,
) -> httpx.Response:
    headers = {
        "X-Api-User": account["username"],
        "X-Api-Key": account["password"] if key is None else key,
        "Content-Type": "application/json",
        "User-Agent": "goacmedns (linux; amd64)",
    }
    return httpx.post(server.url + path, content=content, headers=headers, timeout=30)


def update(
    server: LiveServer, account: Account, txt: str, *, key: str | None = None
) -> httpx.Response:
    body = json.dumps({"subdomain": account["subdomain"], "txt": txt})
    return post(server, account, body, key=key)


def txt_records(server: LiveServer, name: str = CHALLENGE) -> list[str]:
    """The TXT values the built-in DNS serves at ``name``, sorted."""
    answer = server.dns_query(name, "TXT").answer
    return sorted(b"".join(rd.strings).decode() for rrset in answer for rd in rrset)


def error(response: httpx.Response) -> tuple[int, str]:
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error", "message"}, body
    return response.status_code, body["error"]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    """alice owns HOME and OFFICE; at most 4 failed logins from one source."""
    path = write_config(tmp_path)
    path.write_text(path.read_text() + "\n[limits]\nauth_failures_per_source = 4\n")
    live = start_server(path)
    live.add_user(*ALICE)
    live.add_host(HOME, "alice")
    live.add_host(OFFICE, "alice")
    yield live
    stop_server(live)


@pytest.fixture
def account(server: LiveServer) -> Account:
    return acme_add(server, HOME)


# --- what clients send (pure) -------------------------------------------------------------


@pytest.mark.parametrize(
    ("client", "body"),
    [
        ("acme.sh dns_acmedns", b'{"subdomain":"SUB", "txt": "VALUE"}'),
        ("goacmedns: lego, Caddy, Traefik", b'{"SubDomain":"SUB","Txt":"VALUE"}'),
        ("pyacmedns: certbot-dns-acmedns", b'{"subdomain": "SUB", "txt": "VALUE"}'),
        ("a key twice: the last counts", b'{"txt": "OTHER", "subdomain": "SUB", "TXT": "VALUE"}'),
        ("UTF-16, as JSON may be", '{"subdomain": "SUB", "txt": "VALUE"}'.encode("utf-16")),
    ],
)
def test_every_client_dialect_parses(client: str, body: bytes) -> None:
    assert parse_update(body) == Update("SUB", "VALUE"), client


def test_fields_of_another_type_are_missing() -> None:
    assert parse_update(b'{"subdomain": 1, "txt": ["x"], "other": {}}') == Update(None, None)


# --- the CLI ------------------------------------------------------------------------------


def test_acme_add_prints_what_acme_dns_register_answers(server: LiveServer) -> None:
    result = server.cli("acme", "add", HOME.upper() + ".")
    assert result.returncode == 0, result.stderr
    account = json.loads(result.stdout)
    assert list(account) == ["username", "password", "fulldomain", "subdomain", "allowfrom"]
    assert str(uuid.UUID(account["username"])) == account["username"]
    assert str(uuid.UUID(account["subdomain"])) == account["subdomain"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{40}", account["password"])
    assert account["fulldomain"] == CHALLENGE  # the TXT lives there: no CNAME needed
    assert account["allowfrom"] == []
    assert "shown only this once" in result.stderr
    assert account["password"] not in result.stderr

    other = acme_add(server, HOME)
    assert other["password"] != account["password"]
    listing = server.cli("acme", "list", "--owner", "alice")
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.splitlines()
    assert [line.split("\t")[:3] for line in lines] == [
        [account["username"], HOME, "owner alice"],
        [other["username"], HOME, "owner alice"],
    ]
    assert account["password"] not in listing.stdout


def test_acme_cli_refusals_say_what_to_do(server: LiveServer) -> None:
    nohost = server.cli("acme", "add", "nohost.dyn.example.test")
    assert (nohost.returncode, nohost.stdout) == (1, "")
    assert "no host named 'nohost.dyn.example.test'" in nohost.stderr
    assert "Traceback" not in nohost.stderr
    nobody = server.cli("acme", "list", "--owner", "bob")
    assert (nobody.returncode, nobody.stderr.strip()) == (
        1,
        "nicupdate-server: error: no user named 'bob' (see: user list)",
    )
    none = server.cli("acme", "list")
    assert (
        none.stdout == "no acme-dns accounts yet: add one with `nicupdate-server acme add FQDN`\n"
    )
    missing = server.cli("acme", "remove", str(uuid.uuid4()))
    assert missing.returncode == 1
    assert "no acme-dns account with user name" in missing.stderr


# --- updates ------------------------------------------------------------------------------


def test_an_update_answers_once_dns_serves_the_txt_record(
    server: LiveServer, account: Account
) -> None:
    value = token(1)
    answer = update(server, account, value)
    assert (answer.status_code, answer.text) == (200, f'{{"txt": "{value}"}}')
    assert answer.headers["content-type"] == "application/json"
    assert txt_records(server) == [value]  # at once: answered only once DNS has it
    assert server.addresses(HOME) == []  # its address records are not touched


def test_what_goacmedns_sends_is_taken(server: LiveServer, account: Account) -> None:
    # lego, Caddy and Traefik send {"SubDomain": ..., "Txt": ...} (Go's decoder ignores
    # case) to the base URL + "/update": "//update" when the base ends in "/".
    for path, n in ((UPDATE, 2), ("/acme-dns//update", 3)):
        body = json.dumps({"SubDomain": account["subdomain"], "Txt": token(n)})
        answer = post(server, account, body, path=path)
        assert (answer.status_code, answer.json()) == (200, {"txt": token(n)})
    assert txt_records(server) == sorted([token(2), token(3)])


def test_two_values_are_kept_and_a_third_drops_the_oldest(
    server: LiveServer, account: Account
) -> None:
    first, second, third = token(1), token(2), token(3)
    for value in (first, second):
        assert update(server, account, value).status_code == 200
    assert txt_records(server) == sorted([first, second])  # a wildcard and its apex
    assert update(server, account, third).status_code == 200
    assert txt_records(server) == sorted([second, third])
    again = update(server, account, third)  # already there: not doubled, not reordered
    assert (again.status_code, again.json()) == (200, {"txt": third})
    assert txt_records(server) == sorted([second, third])
    assert update(server, account, token(4)).status_code == 200
    assert txt_records(server) == sorted([third, token(4)])


PRIMARY_CONFIG = """
[server]
listen = "127.0.0.1:0"
database = "sqlite+aiosqlite:///{db}"
apply_deadline = 0.5
retry_initial = 0.1
retry_max = 0.5

[dns]
enabled = false

{backend}
[[zones]]
name = "dyn.example.test"
backend = "primary"
ttl = 60
"""


def test_a_value_dns_has_not_confirmed_in_time_is_a_500_and_lands_later(tmp_path: Path) -> None:
    with running_bind(tmp_path / "bind") as primary:
        config = tmp_path / "nicupdate.toml"
        backend = primary.config_block("primary")
        config.write_text(PRIMARY_CONFIG.format(db=tmp_path / "state.db", backend=backend))
        server = start_server(config)
        try:
            server.add_user(*ALICE)
            server.add_host(HOME, "alice")
            account = acme_add(server, HOME)
            assert primary.pid is not None
            os.kill(primary.pid, signal.SIGSTOP)  # it answers nothing until SIGCONT
            try:
                late = update(server, account, token(1))
            finally:
                os.kill(primary.pid, signal.SIGCONT)
            assert error(late) == (500, "db_error")
            assert "applies it later without you doing anything" in late.json()["message"]
            assert eventually(lambda: primary.query(CHALLENGE, "TXT") == [token(1)])
            again = update(server, account, token(1))  # the client's next try
            assert (again.status_code, again.json()) == (200, {"txt": token(1)})
        finally:
            stop_server(server)


def test_wrong_credentials_are_forbidden(server: LiveServer, account: Account) -> None:
    wrong_key = "x" * 40
    assert error(update(server, account, token(1), key=wrong_key)) == (401, "forbidden")
    stranger = {**account, "username": str(uuid.uuid4())}
    assert error(update(server, stranger, token(1))) == (401, "forbidden")
    not_a_key = update(server, account, token(1), key="short")
    assert error(not_a_key) == (401, "forbidden")
    no_headers = httpx.post(server.url + UPDATE, json={"subdomain": "x", "txt": token(1)})
    assert error(no_headers) == (401, "forbidden")
    assert txt_records(server) == []


def test_another_hosts_subdomain_is_refused(server: LiveServer, account: Account) -> None:
    office = acme_add(server, OFFICE)
    body = json.dumps({"subdomain": office["subdomain"], "txt": token(1)})
    answer = post(server, account, body)  # HOME's credentials, OFFICE's subdomain
    assert error(answer) == (401, "forbidden")
    assert "subdomain" in answer.json()["message"]
    assert txt_records(server, f"_acme-challenge.{OFFICE}") == []
    assert txt_records(server) == []
    assert update(server, office, token(1)).status_code == 200  # its own still works
    assert txt_records(server, f"_acme-challenge.{OFFICE}") == [token(1)]


@pytest.mark.parametrize(
    "txt",
    [
        "too-short",
        token(1) + "!",  # not base64url
        token(1)[:-1] + " ",
        "a" * 201,
        "é" * 43,
        None,
        43,
    ],
)
def test_a_bad_txt_value_is_refused(server: LiveServer, account: Account, txt: object) -> None:
    body = json.dumps({"subdomain": account["subdomain"], "txt": txt})
    answer = post(server, account, body)
    assert error(answer) == (400, "bad_txt")
    assert "43 to 200 characters" in answer.json()["message"]
    assert txt_records(server) == []


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"subdomain=x&txt=y",
        b'{"subdomain": ',
        b"[1, 2]",
        b'"text"',
        b"\xff\xfe\xfd",
        b"[" * 3000,
    ],
)
def test_a_body_that_is_no_json_object_is_refused(
    server: LiveServer, account: Account, body: bytes
) -> None:
    answer = post(server, account, body)
    assert error(answer) == (400, "malformed_json_payload")
    assert '{"subdomain": "...", "txt": "..."}' in answer.json()["message"]


def test_a_body_over_4_kib_is_refused(server: LiveServer, account: Account) -> None:
    big = json.dumps({"subdomain": account["subdomain"], "txt": token(1), "pad": "x" * 5000})
    assert error(post(server, account, big)) == (413, "payload_too_large")

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it comes
        for _ in range(10):
            yield b" " * 1000

    streamed = httpx.post(
        server.url + UPDATE,
        content=chunks(),
        headers={"X-Api-User": account["username"], "X-Api-Key": account["password"]},
    )
    assert error(streamed) == (413, "payload_too_large")
    assert txt_records(server) == []


def test_guessing_locks_the_source_out_of_both_endpoints(
    server: LiveServer, account: Account
) -> None:
    answers = [update(server, account, token(1), key=f"{n:040d}") for n in range(4)]
    assert [a.status_code for a in answers] == [401] * 4
    locked = update(server, account, token(1), key="0" * 40)
    assert error(locked) == (429, "too_many_requests")
    assert int(locked.headers["retry-after"]) >= 1
    # The right key gains nothing from a locked-out source: guessing stops there.
    assert error(update(server, account, token(1))) == (429, "too_many_requests")
    # The lock-out is /nic/update's: one limiter.
    assert server.update(f"hostname={HOME}", auth=("alice", "guess")).status_code == 429
    assert txt_records(server) == []


def test_guesses_are_logged_in_the_summarised_lines_without_the_key(
    server: LiveServer, account: Account, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    for n in range(5):
        update(server, account, token(1), key=f"{n:040d}")
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("nicupdate")]
    username = account["username"]
    assert f"badauth from 127.0.0.1: '{username}' (repeats are summarised every 60 s)" in lines
    assert (
        "lock-out from 127.0.0.1: every user name for 60 s after 4 failed logins "
        "(repeats are summarised every 60 s)"
    ) in lines
    assert not [line for line in lines if "0" * 39 in line]


def test_secrets_never_reach_the_log(server: LiveServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    account = acme_add(server, HOME)
    assert update(server, account, token(1)).status_code == 200
    update(server, account, token(2), key=account["password"][::-1])
    post(server, account, b"not json")
    server.cli("acme", "list")
    stop_server(server)  # what shutting down logs too
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert account["password"] not in text
    assert hashlib.sha256(account["password"].encode()).hexdigest() not in text


def test_removed_credentials_stop_working_at_once(server: LiveServer, account: Account) -> None:
    assert update(server, account, token(1)).status_code == 200
    removed = server.cli("acme", "remove", account["username"])
    assert removed.stdout == f"acme-dns account {account['username']} of {HOME} removed\n"
    assert error(update(server, account, token(2))) == (401, "forbidden")
    assert txt_records(server) == [token(1)]  # the records stay until they change

    first, second = acme_add(server, HOME), acme_add(server, HOME)
    by_host = server.cli("acme", "remove", HOME)
    assert by_host.stdout.count(" removed\n") == 2
    for gone in (first, second):
        assert error(update(server, gone, token(3))) == (401, "forbidden")
    assert server.cli("acme", "list").stdout.startswith("no acme-dns accounts yet")


def test_removing_the_host_removes_its_accounts(server: LiveServer, account: Account) -> None:
    assert server.cli("host", "remove", HOME).returncode == 0
    assert error(update(server, account, token(1))) == (401, "forbidden")
    assert server.cli("acme", "list").stdout.startswith("no acme-dns accounts yet")


# --- register and health ------------------------------------------------------------------


def test_register_is_closed_and_says_how_accounts_are_made(server: LiveServer) -> None:
    answer = httpx.post(server.url + "/acme-dns/register", content=b"", timeout=10)
    assert error(answer) == (404, "registration_disabled")
    assert "nicupdate-server acme add FQDN" in answer.json()["message"]


def test_health_answers_as_acme_dns(server: LiveServer) -> None:
    answer = server.get("/acme-dns/health")
    assert (answer.status_code, answer.json()) == (200, {"status": "ok", "database": "ok"})


# --- a certificate from a real CA ---------------------------------------------------------


def _certificate_names(path: Path) -> tuple[list[str], str]:
    """The DNS names (SAN) and the issuer of the PEM certificate at ``path``, by openssl."""
    shown = subprocess.run(
        ["openssl", "x509", "-in", str(path), "-noout", "-issuer", "-ext", "subjectAltName"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    names = sorted(re.findall(r"DNS:([^,\s]+)", shown))
    issuer = re.search(r"^issuer=(.*)$", shown, re.MULTILINE)
    assert issuer is not None, shown
    return names, issuer.group(1)


# acme.sh's dns_acmedns, as a hook of lego's `exec` provider (`present FQDN VALUE`, then
# `cleanup FQDN VALUE`): the same variables, request and check of the answer. Debian
# builds lego without its acme-dns provider (its Go dependency is not packaged).
ACMEDNS_HOOK = """#!/bin/sh
set -eu
[ "$1" = present ] || exit 0  # acme-dns has no way to remove a value: nor has acme.sh
response=$(curl -sS --max-time 60 -X POST \\
  -H "X-Api-User: $ACMEDNS_USERNAME" -H "X-Api-Key: $ACMEDNS_PASSWORD" \\
  -d "{\\"subdomain\\":\\"$ACMEDNS_SUBDOMAIN\\", \\"txt\\": \\"$3\\"}" "$ACMEDNS_UPDATE_URL")
echo "$response" | grep -q "\\"$3\\"" && exit 0
echo "invalid response of acme-dns: $response" >&2
exit 1
"""


def test_lego_gets_a_wildcard_certificate_from_pebble(server: LiveServer, tmp_path: Path) -> None:
    account = acme_add(server, HOME)
    hook = tmp_path / "acmedns-hook"
    hook.write_text(ACMEDNS_HOOK)
    hook.chmod(0o700)
    lego_dir = tmp_path / "lego"
    with pebble_ca(tmp_path / "pebble", server.dns_port) as ca:
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": str(tmp_path),
            "LEGO_CA_CERTIFICATES": str(ca.tls_certificate),
            "EXEC_PATH": str(hook),
            # lego waits this long between two challenges of the exec provider (60 s).
            "EXEC_SEQUENCE_INTERVAL": "1",
            "EXEC_POLLING_INTERVAL": "1",
            "ACMEDNS_UPDATE_URL": f"{server.url}/acme-dns/update",
            "ACMEDNS_USERNAME": account["username"],
            "ACMEDNS_PASSWORD": account["password"],
            "ACMEDNS_SUBDOMAIN": account["subdomain"],
        }
        lego = subprocess.run(
            ["lego", "--server", ca.directory_url, "--accept-tos",
             "--email", "admin@example.test", "--path", str(lego_dir), "--dns", "exec",
             # Its recursive queries go to the built-in DNS; the propagation check would
             # ask the zone's nameservers on port 53, which the test's DNS is not on.
             "--dns.resolvers", f"127.0.0.1:{server.dns_port}", "--dns.disable-cp",
             "-d", f"*.{HOME}", "-d", HOME, "run"],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
            check=False,
        )  # fmt: skip
        assert lego.returncode == 0, lego.stderr[-4000:] + ca.log.read_text()[-4000:]
        root = tmp_path / "pebble-root.pem"
        root.write_text(ca.root())
    assert account["password"] not in lego.stdout + lego.stderr

    certificates = lego_dir / "certificates"
    certificate = certificates / f"_.{HOME}.crt"  # lego's name for *.{HOME}
    names, issuer = _certificate_names(certificate)
    assert names == sorted([f"*.{HOME}", HOME])
    assert "Pebble Intermediate CA" in issuer
    verified = subprocess.run(
        ["openssl", "verify", "-CAfile", str(root), "-untrusted",
         str(certificates / f"_.{HOME}.issuer.crt"), str(certificate)],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stdout + verified.stderr
    # Both challenges' values were served at once, at the host's own _acme-challenge.
    assert len(txt_records(server)) == 2
