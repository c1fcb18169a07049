"""install-task / install-timer / remove-* / status through the CLI, with a recording runner.

Windows is simulated by the platform name and Windows-style directories; the schtasks,
icacls and PowerShell calls are recorded, not run. The systemd units are real files.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from pathlib import Path

import keyring
import pytest
import tomli_w
from nicupdate_client import cli, context, systemd
from nicupdate_client.paths import Paths
from nicupdate_client.runner import CommandResult
from nicupdate_client.updater import OK, USAGE

from tests.client.filekeyring import FileKeyring

NS = {"t": "http://schemas.microsoft.com/windows/2004/02/mit/task"}
SECRET = "s3cret-token-value"


class Recorder:
    """A fake runner: records each call, and what the XML file held at /Create."""

    def __init__(self, answers: dict[str, CommandResult] | None = None) -> None:
        self.calls: list[list[str]] = []
        self.answers = answers or {}
        self.xml_at_create: bytes | None = None

    def __call__(self, args: Sequence[str]) -> CommandResult:
        self.calls.append(list(args))
        if args[:2] == ["schtasks", "/Create"]:
            self.xml_at_create = Path(args[3]).read_bytes()
        for prefix, answer in self.answers.items():
            if " ".join(args).startswith(prefix):
                return answer
        return CommandResult(0, "", "")

    def programs(self) -> list[str]:
        return [" ".join(call[:3]) for call in self.calls]


@pytest.fixture
def user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A user with a configuration whose secret is in the (test) credential store."""
    home = tmp_path / "home"
    home.mkdir()
    for name in list(os.environ):
        if name.startswith(("XDG_", "NICUPDATE_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("NICUPDATE_TEST_KEYRING", str(tmp_path / "keyring.json"))
    previous = keyring.get_keyring()
    keyring.set_keyring(FileKeyring())
    config = tmp_path / "client.toml"
    config.write_text(
        tomli_w.dumps(
            {
                "server": "https://ddns.example.test",
                "username": "alice",
                "hostnames": ["home.dyn.example.test"],
                "ipv6": {"enabled": False},
            }
        )
    )
    assert cli.main(["set-secret", "--stdin", "--config", str(config)], runner=Recorder()) == OK
    yield config
    keyring.set_keyring(previous)


@pytest.fixture(autouse=True)
def _secret_on_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    monkeypatch.setattr(sys, "stdin", io.StringIO(SECRET + "\n"))


# --- Linux: systemd timer -----------------------------------------------------------------

linux_only = pytest.mark.skipif(
    sys.platform == "win32", reason="install-timer is for Linux (the Windows CI runs this file)"
)


@linux_only
def test_install_timer_writes_user_units_and_enables_the_timer(
    user: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runner = Recorder()
    assert cli.main(["install-timer", "--config", str(user)], runner=runner) == OK
    units = tmp_path / "home" / ".config" / "systemd" / "user"
    service = (units / "nicupdate-client.service").read_text()
    timer = (units / "nicupdate-client.timer").read_text()
    exec_start = next(line for line in service.splitlines() if line.startswith("ExecStart="))
    assert shlex.split(exec_start.removeprefix("ExecStart=")) == [
        sys.executable,
        "-m",
        "nicupdate_client",
        "run",
        "--once",
        "--config",
        str(user),
    ]
    assert "OnUnitActiveSec=5min" in timer
    assert runner.calls == [
        ["systemctl", "--user", "show", "--property=Version"],  # is systemd there at all?
        ["systemctl", "--user", "daemon-reload"],
        ["systemctl", "--user", "enable", "--now", "nicupdate-client.timer"],
    ]
    out = capsys.readouterr().out
    assert "every 5 minutes" in out
    assert "loginctl enable-linger" in out


@linux_only
def test_install_timer_needs_a_secret_first(
    user: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keyring.get_keyring().delete_password("nicupdate", "alice@https://ddns.example.test")
    runner = Recorder()
    assert cli.main(["install-timer", "--config", str(user)], runner=runner) == USAGE
    assert "run 'nicupdate-client set-secret'" in capsys.readouterr().err
    assert runner.calls == []


@linux_only
def test_status_shows_the_timer(user: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runner = Recorder(
        {
            "systemctl --user show nicupdate-client.timer": CommandResult(
                0,
                "ActiveState=active\nLoadState=loaded\nNextElapseUSecRealtime="
                "Wed 2026-11-25 10:05:00 UTC\nNextElapseUSecMonotonic=\n"
                "LastTriggerUSec=Wed 2026-11-25 10:00:00 UTC\n",
                "",
            ),
            "systemctl --user show nicupdate-client.service": CommandResult(
                0, "Result=success\n", ""
            ),
        }
    )
    assert cli.main(["status", "--config", str(user)], runner=runner) == OK
    out = capsys.readouterr().out
    assert "secret: " in out and SECRET not in out
    schedule = next(line for line in out.splitlines() if line.startswith("Schedule"))
    assert schedule.startswith("Schedule       timer active; last run ")
    assert "next run " in schedule and "next run -" not in schedule


@linux_only
def test_remove_timer_purge_forgets_everything(
    user: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["install-timer", "--config", str(user)], runner=Recorder()) == OK
    units = tmp_path / "home" / ".config" / "systemd" / "user"
    runner = Recorder()
    assert cli.main(["remove-timer", "--purge", "--config", str(user)], runner=runner) == OK
    assert not (units / "nicupdate-client.service").exists()
    assert not (units / "nicupdate-client.timer").exists()
    assert ["systemctl", "--user", "disable", "--now", "nicupdate-client.timer"] in runner.calls
    assert not user.exists()
    assert json.loads((tmp_path / "keyring.json").read_text()) == {}
    assert "Removed the secret from the credential store." in capsys.readouterr().out


@linux_only
def test_install_timer_cron_prints_crontab_lines(
    user: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runner = Recorder()
    assert cli.main(["install-timer", "--cron", "--config", str(user)], runner=runner) == OK
    out = capsys.readouterr().out
    assert "*/5 * * * * " in out and "@reboot sleep 30 && " in out
    assert f"--config {user}" in out
    assert runner.calls == []


@linux_only
def test_install_timer_system_copies_config_and_secret(
    user: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    etc = tmp_path / "etc" / "nicupdate"
    monkeypatch.setattr(
        context,
        "default_paths",
        lambda system=False: Paths(etc, tmp_path / "var", tmp_path / "log"),
    )
    monkeypatch.setattr(systemd, "SYSTEM_UNIT_DIR", tmp_path / "etc" / "systemd" / "system")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    runner = Recorder()
    assert cli.main(["install-timer", "--system", "--config", str(user)], runner=runner) == OK
    assert (etc / "client.toml").read_text() == user.read_text()
    assert (etc / "client.secret").read_text() == SECRET + "\n"
    assert oct((etc / "client.secret").stat().st_mode & 0o777) == "0o600"
    assert oct((etc / "client.toml").stat().st_mode & 0o777) == "0o644"
    service = (tmp_path / "etc/systemd/system/nicupdate-client.service").read_text()
    assert f"LoadCredential=nicupdate-secret:{etc / 'client.secret'}" in service
    assert "DynamicUser=yes" in service
    assert f"--config {etc / 'client.toml'} --system" in service
    assert runner.calls[:2] == [
        ["systemctl", "show", "--property=Version"],
        ["systemctl", "daemon-reload"],
    ]

    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert cli.main(["install-timer", "--system", "--config", str(user)]) == USAGE


# --- Windows: scheduled task (simulated platform) -----------------------------------------


@pytest.fixture
def windows(user: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(sys, "platform", "win32")
    for name, folder in {
        "APPDATA": "Roaming",
        "LOCALAPPDATA": "Local",
        "PROGRAMDATA": "ProgramData",
    }.items():
        monkeypatch.setenv(name, str(tmp_path / folder))
    monkeypatch.setenv("USERNAME", "ann")
    monkeypatch.setenv("USERDOMAIN", "DESKTOP-1")
    return user


def test_install_task_registers_the_xml_with_schtasks(
    windows: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runner = Recorder()
    assert cli.main(["install-task", "--config", str(windows)], runner=runner) == OK
    [create] = runner.calls
    assert create[:3] == ["schtasks", "/Create", "/XML"]
    assert create[4:] == ["/TN", "nicupdate-client", "/F"]
    assert not Path(create[3]).exists(), "the temporary XML file is left behind"
    assert runner.xml_at_create is not None and runner.xml_at_create[:2] == b"\xff\xfe"
    task = ET.fromstring(runner.xml_at_create.decode("utf-16").split("?>", 1)[1])
    assert task.findtext("t:Principals/t:Principal/t:UserId", namespaces=NS) == "DESKTOP-1\\ann"
    assert task.findtext("t:Principals/t:Principal/t:LogonType", namespaces=NS) == (
        "InteractiveToken"
    )
    command = task.findtext("t:Actions/t:Exec/t:Command", namespaces=NS) or ""
    assert command.lower().endswith("pythonw") or "pythonw" in command.lower()
    arguments = task.findtext("t:Actions/t:Exec/t:Arguments", namespaces=NS) or ""
    assert "-m nicupdate_client run --once --config" in arguments
    assert str(windows) in arguments
    out = capsys.readouterr().out
    assert "every 5 minutes and whenever a network connects, hidden, as DESKTOP-1\\ann" in out


def test_install_task_system_protects_the_secret_file(
    windows: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runner = Recorder()
    assert cli.main(["install-task", "--system", "--config", str(windows)], runner=runner) == OK
    program_data = tmp_path / "ProgramData" / "nicupdate"
    secret = program_data / "client.secret"
    assert secret.read_text() == SECRET + "\n"
    assert (program_data / "client.toml").read_text() == windows.read_text()
    assert runner.calls[0] == [
        "icacls",
        str(secret),
        "/inheritance:r",
        "/grant:r",
        "*S-1-5-18:F",
        "*S-1-5-32-544:F",
    ]
    assert runner.calls[1][:2] == ["schtasks", "/Create"]
    assert runner.xml_at_create is not None
    task = ET.fromstring(runner.xml_at_create.decode("utf-16").split("?>", 1)[1])
    assert task.findtext("t:Principals/t:Principal/t:UserId", namespaces=NS) == "S-1-5-18"
    arguments = task.findtext("t:Actions/t:Exec/t:Arguments", namespaces=NS) or ""
    assert str(program_data / "client.toml") in arguments and "--system" in arguments

    remover = Recorder()
    assert cli.main(["remove-task", "--system", "--config", str(windows)], runner=remover) == OK
    assert not secret.exists()
    assert ["schtasks", "/Delete", "/TN", "nicupdate-client", "/F"] in remover.calls


def test_remove_task_when_there_is_none(windows: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = CommandResult(1, "", "ERROR: The system cannot find the file specified.\n")
    runner = Recorder({"schtasks /Query": missing})
    assert cli.main(["remove-task", "--config", str(windows)], runner=runner) == OK
    assert "No task to remove." in capsys.readouterr().out
    assert all(call[1] != "/Delete" for call in runner.calls)


def test_status_shows_the_task(windows: Path, capsys: pytest.CaptureFixture[str]) -> None:
    info = json.dumps(
        {
            "State": "Ready",
            "LastRunTime": "2026-11-25T10:00:00",
            "LastTaskResult": 0,
            "NextRunTime": "2026-11-25T10:05:00",
        }
    )
    runner = Recorder({"powershell": CommandResult(0, info, "")})
    assert cli.main(["status", "--config", str(windows)], runner=runner) == OK
    out = capsys.readouterr().out
    assert (
        "Schedule       task Ready; last run 2026-11-25 10:00 (result 0); next run 2026-11-25 10:05"
        in out
    )


@linux_only
def test_install_task_on_linux_is_a_usage_error_but_prints_xml(
    user: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["install-task", "--config", str(user)], runner=Recorder()) == USAGE
    assert "install-task is for Windows; on Linux use install-timer" in capsys.readouterr().err
    assert cli.main(["install-task", "--print-xml", "--config", str(user)]) == OK
    xml = capsys.readouterr().out
    task = ET.fromstring(xml.split("?>", 1)[1])
    assert task.findtext("t:Settings/t:ExecutionTimeLimit", namespaces=NS) == "PT5M"
