"""The Windows scheduled task: its XML, the schtasks/PowerShell calls, the Windows build."""

from __future__ import annotations

import codecs
import subprocess
import sys
import time
import types
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path, PureWindowsPath
from typing import Any

import nicupdate_client
import pytest
from nicupdate_client import wintask
from nicupdate_client.runner import CommandError, CommandResult
from nicupdate_client.wintask import TaskAction, TaskStatus

NS = "{http://schemas.microsoft.com/windows/2004/02/mit/task}"
ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "windows"
CONFIG = PureWindowsPath(r"C:\Users\Ann Lee\AppData\Roaming\nicupdate\client.toml")
SYSTEM_CONFIG = PureWindowsPath(r"C:\ProgramData\nicupdate\client.toml")
PYTHON = r"C:\Program Files\Python311\python.exe"
START = datetime(2024, 5, 1, 12, 0, 7, 123456)


@pytest.fixture
def utc_plus_two(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Pin the local time zone to UTC+2 (POSIX TZ), so local-time conversions show."""
    if not hasattr(time, "tzset"):
        pytest.skip("time.tzset() is not available on this platform")
    monkeypatch.setenv("TZ", "XST-2")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


class FakeRunner:
    """Records every call and answers from a list of (program, verb) -> result rules."""

    def __init__(self, answers: dict[str, CommandResult] | None = None) -> None:
        self.answers = answers or {}
        self.calls: list[list[str]] = []
        self.on_call: Callable[[list[str]], None] | None = None

    def __call__(self, args: Sequence[str]) -> CommandResult:
        call = list(args)
        self.calls.append(call)
        if self.on_call is not None:
            self.on_call(call)
        verb = call[1] if call[0] == "schtasks" else call[0]
        return self.answers.get(verb, CommandResult(0, "", ""))


def written(xml: str, tmp_path: Path) -> ET.Element:
    """Write the XML as install_task does, check the encoding, parse it back."""
    path = tmp_path / "task.xml"
    wintask.write_task_xml(xml, path)
    raw = path.read_bytes()
    assert raw.startswith(codecs.BOM_UTF16_LE)
    text = raw.decode("utf-16")
    assert text.startswith('<?xml version="1.0" encoding="UTF-16"?>\r\n')
    assert "\n" not in text.replace("\r\n", "")  # CRLF only
    return ET.fromstring(raw)


def child(element: ET.Element, path: str) -> ET.Element:
    found = element.find("/".join(NS + part for part in path.split("/")))
    assert found is not None, f"no {path} in {element.tag}"
    return found


def text(element: ET.Element, path: str) -> str | None:
    return child(element, path).text


def user_task(tmp_path: Path, **kwargs: Any) -> ET.Element:
    action = wintask.task_action(CONFIG, system=False, executable=PYTHON, frozen=False)
    xml = wintask.task_xml(action, system=False, user_id=r"PC\ann", start=START, **kwargs)
    return written(xml, tmp_path)


def system_task(tmp_path: Path) -> ET.Element:
    action = wintask.task_action(SYSTEM_CONFIG, system=True, executable=PYTHON, frozen=False)
    return written(wintask.task_xml(action, system=True, user_id=None, start=START), tmp_path)


# --- the action ------------------------------------------------------------------------


def test_unfrozen_action_runs_pythonw_next_to_python_with_a_quoted_config_path() -> None:
    action = wintask.task_action(CONFIG, system=False, executable=PYTHON, frozen=False)
    assert action == TaskAction(
        command=r"C:\Program Files\Python311\pythonw.exe",
        arguments=("-m", "nicupdate_client", "run", "--once", "--config", str(CONFIG)),
        working_directory=r"C:\Program Files\Python311",
    )
    assert action.arguments_line == (
        r'-m nicupdate_client run --once --config "C:\Users\Ann Lee\AppData\Roaming'
        r'\nicupdate\client.toml"'
    )


@pytest.mark.parametrize(
    ("executable", "windowed"),
    [
        (r"C:\venv\Scripts\python.exe", r"C:\venv\Scripts\pythonw.exe"),
        (r"C:\venv\Scripts\pythonw.exe", r"C:\venv\Scripts\pythonw.exe"),
        (r"C:\Py\python3.11.exe", r"C:\Py\pythonw3.11.exe"),
    ],
)
def test_unfrozen_action_picks_the_windowless_interpreter(executable: str, windowed: str) -> None:
    action = wintask.task_action(CONFIG, system=False, executable=executable, frozen=False)
    assert action.command == windowed
    assert action.working_directory == str(PureWindowsPath(executable).parent)


def test_system_action_passes_system() -> None:
    action = wintask.task_action(SYSTEM_CONFIG, system=True, executable=PYTHON, frozen=False)
    assert action.arguments[2:] == ("run", "--once", "--config", str(SYSTEM_CONFIG), "--system")
    assert action.arguments_line.endswith(r"--config C:\ProgramData\nicupdate\client.toml --system")


def test_frozen_action_runs_the_windowed_executable() -> None:
    exe = r"C:\Program Files\nicupdate-client\nicupdate-client.exe"
    action = wintask.task_action(CONFIG, system=True, executable=exe, frozen=True)
    assert action == TaskAction(
        command=r"C:\Program Files\nicupdate-client\nicupdate-clientw.exe",
        arguments=("run", "--once", "--config", str(CONFIG), "--system"),
        working_directory=r"C:\Program Files\nicupdate-client",
    )


def test_action_defaults_to_this_interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "executable", r"D:\tools\python.exe")
    assert wintask.task_action(CONFIG, system=False).command == r"D:\tools\pythonw.exe"
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    assert wintask.task_action(CONFIG, system=False).command == r"D:\tools\nicupdate-clientw.exe"


# --- the task XML ----------------------------------------------------------------------


def test_user_task_xml(tmp_path: Path) -> None:
    task = user_task(tmp_path)
    assert task.tag == NS + "Task"
    assert task.get("version") == "1.2"
    assert text(task, "RegistrationInfo/URI") == "\\nicupdate-client"
    assert "nicupdate" in (text(task, "RegistrationInfo/Description") or "")

    triggers = child(task, "Triggers")
    assert [t.tag.removeprefix(NS) for t in triggers] == [
        "TimeTrigger",
        "EventTrigger",
        "LogonTrigger",
    ]
    timer = child(triggers, "TimeTrigger")
    assert text(timer, "StartBoundary") == "2024-05-01T12:00:07"
    assert text(timer, "Enabled") == "true"
    assert text(timer, "Repetition/Interval") == "PT5M"
    assert text(timer, "Repetition/StopAtDurationEnd") == "false"
    assert timer.find(f"{NS}Repetition/{NS}Duration") is None  # repeat indefinitely
    assert timer.find(f"{NS}EndBoundary") is None
    network = child(triggers, "EventTrigger")
    assert text(network, "Enabled") == "true"
    assert text(network, "Delay") == "PT30S"
    assert text(network, "Subscription") == wintask.network_subscription()
    logon = child(triggers, "LogonTrigger")
    assert text(logon, "UserId") == r"PC\ann"
    assert text(logon, "Delay") == "PT30S"
    assert text(logon, "Enabled") == "true"

    principals = child(task, "Principals")
    assert len(principals) == 1
    principal = child(principals, "Principal")
    assert principal.get("id") == "Author"
    assert text(principal, "UserId") == r"PC\ann"
    assert text(principal, "LogonType") == "InteractiveToken"  # not S4U: keeps the vault
    assert text(principal, "RunLevel") == "LeastPrivilege"

    actions = child(task, "Actions")
    assert actions.get("Context") == "Author"
    assert [a.tag for a in actions] == [NS + "Exec"]
    assert text(actions, "Exec/Command") == r"C:\Program Files\Python311\pythonw.exe"
    assert text(actions, "Exec/Arguments") == (
        r'-m nicupdate_client run --once --config "C:\Users\Ann Lee\AppData\Roaming'
        r'\nicupdate\client.toml"'
    )
    assert text(actions, "Exec/WorkingDirectory") == r"C:\Program Files\Python311"


@pytest.mark.parametrize("make", [user_task, system_task])
def test_settings(tmp_path: Path, make: Callable[[Path], ET.Element]) -> None:
    settings = child(make(tmp_path), "Settings")
    expected = {
        "MultipleInstancesPolicy": "IgnoreNew",
        "DisallowStartIfOnBatteries": "false",
        "StopIfGoingOnBatteries": "false",
        "AllowHardTerminate": "true",
        "StartWhenAvailable": "true",
        "RunOnlyIfNetworkAvailable": "false",
        "IdleSettings/StopOnIdleEnd": "false",
        "IdleSettings/RestartOnIdle": "false",
        "AllowStartOnDemand": "true",
        "Enabled": "true",
        "Hidden": "false",
        "RunOnlyIfIdle": "false",
        "WakeToRun": "false",
        "ExecutionTimeLimit": "PT5M",
        "Priority": "7",
    }
    assert {path: text(settings, path) for path in expected} == expected
    assert len(settings) == len(expected) - 1  # the two idle settings share one element


def test_system_task_xml(tmp_path: Path) -> None:
    task = system_task(tmp_path)
    triggers = child(task, "Triggers")
    assert [t.tag.removeprefix(NS) for t in triggers] == [
        "TimeTrigger",
        "EventTrigger",
        "BootTrigger",
    ]
    assert text(triggers, "BootTrigger/Delay") == "PT1M"
    assert text(triggers, "BootTrigger/Enabled") == "true"
    principal = child(task, "Principals/Principal")
    assert text(principal, "UserId") == "S-1-5-18"
    assert text(principal, "RunLevel") == "HighestAvailable"
    assert principal.find(NS + "LogonType") is None
    assert (text(task, "Actions/Exec/Arguments") or "").endswith(" --system")


def test_network_subscription_is_a_query_for_network_connected_events(tmp_path: Path) -> None:
    subscription = text(user_task(tmp_path), "Triggers/EventTrigger/Subscription")
    assert subscription is not None
    query_list = ET.fromstring(subscription)  # the escaped text is XML itself
    assert query_list.tag == "QueryList"
    query = query_list.find("Query")
    assert query is not None
    assert query.get("Path") == "Microsoft-Windows-NetworkProfile/Operational"
    select = query.find("Select")
    assert select is not None
    assert select.get("Path") == "Microsoft-Windows-NetworkProfile/Operational"
    assert select.text == (
        "*[System[Provider[@Name='Microsoft-Windows-NetworkProfile'] and EventID=10000]]"
    )


def test_network_delay_and_interval_are_configurable(tmp_path: Path) -> None:
    task = user_task(tmp_path, interval_minutes=15, network_delay_seconds=5)
    assert text(task, "Triggers/TimeTrigger/Repetition/Interval") == "PT15M"
    assert text(task, "Triggers/EventTrigger/Delay") == "PT5S"


@pytest.mark.parametrize(
    ("minutes", "interval"),
    [(1, "PT1M"), (59, "PT59M"), (60, "PT1H"), (90, "PT1H30M"), (1441, "P1DT1M"), (44640, "P31D")],
)
def test_interval_limits(tmp_path: Path, minutes: int, interval: str) -> None:
    task = user_task(tmp_path, interval_minutes=minutes)
    assert text(task, "Triggers/TimeTrigger/Repetition/Interval") == interval


@pytest.mark.parametrize("minutes", [0, -5, 44641])
def test_interval_out_of_range_is_refused(minutes: int) -> None:
    action = wintask.task_action(CONFIG, system=False, executable=PYTHON, frozen=False)
    with pytest.raises(ValueError, match=r"between 1 minute and 31 days .* got -?\d+ minutes"):
        wintask.task_xml(
            action, system=False, user_id=r"PC\ann", start=START, interval_minutes=minutes
        )


def test_user_task_needs_a_user() -> None:
    action = wintask.task_action(CONFIG, system=False, executable=PYTHON, frozen=False)
    with pytest.raises(ValueError, match="user"):
        wintask.task_xml(action, system=False, user_id=None, start=START)


@pytest.mark.usefixtures("utc_plus_two")
def test_start_boundary_is_local_time_without_offset(tmp_path: Path) -> None:
    action = wintask.task_action(CONFIG, system=False, executable=PYTHON, frozen=False)
    aware = datetime(2024, 5, 1, 10, 0, 7, tzinfo=UTC)
    xml = wintask.task_xml(action, system=False, user_id=r"PC\ann", start=aware)
    assert text(written(xml, tmp_path), "Triggers/TimeTrigger/StartBoundary") == (
        "2024-05-01T12:00:07"
    )


def test_xml_escapes_awkward_paths(tmp_path: Path) -> None:
    config = PureWindowsPath(r"C:\Users\A&B <x>\client.toml")
    action = wintask.task_action(config, system=False, executable=PYTHON, frozen=False)
    xml = wintask.task_xml(action, system=False, user_id=r"PC\A&B", start=START)
    task = written(xml, tmp_path)
    assert text(task, "Actions/Exec/Arguments") == action.arguments_line
    assert text(task, "Principals/Principal/UserId") == r"PC\A&B"


# --- schtasks --------------------------------------------------------------------------


def test_schtasks_arguments() -> None:
    path = Path("task.xml")
    assert wintask.create_args("t", path) == [
        "schtasks",
        "/Create",
        "/XML",
        "task.xml",
        "/TN",
        "t",
        "/F",
    ]
    assert wintask.query_args("t") == ["schtasks", "/Query", "/TN", "t", "/XML"]
    assert wintask.delete_args("t") == ["schtasks", "/Delete", "/TN", "t", "/F"]


def test_install_registers_the_xml_and_removes_the_temp_file(tmp_path: Path) -> None:
    workdir = tmp_path / "state"
    runner = FakeRunner()
    seen: dict[str, Any] = {}

    def look(call: list[str]) -> None:
        xml_path = Path(call[3])
        seen["dir"] = xml_path.parent
        seen["task"] = ET.fromstring(xml_path.read_bytes())
        seen["bom"] = xml_path.read_bytes()[:2]

    runner.on_call = look
    action = wintask.task_action(CONFIG, system=False, executable=PYTHON, frozen=False)
    wintask.install_task(
        action, system=False, user_id=r"PC\ann", runner=runner, workdir=workdir, now=START
    )

    assert len(runner.calls) == 1
    (call,) = runner.calls
    assert call == wintask.create_args("nicupdate-client", Path(call[3]))
    assert seen["dir"] == workdir
    assert seen["bom"] == codecs.BOM_UTF16_LE
    assert text(seen["task"], "Actions/Exec/Command") == action.command
    assert text(seen["task"], "Triggers/TimeTrigger/StartBoundary") == "2024-05-01T12:00:07"
    assert list(workdir.iterdir()) == []


def test_install_uses_the_given_name_and_now_by_default(tmp_path: Path) -> None:
    runner = FakeRunner()
    boundaries: list[str | None] = []
    runner.on_call = lambda call: boundaries.append(
        text(ET.fromstring(Path(call[3]).read_bytes()), "Triggers/TimeTrigger/StartBoundary")
    )
    action = wintask.task_action(CONFIG, system=True, executable=PYTHON, frozen=False)
    before = datetime.now().replace(microsecond=0)
    wintask.install_task(
        action, system=True, user_id=None, runner=runner, workdir=tmp_path, name="x"
    )
    assert runner.calls[0][-3:] == ["/TN", "x", "/F"]
    assert boundaries[0] is not None
    started = datetime.fromisoformat(boundaries[0])
    assert before <= started <= datetime.now()


@pytest.mark.parametrize(
    ("system", "hint"),
    [(True, "elevated prompt (right-click"), (False, "remove it from an elevated prompt")],
)
def test_install_access_denied_explains(tmp_path: Path, system: bool, hint: str) -> None:
    runner = FakeRunner({"/Create": CommandResult(1, "", "ERROR: Access is denied.\r\n")})
    action = wintask.task_action(CONFIG, system=system, executable=PYTHON, frozen=False)
    with pytest.raises(CommandError) as caught:
        wintask.install_task(
            action, system=system, user_id=r"PC\ann", runner=runner, workdir=tmp_path
        )
    message = str(caught.value)
    assert message.startswith(
        "cannot register the scheduled task 'nicupdate-client': ERROR: Access is denied."
    )
    assert hint in message
    assert list(tmp_path.iterdir()) == []


def test_install_failure_passes_on_what_schtasks_said(tmp_path: Path) -> None:
    said = (
        "ERROR: The task XML contains a value which is incorrectly formatted.\r\n(8,42):Interval:"
    )
    runner = FakeRunner({"/Create": CommandResult(1, "", said)})
    action = wintask.task_action(CONFIG, system=False, executable=PYTHON, frozen=False)
    with pytest.raises(
        CommandError, match=r"incorrectly formatted\. \(8,42\):Interval:$"
    ) as caught:
        wintask.install_task(
            action, system=False, user_id=r"PC\ann", runner=runner, workdir=tmp_path
        )
    assert "elevated" not in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_install_removes_the_temp_file_when_the_runner_raises(tmp_path: Path) -> None:
    def explode(args: Sequence[str]) -> CommandResult:
        raise OSError("boom")

    action = wintask.task_action(CONFIG, system=False, executable=PYTHON, frozen=False)
    with pytest.raises(OSError, match="boom"):
        wintask.install_task(
            action, system=False, user_id=r"PC\ann", runner=explode, workdir=tmp_path
        )
    assert list(tmp_path.iterdir()) == []


def test_remove_deletes_an_existing_task() -> None:
    runner = FakeRunner({"/Query": CommandResult(0, "<?xml ...?><Task/>", "")})
    assert wintask.remove_task(runner=runner) is True
    assert runner.calls == [
        ["schtasks", "/Query", "/TN", "nicupdate-client", "/XML"],
        ["schtasks", "/Delete", "/TN", "nicupdate-client", "/F"],
    ]


def test_remove_a_missing_task_is_false() -> None:
    missing = CommandResult(1, "", "ERROR: The system cannot find the file specified.\r\n")
    runner = FakeRunner({"/Query": missing})
    assert wintask.remove_task(runner=runner, name="other") is False
    assert runner.calls == [["schtasks", "/Query", "/TN", "other", "/XML"]]


def test_remove_failures_raise() -> None:
    denied = CommandResult(1, "", "ERROR: Access is denied.\r\n")
    runner = FakeRunner({"/Delete": denied})
    with pytest.raises(
        CommandError, match=r"^cannot remove the scheduled task 'nicupdate-client': ERROR: Access"
    ):
        wintask.remove_task(runner=runner)
    runner = FakeRunner({"/Query": denied})
    with pytest.raises(CommandError, match=r"cannot look up .*Access is denied"):
        wintask.remove_task(runner=runner)
    assert runner.calls == [wintask.query_args("nicupdate-client")]


# --- status ----------------------------------------------------------------------------


def powershell_says(stdout: str, returncode: int = 0, stderr: str = "") -> FakeRunner:
    return FakeRunner({"powershell": CommandResult(returncode, stdout, stderr)})


def local(moment: datetime) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M")


def test_status_asks_powershell_for_json() -> None:
    runner = powershell_says('{"State":"Ready","LastRunTime":null,"LastTaskResult":0}')
    wintask.task_status(runner=runner, name="it's")
    assert runner.calls == [
        [
            "powershell",
            "-NoProfile",
            "-NonInteractive",
            "-Command",
            "$t = Get-ScheduledTask -TaskName 'it''s' -ErrorAction Stop; "
            "$i = $t | Get-ScheduledTaskInfo; "
            "[pscustomobject]@{State=[string]$t.State; LastRunTime=$i.LastRunTime; "
            "LastTaskResult=$i.LastTaskResult; NextRunTime=$i.NextRunTime} "
            "| ConvertTo-Json -Compress",
        ]
    ]


@pytest.mark.usefixtures("utc_plus_two")
def test_status_windows_powershell_dates() -> None:
    runner = powershell_says(
        r'{"State":"Ready","LastRunTime":"\/Date(1700000000000)\/","LastTaskResult":0,'
        r'"NextRunTime":"\/Date(1700000300000)\/"}'
    )
    status = wintask.task_status(runner=runner)
    assert status == TaskStatus("Ready", "2023-11-15 00:13", 0, "2023-11-15 00:18")


@pytest.mark.usefixtures("utc_plus_two")
def test_status_powershell_7_dates() -> None:
    runner = powershell_says(
        '{"State":"Running","LastRunTime":"2023-11-14T23:13:20.1234567+01:00",'
        '"LastTaskResult":267009,"NextRunTime":"2023-11-15T00:18:20"}'
    )
    status = wintask.task_status(runner=runner)
    assert status == TaskStatus("Running", "2023-11-15 00:13", 267009, "2023-11-15 00:18")


def test_status_dates_in_any_local_zone() -> None:
    runner = powershell_says(
        r'{"State":"Ready","LastRunTime":"\/Date(1700000000000)\/","LastTaskResult":1,'
        '"NextRunTime":"2023-11-14T23:13:20Z"}'
    )
    expected = local(datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC))
    status = wintask.task_status(runner=runner)
    assert status is not None
    assert status.last_run == expected
    assert status.next_run == local(datetime(2023, 11, 14, 23, 13, 20, tzinfo=UTC))


def test_status_of_a_task_that_never_ran() -> None:
    # Windows PowerShell renders 1999-11-30 00:00 local time (here UTC+1) as UTC milliseconds.
    never = int(datetime(1999, 11, 30, tzinfo=timezone(timedelta(hours=1))).timestamp() * 1000)
    runner = powershell_says(
        f'{{"State":"Ready","LastRunTime":"\\/Date({never})\\/","LastTaskResult":267011,'
        '"NextRunTime":null}'
    )
    assert wintask.task_status(runner=runner) == TaskStatus("Ready", None, 267011, None)
    runner = powershell_says(
        '{"State":"Disabled","LastRunTime":"1999-11-30T00:00:00+01:00","LastTaskResult":267011}'
    )
    assert wintask.task_status(runner=runner) == TaskStatus("Disabled", None, 267011, None)


def test_status_of_a_missing_task_is_none() -> None:
    runner = powershell_says(
        "",
        1,
        "Get-ScheduledTask : No MSFT_ScheduledTask objects found with property 'TaskName' "
        "equal to 'nicupdate-client'.\r\n",
    )
    assert wintask.task_status(runner=runner) is None


def test_status_without_powershell_raises() -> None:
    runner = powershell_says("", 127, "powershell: command not found")
    with pytest.raises(CommandError, match="powershell: command not found"):
        wintask.task_status(runner=runner)


def test_status_garbage_raises() -> None:
    with pytest.raises(CommandError, match="unexpected answer from PowerShell"):
        wintask.task_status(runner=powershell_says("WARNING: something\r\n"))


# --- small helpers ---------------------------------------------------------------------


def test_current_user() -> None:
    assert wintask.current_user({"USERDOMAIN": "PC", "USERNAME": "ann"}) == r"PC\ann"
    assert wintask.current_user({"COMPUTERNAME": "BOX", "USERNAME": "ann"}) == r"BOX\ann"
    assert wintask.current_user({"USERNAME": "ann"}) == "ann"
    with pytest.raises(ValueError, match="USERNAME is not set"):
        wintask.current_user({"USERDOMAIN": "PC"})


def test_protect_file_args() -> None:
    path = Path("client.secret")
    assert wintask.protect_file_args(path) == [
        "icacls",
        "client.secret",
        "/inheritance:r",
        "/grant:r",
        "*S-1-5-18:F",
        "*S-1-5-32-544:F",
    ]


# --- the Windows build -----------------------------------------------------------------


class _Built(types.SimpleNamespace):
    pass


def test_spec_builds_two_executables_into_one_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    spec = DEPLOY / "nicupdate-client.spec"
    source = spec.read_text(encoding="utf-8")
    code = compile(source, str(spec), "exec")

    built: dict[str, Any] = {"exe": [], "metadata": [], "submodules": []}
    hooks = types.ModuleType("PyInstaller.utils.hooks")

    def collect_submodules(name: str) -> list[str]:
        built["submodules"].append(name)
        return [f"{name}.x"]

    def copy_metadata(name: str) -> list[tuple[str, str]]:
        built["metadata"].append(name)
        return [(f"{name}-meta", ".")]

    hooks.collect_submodules = collect_submodules
    hooks.copy_metadata = copy_metadata
    monkeypatch.setitem(sys.modules, "PyInstaller", types.ModuleType("PyInstaller"))
    monkeypatch.setitem(sys.modules, "PyInstaller.utils", types.ModuleType("PyInstaller.utils"))
    monkeypatch.setitem(sys.modules, "PyInstaller.utils.hooks", hooks)

    def analysis(scripts: list[str], **kwargs: Any) -> _Built:
        built["analysis"] = _Built(scripts=scripts, **kwargs)
        return _Built(pure="pure", scripts="scripts", binaries="binaries", datas=kwargs["datas"])

    def exe(*args: Any, **kwargs: Any) -> _Built:
        made = _Built(args=args, **kwargs)
        built["exe"].append(made)
        return made

    def collect(*args: Any, **kwargs: Any) -> _Built:
        built["collect"] = _Built(args=args, **kwargs)
        return built["collect"]

    monkeypatch.chdir(tmp_path)  # the spec must not depend on the working directory
    namespace = {
        "__name__": "__main__",
        "SPECPATH": str(DEPLOY),
        "Analysis": analysis,
        "PYZ": lambda pure: ("pyz", pure),
        "EXE": exe,
        "COLLECT": collect,
    }
    exec(code, namespace)

    found = built["analysis"]
    assert [Path(s) for s in found.scripts] == [DEPLOY / "entry.py"]
    assert all(Path(p).is_dir() for p in found.pathex)
    assert "keyring.backends.Windows" in found.hiddenimports
    assert "keyring.backends" in built["submodules"]
    assert "keyring.backends.x" in found.hiddenimports
    assert built["metadata"] == ["keyring"]
    assert ("keyring-meta", ".") in found.datas

    exes = {made.name: made for made in built["exe"]}
    assert {name: made.console for name, made in exes.items()} == {
        "nicupdate-client": True,
        "nicupdate-clientw": False,
    }
    assert all(made.exclude_binaries for made in exes.values())  # onedir, not onefile
    folder = built["collect"]
    assert folder.name == "nicupdate-client"
    assert folder.args[:2] == (exes["nicupdate-client"], exes["nicupdate-clientw"])
    assert folder.args[2:] == ("binaries", found.datas)


def test_entry_script_runs_the_cli() -> None:
    done = subprocess.run(
        [sys.executable, str(DEPLOY / "entry.py"), "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"nicupdate-client {nicupdate_client.__version__}"


def test_workflow_tests_builds_and_ships_the_windows_client() -> None:
    workflow = (ROOT / ".github" / "workflows" / "windows-client.yml").read_text(encoding="utf-8")
    assert "\t" not in workflow
    for needed in [
        "runs-on: windows-latest",
        "actions/checkout@v4",
        "actions/setup-python@v5",
        'python-version: "3.11"',
        'pip install -e ".[server,test]" pyinstaller',
        "python -m pytest tests/client -q",
        "pyinstaller deploy/windows/nicupdate-client.spec --noconfirm",
        r"dist\nicupdate-client\nicupdate-client.exe --version",
        "Compress-Archive",
        "nicupdate-client-windows.zip",
        "actions/upload-artifact@v4",
    ]:
        assert needed in workflow, needed
    assert (ROOT / "deploy" / "windows" / "nicupdate-client.spec").is_file()
    assert (ROOT / "tests" / "client").is_dir()
