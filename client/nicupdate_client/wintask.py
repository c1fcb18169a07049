"""The Windows Task Scheduler task that runs ``nicupdate-client run --once``.

The task runs every few minutes and whenever a network connects, with no console window
(``pythonw.exe`` or the windowed ``nicupdate-clientw.exe``), catches up after sleep
(``StartWhenAvailable``) and survives reboots. It is registered from an XML definition
with ``schtasks``; everything here but the injected :data:`~.runner.Runner` is pure, so it
is tested on any platform.

A per-user task runs with the user's interactive token, so the secret in the user's
Credential Manager stays reachable; a ``--system`` task runs as SYSTEM and reads a secret
file that :func:`protect_file_args` locks down.
"""

from __future__ import annotations

import codecs
import json
import os
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePath, PureWindowsPath
from typing import Any

from .runner import CommandError, CommandResult, Runner

TASK_NAME = "nicupdate-client"
TASK_NAMESPACE = "http://schemas.microsoft.com/windows/2004/02/mit/task"
WINDOWED_EXE = "nicupdate-clientw.exe"
SYSTEM_SID = "S-1-5-18"
ADMINISTRATORS_SID = "S-1-5-32-544"
NETWORK_CHANNEL = "Microsoft-Windows-NetworkProfile/Operational"
# Event 10000 of the NetworkProfile provider: a network connected.
NETWORK_QUERY = "*[System[Provider[@Name='Microsoft-Windows-NetworkProfile'] and EventID=10000]]"
MAX_INTERVAL_MINUTES = 31 * 24 * 60  # the schema allows PT1M .. P31D
# Task Scheduler's "never" (LastRunTime of a task that has not run yet) is 1999-11-30.
_NEVER_BEFORE = datetime(2000, 1, 1)
_MISSING_TASK = "cannot find the file specified"
_MS_DATE = re.compile(r"^/Date\((-?\d+)(?:[+-]\d{4})?\)/$")


@dataclass(frozen=True)
class TaskAction:
    """The program the task starts, its arguments and its working directory."""

    command: str
    arguments: tuple[str, ...]
    working_directory: str | None

    @property
    def arguments_line(self) -> str:
        """The arguments quoted for a Windows command line."""
        return subprocess.list2cmdline(self.arguments)


@dataclass(frozen=True)
class TaskStatus:
    """What Task Scheduler says about the task; times are local ``YYYY-MM-DD HH:MM``."""

    state: str
    last_run: str | None
    last_result: int | None
    next_run: str | None


def task_action(
    config_path: PurePath,
    *,
    system: bool,
    executable: str | None = None,
    frozen: bool | None = None,
) -> TaskAction:
    """The windowless command the task runs: ``pythonw.exe -m nicupdate_client`` or the exe."""
    exe = PureWindowsPath(sys.executable if executable is None else executable)
    frozen = bool(getattr(sys, "frozen", False)) if frozen is None else frozen
    run = ["run", "--once", "--config", str(config_path), *(["--system"] if system else [])]
    if frozen:
        command = exe.with_name(WINDOWED_EXE)
        arguments = run
    else:
        command = exe.with_name(_windowed_python(exe.name))
        arguments = ["-m", "nicupdate_client", *run]
    return TaskAction(str(command), tuple(arguments), str(exe.parent))


def _windowed_python(name: str) -> str:
    # python.exe -> pythonw.exe, python3.11.exe -> pythonw3.11.exe; pythonw*.exe stays.
    lower = name.lower()
    if lower.startswith("python") and not lower.startswith("pythonw"):
        return name[:6] + "w" + name[6:]
    return name


