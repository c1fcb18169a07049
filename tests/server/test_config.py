"""Configuration: defaults, where the file comes from, environment overrides, errors.

Most cases run the CLI's ``main()`` in-process (what it prints and returns is what a
user sees); a few run ``python -m nicupdate_server`` for real to prove there is no
traceback and the exit status reaches the shell.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from nicupdate_server.cli import main
from nicupdate_server.config import ConfigError, load_config
from sqlalchemy.engine import make_url

from tests.server.conftest import run_cli

PREFIX = "nicupdate-server: config error: "
SECRET = "s3cr3t-Pa@ss/w:rd"
DEFAULTS_LINE = (
    "configuration OK (built-in defaults): HTTP 127.0.0.1:8245, DNS 127.0.0.1:5353, "
    "zones: dyn.example.test (backend builtin, ttl 60)"
)


@pytest.fixture(autouse=True)
def clean_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No NICUPDATE_* variables from the caller, and a working directory of our own."""
    for name in list(os.environ):
        if name.startswith("NICUPDATE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    yield


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def check_config(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main([*args, "check-config"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_error_line(stderr: str) -> str:
    """The single ``config error`` line, without its prefix."""
    assert "Traceback" not in stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith(PREFIX), stderr
    return lines[0].removeprefix(PREFIX)


# --- where the configuration comes from -------------------------------------------


def test_builtin_defaults_without_a_file() -> None:
    config = load_config(None, environ={})
    assert config.server.endpoint == ("127.0.0.1", 8245)
    assert config.dns.enabled
    assert config.dns.endpoint == ("127.0.0.1", 5353)
    assert make_url(config.server.database).get_backend_name() == "sqlite"
    assert make_url(config.server.database).drivername == "sqlite+aiosqlite"
    assert [(z.name, z.backend, z.ttl) for z in config.zones] == [
        ("dyn.example.test", "builtin", 60)
    ]
    assert config.server.trusted_proxies == ()


def test_check_config_without_a_file_reports_the_defaults(tmp_path: Path) -> None:
    done = run_cli("check-config", cwd=tmp_path)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.strip() == DEFAULTS_LINE


def test_nicupdate_toml_in_the_working_directory_is_used(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(
        tmp_path / "nicupdate.toml",
        '[server]\nlisten = "127.0.0.1:9001"\n[[zones]]\nname = "dyn.example.org"\nttl = 300\n',
    )
    code, out, err = check_config(capsys)
    assert (code, err) == (0, "")
    assert out.strip() == (
        "configuration OK (nicupdate.toml): HTTP 127.0.0.1:9001, DNS 127.0.0.1:5353, "
        "zones: dyn.example.org (backend builtin, ttl 300)"
    )


def test_nicupdate_config_variable_beats_the_working_directory_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path / "nicupdate.toml", '[server]\nlisten = "127.0.0.1:9001"\n')
    other = write(tmp_path / "other.toml", '[server]\nlisten = "127.0.0.1:9002"\n')
    monkeypatch.setenv("NICUPDATE_CONFIG", str(other))
    code, out, _ = check_config(capsys)
    assert code == 0
    assert f"({other}): HTTP 127.0.0.1:9002," in out


def test_config_option_beats_the_variable_and_the_working_directory_file(
    tmp_path: Path,
) -> None:
    write(tmp_path / "nicupdate.toml", '[server]\nlisten = "127.0.0.1:9001"\n')
    from_env = write(tmp_path / "env.toml", '[server]\nlisten = "127.0.0.1:9002"\n')
    explicit = write(tmp_path / "explicit.toml", '[server]\nlisten = "127.0.0.1:9003"\n')
    done = run_cli(
        "--config",
        str(explicit),
        "check-config",
        cwd=tmp_path,
        env={"NICUPDATE_CONFIG": str(from_env)},
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert f"({explicit}): HTTP 127.0.0.1:9003," in done.stdout


def test_nicupdate_config_naming_a_missing_file_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path / "nicupdate.toml", "")  # must not be used instead
    monkeypatch.setenv("NICUPDATE_CONFIG", str(tmp_path / "gone.toml"))
    code, out, err = check_config(capsys)
    assert (code, out) == (2, "")
    line = one_error_line(err)
    assert "gone.toml" in line
    assert "does not exist" in line


# --- environment overrides ------------------------------------------------------------

ZONES_FILE = """
[server]
listen = "127.0.0.1:8245"

[[zones]]
name = "dyn.example.test"
ttl = 60

[[zones]]
name = "dyn.example.org"
ttl = 300
"""


def test_environment_overrides_keys_of_the_file(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", ZONES_FILE)
    config = load_config(
        path,
        environ={
            "NICUPDATE_SERVER__LISTEN": "0.0.0.0:9000",
            "NICUPDATE_ZONES__1__TTL": "120",
            "NICUPDATE_SERVER__TRUSTED_PROXIES": '["10.0.0.0/8", "2001:db8::/32"]',
            "NICUPDATE_DNS__ENABLED": "false",
            "NICUPDATE_CONFIG": "named the file; not a key",
            "NICUPDATE_PASSWORD": "the client's; not a key",
        },
    )
    assert config.server.endpoint == ("0.0.0.0", 9000)
    assert [(z.name, z.ttl) for z in config.zones] == [
        ("dyn.example.test", 60),
        ("dyn.example.org", 120),
    ]
    assert isinstance(config.zones[1].ttl, int)
    assert config.server.trusted_proxies == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("2001:db8::/32"),
    )
    assert config.dns.enabled is False


def test_environment_overrides_the_builtin_defaults() -> None:
    config = load_config(
        None,
        environ={
            "NICUPDATE_SERVER__LISTEN": "127.0.0.1:9000",
            "NICUPDATE_DNS__LISTEN": "127.0.0.1:5300",
            "NICUPDATE_SERVER__DATABASE": "sqlite+aiosqlite:////var/lib/nicupdate/state.db",
        },
    )
    assert config.server.endpoint == ("127.0.0.1", 9000)
    assert config.dns.endpoint == ("127.0.0.1", 5300)
    assert config.server.database == "sqlite+aiosqlite:////var/lib/nicupdate/state.db"


def test_environment_overrides_the_builtin_demo_zone() -> None:
    """Every key can be overridden, also the TTL of the zone that comes built in."""
    config = load_config(None, environ={"NICUPDATE_ZONES__0__TTL": "120"})
    assert [(z.name, z.ttl) for z in config.zones] == [("dyn.example.test", 120)]


def test_list_items_are_set_in_order_and_added_at_the_end() -> None:
    config = load_config(
        None,
        environ={
            # Numeric order, not the alphabet's: item 10 comes after item 9.
            **{f"NICUPDATE_SERVER__TRUSTED_PROXIES__{n}": f"10.0.{n}.0/24" for n in range(11)},
            "NICUPDATE_ZONES__0__NAME": "dyn.example.com",
            "NICUPDATE_ZONES__1__NAME": "dyn.example.org",
            "NICUPDATE_ZONES__1__TTL": "300",
        },
    )
    assert [str(n) for n in config.server.trusted_proxies] == [f"10.0.{n}.0/24" for n in range(11)]
    assert [(z.name, z.ttl) for z in config.zones] == [
        ("dyn.example.com", 60),
        ("dyn.example.org", 300),
    ]


def test_a_variable_that_sets_nothing_is_an_error_with_the_likely_name() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(None, environ={"NICUPDATE_SERVER_LISTEN": "0.0.0.0:8245"})
    assert str(caught.value) == (
        "NICUPDATE_SERVER_LISTEN: not a configuration variable: keys are set as "
        "NICUPDATE_<SECTION>__<KEY>, with two underscores "
        "(did you mean NICUPDATE_SERVER__LISTEN?)"
    )


def test_variables_named_by_env_keys_are_not_typos(tmp_path: Path) -> None:
    path = write(
        tmp_path / "c.toml",
        '[backends.primary]\ntype = "rfc2136"\nserver = "127.0.0.1"\n'
        'tsig_key_name = "k"\ntsig_secret_env = "NICUPDATE_TSIG_SECRET"\n',
    )
    config = load_config(path, environ={"NICUPDATE_TSIG_SECRET": "c2VjcmV0"})
    assert "primary" in config.backends


def test_an_unknown_key_from_the_environment_names_the_variable() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(None, environ={"NICUPDATE_SERVER__LISTNE": "127.0.0.1:1"})
    assert str(caught.value) == "server.listne: unknown key (set by NICUPDATE_SERVER__LISTNE)"


def test_check_config_shows_environment_overrides(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", ZONES_FILE)
    done = run_cli(
        "--config",
        str(path),
        "check-config",
        env={"NICUPDATE_SERVER__LISTEN": "0.0.0.0:9000", "NICUPDATE_ZONES__0__TTL": "120"},
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert "HTTP 0.0.0.0:9000," in done.stdout
    assert "dyn.example.test (backend builtin, ttl 120)" in done.stdout


@pytest.mark.parametrize(
    ("name", "value", "key"),
    [
        ("NICUPDATE_ZONES__0__TTL", "0", "zones[0].ttl: "),
        ("NICUPDATE_ZONES__0__TTL", "sixty", "zones[0].ttl: "),
        ("NICUPDATE_SERVER__LISTEN", "localhost", "server.listen: "),
        ("NICUPDATE_SERVER__LISTNE", "127.0.0.1:1", "server.listne: unknown key"),
        ("NICUPDATE_ZONES__7__TTL", "60", "NICUPDATE_ZONES__7__TTL: no list item 7 to set"),
        ("NICUPDATE_SERVER_LISTEN", "0.0.0.0:9000", "NICUPDATE_SERVER_LISTEN: not a configuration"),
        ("NICUPDATE_SERVER__RETRY_INITIAL", "900", "server.retry_max: must be at least"),
    ],
)
def test_bad_environment_value_names_the_key(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    name: str,
    value: str,
    key: str,
) -> None:
    path = write(tmp_path / "c.toml", ZONES_FILE)
    monkeypatch.setenv(name, value)
    code, out, err = check_config(capsys, "--config", str(path))
    assert (code, out) == (2, "")
    assert one_error_line(err).startswith(key)


# --- secrets ------------------------------------------------------------------------


def postgres_with_password_file(directory: Path, extra: str = "") -> Path:
    secret = write(directory / "db-password", SECRET + "\n")
    return write(
        directory / "c.toml",
        "[server]\n"
        'database = "postgresql+asyncpg://nicupdate@db.example.test/nicupdate"\n'
        f'database_password_file = "{secret}"\n' + extra,
    )


def test_password_file_puts_the_password_into_the_database_url(tmp_path: Path) -> None:
    config = load_config(postgres_with_password_file(tmp_path), environ={})
    url = make_url(config.server.database_url())
    assert url.password == SECRET  # read from the file, newline stripped, escaped in the URL
    assert (url.username, url.host, url.database) == ("nicupdate", "db.example.test", "nicupdate")
    for shown in (repr(config), str(config), repr(config.server), str(config.server)):
        assert SECRET not in shown


def test_password_file_from_the_environment(tmp_path: Path) -> None:
    secret = write(tmp_path / "pw", SECRET + "\n")
    config = load_config(
        None,
        environ={
            "NICUPDATE_SERVER__DATABASE": "postgresql+asyncpg://nicupdate@db.example.test/n",
            "NICUPDATE_SERVER__DATABASE_PASSWORD_FILE": str(secret),
        },
    )
    assert make_url(config.server.database_url()).password == SECRET
    assert SECRET not in repr(config)


def test_check_config_never_shows_the_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = check_config(capsys, "--config", str(postgres_with_password_file(tmp_path)))
    assert code == 0
    assert SECRET not in out + err


@pytest.mark.parametrize(
    "extra",
    [
        'listen = "nowhere"\n',
        "realm = 5\n",
        "unknown = 1\n",
        '[[zones]]\nname = "dyn.example.test"\nbackend = "relay"\n',
    ],
)
def test_config_errors_never_show_the_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: str
) -> None:
    path = postgres_with_password_file(tmp_path, extra)
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert SECRET not in str(caught.value)
    assert SECRET not in repr(caught.value)
    code, _, err = check_config(capsys, "--config", str(path))
    assert code == 2
    assert SECRET not in one_error_line(err)


def test_unreadable_password_file_names_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(
        tmp_path / "c.toml",
        "[server]\n"
        'database = "postgresql+asyncpg://nicupdate@db.example.test/nicupdate"\n'
        f'database_password_file = "{tmp_path / "missing"}"\n',
    )
    code, out, err = check_config(capsys, "--config", str(path))
    assert (code, out) == (2, "")
    line = one_error_line(err)
    assert line.startswith("server.database_password_file: ")
    assert "missing" in line


def test_rejected_database_url_does_not_echo_its_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A password written inline in the URL is a secret too: an error must not print it."""
    path = write(tmp_path / "c.toml", f'[server]\ndatabase = "mysql://nicupdate:{SECRET}@db/n"\n')
    code, _, err = check_config(capsys, "--config", str(path))
    assert code == 2
    line = one_error_line(err)
    assert line.startswith("server.database: ")
    assert SECRET not in line


# --- every kind of bad configuration: one line naming the key ------------------------

BAD_CONFIGS = {
    "unknown key": (
        '[[zones]]\nname = "dyn.example.test"\ntll = 60\n',
        "zones[0].tll: unknown key",
    ),
    "unknown section": ("[sever]\nlisten = '127.0.0.1:1'\n", "sever: unknown key"),
    "wrong type": ("[server]\nlisten = 8245\n", "server.listen: "),
    "wrong type of a section": ('zones = "dyn.example.test"\n', "zones: "),
    "wrong type in a zone": (
        '[[zones]]\nname = "dyn.example.test"\nttl = "long"\n',
        "zones[0].ttl: ",
    ),
    "ttl 0": ('[[zones]]\nname = "dyn.example.test"\nttl = 0\n', "zones[0].ttl: "),
    "missing zone name": ("[[zones]]\nttl = 60\n", "zones[0].name: "),
    "bad zone name": ('[[zones]]\nname = "dyn..example.test"\n', "zones[0].name: "),
    "listen is a host name": ('[server]\nlisten = "localhost:8245"\n', "server.listen: "),
    "listen port out of range": ('[dns]\nlisten = "127.0.0.1:70000"\n', "dns.listen: "),
    "rate limit below 0": (
        "[dns.rate_limit]\nresponses_per_second = -1\n",
        "dns.rate_limit.responses_per_second: ",
    ),
    "rate limit unknown key": ("[dns.rate_limit]\nrate = 5\n", "dns.rate_limit.rate: unknown key"),
    "transfers without a key": (
        '[dns.transfer]\nallow = ["192.0.2.2/32"]\n',
        "dns.transfer: transfers are signed: give tsig_key_file",
    ),
    "secret file without a key name": (
        '[dns.transfer]\ntsig_secret_file = "/k"\nnotify = ["192.0.2.2"]\n',
        "dns.transfer.key_name: missing",
    ),
    "notify target not an address": (
        '[dns.transfer]\ntsig_key_file = "/k"\nnotify = ["ns2.example.net"]\n',
        "dns.transfer.notify: ",
    ),
    "catalog without allow": (
        '[dns.transfer]\ntsig_key_file = "/k"\nnotify = ["192.0.2.2"]\n'
        'catalog = "catalog.invalid"\n',
        "dns.transfer.catalog: needs dns.transfer.allow",
    ),
    "soa expire too short": (
        '[[zones]]\nname = "dyn.example.test"\nsoa_expire = 60\n',
        "zones[0].soa_expire: ",
    ),
    "bad CIDR": ('[server]\ntrusted_proxies = ["10.0.0.0/33"]\n', "server.trusted_proxies: "),
    "host bits set": (
        '[server]\ntrusted_proxies = ["192.0.2.10/24"]\n',
        "server.trusted_proxies: '192.0.2.10/24' has host bits set: write the network "
        "'192.0.2.0/24' or the single address '192.0.2.10'",
    ),
    "retry_initial above retry_max": (
        "[server]\nretry_initial = 600\nretry_max = 300\n",
        "server.retry_max: must be at least server.retry_initial (600)",
    ),
    "CIDR that is not an address": (
        '[server]\ntrusted_proxies = ["10.0.0.0/8", "proxy.example"]\n',
        "server.trusted_proxies: ",
    ),
    "trusted_proxies not a list": (
        '[server]\ntrusted_proxies = "10.0.0.0/8"\n',
        "server.trusted_proxies: ",
    ),
    "no zones": ("zones = []\n", "zones: "),
    "bad log level": ('[server]\nlog_level = "loud"\n', "server.log_level: "),
    "duplicate zone": (
        '[[zones]]\nname = "dyn.example.test"\n[[zones]]\nname = "DYN.example.test."\n',
        "zones[1].name: ",
    ),
    "zone backend undefined": (
        '[[zones]]\nname = "dyn.example.test"\nbackend = "relay"\n',
        "zones[0].backend: ",
    ),
    "zone backends: one undefined": (
        '[[zones]]\nname = "dyn.example.test"\nbackends = ["builtin", "relay"]\n',
        "zones[0].backends: no backend named 'relay'",
    ),
    "zone backends: empty": (
        '[[zones]]\nname = "dyn.example.test"\nbackends = []\n',
        "zones[0].backends: ",
    ),
    "zone backends: listed twice": (
        '[[zones]]\nname = "dyn.example.test"\nbackends = ["builtin", "builtin"]\n',
        "zones[0].backends: a backend is listed twice",
    ),
    "zone backend and backends": (
        '[[zones]]\nname = "dyn.example.test"\nbackend = "builtin"\nbackends = ["builtin"]\n',
        "zones[0].backends: give either backend or backends",
    ),
    "unsupported database driver": (
        '[server]\ndatabase = "mysql+pymysql://nicupdate@db/nicupdate"\n',
        "server.database: ",
    ),
    "backend type not available": (
        '[backends.relay]\ntype = "no-such-kind"\n'
        '[[zones]]\nname = "dyn.example.test"\nbackend = "relay"\n',
        "backends.relay.type: ",
    ),
    "backend type not available, unused backend": (
        '[backends.spare]\ntype = "no-such-kind"\n',
        "backends.spare.type: ",
    ),
    "backend without type": ("[backends.relay]\nserver = '192.0.2.1'\n", "backends.relay.type: "),
    "limit of the wrong type": ("[limits]\nheader_timeout = 'long'\n", "limits.header_timeout: "),
    "limit out of range": ("[limits]\nmax_header_bytes = 100\n", "limits.max_header_bytes: "),
    "unknown limit": ("[limits]\nmax_connection = 10\n", "limits.max_connection: unknown key"),
    "lock-out max below the first": (
        "[limits]\nlockout_initial = 600\nlockout_max = 60\n",
        "limits.lockout_max: must be at least limits.lockout_initial (600)",
    ),
}


@pytest.mark.parametrize(("text", "key"), list(BAD_CONFIGS.values()), ids=list(BAD_CONFIGS))
def test_bad_config_is_one_line_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, key: str
) -> None:
    path = write(tmp_path / "c.toml", text)
    code, out, err = check_config(capsys, "--config", str(path))
    assert (code, out) == (2, "")
    line = one_error_line(err)
    assert line.startswith(key), line


def test_wrong_values_are_quoted_in_the_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for text, shown in [
        ('[server]\nlisten = "localhost:8245"\n', "localhost:8245"),
        ('[server]\ntrusted_proxies = ["10.0.0.0/33"]\n', "'10.0.0.0/33'"),
        ('[server]\ntrusted_proxies = ["10.0.0.0/8", "proxy.example"]\n', "'proxy.example'"),
        ('[[zones]]\nname = "dyn.example.test"\nbackend = "relay"\n', "relay"),
        ('[server]\ndatabase = "mysql+pymysql://nicupdate@db/nicupdate"\n', "mysql"),
        ('[backends.relay]\ntype = "no-such-kind"\n', "no-such-kind"),
    ]:
        path = write(tmp_path / "c.toml", text)
        code, _, err = check_config(capsys, "--config", str(path))
        assert code == 2
        assert shown in one_error_line(err)


def test_toml_syntax_error_names_the_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path / "c.toml", '[server]\nlisten = "127.0.0.1:8245\n')
    code, out, err = check_config(capsys, "--config", str(path))
    assert (code, out) == (2, "")
    line = one_error_line(err)
    assert str(path) in line
    assert "line 2" in line


def test_missing_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = check_config(capsys, "--config", str(tmp_path / "nope.toml"))
    assert (code, out) == (2, "")
    line = one_error_line(err)
    assert str(tmp_path / "nope.toml") in line
    assert "does not exist" in line


@pytest.mark.parametrize(
    ("text", "key"),
    [
        BAD_CONFIGS["unknown key"],
        BAD_CONFIGS["bad CIDR"],
        BAD_CONFIGS["backend type not available"],
        ("[server\n", "{path}: not valid TOML"),
    ],
    ids=["unknown key", "bad CIDR", "backend type", "TOML syntax"],
)
def test_cli_config_error_exits_2_without_traceback(tmp_path: Path, text: str, key: str) -> None:
    path = write(tmp_path / "c.toml", text)
    done = run_cli("--config", str(path), "check-config", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stdout == ""
    assert one_error_line(done.stderr).startswith(key.format(path=path))


def test_serve_with_a_bad_config_stops_with_one_line(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", BAD_CONFIGS["backend type not available"][0])
    done = run_cli("--config", str(path), "serve", cwd=tmp_path)
    assert done.returncode == 2
    assert one_error_line(done.stderr).startswith("backends.relay.type: ")
