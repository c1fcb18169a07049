"""The systemd timer and service, the crontab lines, and the systemctl calls behind them.

The units are checked three ways: parsed back key by key, split back into the command
they run, and handed to the real ``systemd-analyze verify`` (and ``security``), which works
offline on this machine although systemd is not PID 1 here.
"""

from __future__ import annotations

import configparser
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from nicupdate_client import systemd
from nicupdate_client.runner import CommandError, CommandResult

PYTHON = sys.executable
CONFIG = Path("/etc/nicupdate/client.toml")
SECRET = Path("/etc/nicupdate/client.secret")
# Every character that means something to systemd's or a shell's parser.
AWKWARD = '/tmp/my dir/100% "done" $HOME ${X} it\'s a\\b;c\td.toml'

HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectControlGroups": "yes",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX AF_NETLINK",
    "RestrictNamespaces": "yes",
    "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes",
    "SystemCallArchitectures": "native",
}


def parse_unit(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(text)
    return parser


def split_exec(value: str) -> list[str]:
    """Undo what systemd undoes: specifiers (only %% here), quoting, then $$ in arguments."""
    assert re.fullmatch(r"(?:[^%]|%%)*", value), f"a lone % would be a specifier: {value}"
    program, *args = shlex.split(value.replace("%%", "%"))
    return [program, *(arg.replace("$$", "$") for arg in args)]


# --- the command ------------------------------------------------------------------------


def test_client_command() -> None:
    assert systemd.client_command(CONFIG, system=False) == [
        *(PYTHON, "-m", "nicupdate_client", "run", "--once"),
        *("--config", "/etc/nicupdate/client.toml"),
    ]
    assert systemd.client_command(CONFIG, system=True, executable="/opt/venv/bin/python") == [
        *("/opt/venv/bin/python", "-m", "nicupdate_client", "run", "--once"),
        *("--config", "/etc/nicupdate/client.toml", "--system"),
    ]


def test_client_command_makes_the_config_path_absolute() -> None:
    # The unit runs in /, where a relative path would name another file.
    command = systemd.client_command(Path("client.toml"), system=False)
    assert command[-1] == str(Path.cwd() / "client.toml")


# --- the service ------------------------------------------------------------------------


def test_user_service() -> None:
    command = systemd.client_command(CONFIG, system=False)
    unit = parse_unit(systemd.service_unit(command, system=False))
    assert unit.sections() == ["Unit", "Service"]  # no [Install]: the timer is enabled
    assert unit["Unit"]["Description"]
    assert "Documentation" not in unit["Unit"]
    assert dict(unit["Service"]) == {
        "Type": "oneshot",
        "ExecStart": shlex.join(command),
        "TimeoutStartSec": "5min",
        "Nice": "10",
    }


def test_system_service() -> None:
    command = systemd.client_command(CONFIG, system=True, executable="/usr/bin/python3")
    unit = parse_unit(systemd.service_unit(command, system=True, secret_file=SECRET))
    assert unit.sections() == ["Unit", "Service"]
    assert unit["Unit"]["Wants"] == "network-online.target"
    assert unit["Unit"]["After"] == "network-online.target"
    service = unit["Service"]
    assert split_exec(service["ExecStart"]) == command
    assert service["Type"] == "oneshot"
    assert service["TimeoutStartSec"] == "5min"
    assert service["Nice"] == "10"
    assert service["DynamicUser"] == "yes"
    assert service["StateDirectory"] == "nicupdate-client"
    assert service["LogsDirectory"] == "nicupdate-client"
    assert service["LoadCredential"] == "nicupdate-secret:/etc/nicupdate/client.secret"
    assert service["ProtectHome"] == "yes"
    assert service["CapabilityBoundingSet"] == ""
    for key, value in HARDENING.items():
        assert service[key] == value, key


def test_system_service_without_a_secret_file_loads_no_credential() -> None:
    command = systemd.client_command(CONFIG, system=True, executable="/usr/bin/python3")
    unit = parse_unit(systemd.service_unit(command, system=True))
    assert "LoadCredential" not in unit["Service"]
    assert unit["Service"]["DynamicUser"] == "yes"


def test_only_a_system_unit_loads_the_credential() -> None:
    with pytest.raises(ValueError, match="system unit"):
        systemd.service_unit([PYTHON], system=False, secret_file=SECRET)
    with pytest.raises(ValueError, match="absolute"):
        systemd.service_unit([PYTHON], system=True, secret_file=Path("client.secret"))


def test_credential_path_percent_is_escaped() -> None:
    text = systemd.service_unit([PYTHON], system=True, secret_file=Path("/etc/n%u/secret"))
    assert parse_unit(text)["Service"]["LoadCredential"] == "nicupdate-secret:/etc/n%%u/secret"


@pytest.mark.parametrize(
    "executable", ["/home/alice/venv/bin/python", "/root/.venv/bin/python", "/home"]
)
def test_venv_in_a_home_directory_stays_readable(executable: str) -> None:
    text = systemd.service_unit(
        systemd.client_command(CONFIG, system=True, executable=executable), system=True
    )
    assert parse_unit(text)["Service"]["ProtectHome"] == "read-only"
    assert f"# ProtectHome=read-only, not yes: {executable} is in a home directory" in text


def test_config_in_a_home_directory_stays_readable() -> None:
    command = systemd.client_command(Path("/home/alice/nicupdate.toml"), system=True)
    text = systemd.service_unit(command, system=True)
    assert parse_unit(text)["Service"]["ProtectHome"] == "read-only"


def test_a_home_lookalike_is_still_hidden() -> None:
    text = systemd.service_unit(["/homestead/bin/python"], system=True)
    assert parse_unit(text)["Service"]["ProtectHome"] == "yes"


def test_exec_start_round_trips_awkward_words() -> None:
    program = "/opt/my tools/100%/$python"
    command = [program, "-m", "nicupdate_client", "--config", AWKWARD, "", ";", "50%", "$5"]
    value = parse_unit(systemd.service_unit(command, system=False))["Service"]["ExecStart"]
    assert split_exec(value) == command
    # The program is not subject to $ expansion: its $ stays single, its % doubled.
    assert value.startswith('"/opt/my tools/100%%/$python" -m ')
    assert ' ";" 50%% $$5' in value


def test_exec_start_rejects_line_breaks_and_relative_programs() -> None:
    with pytest.raises(ValueError, match="line break"):
        systemd.service_unit([PYTHON, "a\nb"], system=False)
    with pytest.raises(ValueError, match="absolute"):
        systemd.service_unit(["python3", "-m", "nicupdate_client"], system=False)


# --- the timer --------------------------------------------------------------------------


def test_timer() -> None:
    unit = parse_unit(systemd.timer_unit())
    assert unit.sections() == ["Unit", "Timer", "Install"]
    assert "5 minutes" in unit["Unit"]["Description"]
    assert dict(unit["Timer"]) == {
        "OnBootSec": "30s",
        "OnUnitActiveSec": "5min",
        "RandomizedDelaySec": "15s",
        "AccuracySec": "1s",
        "Unit": "nicupdate-client.service",
    }
    assert dict(unit["Install"]) == {"WantedBy": "timers.target"}


def test_timer_interval_and_delay() -> None:
    unit = parse_unit(systemd.timer_unit(interval_minutes=1440, boot_delay_seconds=0))
    assert unit["Timer"]["OnUnitActiveSec"] == "1440min"
    assert unit["Timer"]["OnBootSec"] == "0s"
    assert parse_unit(systemd.timer_unit(interval_minutes=1))["Timer"]["OnUnitActiveSec"] == "1min"


@pytest.mark.parametrize("minutes", [0, -5, 1441])
def test_timer_interval_is_validated(minutes: int) -> None:
    with pytest.raises(ValueError, match="1 to 1440 minutes"):
        systemd.timer_unit(interval_minutes=minutes)


def test_timer_boot_delay_is_validated() -> None:
    with pytest.raises(ValueError, match="cannot be negative"):
        systemd.timer_unit(boot_delay_seconds=-1)


# --- where the units go -----------------------------------------------------------------


def test_unit_dir() -> None:
    assert systemd.unit_dir(system=True) == Path("/etc/systemd/system")
    xdg = {"XDG_CONFIG_HOME": "/srv/cfg", "HOME": "/home/alice"}
    assert systemd.unit_dir(system=False, env=xdg) == Path("/srv/cfg/systemd/user")
    home = {"HOME": "/home/alice"}
    assert systemd.unit_dir(system=False, env=home) == Path("/home/alice/.config/systemd/user")
    relative = {"XDG_CONFIG_HOME": "cfg", "HOME": "/home/alice"}
    assert systemd.unit_dir(system=False, env=relative) == home_units("/home/alice")


def home_units(home: str) -> Path:
    return Path(home) / ".config" / "systemd" / "user"


# --- the real systemd-analyze ------------------------------------------------------------


@pytest.fixture(scope="module")
def analyze() -> str:
    if not sys.platform.startswith("linux"):
        pytest.skip("systemd runs on Linux only (the Windows CI runs these tests too)")
    path = shutil.which("systemd-analyze")
    # Not a skip: without it the units go unverified. tests/run.sh installs it.
    assert path, "systemd-analyze is missing: install the Debian package 'systemd'"
    return path


def analyze_run(
    analyze: str, *args: str, tmp_path: Path, user: bool = False
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SYSTEMD_COLORS": "0", "SYSTEMD_PAGER": "", "SYSTEMD_LOG_COLOR": "0"}
    if user:  # a user manager's paths hang off XDG_RUNTIME_DIR, which a container may lack
        runtime = tmp_path / "runtime"
        runtime.mkdir(mode=0o700, exist_ok=True)
        env["XDG_RUNTIME_DIR"] = str(runtime)
    scope = ["--user"] if user else []
    return subprocess.run(
        [analyze, *scope, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def write_units(directory: Path, service: str, timer: str) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "nicupdate-client.service").write_text(service, encoding="utf-8")
    (directory / "nicupdate-client.timer").write_text(timer, encoding="utf-8")
    return directory / "nicupdate-client.service", directory / "nicupdate-client.timer"


def verify(
    analyze: str, units: Sequence[Path], tmp_path: Path, *, user: bool = False
) -> subprocess.CompletedProcess[str]:
    return analyze_run(
        analyze, "verify", "--man=no", *map(str, units), tmp_path=tmp_path, user=user
    )


def our_complaints(result: subprocess.CompletedProcess[str]) -> list[str]:
    said = (result.stdout + result.stderr).splitlines()
    return [line for line in said if "nicupdate" in line]


@pytest.mark.parametrize("system", [True, False], ids=["system", "user"])
def test_systemd_analyze_verifies_the_installed_units(
    analyze: str, system: bool, tmp_path: Path
) -> None:
    secret = tmp_path / "client.secret"
    secret.write_text("s3cret\n", encoding="utf-8")
    command = systemd.client_command(tmp_path / "client.toml", system=system)
    runner = FakeSystemctl(tmp_path / "units")
    written = systemd.install_timer(
        command,
        system=system,
        runner=runner,
        secret_file=secret if system else None,
        directory=tmp_path / "units",
    )
    copies = [Path(shutil.copy(path, tmp_path / path.name)) for path in written]
    result = verify(analyze, copies, tmp_path, user=not system)
    assert result.returncode == 0, result.stderr
    assert our_complaints(result) == []


def test_systemd_analyze_reads_the_escaped_program_path(analyze: str, tmp_path: Path) -> None:
    # systemd checks that the program exists: give it one whose path needs every escape.
    odd = tmp_path / "my bin 100%n $HOME"  # %n: the unit's name, if unescaped
    odd.mkdir()
    (odd / "python").symlink_to(PYTHON)
    command = systemd.client_command(tmp_path / AWKWARD.lstrip("/"), system=True)
    command[0] = str(odd / "python")
    service = systemd.service_unit(command, system=True)
    units = write_units(tmp_path / "good", service, systemd.timer_unit())
    result = verify(analyze, units, tmp_path)
    assert result.returncode == 0, result.stderr
    assert our_complaints(result) == []
    # The check can fail: the same unit without the % escapes, or with the program's $
    # doubled, names a program that does not exist (or a specifier that does not).
    for wrong in (service.replace("%%", "%"), service.replace("$HOME", "$$HOME", 1)):
        units = write_units(tmp_path / "bad", wrong, systemd.timer_unit())
        assert verify(analyze, units, tmp_path).returncode != 0


def test_systemd_analyze_rates_the_system_sandbox_low(analyze: str, tmp_path: Path) -> None:
    command = systemd.client_command(CONFIG, system=True)
    service = systemd.service_unit(command, system=True, secret_file=SECRET)
    path, _ = write_units(tmp_path, service, systemd.timer_unit())
    result = analyze_run(
        analyze, "security", "--offline=yes", "--no-pager", str(path), tmp_path=tmp_path
    )
    assert result.returncode == 0, result.stderr
    match = re.search(
        r"Overall exposure level for nicupdate-client\.service: ([\d.]+)", result.stdout
    )
    assert match, result.stdout
    assert float(match[1]) < 5.0, result.stdout


# --- systemctl, recorded -----------------------------------------------------------------


@dataclass
class FakeSystemctl:
    """Records each call, and which unit files existed when it came; answers by prefix."""

    directory: Path
    answers: dict[str, CommandResult] = field(default_factory=dict)
    calls: list[list[str]] = field(default_factory=list)
    files: list[list[str]] = field(default_factory=list)

    def __call__(self, args: Sequence[str]) -> CommandResult:
        self.calls.append(list(args))
        present = self.directory.iterdir() if self.directory.is_dir() else iter(())
        self.files.append(sorted(path.name for path in present))
        said = " ".join(arg for arg in args[1:] if arg != "--user")
        for prefix, answer in self.answers.items():
            if said.startswith(prefix):
                return answer
        return CommandResult(0, "", "")


BOTH = ["nicupdate-client.service", "nicupdate-client.timer"]
NOT_BOOTED = CommandResult(
    1,
    "",
    "System has not been booted with systemd as init system (PID 1). Can't operate.\n"
    "Failed to connect to bus: Host is down\n",
)


def systemctl(system: bool, *args: str) -> list[str]:
    return ["systemctl", *args] if system else ["systemctl", "--user", *args]


@pytest.mark.parametrize("system", [True, False], ids=["system", "user"])
def test_install_writes_units_then_enables_the_timer(system: bool, tmp_path: Path) -> None:
    units = tmp_path / "a" / "systemd"  # created as needed
    runner = FakeSystemctl(units)
    command = systemd.client_command(CONFIG, system=system)
    secret = SECRET if system else None
    written = systemd.install_timer(
        command, system=system, runner=runner, secret_file=secret, directory=units
    )
    assert written == [units / "nicupdate-client.service", units / "nicupdate-client.timer"]
    assert runner.calls == [
        systemctl(system, "daemon-reload"),
        systemctl(system, "enable", "--now", "nicupdate-client.timer"),
    ]
    assert runner.files == [BOTH, BOTH]  # written before systemd was told to reload
    service = written[0].read_text(encoding="utf-8")
    assert service == systemd.service_unit(command, system=system, secret_file=secret)
    assert written[1].read_text(encoding="utf-8") == systemd.timer_unit()
    assert written[0].stat().st_mode & 0o777 == 0o644
    assert ("LoadCredential=nicupdate-secret:" in service) is system


def test_install_without_systemd_suggests_cron_and_leaves_nothing(tmp_path: Path) -> None:
    runner = FakeSystemctl(tmp_path, {"daemon-reload": NOT_BOOTED})
    with pytest.raises(CommandError) as raised:
        systemd.install_timer([PYTHON], system=True, runner=runner, directory=tmp_path)
    message = str(raised.value)
    assert "systemd is not running on this system" in message
    assert "nicupdate-client install-timer --cron" in message
    assert "crontab -e" in message
    assert runner.calls == [["systemctl", "daemon-reload"]]
    assert list(tmp_path.iterdir()) == []


def test_install_without_systemctl_suggests_cron(tmp_path: Path) -> None:
    missing = CommandResult(127, "", "systemctl: command not found")
    runner = FakeSystemctl(tmp_path, {"daemon-reload": missing})
    with pytest.raises(CommandError, match=r"systemctl was not found.*install-timer --cron"):
        systemd.install_timer([PYTHON], system=False, runner=runner, directory=tmp_path)


def test_install_without_a_user_session_says_so(tmp_path: Path) -> None:
    no_bus = CommandResult(1, "", "Failed to connect to bus: No medium found\n")
    runner = FakeSystemctl(tmp_path, {"daemon-reload": no_bus})
    with pytest.raises(CommandError) as raised:
        systemd.install_timer([PYTHON], system=False, runner=runner, directory=tmp_path)
    message = str(raised.value)
    assert message.startswith("systemctl --user daemon-reload: cannot reach your user's systemd")
    assert "No medium found" in message
    assert "login session" in message
    assert "install-timer --cron" in message


def test_install_passes_on_what_systemctl_said(tmp_path: Path) -> None:
    denied = CommandResult(1, "", "Failed to enable unit: Access denied\n")
    runner = FakeSystemctl(tmp_path, {"enable": denied})
    with pytest.raises(CommandError) as raised:
        systemd.install_timer([PYTHON], system=True, runner=runner, directory=tmp_path)
    assert str(raised.value) == "systemctl enable: Failed to enable unit: Access denied"
    assert list(tmp_path.iterdir()) == []  # a fresh install is taken back


def test_a_failed_reinstall_keeps_the_units(tmp_path: Path) -> None:
    systemd.install_timer([PYTHON], system=True, runner=FakeSystemctl(tmp_path), directory=tmp_path)
    denied = CommandResult(1, "", "Failed to enable unit: Access denied\n")
    runner = FakeSystemctl(tmp_path, {"enable": denied})
    with pytest.raises(CommandError):
        systemd.install_timer([PYTHON], system=True, runner=runner, directory=tmp_path)
    assert sorted(path.name for path in tmp_path.iterdir()) == BOTH


@pytest.mark.parametrize("system", [True, False], ids=["system", "user"])
def test_remove_undoes_install(system: bool, tmp_path: Path) -> None:
    systemd.install_timer(
        [PYTHON], system=system, runner=FakeSystemctl(tmp_path), directory=tmp_path
    )
    runner = FakeSystemctl(tmp_path)
    assert systemd.remove_timer(system=system, runner=runner, directory=tmp_path) is True
    assert runner.calls == [
        systemctl(system, "disable", "--now", "nicupdate-client.timer"),
        systemctl(system, "stop", "nicupdate-client.service"),
        systemctl(system, "daemon-reload"),
        systemctl(system, "reset-failed", "nicupdate-client.timer", "nicupdate-client.service"),
    ]
    assert runner.files == [BOTH, BOTH, [], []]  # gone before the reload
    assert list(tmp_path.iterdir()) == []


def test_remove_ignores_units_systemd_no_longer_knows(tmp_path: Path) -> None:
    (tmp_path / "nicupdate-client.timer").write_text(systemd.timer_unit(), encoding="utf-8")
    gone = "Failed to disable unit: Unit file nicupdate-client.timer does not exist.\n"
    not_loaded = "Unit nicupdate-client.service not loaded.\n"
    answers = {
        "disable": CommandResult(1, "", gone),
        "stop": CommandResult(5, "", f"Failed to stop nicupdate-client.service: {not_loaded}"),
        "reset-failed": CommandResult(1, "", f"Failed to reset failed state: {not_loaded}"),
    }
    runner = FakeSystemctl(tmp_path, answers)
    assert systemd.remove_timer(system=True, runner=runner, directory=tmp_path) is True
    assert len(runner.calls) == 4
    assert list(tmp_path.iterdir()) == []


def test_remove_with_nothing_installed(tmp_path: Path) -> None:
    runner = FakeSystemctl(tmp_path)
    assert systemd.remove_timer(system=False, runner=runner, directory=tmp_path) is False
    assert systemd.remove_timer(system=True, runner=runner, directory=tmp_path / "no") is False
    assert runner.calls == []


@pytest.mark.parametrize(
    "answer", [CommandResult(1, "", "Failed to disable unit: Access denied\n"), NOT_BOOTED]
)
def test_remove_stops_when_systemd_refuses(answer: CommandResult, tmp_path: Path) -> None:
    systemd.install_timer([PYTHON], system=True, runner=FakeSystemctl(tmp_path), directory=tmp_path)
    runner = FakeSystemctl(tmp_path, {"disable": answer})
    with pytest.raises(CommandError, match="systemctl"):
        systemd.remove_timer(system=True, runner=runner, directory=tmp_path)
    assert sorted(path.name for path in tmp_path.iterdir()) == BOTH
    assert len(runner.calls) == 1


# --- status -----------------------------------------------------------------------------

SHOW_TIMER = [
    *("show", "nicupdate-client.timer", "-p", "ActiveState", "-p", "LoadState"),
    *("-p", "NextElapseUSecRealtime", "-p", "NextElapseUSecMonotonic", "-p", "LastTriggerUSec"),
]
SHOW_SERVICE = ["show", "nicupdate-client.service", "-p", "Result"]


def show(**values: str) -> CommandResult:
    return CommandResult(0, "".join(f"{key}={value}\n" for key, value in values.items()), "")


@pytest.mark.parametrize("system", [True, False], ids=["system", "user"])
def test_status_of_a_timer_that_ran(system: bool, tmp_path: Path) -> None:
    timer = show(
        ActiveState="active",
        LoadState="loaded",
        NextElapseUSecRealtime="Mon 2024-05-13 10:20:03 CEST",
        NextElapseUSecMonotonic="2h 5min 3.250000s",
        LastTriggerUSec="Mon 2024-05-13 10:15:03 CEST",
    )
    answers = {
        "show nicupdate-client.timer": timer,
        "show nicupdate-client.service": show(Result="exit-code"),
    }
    runner = FakeSystemctl(tmp_path, answers)
    assert systemd.timer_status(system=system, runner=runner) == systemd.TimerStatus(
        active="active",
        next_run="Mon 2024-05-13 10:20:03 CEST",
        last_run="Mon 2024-05-13 10:15:03 CEST",
        last_result="exit-code",
    )
    assert runner.calls == [systemctl(system, *SHOW_TIMER), systemctl(system, *SHOW_SERVICE)]


def test_status_of_a_monotonic_timer_computes_the_next_run(tmp_path: Path) -> None:
    # systemd gives a monotonic timer's next run only as time since boot.
    timer = show(
        ActiveState="active",
        LoadState="loaded",
        NextElapseUSecRealtime="",
        NextElapseUSecMonotonic="1d 2h 5min 3.250000s",
        LastTriggerUSec="n/a",
    )
    answers = {
        "show nicupdate-client.timer": timer,
        "show nicupdate-client.service": show(Result="success"),
    }
    since_boot = timedelta(days=1, hours=2, minutes=5, seconds=3.25).total_seconds()
    now = datetime(2024, 5, 13, 10, 0, 0, tzinfo=UTC)
    status = systemd.timer_status(
        system=True,
        runner=FakeSystemctl(tmp_path, answers),
        now=now,
        monotonic=since_boot - 125.0,
    )
    assert status == systemd.TimerStatus(
        active="active", next_run="Mon 2024-05-13 10:02:05 UTC", last_run=None, last_result=None
    )


def test_status_of_a_stopped_timer(tmp_path: Path) -> None:
    timer = show(
        ActiveState="inactive",
        LoadState="loaded",
        NextElapseUSecRealtime="",
        NextElapseUSecMonotonic="infinity",
        LastTriggerUSec="",
    )
    answers = {
        "show nicupdate-client.timer": timer,
        "show nicupdate-client.service": show(Result="success"),
    }
    status = systemd.timer_status(system=False, runner=FakeSystemctl(tmp_path, answers))
    assert status == systemd.TimerStatus("inactive", None, None, None)


def test_status_without_a_timer(tmp_path: Path) -> None:
    timer = show(ActiveState="inactive", LoadState="not-found", NextElapseUSecRealtime="")
    runner = FakeSystemctl(tmp_path, {"show nicupdate-client.timer": timer})
    assert systemd.timer_status(system=False, runner=runner) is None
    assert runner.calls == [systemctl(False, *SHOW_TIMER)]


def test_status_without_systemd(tmp_path: Path) -> None:
    runner = FakeSystemctl(tmp_path, {"show": NOT_BOOTED})
    with pytest.raises(CommandError, match="systemd is not running"):
        systemd.timer_status(system=True, runner=runner)


# --- cron -------------------------------------------------------------------------------


def test_cron_lines() -> None:
    command = systemd.client_command(Path(AWKWARD), system=False)
    text = systemd.cron_lines(command)
    comment, every, reboot = text.splitlines()
    assert text.endswith("\n")
    assert comment.startswith("#") and "crontab -e" in comment
    assert every.startswith("*/5 * * * * ")
    assert reboot.startswith("@reboot sleep 30 && ")
    for line, prefix in ((every, "*/5 * * * * "), (reboot, "@reboot sleep 30 && ")):
        assert re.search(r"(?<!\\)%", line) is None  # cron would cut the line there
        assert line.endswith(" >/dev/null 2>&1")
        run = line.removeprefix(prefix).removesuffix(" >/dev/null 2>&1")
        assert shlex.split(run.replace("\\%", "%")) == command


def test_cron_lines_reject_line_breaks() -> None:
    with pytest.raises(ValueError, match="line break"):
        systemd.cron_lines([PYTHON, "a\nb"])
