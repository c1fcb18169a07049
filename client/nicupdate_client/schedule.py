"""Scheduling: the Windows task and the systemd timer (or cron), installed and removed."""

from __future__ import annotations

import os
import shutil
import sys
from datetime import datetime
from pathlib import Path

from . import systemd, wintask
from .config import ClientConfig, ConfigError
from .context import Context, UsageError, system_secret_file
from .credentials import Secret, delete_secret, load_secret
from .paths import default_paths
from .runner import CommandError
from .updater import OK


def schedule_status(ctx: Context) -> str:
    try:
        if sys.platform == "win32":
            task = wintask.task_status(runner=ctx.runner)
            if task is None:
                return "no scheduled task (install-task)"
            return (
                f"task {task.state}; last run {task.last_run or 'never'}"
                f" (result {task.last_result}); next run {task.next_run or '-'}"
            )
        timer = systemd.timer_status(system=ctx.system, runner=ctx.runner)
        if timer is None:
            return "no systemd timer (install-timer)"
        return (
            f"timer {timer.active}; last run {timer.last_run or 'never'}"
            f" ({timer.last_result or '-'}); next run {timer.next_run or '-'}"
        )
    except (CommandError, OSError) as exc:
        return f"unknown ({exc})"


def _system_copy(ctx: Context, config: ClientConfig, secret: Secret) -> Path:
    """For a machine-wide task or timer: the configuration and secret in system places."""
    target = ctx.paths.config_file
    if ctx.config_path.resolve() != target.resolve():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ctx.config_path, target)
        target.chmod(0o644)  # the service's own (dynamic) user must read it; it holds no secret
        print(f"Copied the configuration to {target}.")
    path = system_secret_file(ctx, config, secret.value)
    print(f"Stored the secret in {path} (readable by administrators only).")
    return target


def cmd_install_task(ctx: Context) -> int:
    config = ctx.config()
    config_path = ctx.config_path
    action = wintask.task_action(config_path, system=ctx.system)
    if ctx.args.print_xml:
        user = None if ctx.system else _user_or_placeholder()
        print(wintask.task_xml(action, system=ctx.system, user_id=user, start=_now()))
        return OK
    if sys.platform != "win32":
        raise UsageError("install-task is for Windows; on Linux use install-timer")
    secret = (
        ctx.secret(config) if not ctx.system else load_secret(config, default_paths(), system=False)
    )
    if ctx.system:
        config_path = _system_copy(ctx, config, secret)
        action = wintask.task_action(config_path, system=True)
    user = None if ctx.system else wintask.current_user()
    workdir = ctx.state_file(config).parent
    workdir.mkdir(parents=True, exist_ok=True)
    wintask.install_task(
        action, system=ctx.system, user_id=user, runner=ctx.runner, workdir=workdir
    )
    who = "SYSTEM" if ctx.system else user
    print(
        f"Installed the scheduled task '{wintask.TASK_NAME}': every 5 minutes and whenever a "
        f"network connects, hidden, as {who}."
    )
    print(f"It logs to {ctx.log_file(config)}. 'nicupdate-client status' shows how it is doing.")
    return OK


def _now() -> datetime:
    return datetime.now().replace(microsecond=0)


def _user_or_placeholder() -> str:
    try:
        return wintask.current_user()
    except ValueError:
        return os.environ.get("USER", "USER")


def cmd_remove_task(ctx: Context) -> int:
    if sys.platform != "win32":
        raise UsageError("remove-task is for Windows; on Linux use remove-timer")
    removed = wintask.remove_task(runner=ctx.runner)
    print(f"Removed the scheduled task '{wintask.TASK_NAME}'." if removed else "No task to remove.")
    if ctx.system and ctx.paths.secret_file.exists():
        ctx.paths.secret_file.unlink()
        print(f"Removed {ctx.paths.secret_file}.")
    return _purge(ctx) if ctx.args.purge else OK


def cmd_install_timer(ctx: Context) -> int:
    config = ctx.config()
    if ctx.args.cron:
        command = systemd.client_command(ctx.config_path.resolve(), system=False)
        print(systemd.cron_lines(command))
        return OK
    if sys.platform == "win32":
        raise UsageError("install-timer is for Linux; on Windows use install-task")
    config_path = ctx.config_path.resolve()
    secret_file = None
    if ctx.system:
        if hasattr(os, "geteuid") and os.geteuid() != 0:
            raise UsageError("install-timer --system must run as root")
        secret = load_secret(config, default_paths(), system=False)
        config_path = _system_copy(ctx, config, secret)
        secret_file = ctx.paths.secret_file
    else:
        ctx.secret(config)  # fail now, not every five minutes, when there is no secret
    command = systemd.client_command(config_path, system=ctx.system)
    written = systemd.install_timer(
        command, system=ctx.system, runner=ctx.runner, secret_file=secret_file
    )
    print(f"Installed {', '.join(str(p) for p in written)}.")
    print("The timer runs the update 30 s after boot and every 5 minutes.")
    if not ctx.system:
        print("To keep it running while you are logged out: loginctl enable-linger $USER")
    print(f"It logs to {ctx.log_file(config)}; 'nicupdate-client status' shows how it is doing.")
    return OK


def cmd_remove_timer(ctx: Context) -> int:
    if sys.platform == "win32":
        raise UsageError("remove-timer is for Linux; on Windows use remove-task")
    removed = systemd.remove_timer(system=ctx.system, runner=ctx.runner)
    print("Removed the systemd timer and service." if removed else "No timer to remove.")
    if ctx.system and ctx.paths.secret_file.exists():
        ctx.paths.secret_file.unlink()
        print(f"Removed {ctx.paths.secret_file}.")
    return _purge(ctx) if ctx.args.purge else OK


def _purge(ctx: Context) -> int:
    """Also forget the configuration, the stored secret, the state and the log."""
    try:
        config = ctx.config()
    except ConfigError:
        return OK
    if delete_secret(config):
        print("Removed the secret from the credential store.")
    paths = [ctx.config_path, ctx.state_file(config), ctx.log_file(config)]
    if config.secret_file is not None:
        paths.append(config.secret_file)
    for path in paths:
        for found in sorted(path.parent.glob(path.name + "*")):
            found.unlink()
            print(f"Removed {found}.")
    return OK