def task_xml(
    action: TaskAction,
    *,
    system: bool,
    user_id: str | None,
    start: datetime,
    interval_minutes: int = 5,
    network_delay_seconds: int = 30,
) -> str:
    """The task definition (Task Scheduler schema 1.2) that ``schtasks /Create /XML`` reads."""
    interval = _interval(interval_minutes)
    if network_delay_seconds < 0:
        raise ValueError(f"network delay must not be negative, got {network_delay_seconds} s")
    if not system and not user_id:
        raise ValueError("a per-user task needs the user (DOMAIN\\user) it runs as")

    task = ET.Element("Task", {"version": "1.2", "xmlns": TASK_NAMESPACE})
    info = _sub(task, "RegistrationInfo")
    _sub(
        info,
        "Description",
        "Keeps this computer's address up to date on the nicupdate (dyndns2) server: "
        f"runs nicupdate-client every {interval_minutes} min and when a network connects.",
    )
    _sub(info, "URI", "\\" + TASK_NAME)

    triggers = _sub(task, "Triggers")
    # Children in the schema's sequence order: Enabled, StartBoundary, Repetition, own ones.
    timer = _sub(triggers, "TimeTrigger")
    _sub(timer, "Enabled", "true")
    _sub(timer, "StartBoundary", _local_iso(start))
    repetition = _sub(timer, "Repetition")
    _sub(repetition, "Interval", interval)
    _sub(repetition, "StopAtDurationEnd", "false")  # and no Duration: indefinitely
    network = _sub(triggers, "EventTrigger")
    _sub(network, "Enabled", "true")
    _sub(network, "Subscription", network_subscription())
    _sub(network, "Delay", f"PT{network_delay_seconds}S")
    if system:
        boot = _sub(triggers, "BootTrigger")
        _sub(boot, "Enabled", "true")
        _sub(boot, "Delay", "PT1M")
    else:
        logon = _sub(triggers, "LogonTrigger")
        _sub(logon, "Enabled", "true")
        _sub(logon, "UserId", user_id)
        _sub(logon, "Delay", "PT30S")

    principal = _sub(_sub(task, "Principals"), "Principal", id="Author")
    if system:
        _sub(principal, "UserId", SYSTEM_SID)
        _sub(principal, "RunLevel", "HighestAvailable")
    else:
        # Not S4U: only an interactive-token (or password) task reaches Credential Manager.
        _sub(principal, "UserId", user_id)
        _sub(principal, "LogonType", "InteractiveToken")
        _sub(principal, "RunLevel", "LeastPrivilege")

    settings = _sub(task, "Settings")
    for tag, value in [
        ("MultipleInstancesPolicy", "IgnoreNew"),
        ("DisallowStartIfOnBatteries", "false"),
        ("StopIfGoingOnBatteries", "false"),
        ("AllowHardTerminate", "true"),
        ("StartWhenAvailable", "true"),  # catch up on a run missed while asleep
        ("RunOnlyIfNetworkAvailable", "false"),
    ]:
        _sub(settings, tag, value)
    idle = _sub(settings, "IdleSettings")
    _sub(idle, "StopOnIdleEnd", "false")
    _sub(idle, "RestartOnIdle", "false")
    for tag, value in [
        ("AllowStartOnDemand", "true"),
        ("Enabled", "true"),
        ("Hidden", "false"),
        ("RunOnlyIfIdle", "false"),
        ("WakeToRun", "false"),
        ("ExecutionTimeLimit", "PT5M"),  # the default is 72 hours
        ("Priority", "7"),
    ]:
        _sub(settings, tag, value)

    execute = _sub(_sub(task, "Actions", Context="Author"), "Exec")
    _sub(execute, "Command", action.command)
    if action.arguments:
        _sub(execute, "Arguments", action.arguments_line)
    if action.working_directory:
        _sub(execute, "WorkingDirectory", action.working_directory)

    ET.indent(task)
    body = ET.tostring(task, encoding="unicode")
    return '<?xml version="1.0" encoding="UTF-16"?>\n' + body + "\n"


def network_subscription() -> str:
    """The event query (itself XML) that fires when a network connects."""
    query_list = ET.Element("QueryList")
    query = ET.SubElement(query_list, "Query", Id="0", Path=NETWORK_CHANNEL)
    ET.SubElement(query, "Select", Path=NETWORK_CHANNEL).text = NETWORK_QUERY
    return ET.tostring(query_list, encoding="unicode")


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrib: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attrib)
    element.text = text
    return element


def _interval(minutes: int) -> str:
    if not 1 <= minutes <= MAX_INTERVAL_MINUTES:
        raise ValueError(
            f"the task interval must be between 1 minute and 31 days "
            f"({MAX_INTERVAL_MINUTES} minutes), got {minutes} minutes"
        )
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    if minutes < 60:
        return f"PT{minutes}M"
    time = (f"{hours}H" if hours else "") + (f"{mins}M" if mins else "")
    return (f"P{days}D" if days else "P") + (f"T{time}" if time else "")


def _local_iso(moment: datetime) -> str:
    # Without an offset Task Scheduler reads the time as local time (and follows DST).
    if moment.tzinfo is not None:
        moment = moment.astimezone()
    return moment.replace(tzinfo=None, microsecond=0).isoformat(timespec="seconds")


def write_task_xml(xml: str, path: Path) -> None:
    """Write ``xml`` the way its declaration says: UTF-16 (little endian) with a BOM, CRLF."""
    text = xml.replace("\r\n", "\n").replace("\n", "\r\n")
    path.write_bytes(codecs.BOM_UTF16_LE + text.encode("utf-16-le"))


def create_args(name: str, xml_path: Path) -> list[str]:
    return ["schtasks", "/Create", "/XML", str(xml_path), "/TN", name, "/F"]


def query_args(name: str) -> list[str]:
    return ["schtasks", "/Query", "/TN", name, "/XML"]


def delete_args(name: str) -> list[str]:
    return ["schtasks", "/Delete", "/TN", name, "/F"]


