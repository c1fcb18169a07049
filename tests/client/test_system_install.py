"""The machine-wide timer as a user meets it: ``install-timer --system``, its unit's runs,
and ``remove-timer --system --purge``, on a Linux machine without systemd as PID 1.

The system's places (``/etc/nicupdate``, ``/var/lib``, ``/var/log``, the unit directory)
are directories under the test's own, the process passes for root, and ``systemctl`` is
recorded. Everything else is real: the user's configuration is written by ``init``, the
updates go to the real server, and the unit's command line is run as systemd would run it
(``STATE_DIRECTORY``, ``LOGS_DIRECTORY``, the secret handed over by ``LoadCredential=``).
"""

from __future__ import annotations

import io
import os
import shutil
import stat
import subprocess
import sys
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import keyring
import pytest
import tomli_w
from keyring.backends import fail
from nicupdate_client import cli, context, schedule, systemd
from nicupdate_client.paths import Paths, default_paths
from nicupdate_client.runner import CommandResult
from nicupdate_client.updater import OK, USAGE

from tests.client.clientenv import HOME_HOST, V4_NEW, ClientEnv, client_env
from tests.client.echo import echo
from tests.client.test_systemd import NOT_BOOTED, FakeSystemctl, split_exec
from tests.server.conftest import ALICE, alice, live_server

__all__ = ["alice", "client_env", "echo", "live_server"]

pytestmark = pytest.mark.skipif(
    sys.platform == "win32", reason="install-timer is for Linux (the Windows CI runs this file)"
)
FAILED = 1
DENIED = CommandResult(1, "", "Failed to enable unit: Access denied\n")


@dataclass
class Machine:
    """The system's places, under ``root``; and the user's home."""

    root: Path
    home: Path

    @property
    def system(self) -> Paths:
        return Paths(
            self.root / "etc" / "nicupdate",
            self.root / "var" / "lib" / "nicupdate-client",
            self.root / "var" / "log" / "nicupdate-client",
        )

    @property
    def units(self) -> Path:
        return self.root / "etc" / "systemd" / "system"

    @property
    def user(self) -> Paths:
        return default_paths(env={"HOME": str(self.home)})

    def files(self) -> dict[str, bytes]:
        """Every file under the system's root, by path: what an install left behind."""
        return {
            str(path.relative_to(self.root)): path.read_bytes()
            for path in sorted(self.root.rglob("*"))
            if path.is_file()
        }

    def user_files(self) -> dict[str, bytes]:
        return {
            str(path.relative_to(self.home)): path.read_bytes()
            for path in sorted(self.home.rglob("*"))
            if path.is_file()
        }


