"""Run the client on a schedule on Linux: a systemd timer, or crontab lines where there is none.

``install-timer`` writes a ``Type=oneshot`` service that runs ``nicupdate-client run --once``
and a timer that starts it 30 s after boot and every 5 minutes, as a user unit
(``~/.config/systemd/user``) or, with ``--system``, a hardened system unit
(``/etc/systemd/system``) that runs under a dynamic user and gets the secret from
``LoadCredential=``. The unit text comes from pure functions; ``systemctl`` runs through
the injected :data:`~nicupdate_client.runner.Runner`.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from .paths import SYSTEMD_CREDENTIAL
from .runner import CommandError, CommandResult, Runner, checked

UNIT = "nicupdate-client"
SERVICE = f"{UNIT}.service"
TIMER = f"{UNIT}.timer"
SYSTEM_UNIT_DIR = Path("/etc/systemd/system")

# ProtectHome=yes hides these from a system unit (and /root is the administrator's home).
_HOME_DIRS = ("/home", "/root", "/run/user")

# The sandbox of the system unit. `systemd-analyze security` rates it 1.7 of 10 ("OK");
# the network families stay open (the update is an HTTPS request, AF_NETLINK reads the
# interfaces' addresses) and so does /proc/net (ProcSubset= would hide it).
_HARDENING = (
    ("NoNewPrivileges", "yes"),
    ("ProtectSystem", "strict"),
    ("PrivateTmp", "yes"),
    ("PrivateDevices", "yes"),
    ("ProtectKernelTunables", "yes"),
    ("ProtectKernelModules", "yes"),
    ("ProtectKernelLogs", "yes"),
    ("ProtectControlGroups", "yes"),
    ("ProtectClock", "yes"),
    ("ProtectHostname", "yes"),
    ("ProtectProc", "invisible"),
    ("CapabilityBoundingSet", ""),
    ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX AF_NETLINK"),
    ("RestrictNamespaces", "yes"),
    ("RestrictRealtime", "yes"),
    ("RestrictSUIDSGID", "yes"),
    ("LockPersonality", "yes"),
    ("MemoryDenyWriteExecute", "yes"),
    ("SystemCallArchitectures", "native"),
    ("SystemCallFilter", "@system-service"),
    ("SystemCallErrorNumber", "EPERM"),
    ("UMask", "0077"),
)

# What systemctl says when there is no systemd to talk to, or it is out of reach.
_NOT_BOOTED = "System has not been booted with systemd"
_NO_BUS = "Failed to connect to bus"
# What `disable`, `stop` and `reset-failed` say about a unit that is already gone.
_ALREADY_GONE = ("not loaded", "does not exist", "not found", "No such file")
_CRON_HINT = (
    "Use 'nicupdate-client install-timer --cron' and add the lines it prints with 'crontab -e'."
)


def client_command(config_path: Path, *, system: bool, executable: str | None = None) -> list[str]:
    """The command the timer (or cron) runs: this Python, the client, one update round."""
    program = executable or sys.executable
    if not program:
        raise ValueError("cannot tell which Python runs nicupdate-client: pass the executable")
    # The unit runs in /, so a relative configuration path would point somewhere else.
    command = [program, "-m", "nicupdate_client", "run", "--once", "--config"]
    command.append(str(config_path.absolute()))
    return [*command, "--system"] if system else command


def service_unit(command: Sequence[str], *, system: bool, secret_file: Path | None = None) -> str:
    """The ``Type=oneshot`` service that runs ``command`` once."""
    if not command:
        raise ValueError("the service needs a command to run")
    if not command[0].startswith("/"):
        raise ValueError(f"ExecStart= needs the program's absolute path, not {command[0]!r}")
    if secret_file is not None and not system:
        raise ValueError("only a system unit gets the secret with LoadCredential=")
    lines = ["[Unit]", "Description=nicupdate dynamic DNS client: one update round"]
    if system:
        lines += ["Wants=network-online.target", "After=network-online.target"]
    else:
        lines += [
            "# A user manager cannot wait for the system's network-online.target: the timer's",
            "# delay after boot gives the network time to come up.",
        ]
    lines += [
        "",
        "[Service]",
        "Type=oneshot",
        f"ExecStart={exec_line(command)}",
        "TimeoutStartSec=5min",
        "Nice=10",
    ]
    if system:
        lines += [
            "# A transient user with its own state and log directories;",
            "# the client finds them in $STATE_DIRECTORY and $LOGS_DIRECTORY.",
            "DynamicUser=yes",
            f"StateDirectory={UNIT}",
            f"LogsDirectory={UNIT}",
        ]
        if secret_file is not None:
            lines += [
                "# systemd reads the secret as root and hands the client a private copy",
                "# in $CREDENTIALS_DIRECTORY.",
                f"LoadCredential={SYSTEMD_CREDENTIAL}:{_credential_path(secret_file)}",
            ]
        lines += _protect_home(command)
        lines += [f"{key}={value}" for key, value in _HARDENING]
    return "\n".join(lines) + "\n"


def timer_unit(*, interval_minutes: int = 5, boot_delay_seconds: int = 30) -> str:
    """The timer: ``boot_delay_seconds`` after boot, then every ``interval_minutes``."""
    if not 1 <= interval_minutes <= 1440:
        raise ValueError(f"the interval must be 1 to 1440 minutes, not {interval_minutes}")
    if boot_delay_seconds < 0:
        raise ValueError(f"the delay after boot cannot be negative ({boot_delay_seconds} s)")
    every = "minute" if interval_minutes == 1 else f"{interval_minutes} minutes"
    return "\n".join(
        [
            "[Unit]",
            f"Description=Run the nicupdate dynamic DNS client every {every}",
            "",
            "[Timer]",
            # Both are monotonic: a timer started later than that after boot (as by
            # `enable --now`) runs the service at once. Persistent= is for OnCalendar= only.
            f"OnBootSec={boot_delay_seconds}s",
            f"OnUnitActiveSec={interval_minutes}min",
            "RandomizedDelaySec=15s",
            "AccuracySec=1s",
            f"Unit={SERVICE}",
            "",
            "[Install]",
            "WantedBy=timers.target",
            "",
        ]
    )


def unit_dir(*, system: bool, env: Mapping[str, str] | None = None) -> Path:
    """Where the units go: ``/etc/systemd/system``, or the user's ``systemd/user`` directory."""
    if system:
        return SYSTEM_UNIT_DIR
    env = os.environ if env is None else env
    config = env.get("XDG_CONFIG_HOME", "")
    if not config.startswith("/"):  # the XDG spec says to ignore a relative path
        config = str(Path(env.get("HOME") or Path.home()) / ".config")
    return Path(config) / "systemd" / "user"