def install_task(
    action: TaskAction,
    *,
    system: bool,
    user_id: str | None,
    runner: Runner,
    workdir: Path,
    name: str = TASK_NAME,
    now: datetime | None = None,
) -> None:
    """Register (or replace) the task; raise :class:`CommandError` when schtasks refuses."""
    xml = task_xml(
        action, system=system, user_id=user_id, start=datetime.now() if now is None else now
    )
    workdir.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix="nicupdate-task-", suffix=".xml", dir=workdir)
    os.close(handle)
    xml_path = Path(temp)
    try:
        write_task_xml(xml, xml_path)
        result = runner(create_args(name, xml_path))
    finally:
        xml_path.unlink(missing_ok=True)
    if not result.ok:
        message = f"cannot register the scheduled task {name!r}: {_said(result)}"
        if "access is denied" in message.lower():
            if system:
                message += (
                    "\nA --system task needs administrator rights: run this again from an "
                    "elevated prompt (right-click the terminal, Run as administrator)."
                )
            else:
                message += (
                    "\nA task of that name may have been created from an elevated prompt "
                    "(--system): remove it from an elevated prompt first."
                )
        raise CommandError(message)


def remove_task(*, runner: Runner, name: str = TASK_NAME) -> bool:
    """Delete the task: True when it was deleted, False when there was none."""
    query = runner(query_args(name))
    if not query.ok:
        said = _said(query)
        if _MISSING_TASK in said.lower():
            return False
        raise CommandError(f"cannot look up the scheduled task {name!r}: {said}")
    deleted = runner(delete_args(name))
    if not deleted.ok:
        hint = (
            " (run it from an elevated prompt)"
            if "access is denied" in _said(deleted).lower()
            else ""
        )
        raise CommandError(f"cannot remove the scheduled task {name!r}: {_said(deleted)}{hint}")
    return True


def status_args(name: str) -> list[str]:
    quoted = name.replace("'", "''")  # a PowerShell single-quoted string
    script = (
        f"$t = Get-ScheduledTask -TaskName '{quoted}' -ErrorAction Stop; "
        "$i = $t | Get-ScheduledTaskInfo; "
        "[pscustomobject]@{State=[string]$t.State; LastRunTime=$i.LastRunTime; "
        "LastTaskResult=$i.LastTaskResult; NextRunTime=$i.NextRunTime} | ConvertTo-Json -Compress"
    )
    return ["powershell", "-NoProfile", "-NonInteractive", "-Command", script]


def task_status(*, runner: Runner, name: str = TASK_NAME) -> TaskStatus | None:
    """The task's state, last and next run, or None when there is no such task."""
    result = runner(status_args(name))
    if result.returncode in (124, 127):  # PowerShell missing or hanging: not "no task"
        raise CommandError(f"cannot ask Task Scheduler about {name!r}: {_said(result)}")
    if not result.ok:
        return None
    try:
        data = json.loads(result.stdout)
    except ValueError as exc:
        raise CommandError(f"unexpected answer from PowerShell: {result.stdout.strip()!r}") from exc
    if not isinstance(data, dict):
        raise CommandError(f"unexpected answer from PowerShell: {result.stdout.strip()!r}")
    last_result = data.get("LastTaskResult")
    return TaskStatus(
        state=str(data.get("State") or "Unknown"),
        last_run=_readable_time(data.get("LastRunTime")),
        last_result=last_result if isinstance(last_result, int) else None,
        next_run=_readable_time(data.get("NextRunTime")),
    )


def _readable_time(value: Any) -> str | None:
    """A ConvertTo-Json DateTime as local ``YYYY-MM-DD HH:MM``; None for never/unknown."""
    if isinstance(value, dict):  # Windows PowerShell sometimes wraps it: {"value": ..., ...}
        value = value.get("value")
    if not isinstance(value, str) or not value:
        return None
    moment: datetime
    if match := _MS_DATE.match(value):  # Windows PowerShell 5.1: "\/Date(ms)\/", UTC epoch
        moment = datetime.fromtimestamp(int(match[1]) / 1000, UTC).astimezone()
    else:  # PowerShell 7: ISO 8601, with an offset or in local time
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return value
        if moment.tzinfo is not None:
            moment = moment.astimezone()
    moment = moment.replace(tzinfo=None)
    if moment < _NEVER_BEFORE:
        return None
    return moment.strftime("%Y-%m-%d %H:%M")


def _said(result: CommandResult) -> str:
    text = (result.stderr.strip() or result.stdout.strip()).replace("\r\n", "\n")
    return " ".join(text.split("\n")) if text else f"exit status {result.returncode}"


def current_user(env: Mapping[str, str] | None = None) -> str:
    """``DOMAIN\\user`` of the user running this, as a task's UserId wants it."""
    env = os.environ if env is None else env
    user = env.get("USERNAME")
    if not user:
        raise ValueError("USERNAME is not set: cannot tell which user the task should run as")
    domain = env.get("USERDOMAIN") or env.get("COMPUTERNAME")
    return f"{domain}\\{user}" if domain else user


def protect_file_args(path: Path) -> list[str]:
    """icacls arguments that leave full control to SYSTEM and Administrators only."""
    return [
        "icacls",
        str(path),
        "/inheritance:r",
        "/grant:r",
        f"*{SYSTEM_SID}:F",
        f"*{ADMINISTRATORS_SID}:F",
    ]