@pytest.fixture
def machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Machine]:
    root = tmp_path / "root"
    root.mkdir()
    home = tmp_path / "client" / "home"  # client_env's HOME, when the test uses it
    home.mkdir(parents=True, exist_ok=True)
    machine = Machine(root, home)
    real = default_paths

    def paths(
        *, system: bool = False, env: Mapping[str, str] | None = None, platform: str | None = None
    ) -> Paths:
        return machine.system if system else real(env=env, platform=platform)

    monkeypatch.setattr(context, "default_paths", paths)
    monkeypatch.setattr(schedule, "default_paths", paths)
    monkeypatch.setattr(systemd, "SYSTEM_UNIT_DIR", machine.units)
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    for name in list(os.environ):
        if name.startswith(("XDG_", "NICUPDATE_", "SUDO_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(home))
    previous = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())  # a headless box: no credential store
    yield machine
    keyring.set_keyring(previous)


def user_config(machine: Machine, home: Path | None = None, **settings: object) -> Path:
    """A user's configuration with its secret in a file beside it, as init writes it here."""
    paths = default_paths(env={"HOME": str(home or machine.home)})
    paths.config_dir.mkdir(parents=True, exist_ok=True)
    secret = paths.secret_file
    secret.write_text(ALICE[1] + "\n")
    secret.chmod(0o600)
    raw = {
        "server": "https://ddns.example.test",
        "username": "alice",
        "hostnames": [HOME_HOST],
        "secret_file": str(secret),
        "ipv6": {"enabled": False},
        **settings,
    }
    paths.config_file.write_text(tomli_w.dumps(raw))
    return paths.config_file


def install(*args: str, runner: FakeSystemctl) -> int:
    return cli.main(["install-timer", "--system", *args], runner=runner)


def unit_run(env: ClientEnv, machine: Machine, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """The installed service's ExecStart, run with what systemd hands the unit."""
    service = (machine.units / "nicupdate-client.service").read_text()
    exec_start = next(line for line in service.splitlines() if line.startswith("ExecStart="))
    credentials = tmp_path / "credentials"
    credentials.mkdir(exist_ok=True)
    shutil.copyfile(machine.system.secret_file, credentials / "nicupdate-secret")
    unit_env = {key: value for key, value in env.env().items() if key != "HOME"}
    unit_env |= {
        "HOME": str(tmp_path / "nobody"),  # ProtectHome=yes: no home
        "STATE_DIRECTORY": str(machine.system.state_dir),
        "LOGS_DIRECTORY": str(machine.system.log_dir),
        "CREDENTIALS_DIRECTORY": str(credentials),
    }
    return subprocess.run(
        split_exec(exec_start.removeprefix("ExecStart=")),
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
        env=unit_env,
        check=False,
    )


def user_init(env: ClientEnv) -> None:
    """The user sets the client up on a box without a credential store, and runs it."""
    no_store = {"PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"}
    args = ["init", "--server", env.proxy.url, "--hostname", HOME_HOST, "--username", "alice"]
    args += ["--password-stdin", "--source4", env.echo.url("/a"), "--source4", env.echo.url("/b")]
    done = env.run(*args, "--no-ipv6", stdin=ALICE[1] + "\n", config=False, **no_store)
    assert done.returncode == OK, done.stderr
    assert "This system has no credential store: the secret goes to " in done.stdout
    first = env.run("run", "--once", config=False, **no_store)
    assert first.returncode == OK, first.stderr


# --- install: the user's configuration, copied ------------------------------------------


def test_install_copies_the_users_configuration_without_naming_the_users_files(
    client_env: ClientEnv, machine: Machine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    user_init(client_env)
    user = machine.user
    assert install(runner=FakeSystemctl(machine.units)) == OK  # no --config: the user's
    out = capsys.readouterr().out
    etc = machine.system
    assert out.splitlines()[:2] == [
        f"Copied {user.config_file} to {etc.config_file}, without secret_file: the "
        "machine-wide installation keeps its own secret, state and log.",
        f"Stored the secret in {etc.secret_file} (readable by administrators only).",
    ]
    copy = tomllib.loads(etc.config_file.read_text())
    original = tomllib.loads(user.config_file.read_text())
    assert "secret_file" in original
    assert copy == {key: value for key, value in original.items() if key != "secret_file"}
    assert stat.S_IMODE(etc.config_file.stat().st_mode) == 0o644
    assert etc.secret_file.read_text() == ALICE[1] + "\n"
    assert stat.S_IMODE(etc.secret_file.stat().st_mode) == 0o600
    service = (machine.units / "nicupdate-client.service").read_text()
    assert f"--config {etc.config_file} --system" in service

    # The unit runs from the copy with what systemd hands it, and keeps its own state.
    client_env.answers(v4=V4_NEW)
    ran = unit_run(client_env, machine, tmp_path)
    assert ran.returncode == OK, ran.stderr
    assert client_env.server.addresses(HOME_HOST) == [V4_NEW]
    assert (etc.state_dir / "client-state.json").exists()
    assert "updated home.dyn.example.test" in (etc.log_dir / "client.log").read_text()


def test_install_takes_the_configuration_of_the_user_who_ran_sudo(
    machine: Machine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pwd

    ann = tmp_path / "ann"
    source = user_config(machine, ann, hostnames=["ann.dyn.example.test"])
    monkeypatch.setenv("HOME", str(tmp_path / "root-home"))  # what sudo sets: root's home
    monkeypatch.setenv("SUDO_USER", "ann")
    real = pwd.getpwnam

    def getpwnam(name: str) -> pwd.struct_passwd:
        if name != "ann":
            return real(name)
        entry = list(real("root"))
        entry[5] = str(ann)  # pw_dir
        return pwd.struct_passwd(entry)

    monkeypatch.setattr(pwd, "getpwnam", getpwnam)
    assert source == ann / ".config" / "nicupdate" / "client.toml"
    assert install(runner=FakeSystemctl(machine.units)) == OK
    assert tomllib.loads(machine.system.config_file.read_text())["hostnames"] == [
        "ann.dyn.example.test"
    ]


def test_install_without_any_configuration_names_where_it_looked(
    machine: Machine, capsys: pytest.CaptureFixture[str]
) -> None:
    runner = FakeSystemctl(machine.units)
    assert install(runner=runner) == USAGE
    expected = machine.user.config_file
    assert capsys.readouterr().err == (
        f"nicupdate-client install-timer: {expected}: no such file: "
        "run 'nicupdate-client init' or pass --config\n"
    )
    assert runner.calls == []
    assert machine.files() == {}


# --- install: check first, change nothing on failure -----------------------------------


def test_install_without_systemd_changes_nothing(
    machine: Machine, capsys: pytest.CaptureFixture[str]
) -> None:
    source = user_config(machine)
    before = machine.user_files()
    runner = FakeSystemctl(machine.units, {"show": NOT_BOOTED})
    assert install("--config", str(source), runner=runner) == FAILED
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "nicupdate-client install-timer: systemctl show --property=Version: systemd is not "
        "running on this system. Use 'nicupdate-client install-timer --cron' and add the "
        "lines it prints with 'crontab -e'."
    ]
    assert runner.calls == [["systemctl", "show", "--property=Version"]]
    assert machine.files() == {}
    assert list(machine.root.iterdir()) == []  # not even a directory
    assert machine.user_files() == before


def test_a_failed_install_takes_its_copies_back(
    machine: Machine, capsys: pytest.CaptureFixture[str]
) -> None:
    source = user_config(machine)
    assert (
        install("--config", str(source), runner=FakeSystemctl(machine.units, {"enable": DENIED}))
        == FAILED
    )
    assert "systemctl enable: Failed to enable unit: Access denied" in capsys.readouterr().err
    assert machine.files() == {}
    assert not machine.system.config_dir.exists()


def test_a_failed_reinstall_leaves_the_working_installation_as_it_was(
    machine: Machine, capsys: pytest.CaptureFixture[str]
) -> None:
    source = user_config(machine)
    assert install("--config", str(source), runner=FakeSystemctl(machine.units)) == OK
    installed = machine.files()
    capsys.readouterr()
    source.write_text(source.read_text().replace(HOME_HOST, "other.dyn.example.test"))
    machine.user.secret_file.write_text("a-new-secret\n")
    assert (
        install("--config", str(source), runner=FakeSystemctl(machine.units, {"enable": DENIED}))
        == FAILED
    )
    assert machine.files() == installed
    assert stat.S_IMODE(machine.system.secret_file.stat().st_mode) == 0o600
    assert "Copied" not in capsys.readouterr().out


def test_set_secret_system_changes_the_secret_the_unit_loads(
    machine: Machine, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = user_config(machine)
    assert install("--config", str(source), runner=FakeSystemctl(machine.units)) == OK
    monkeypatch.setattr(sys, "stdin", io.StringIO("a-new-secret\n"))
    changed = cli.main(["set-secret", "--system", "--stdin"], runner=FakeSystemctl(machine.units))
    assert changed == OK
    assert machine.system.secret_file.read_text() == "a-new-secret\n"
    assert machine.user.secret_file.read_text() == ALICE[1] + "\n"  # the user's own, unchanged


# --- purge: only what the installation made ---------------------------------------------


def test_system_purge_leaves_the_users_own_client_working(
    client_env: ClientEnv, machine: Machine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    user_init(client_env)
    user = machine.user
    # --config names the user's file: the purge must not take it for the installation's.
    assert install("--config", str(user.config_file), runner=FakeSystemctl(machine.units)) == OK
    assert unit_run(client_env, machine, tmp_path).returncode == OK
    before = machine.user_files()
    assert {"client.toml", "client.secret"} <= {Path(name).name for name in before}
    assert {"client-state.json", "client.log"} <= {Path(name).name for name in before}
    capsys.readouterr()

    runner = FakeSystemctl(machine.units)
    purge = ["remove-timer", "--system", "--purge", "--config", str(user.config_file)]
    assert cli.main(purge, runner=runner) == OK
    out = capsys.readouterr().out
    assert machine.files() == {}
    assert list(machine.root.rglob("nicupdate*")) == []  # the directories too
    assert machine.user_files() == before
    assert str(machine.home) not in out

    # The user's own client still runs, with its own configuration and secret.
    client_env.answers(v4=V4_NEW)
    again = client_env.run(
        "run", "--once", config=False, PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring"
    )
    assert again.returncode == OK, again.stderr
    assert client_env.server.addresses(HOME_HOST) == [V4_NEW]


def test_system_purge_without_config_removes_the_copy_and_the_system_state(
    machine: Machine, capsys: pytest.CaptureFixture[str]
) -> None:
    source = user_config(machine)
    assert install("--config", str(source), runner=FakeSystemctl(machine.units)) == OK
    etc = machine.system
    for path in (etc.state_file, etc.log_file):  # what the unit's runs leave
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")
    (etc.state_dir / "client-state.json.lock").write_text("")
    (etc.log_dir / "client.log.1").write_text("")
    (etc.log_dir / "notes.txt").write_text("the operator's")
    before = machine.user_files()
    capsys.readouterr()
    assert (
        cli.main(["remove-timer", "--system", "--purge"], runner=FakeSystemctl(machine.units)) == OK
    )
    out = capsys.readouterr().out.splitlines()
    assert f"Removed {etc.config_file}." in out
    assert f"Removed {etc.state_file}." in out
    assert f"Removed {etc.log_dir / 'client.log.1'}." in out
    assert machine.files() == {"var/log/nicupdate-client/notes.txt": b"the operator's"}
    assert not etc.config_dir.exists() and not etc.state_dir.exists()
    assert machine.user_files() == before


def test_system_purge_keeps_the_users_secret_that_an_older_copy_names(
    machine: Machine, capsys: pytest.CaptureFixture[str]
) -> None:
    # An earlier version copied the configuration as it was, secret_file and all.
    source = user_config(machine, state_dir=str(machine.home / "state"))
    (machine.home / "state").mkdir()
    (machine.home / "state" / "client-state.json").write_text("{}")
    etc = machine.system
    etc.config_dir.mkdir(parents=True)
    shutil.copyfile(source, etc.config_file)
    etc.secret_file.write_text(ALICE[1] + "\n")
    before = machine.user_files()
    assert (
        cli.main(["remove-timer", "--system", "--purge"], runner=FakeSystemctl(machine.units)) == OK
    )
    assert machine.user_files() == before
    assert machine.files() == {}
    assert str(machine.home) not in capsys.readouterr().out


def test_user_purge_keeps_the_system_installations_files(
    machine: Machine, capsys: pytest.CaptureFixture[str]
) -> None:
    etc = machine.system
    source = user_config(machine, secret_file=str(etc.secret_file))  # docs/client.md's example
    etc.config_dir.mkdir(parents=True)
    etc.secret_file.write_text(ALICE[1] + "\n")
    assert cli.main(["remove-timer", "--purge"], runner=FakeSystemctl(machine.units)) == OK
    out = capsys.readouterr().out
    assert (
        f"Kept {etc.secret_file}: it belongs to the machine-wide installation "
        "('remove-timer --system --purge' removes it)." in out
    )
    assert etc.secret_file.read_text() == ALICE[1] + "\n"
    assert not source.exists()
    assert f"Removed {source}." in out


def test_installed_unit_names_no_file_in_a_home_directory(machine: Machine) -> None:
    source = user_config(
        machine, state_dir=str(machine.home / "state"), log_dir=str(machine.home / "log")
    )
    assert install("--config", str(source), runner=FakeSystemctl(machine.units)) == OK
    copy = tomllib.loads(machine.system.config_file.read_text())
    assert not {"secret_file", "state_dir", "log_dir"} & set(copy)
    service = (machine.units / "nicupdate-client.service").read_text()
    assert str(machine.home) not in service
    assert "ProtectHome=yes" in service


def test_the_copy_is_verbatim_when_it_names_no_users_file(
    machine: Machine, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = user_config(machine)
    text = source.read_text().replace(f'secret_file = "{machine.user.secret_file}"\n', "")
    source.write_text("# my comment\n" + text)
    monkeypatch.setenv("NICUPDATE_PASSWORD", ALICE[1])
    assert install("--config", str(source), runner=FakeSystemctl(machine.units)) == OK
    assert machine.system.config_file.read_text() == source.read_text()
    assert machine.system.secret_file.read_text() == ALICE[1] + "\n"
