"""The client's configuration file: every mistake is one line naming the file and key."""

from __future__ import annotations

from pathlib import Path

import pytest
from nicupdate_client.config import DEFAULT_SOURCES, ConfigError, load, parse, render

MINIMAL = (
    'server = "https://ddns.example.com"\nusername = "alice"\nhostnames = ["home.example.com"]\n'
)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "client.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_minimal_file_gets_the_defaults(tmp_path: Path) -> None:
    config = load(write(tmp_path, MINIMAL))
    assert config.hostnames == ("home.example.com",)
    assert config.ipv4.sources == DEFAULT_SOURCES[4] and config.ipv4.quorum == 2
    assert config.ipv6.sources == DEFAULT_SOURCES[6] and config.ipv6.enabled
    assert (config.interval, config.refresh_days, config.network_wait) == (300.0, 25.0, 120.0)
    assert config.update_url == "https://ddns.example.com/nic/update"
    assert config.myip_url == "https://ddns.example.com/myip"


def test_render_then_load_gives_the_same_configuration(tmp_path: Path) -> None:
    config = load(write(tmp_path, MINIMAL + 'secret_file = "/etc/nicupdate/x.secret"\n'))
    again = load(write(tmp_path, render(config)))
    assert again == config


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("server = ", "not valid TOML"),
        (MINIMAL.replace("https://ddns.example.com", "ftp://x"), "server: 'ftp://x' is not an"),
        (MINIMAL.replace('username = "alice"\n', ""), "username: missing"),
        (MINIMAL.replace('["home.example.com"]', "[]"), "hostnames: must be a list of host"),
        (MINIMAL.replace("home.example.com", "192.0.2.1"), "hostnames: '192.0.2.1' is not a"),
        (MINIMAL.replace("home.example.com", "bad_-.example"), "hostnames: 'bad_-.example'"),
        (MINIMAL + "colour = 1\n", "colour: unknown setting"),
        (MINIMAL + "interval = 1\n", "interval: 1 is below the minimum 10"),
        (MINIMAL + 'timeout = "fast"\n', "timeout: must be a number"),
        (MINIMAL + "[backoff]\ninitial = 0\n", "backoff.initial: 0 is below the minimum"),
        (MINIMAL + "[backoff]\nfirst = 1\n", "backoff.first: unknown setting"),
        (MINIMAL + "[ipv4]\nquorum = 9\n", "ipv4.quorum: 9 cannot be met by 7 source(s)"),
        (MINIMAL + "[ipv4]\nquorum = 1.5\n", "ipv4.quorum: must be a whole number"),
        (MINIMAL + '[ipv4]\nsources = ["ftp://x"]\n', "ipv4.sources: 'ftp://x' is not"),
        (MINIMAL + '[ipv6]\nsources = ["interface:"]\n', "ipv6.sources: 'interface:' is not"),
        (MINIMAL + "[ipv6]\nsources = []\n", "ipv6.sources: empty"),
        (MINIMAL + "[ipv6]\nenabled = 1\n", "ipv6.enabled: must be true or false"),
        (MINIMAL + "ipv6 = 3\n", "ipv6: must be a table"),
        (
            MINIMAL + "[ipv4]\nenabled = false\n[ipv6]\nenabled = false\n",
            "ipv4.enabled and ipv6.enabled are both false",
        ),
    ],
)
def test_mistakes_name_the_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_missing_file_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file: run 'nicupdate-client init'"):
        load(tmp_path / "absent.toml")


def test_a_single_host_name_string_is_accepted_and_normalised() -> None:
    config = parse(
        {"server": "http://127.0.0.1:8245", "username": "u", "hostnames": "Home.Example.COM."}
    )
    assert config.hostnames == ("home.example.com",)
    assert config.fingerprint("home.example.com") == "http://127.0.0.1:8245|u|home.example.com"
