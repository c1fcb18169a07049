"""`nicupdate-client init --no-ipv4/--no-ipv6`: a family turned off is neither asked nor shown."""

from __future__ import annotations

import tomllib

import pytest
from nicupdate_client.updater import OK, USAGE

from tests.client.clientenv import HOME_HOST, V4, V6, ClientEnv, client_env
from tests.client.echo import echo
from tests.client.test_init import init_args
from tests.server.conftest import ALICE, alice, live_server

__all__ = ["alice", "client_env", "echo", "live_server"]

SOURCES = {4: ("/a", "/b"), 6: ("/a6", "/b6")}


def asked(env: ClientEnv, family: int) -> list[str]:
    """The paths of the family's echo sources that were asked, in order."""
    return [seen.path for seen in env.echo.seen() if seen.path in SOURCES[family]]


@pytest.mark.parametrize(("off", "on"), [(6, 4), (4, 6)], ids=["no-ipv6", "no-ipv4"])
def test_a_family_turned_off_is_not_asked_or_shown(
    client_env: ClientEnv, off: int, on: int
) -> None:
    client_env.config_path.unlink()
    client_env.answers(v4=V4, v6=V6)
    result = client_env.run(*init_args(client_env, f"--no-ipv{off}"), stdin=ALICE[1] + "\n")
    assert result.returncode == OK, result.stderr
    found = {4: V4, 6: V6}[on]
    assert f"  IPv{on}: {found}: 2 of 2 sources agree" in result.stdout
    assert f"IPv{off}" not in result.stdout
    assert asked(client_env, off) == []
    assert sorted(asked(client_env, on)) == sorted(SOURCES[on])
    assert f"Wrote {client_env.config_path} ({HOME_HOST}, IPv{on})." in result.stdout
    config = tomllib.loads(client_env.config_path.read_text())
    assert config[f"ipv{off}"]["enabled"] is False
    assert config[f"ipv{on}"]["enabled"] is True


def test_the_open_family_is_enabled_even_when_no_address_is_found(client_env: ClientEnv) -> None:
    client_env.config_path.unlink()
    client_env.answers(v4=V4, v6=None)
    result = client_env.run(*init_args(client_env, "--no-ipv4"), stdin=ALICE[1] + "\n")
    assert result.returncode == OK, result.stderr
    assert "  IPv6: no quorum (2 needed)" in result.stdout
    assert "  No address found: enabling IPv6. Check with 'detect'." in result.stdout
    assert "IPv4" not in result.stdout
    assert asked(client_env, 4) == []
    config = tomllib.loads(client_env.config_path.read_text())
    assert (config["ipv4"]["enabled"], config["ipv6"]["enabled"]) == (False, True)


def test_both_families_turned_off_is_refused_before_anything_is_asked(
    client_env: ClientEnv,
) -> None:
    client_env.config_path.unlink()
    result = client_env.run(*init_args(client_env, "--no-ipv4", "--no-ipv6"), stdin=ALICE[1] + "\n")
    assert result.returncode == USAGE
    assert result.stderr == (
        "nicupdate-client init: --no-ipv4 and --no-ipv6 leave nothing to update: drop one of them\n"
    )
    assert result.stdout == ""
    assert client_env.echo.seen() == []
    assert not client_env.config_path.exists()
