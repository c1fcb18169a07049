"""Admins, disabled accounts and API tokens from the CLI: `user add --admin`,
`user admin NAME on|off`, `user disable|enable`, `token add|list|revoke`."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from nicupdate_server.apitokens import ApiTokens
from nicupdate_server.tables import api_tokens
from sqlalchemy import update

from tests.server.conftest import ALICE, LiveServer, eventually

pytestmark = pytest.mark.usefixtures("clean_environment")

HOME = "home.dyn.example.test"
TOKEN = re.compile(r"token \(shown once; .*\): (nu_\S+)$", re.M)


def _secret(output: str) -> str:
    found = TOKEN.search(output)
    assert found, output
    return found.group(1)


def test_user_admin_flags_show_in_the_list(live_server: LiveServer) -> None:
    added = live_server.cli(
        "user", "add", "root", "--admin", "--password-stdin", stdin="root-secret-1\n"
    )
    assert added.returncode == 0 and "admin root added" in added.stdout
    live_server.add_user(*ALICE)
    listing = live_server.cli("user", "list").stdout.splitlines()
    assert any(line.startswith("root\t") and line.endswith("\tadmin") for line in listing)
    assert any(line.startswith("alice\t") and "admin" not in line for line in listing)

    assert live_server.cli("user", "admin", "alice", "on").stdout == "alice is an admin\n"
    again = live_server.cli("user", "admin", "alice", "on").stdout
    assert again == "alice is an admin (it already was)\n"
    assert live_server.cli("user", "admin", "root", "off").stdout == "root is not an admin\n"
    listing = live_server.cli("user", "list").stdout.splitlines()
    assert any(line.startswith("alice\t") and line.endswith("\tadmin") for line in listing)
    assert any(line.startswith("root\t") and "admin" not in line for line in listing)

    wrong = live_server.cli("user", "admin", "nobody", "on")
    assert wrong.returncode == 1
    assert wrong.stderr == "nicupdate-server: error: no user named 'nobody' (see: user list)\n"
    bad = live_server.cli("user", "admin", "alice", "maybe")
    assert bad.returncode == 2 and "invalid choice: 'maybe'" in bad.stderr


def test_a_disabled_account_and_its_hosts_are_refused_until_enabled(alice: LiveServer) -> None:
    token = alice.tokens[HOME]
    assert (
        alice.update(f"hostname={HOME}&myip=203.0.113.5", auth=ALICE).text.strip()
        == "good 203.0.113.5"
    )

    assert alice.cli("user", "disable", "alice").stdout == "user alice disabled\n"

    def refused() -> bool:
        account = alice.update(f"hostname={HOME}&myip=203.0.113.6", auth=ALICE)
        host = alice.update(f"hostname={HOME}&myip=203.0.113.6", auth=(HOME, token))
        return account.text.strip() == host.text.strip() == "badauth" and host.status_code == 401

    assert eventually(refused)
    assert alice.addresses(HOME) == ["203.0.113.5"]  # nothing changed
    listing = alice.cli("user", "list").stdout
    assert "\tdisabled" in listing
    assert alice.cli("user", "disable", "alice").stdout == "user alice disabled (it already was)\n"

    assert alice.cli("user", "enable", "alice").stdout == "user alice enabled\n"
    assert eventually(
        lambda: (
            alice.update(f"hostname={HOME}&myip=203.0.113.7", auth=(HOME, token)).text.strip()
            == "good 203.0.113.7"
        )
    )
    assert (
        alice.update(f"hostname={HOME}&myip=203.0.113.7", auth=ALICE).text.strip()
        == "nochg 203.0.113.7"
    )


def test_a_disabled_account_stays_disabled_after_a_restart(tmp_path, alice: LiveServer) -> None:
    from tests.server.conftest import start_server, stop_server

    alice.cli("user", "disable", "alice")
    stop_server(alice)
    again = start_server(alice.config_path)
    try:
        answer = again.update(f"hostname={HOME}&myip=203.0.113.8", auth=(HOME, alice.tokens[HOME]))
        assert answer.text.strip() == "badauth"
        assert (
            again.update(f"hostname={HOME}&myip=203.0.113.8", auth=ALICE).text.strip() == "badauth"
        )
    finally:
        stop_server(again)


def test_api_tokens_from_the_cli(alice: LiveServer) -> None:
    alice.add_host("office.dyn.example.test", "alice")
    made = alice.cli(
        "token",
        "add",
        "alice",
        "--host",
        HOME,
        "--read-only",
        "--expires",
        "30",
        "--name",
        "ci job",
    )
    assert made.returncode == 0, made.stderr
    first = made.stdout.splitlines()[0]
    assert first.startswith(f"API token 1 for alice (read-only; hosts: {HOME}, expires ")
    secret = _secret(made.stdout)

    bearer = alice.call(lambda: ApiTokens(alice.runtime.engine).check(secret))
    assert bearer is not None and bearer.user == "alice" and not bearer.admin
    assert bearer.scope.hosts == (HOME,) and bearer.scope.read_only
    assert alice.call(lambda: ApiTokens(alice.runtime.engine).check(secret + "x")) is None

    full = _secret(alice.cli("token", "add", "alice").stdout)
    listing = alice.cli("token", "list").stdout
    assert "\tci job\tread-only; hosts: home.dyn.example.test\t" in listing
    assert "2\talice\tcli\tfull\t" in listing
    assert secret not in listing and full not in listing
    assert alice.cli("token", "list", "nobody").stdout.startswith("no API tokens")

    assert alice.cli("token", "revoke", "1").stdout == "API token 1 revoked\n"
    assert alice.call(lambda: ApiTokens(alice.runtime.engine).check(secret)) is None
    gone = alice.cli("token", "revoke", "1")
    assert (gone.returncode, gone.stderr) == (
        1,
        "nicupdate-server: error: no API token 1 (see: token list)\n",
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nobody"], "no user named 'nobody' (see: user list)"),
        (
            ["alice", "--host", "bob.dyn.example.test"],
            "--host bob.dyn.example.test: no host of alice by that name",
        ),
        (["alice", "--expires", "0"], "--expires 0: between 1 and 3650 days"),
        (
            ["alice", "--name", "a\tb"],
            "token name 'a\\tb': 1-64 letters, digits, spaces and . _ @ + -",
        ),
        (["alice", "--host", "bad..name"], "bad..name"),
    ],
)
def test_token_add_refusals_name_the_value(
    alice: LiveServer, args: list[str], message: str
) -> None:
    result = alice.cli("token", "add", *args)
    assert result.returncode == 1
    assert result.stderr.startswith("nicupdate-server: error: ")
    assert message in result.stderr and len(result.stderr.splitlines()) == 1
    assert alice.cli("token", "list").stdout.startswith("no API tokens")


def test_an_expired_or_disabled_accounts_token_is_refused(alice: LiveServer) -> None:
    secret = _secret(alice.cli("token", "add", "alice").stdout)
    tokens = ApiTokens(alice.runtime.engine)
    first = alice.call(lambda: tokens.check(secret))
    assert first is not None
    listed = alice.call(lambda: tokens.list("alice"))
    assert listed[0].last_used_at is not None  # the check noted its use

    async def expire() -> None:
        async with alice.runtime.engine.begin() as conn:
            past = datetime.now(UTC) - timedelta(seconds=1)
            await conn.execute(update(api_tokens).values(expires_at=past))

    alice.call(expire)
    assert alice.call(lambda: tokens.check(secret)) is None
    assert "EXPIRED" in alice.cli("token", "list").stdout

    other = _secret(alice.cli("token", "add", "alice").stdout)
    alice.cli("user", "disable", "alice")
    assert alice.call(lambda: tokens.check(other)) is None
    alice.cli("user", "enable", "alice")
    assert alice.call(lambda: tokens.check(other)) is not None


def test_removing_a_user_takes_its_tokens(alice: LiveServer) -> None:
    _secret(alice.cli("token", "add", "alice").stdout)
    assert alice.cli("user", "remove", "alice", "--with-hosts").returncode == 0
    assert alice.cli("token", "list").stdout.startswith("no API tokens")


def test_totp_off_for_a_lost_phone(alice: LiveServer) -> None:
    from nicupdate_server.manage import Manager

    manager = Manager.of_runtime(alice.runtime)
    user_id = alice.runtime.state.users["alice"].id
    alice.call(lambda: manager.set_totp(user_id, "JBSWY3DPEHPK3PXP"))
    assert "\ttotp" in alice.cli("user", "list").stdout
    assert (
        alice.cli("user", "totp-off", "alice").stdout == "two-factor sign-in of alice turned off\n"
    )
    assert alice.call(lambda: manager.totp_secret(user_id)) == (None, None)
    assert "totp" not in alice.cli("user", "list").stdout
    assert (
        alice.cli("user", "totp-off", "alice").stdout == "two-factor sign-in of alice was not on\n"
    )