def check_reachable(*, system: bool, runner: Runner) -> None:
    """Raise :class:`CommandError` (suggesting cron) when systemd cannot be reached.

    Asks the service manager for its version, which changes nothing: an install checks
    this before it copies or writes anything.
    """
    _systemctl(runner, system, "show", "--property=Version", hint=_CRON_HINT)


def install_timer(
    command: Sequence[str],
    *,
    system: bool,
    runner: Runner,
    secret_file: Path | None = None,
    directory: Path | None = None,
) -> list[Path]:
    """Write the service and the timer, reload systemd, enable and start the timer.

    Returns the files written. A fresh install whose ``systemctl`` calls fail is taken back:
    the files are deleted again before the :class:`CommandError` goes up.
    """
    directory = unit_dir(system=system) if directory is None else directory
    units = {
        directory / SERVICE: service_unit(command, system=system, secret_file=secret_file),
        directory / TIMER: timer_unit(),
    }
    fresh = not any(path.exists() for path in units)
    directory.mkdir(parents=True, exist_ok=True)
    for path, text in units.items():
        path.write_text(text, encoding="utf-8", newline="\n")
        path.chmod(0o644)
    try:
        _systemctl(runner, system, "daemon-reload", hint=_CRON_HINT)
        _systemctl(runner, system, "enable", "--now", TIMER, hint=_CRON_HINT)
    except CommandError:
        if fresh:
            for path in units:
                path.unlink(missing_ok=True)
        raise
    return list(units)


