"""`nicupdate-client init` and `set-secret`: what a user types, sees and ends up with."""

from __future__ import annotations

import json
import stat
import sys
import tomllib

import pytest
from nicupdate_client.updater import OK, USAGE

from tests.client.clientenv import HOME_HOST, V4, V6, ClientEnv, client_env
from tests.client.echo import echo
from tests.server.conftest import ALICE, alice, live_server

__all__ = ["alice", "client_env", "echo", "live_server"]


def init_args(env: ClientEnv, *extra: str) -> list[str]:
    echo = env.echo
    return [
        "init",
        "--server",
        env.proxy.url,
        "--hostname",
        HOME_HOST,
        "--username",
        ALICE[0],
        "--password-stdin",
        "--source4",
        echo.url("/a"),
        "--source4",
        echo.url("/b"),
        "--source6",
        echo.url("/a6", 6),
        "--source6",
        echo.url("/b6", 6),
        *extra,
    ]


def test_init_with_the_credential_store_then_run(client_env: ClientEnv) -> None:
    client_env.config_path.unlink()
    client_env.secret_path.unlink()
    client_env.answers(v4=V4, v6=V6)
    result = client_env.run(*init_args(client_env), stdin=ALICE[1] + "\n")
    assert result.returncode == OK, result.stderr
    out = result.stdout
    assert f"IPv4: {V4}: 2 of 2 sources agree" in out
    assert f"IPv6: {V6}: 2 of 2 sources agree" in out
    assert f"Wrote {client_env.config_path} ({HOME_HOST}, IPv4 and IPv6)." in out
    assert "Stored the secret in " in out
    assert "nicupdate-client run --once" in out

    config = tomllib.loads(client_env.config_path.read_text())
    assert config["server"] == client_env.proxy.url
    assert config["hostnames"] == [HOME_HOST]
    assert config["ipv4"]["enabled"] and config["ipv6"]["enabled"]
    assert "secret_file" not in config
    assert ALICE[1] not in client_env.config_path.read_text()
    keyring = json.loads((client_env.root / "keyring.json").read_text())
    assert keyring == {f"nicupdate/alice@{client_env.proxy.url}": ALICE[1]}

    # The new configuration keeps its state where the user's directories are.
    run = client_env.run("run", "--once")
    assert run.returncode == OK, run.stderr
    assert client_env.server.addresses(HOME_HOST) == [V4]
    assert client_env.server.addresses(HOME_HOST, "AAAA") == [V6]
    state = client_env.root / "home" / ".local" / "state" / "nicupdate" / "client-state.json"
    assert state.exists()


def test_init_enables_only_the_families_that_were_found(client_env: ClientEnv) -> None:
    client_env.config_path.unlink()
    client_env.answers(v4=V4, v6=None)
    result = client_env.run(
        *init_args(client_env, "--secret-file", str(client_env.secret_path)),
        stdin=ALICE[1] + "\n",
    )
    assert result.returncode == OK, result.stderr
    assert f"({HOME_HOST}, IPv4)." in result.stdout
    config = tomllib.loads(client_env.config_path.read_text())
    assert config["ipv4"]["enabled"] is True
    assert config["ipv6"]["enabled"] is False
    assert config["secret_file"] == str(client_env.secret_path)
    assert client_env.secret_path.read_text() == ALICE[1] + "\n"
    if sys.platform != "win32":
        assert stat.S_IMODE(client_env.secret_path.stat().st_mode) == 0o600


def test_init_refuses_to_overwrite_without_force(client_env: ClientEnv) -> None:
    before = client_env.config_path.read_text()
    result = client_env.run(*init_args(client_env, "--no-ipv6"), stdin=ALICE[1] + "\n")
    assert result.returncode == USAGE
    assert "exists: pass --force to replace it" in result.stderr
    assert client_env.config_path.read_text() == before
    forced = client_env.run(*init_args(client_env, "--no-ipv6", "--force"), stdin=ALICE[1] + "\n")
    assert forced.returncode == OK, forced.stderr


