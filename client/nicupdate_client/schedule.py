"""Scheduling: the Windows task and the systemd timer (or cron), installed and removed.

A machine-wide (``--system``) installation runs from its own copy of the configuration,
with the secret, state and log in the system's places. It checks what it can before it
copies anything, and takes its copies back when the install fails. Its ``--purge``
removes what the installation made, never the user's files the copy was made from.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import sys
import tomllib
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import tomli_w

from . import systemd, wintask
from .config import ClientConfig, ConfigError, load
from .context import Context, UsageError, system_secret_file
from .credentials import Secret, delete_secret, load_secret
from .paths import Paths, default_paths
from .runner import CommandError
from .updater import OK

# Settings that name a user's own files: a machine-wide copy leaves them out.
_USER_PLACES = ("secret_file", "state_dir", "log_dir")
# What the client writes beside a file: rotated logs (.1, .2...), the state's lock, the
# temporary file of an atomic write.
_SIBLING = re.compile(r"\.(?:\d+|lock|new)")


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


def _invoking_user_paths() -> Paths:
    """The per-user places of whoever runs the command; under sudo, of the user who ran sudo."""
    name = os.environ.get("SUDO_USER")
    if name and name != "root" and sys.platform != "win32":
        import pwd

        try:
            return default_paths(env={"HOME": pwd.getpwnam(name).pw_dir})
        except KeyError:
            pass
    return default_paths()


def _system_source(ctx: Context) -> Path:
    """The configuration a machine-wide install copies: ``--config``, else the user's.

    Without either, a configuration already in the system's place is used as it is.
    """
    if ctx.args.config or os.environ.get("NICUPDATE_CLIENT_CONFIG"):
        return ctx.config_path
    user = _invoking_user_paths().config_file
    if user.exists() or not ctx.paths.config_file.exists():
        return user
    return ctx.paths.config_file


def _system_copy(ctx: Context, source: Path, secret: Secret) -> list[str]:
    """Copy the configuration and the secret to the system's places; what was done, to print.

    A setting that names a user's file (``secret_file``, ``state_dir``, ``log_dir``) is
    left out of the copy: the installation keeps its own secret, state and log.
    """
    target = ctx.paths.config_file
    done = []
    if source.resolve() != target.resolve():
        raw = tomllib.loads(source.read_text(encoding="utf-8"))
        dropped = [key for key in _USER_PLACES if key in raw]
        target.parent.mkdir(parents=True, exist_ok=True)
        if dropped:
            for key in dropped:
                del raw[key]
            header = f"# Copied from {source} by nicupdate-client, without {', '.join(dropped)}.\n"
            target.write_text(header + tomli_w.dumps(raw), encoding="utf-8")
            done.append(
                f"Copied {source} to {target}, without {', '.join(dropped)}: the machine-wide "
                "installation keeps its own secret, state and log."
            )
        else:
            shutil.copyfile(source, target)
            done.append(f"Copied {source} to {target}.")
        target.chmod(0o644)  # the service's own (dynamic) user must read it; it holds no secret
    path = system_secret_file(ctx, load(target), secret.value)
    done.append(f"Stored the secret in {path} (readable by administrators only).")
    return done


@contextlib.contextmanager
def _taken_back_on_failure(*files: Path) -> Iterator[None]:
    """If the block fails, ``files`` are as they were before it (and new directories gone)."""
    before = {p: (p.read_bytes(), stat.S_IMODE(p.stat().st_mode)) for p in files if p.exists()}
    new_dirs = sorted({path.parent for path in files if not path.parent.exists()}, reverse=True)
    try:
        yield
    except BaseException:
        for path in files:
            if path in before:
                content, mode = before[path]
                path.write_bytes(content)
                path.chmod(mode)
            else:
                path.unlink(missing_ok=True)
        for directory in new_dirs:
            with contextlib.suppress(OSError):
                directory.rmdir()
        raise


def _system_install(ctx: Context) -> tuple[Path, Secret]:
    """What a machine-wide install copies: checked first, so that a refusal changes nothing."""
    source = _system_source(ctx)
    config = load(source)
    secret = load_secret(config, _invoking_user_paths(), system=False)
    return source, secret


def cmd_install_task(ctx: Context) -> int:
    if ctx.args.print_xml:
        ctx.config()
        action = wintask.task_action(ctx.config_path, system=ctx.system)
        user = None if ctx.system else _user_or_placeholder()
        print(wintask.task_xml(action, system=ctx.system, user_id=user, start=_now()))
        return OK
    if sys.platform != "win32":
        raise UsageError("install-task is for Windows; on Linux use install-timer")
    if ctx.system:
        source, secret = _system_install(ctx)
        with _taken_back_on_failure(ctx.paths.config_file, ctx.paths.secret_file):
            done = _system_copy(ctx, source, secret)
            config = _register_task(ctx, ctx.paths.config_file, None)
        print("\n".join(done))
        who = "SYSTEM"
    else:
        ctx.secret(ctx.config())  # fail now, not every five minutes, when there is no secret
        who = wintask.current_user()
        config = _register_task(ctx, ctx.config_path, who)
    print(
        f"Installed the scheduled task '{wintask.TASK_NAME}': every 5 minutes and whenever a "
        f"network connects, hidden, as {who}."
    )
    print(f"It logs to {ctx.log_file(config)}. 'nicupdate-client status' shows how it is doing.")
    return OK


def _register_task(ctx: Context, config_path: Path, user: str | None) -> ClientConfig:
    config = load(config_path)
    workdir = ctx.state_file(config).parent
    workdir.mkdir(parents=True, exist_ok=True)
    action = wintask.task_action(config_path, system=ctx.system)
    wintask.install_task(
        action, system=ctx.system, user_id=user, runner=ctx.runner, workdir=workdir
    )
    return config


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
    return _purge(ctx, "remove-task") if ctx.args.purge else OK


def cmd_install_timer(ctx: Context) -> int:
    if ctx.args.cron:
        ctx.config()
        command = systemd.client_command(ctx.config_path.resolve(), system=False)
        print(systemd.cron_lines(command))
        return OK
    if sys.platform == "win32":
        raise UsageError("install-timer is for Linux; on Windows use install-task")
    done: list[str] = []
    if ctx.system:
        if hasattr(os, "geteuid") and os.geteuid() != 0:
            raise UsageError("install-timer --system must run as root")
        source, secret = _system_install(ctx)
        systemd.check_reachable(system=True, runner=ctx.runner)
        config_path = ctx.paths.config_file
        with _taken_back_on_failure(config_path, ctx.paths.secret_file):
            done = _system_copy(ctx, source, secret)
            command = systemd.client_command(config_path, system=True)
            written = systemd.install_timer(
                command, system=True, runner=ctx.runner, secret_file=ctx.paths.secret_file
            )
    else:
        config_path = ctx.config_path.resolve()
        ctx.secret(ctx.config())  # fail now, not every five minutes, when there is no secret
        systemd.check_reachable(system=False, runner=ctx.runner)
        command = systemd.client_command(config_path, system=False)
        written = systemd.install_timer(command, system=False, runner=ctx.runner)
    print("\n".join([*done, f"Installed {', '.join(str(p) for p in written)}."]))
    print("The timer runs the update 30 s after boot and every 5 minutes.")
    if not ctx.system:
        print("To keep it running while you are logged out: loginctl enable-linger $USER")
    log_file = ctx.log_file(load(config_path))
    print(f"It logs to {log_file}; 'nicupdate-client status' shows how it is doing.")
    return OK


def cmd_remove_timer(ctx: Context) -> int:
    if sys.platform == "win32":
        raise UsageError("remove-timer is for Linux; on Windows use remove-task")
    removed = systemd.remove_timer(system=ctx.system, runner=ctx.runner)
    print("Removed the systemd timer and service." if removed else "No timer to remove.")
    if ctx.system and ctx.paths.secret_file.exists():
        ctx.paths.secret_file.unlink()
        print(f"Removed {ctx.paths.secret_file}.")
    return _purge(ctx, "remove-timer") if ctx.args.purge else OK


def _purge(ctx: Context, command: str) -> int:
    """Also remove what the installation made: configuration, secret, state and log."""
    if ctx.system:
        _purge_system(ctx.paths)
        return OK
    try:
        config = ctx.config()
    except ConfigError:
        return OK
    if delete_secret(config):
        print("Removed the secret from the credential store.")
    paths = [ctx.config_path, ctx.state_file(config), ctx.log_file(config)]
    if config.secret_file is not None:
        paths.append(config.secret_file)
    system = default_paths(system=True)
    for path in paths:
        if any(_inside(path, place) for place in _places(system)):
            print(
                f"Kept {path}: it belongs to the machine-wide installation"
                f" ('{command} --system --purge' removes it)."
            )
        else:
            _remove_with_siblings(path)
    return OK


def _purge_system(paths: Paths) -> None:
    """A machine-wide purge looks only in the system's places: a user's files stay.

    The configuration there is the installation's copy; any file a user's configuration
    names (its secret file, state, log) was never part of the installation.
    """
    for path in (paths.config_file, paths.secret_file, paths.state_file, paths.log_file):
        _remove_with_siblings(path)
    for directory in _places(paths):
        # systemd's DynamicUser= makes /var/lib/NAME a link to /var/lib/private/NAME.
        real = directory.resolve() if directory.is_symlink() else directory
        try:
            real.rmdir()
        except OSError:
            continue  # not there, or not empty: what is left is not ours to remove
        if real != directory:
            directory.unlink()
        print(f"Removed {directory}.")


def _places(paths: Paths) -> list[Path]:
    """The directories of ``paths``, each inner one before the one that holds it."""
    unique = dict.fromkeys((paths.log_dir, paths.state_dir, paths.config_dir))
    return sorted(unique, key=lambda directory: len(directory.parts), reverse=True)


def _inside(path: Path, directory: Path) -> bool:
    return path.absolute().is_relative_to(directory.absolute())


def _remove_with_siblings(path: Path) -> None:
    """``path`` and what the client writes beside it: rotated logs, a lock, a temporary file."""
    if not path.parent.is_dir():
        return
    for found in sorted(path.parent.iterdir()):
        suffix = found.name[len(path.name) :]
        ours = found.name.startswith(path.name) and (not suffix or _SIBLING.fullmatch(suffix))
        if ours and not found.is_dir():
            found.unlink()
            print(f"Removed {found}.")