def remove_timer(*, system: bool, runner: Runner, directory: Path | None = None) -> bool:
    """Stop and disable the timer, stop the service, delete both units; False if none were."""
    directory = unit_dir(system=system) if directory is None else directory
    units = [directory / SERVICE, directory / TIMER]
    if not any(path.exists() for path in units):
        return False
    _systemctl(runner, system, "disable", "--now", TIMER, tolerate=_ALREADY_GONE)
    _systemctl(runner, system, "stop", SERVICE, tolerate=_ALREADY_GONE)
    for path in units:
        path.unlink(missing_ok=True)
    _systemctl(runner, system, "daemon-reload")
    # A failed run would keep the unit listed by `systemctl --failed` after the files are gone.
    _systemctl(runner, system, "reset-failed", TIMER, SERVICE, tolerate=_ALREADY_GONE)
    return True


@dataclass(frozen=True)
class TimerStatus:
    active: str
    next_run: str | None
    last_run: str | None
    last_result: str | None


def timer_status(
    *,
    system: bool,
    runner: Runner,
    now: datetime | None = None,
    monotonic: float | None = None,
) -> TimerStatus | None:
    """How the timer is doing, or None when it is not installed.

    ``last_result`` is the service's ``Result`` (``success``, ``exit-code``, ...) once the
    timer has run it. Our timer is monotonic, for which systemd reports the next run only
    on the monotonic clock: that is turned into local time with ``now`` and ``monotonic``
    (default: the clocks of this moment).
    """
    timer = _show(
        runner,
        system,
        TIMER,
        "ActiveState",
        "LoadState",
        "NextElapseUSecRealtime",
        "NextElapseUSecMonotonic",
        "LastTriggerUSec",
    )
    if timer.get("LoadState") == "not-found":
        return None
    last_run = _timestamp(timer.get("LastTriggerUSec"))
    result = _show(runner, system, SERVICE, "Result").get("Result") or None
    next_run = _timestamp(timer.get("NextElapseUSecRealtime"))
    if next_run is None:
        elapse = _timespan(timer.get("NextElapseUSecMonotonic"))
        if elapse is not None:
            now = datetime.now().astimezone() if now is None else now
            monotonic = time.monotonic() if monotonic is None else monotonic
            when = now + timedelta(seconds=elapse - monotonic)
            next_run = when.strftime("%a %Y-%m-%d %H:%M:%S %Z").strip()
    return TimerStatus(
        active=timer.get("ActiveState") or "unknown",
        next_run=next_run,
        last_run=last_run,
        last_result=result if last_run is not None else None,
    )


def cron_lines(command: Sequence[str]) -> str:
    """Crontab lines that do what the timer does: every 5 minutes, and 30 s after boot."""
    for arg in command:
        _reject_line_breaks(arg)
    # cron turns an unescaped % into a line break (the rest becomes stdin).
    line = shlex.join(command).replace("%", "\\%") + " >/dev/null 2>&1"
    return (
        "# nicupdate-client: add these lines with 'crontab -e'"
        " (the client writes its own log).\n"
        f"*/5 * * * * {line}\n"
        f"@reboot sleep 30 && {line}\n"
    )


def exec_line(command: Sequence[str]) -> str:
    """``command`` as an ``ExecStart=`` value that systemd splits back into the same words.

    Every ``%`` is doubled (systemd expands specifiers in the whole line) and, after the
    program, every ``$`` (systemd expands variables in the arguments, not in the program).
    A word with white space, a quote, a backslash or a semicolon goes in double quotes,
    where a backslash and a double quote are escaped with a backslash.
    """
    return " ".join(_exec_word(arg, program=i == 0) for i, arg in enumerate(command))