@pytest.mark.parametrize(
    ("drop", "message"),
    [
        ("--server", "missing --server"),
        ("--hostname", "missing --hostname"),
    ],
)
def test_init_without_a_terminal_names_what_is_missing(
    client_env: ClientEnv, drop: str, message: str
) -> None:
    client_env.config_path.unlink()
    args = init_args(client_env, "--no-ipv6")
    at = args.index(drop)
    del args[at : at + 2]
    result = client_env.run(*args, stdin=ALICE[1] + "\n")
    assert result.returncode == USAGE
    assert message in result.stderr
    assert not client_env.config_path.exists()


def test_init_rejects_a_bad_server_url(client_env: ClientEnv) -> None:
    client_env.config_path.unlink()
    args = init_args(client_env, "--no-ipv6")
    args[args.index("--server") + 1] = "ddns.example.com"
    result = client_env.run(*args, stdin=ALICE[1] + "\n")
    assert result.returncode == USAGE
    assert "server: 'ddns.example.com' is not an http:// or https:// URL" in result.stderr


def test_set_secret_uses_the_credential_store(client_env: ClientEnv) -> None:
    settings = dict(client_env.settings)
    del settings["secret_file"]
    client_env.settings = settings
    client_env.write()
    stored = client_env.run("set-secret", "--stdin", stdin=ALICE[1] + "\n")
    assert stored.returncode == OK, stored.stderr
    assert "Stored the secret for alice" in stored.stdout
    assert client_env.run("run", "--once").returncode == OK
    empty = client_env.run("set-secret", "--stdin", stdin="\n")
    assert empty.returncode == USAGE
    assert "the secret is empty" in empty.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="a POSIX pseudo-terminal")
def test_init_in_a_terminal_asks_for_each_value_and_hides_the_secret(
    client_env: ClientEnv,
) -> None:
    """A user at a terminal: init prompts, the secret is not echoed, the file is written."""
    import os
    import pty
    import select
    import time

    client_env.config_path.unlink()
    echo = client_env.echo
    argv = [sys.executable, "-m", "nicupdate_client", "init", "--config"]
    argv += [str(client_env.config_path), "--secret-file", str(client_env.secret_path)]
    argv += ["--source4", echo.url("/a"), "--source4", echo.url("/b"), "--no-ipv6"]
    pid, terminal = pty.fork()
    if pid == 0:  # the child: the client, with the pseudo-terminal as its terminal
        os.execve(sys.executable, argv, client_env.env())
    transcript = b""

    def expect(prompt: bytes) -> None:
        nonlocal transcript
        deadline = time.time() + 30
        while prompt not in transcript and time.time() < deadline:
            if select.select([terminal], [], [], 0.5)[0]:
                try:
                    transcript += os.read(terminal, 4096)
                except OSError:
                    break
        assert prompt in transcript, transcript.decode(errors="replace")

    expect(b"Server URL (e.g. https://ddns.example.com): ")
    os.write(terminal, client_env.proxy.url.encode() + b"\n")
    expect(b"Host name to update: ")
    os.write(terminal, HOME_HOST.encode() + b"\n")
    expect(b"User name (or the host name, with a host token): ")
    os.write(terminal, b"alice\n")
    expect(b"Password or host token: ")
    os.write(terminal, ALICE[1].encode() + b"\n")
    expect(b"keeps it up to date every 5 minutes.")
    _, status = os.waitpid(pid, 0)
    os.close(terminal)
    assert os.waitstatus_to_exitcode(status) == OK
    assert ALICE[1].encode() not in transcript, "the secret was echoed"
    text = transcript.decode()
    assert f"Wrote {client_env.config_path} ({HOME_HOST}, IPv4)." in text
    assert client_env.secret_path.read_text() == ALICE[1] + "\n"
    assert client_env.run("run", "--once").returncode == OK