def _exec_word(arg: str, *, program: bool) -> str:
    _reject_line_breaks(arg)
    word = arg.replace("%", "%%")
    if not program:
        word = word.replace("$", "$$")
    if word and not any(c.isspace() or c in "\"'\\;" for c in word):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _reject_line_breaks(arg: str) -> None:
    if any(c in arg for c in "\n\r\0"):
        raise ValueError(f"a command word cannot hold a line break or NUL: {arg!r}")


def _credential_path(secret_file: Path) -> str:
    path = str(secret_file)
    _reject_line_breaks(path)
    if not secret_file.is_absolute():
        raise ValueError(f"LoadCredential= needs the secret file's absolute path, not {path!r}")
    return path.replace("%", "%%")


def _protect_home(command: Sequence[str]) -> list[str]:
    inside = [arg for arg in command if any(_under(arg, home) for home in _HOME_DIRS)]
    if not inside:
        return ["ProtectHome=yes"]
    return [
        f"# ProtectHome=read-only, not yes: {inside[0]} is in a home directory, which",
        "# ProtectHome=yes would hide. The dynamic user must be able to read it too.",
        "ProtectHome=read-only",
    ]


def _under(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory + "/")


def _systemctl(
    runner: Runner,
    system: bool,
    *args: str,
    tolerate: Sequence[str] = (),
    hint: str = "",
) -> CommandResult:
    command = ["systemctl", *([] if system else ["--user"]), *args]
    result = runner(command)
    if result.ok:
        return result
    said = (result.stderr or result.stdout).strip()
    where = "systemd" if system else "your user's systemd instance"
    if result.returncode == 127:
        raise CommandError(
            _join("systemctl was not found: this system does not use systemd.", hint)
        )
    if _NOT_BOOTED in said:
        raise CommandError(
            _join(f"{shlex.join(command)}: systemd is not running on this system.", hint)
        )
    if _NO_BUS in said:
        detail = said.splitlines()[-1]
        advice = "" if system else " Run this from a login session, not through su or sudo."
        raise CommandError(
            _join(f"{shlex.join(command)}: cannot reach {where} ({detail}).{advice}", hint)
        )
    if any(phrase in said for phrase in tolerate):
        return result
    # Raise the runner module's usual message, from the answer we already have.
    return checked(lambda _args: result, command)


def _join(message: str, hint: str) -> str:
    return f"{message} {hint}" if hint else message


def _show(runner: Runner, system: bool, unit: str, *properties: str) -> dict[str, str]:
    flags = [flag for name in properties for flag in ("-p", name)]
    result = _systemctl(runner, system, "show", unit, *flags)
    values: dict[str, str] = {}
    for line in result.stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip()
    return values


def _timestamp(value: str | None) -> str | None:
    # systemctl prints an unset timestamp as nothing; older ones said "n/a".
    return None if not value or value == "n/a" else value


# systemd's format_timespan(): "1d 2h 3min 4.567890s"; a year is 365.25 days, a month 1/12.
_TIMESPAN_UNITS = {
    "y": 31_557_600.0,
    "month": 2_629_800.0,
    "w": 604_800.0,
    "d": 86_400.0,
    "h": 3_600.0,
    "min": 60.0,
    "s": 1.0,
    "ms": 1e-3,
    "us": 1e-6,
}
_TIMESPAN_PART = re.compile(r"(\d+(?:\.\d+)?)(month|min|ms|us|y|w|d|h|s)")


def _timespan(value: str | None) -> float | None:
    """Seconds in a timespan as ``systemctl show`` prints it; None when unset or unreadable."""
    if not value or value in ("0", "n/a", "infinity"):
        return None
    total = 0.0
    for part in value.split():
        match = _TIMESPAN_PART.fullmatch(part)
        if match is None:
            return None
        total += float(match[1]) * _TIMESPAN_UNITS[match[2]]
    return total
