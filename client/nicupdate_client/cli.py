"""``nicupdate-client``: keep host names on a nicupdate (dyndns2) server at this machine's address.

Exit status of ``run --once`` and ``update``: 0 sent and accepted, 1 nothing to do,
3 temporary failure (retried later, with back-off), 4 permanent refusal (fix the
configuration or the secret). Every command: 2 for a usage or configuration error;
other commands: 0 done, 1 failed.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from . import __version__, logs, state, systemd, wintask
from .config import ClientConfig, ConfigError, FamilyConfig, load, new_config, parse, render
from .credentials import (
    Secret,
    SecretError,
    delete_secret,
    load_secret,
    save_secret,
    store_name,
    write_secret_file,
)
from .detect import Verdict, detect_all
from .paths import default_paths
from .runner import CommandError, Runner, checked, run_command
from .updater import (
    NOTHING,
    OK,
    PERMANENT,
    TEMPORARY,
    USAGE,
    USER_AGENT,
    Updater,
    family_name,
    next_due,
    when,
)

FAILED = 1
INTERNAL = 70  # EX_SOFTWARE: a bug; the log has the traceback
log = logging.getLogger("nicupdate_client")


class UsageError(Exception):
    """A command-line problem; the message names the option."""


class Context:
    """The paths one invocation works with, resolved from the options."""

    def __init__(self, args: argparse.Namespace, runner: Runner) -> None:
        self.args = args
        self.system: bool = getattr(args, "system", False)
        self.paths = default_paths(system=self.system)
        configured = args.config or os.environ.get("NICUPDATE_CLIENT_CONFIG")
        self.config_path = Path(configured).expanduser() if configured else self.paths.config_file
        self.runner = runner

    def config(self) -> ClientConfig:
        return load(self.config_path)

    def state_file(self, config: ClientConfig) -> Path:
        base = config.state_dir or self.paths.state_dir
        return base / self.paths.state_file.name

    def log_file(self, config: ClientConfig | None) -> Path:
        base = (config.log_dir if config else None) or self.paths.log_dir
        return base / self.paths.log_file.name

    def secret(self, config: ClientConfig) -> Secret:
        return load_secret(config, self.paths, system=self.system)


# --- init -----------------------------------------------------------------------------


def _ask(value: str | None, prompt: str, option: str) -> str:
    if value:
        return value
    if not sys.stdin or not sys.stdin.isatty():
        raise UsageError(f"missing {option} (or run init in a terminal to be asked)")
    answer = input(prompt).strip()
    if not answer:
        raise UsageError(f"missing {option}")
    return answer


def _read_secret(args: argparse.Namespace, option: str = "--password-stdin") -> str:
    if getattr(args, "password_stdin", False) or getattr(args, "stdin", False):
        value = sys.stdin.readline().strip()
    elif sys.stdin and sys.stdin.isatty():
        value = getpass.getpass("Password or host token: ").strip()
    else:
        raise UsageError(f"no secret: pass {option} and write it to standard input")
    if not value:
        raise UsageError("the secret is empty")
    return value


def _with_sources(
    family: FamilyConfig, sources: list[str] | None, quorum: int | None
) -> dict[str, Any]:
    section: dict[str, Any] = {"enabled": family.enabled}
    if sources:
        section["sources"] = sources
    if quorum is not None:
        section["quorum"] = min(quorum, len(sources or family.sources))
    return section


def cmd_init(ctx: Context) -> int:
    args = ctx.args
    if ctx.config_path.exists() and not args.force:
        raise UsageError(f"{ctx.config_path} exists: pass --force to replace it")
    server = _ask(args.server, "Server URL (e.g. https://ddns.example.com): ", "--server")
    hostnames = tuple(args.hostname or [_ask(None, "Host name to update: ", "--hostname")])
    username = _ask(
        args.username, "User name (or the host name, with a host token): ", "--username"
    )
    secret = _read_secret(args)
    draft = new_config(server, username, hostnames, ipv4=True, ipv6=True)
    raw: dict[str, Any] = {
        "server": draft.server,
        "username": draft.username,
        "hostnames": list(draft.hostnames),
        "ipv4": _with_sources(draft.ipv4, args.source4, args.quorum),
        "ipv6": _with_sources(draft.ipv6, args.source6, args.quorum),
    }
    config = parse(raw)
    wanted = {4: args.ipv4, 6: args.ipv6}
    if None in wanted.values():
        print("Looking for this machine's public addresses...")
        verdicts = asyncio.run(detect_all(config, cooldowns={}, user_agent=USER_AGENT))
        for family, verdict in sorted(verdicts.items()):
            print(f"  {family_name(family)}: {verdict.reason}")
            if wanted[family] is None:
                wanted[family] = verdict.address is not None
        if not any(wanted.values()):
            print("  No address found for either family: enabling IPv4. Check with 'detect'.")
            wanted[4] = True
    raw["ipv4"]["enabled"] = bool(wanted[4])
    raw["ipv6"]["enabled"] = bool(wanted[6])
    secret_file = args.secret_file
    if secret_file is None and store_name() is None:
        secret_file = ctx.paths.secret_file
        print(f"This system has no credential store: the secret goes to {secret_file}.")
    if secret_file is not None:
        raw["secret_file"] = str(Path(secret_file).expanduser())
    config = parse(raw, ctx.config_path)
    where = save_secret(config, secret, file=config.secret_file)
    ctx.config_path.parent.mkdir(parents=True, exist_ok=True)
    ctx.config_path.write_text(render(config), encoding="utf-8")
    _forget_refusals(ctx, config)
    families = " and ".join(family_name(f.family) for f in config.families())
    print(f"Wrote {ctx.config_path} ({', '.join(config.hostnames)}, {families}).")
    print(f"Stored the secret in {where}.")
    print("Next: 'nicupdate-client run --once' sends the first update; then")
    if sys.platform == "win32":
        print("'nicupdate-client install-task' keeps it up to date every 5 minutes.")
    else:
        print("'nicupdate-client install-timer' keeps it up to date every 5 minutes.")
    return OK


def _forget_refusals(ctx: Context, config: ClientConfig) -> None:
    """A new secret or configuration deserves a new try: clear refusals and back-off."""
    path = ctx.state_file(config)
    if not path.exists():
        return
    with state.locked(path, wait=30) as current:
        for host in current.hosts.values():
            host.refused, host.failures, host.retry_at = None, 0, None


# --- run, detect, status ----------------------------------------------------------------


def _run_once(ctx: Context, config: ClientConfig) -> tuple[int, float]:
    secret = ctx.secret(config)
    updater = Updater(config, secret)
    with state.locked(ctx.state_file(config), wait=config.timeout) as current:
        report = asyncio.run(updater.run_once(current))
        return report.exit_code, next_due(config, current, time.time())


def cmd_run(ctx: Context) -> int:
    config = ctx.config()
    logs.setup(ctx.log_file(config), verbose=ctx.args.verbose)
    if ctx.args.once:
        try:
            return _run_once(ctx, config)[0]
        except state.Busy as exc:
            log.info("%s: nothing to do", exc)
            return NOTHING
    log.info("running every %.0f s; stop with Ctrl+C", config.interval)
    while True:
        try:
            _, due = _run_once(ctx, config)
        except state.Busy as exc:
            log.info("%s", exc)
            due = time.time() + config.interval
        time.sleep(max(1.0, due - time.time()))
        config = ctx.config()  # pick up edits: a refusal ends when the configuration changes


def _print_verdicts(verdicts: dict[int, Verdict]) -> None:
    for family, verdict in sorted(verdicts.items()):
        print(family_name(family))
        width = max((len(a.source) for a in verdict.answers), default=10)
        for answer in verdict.answers:
            said = answer.address if answer.address else f"-- {answer.problem}"
            print(f"  {answer.source:<{width}}  {said}")
        print(f"  verdict: {verdict.reason}")


def cmd_detect(ctx: Context) -> int:
    config = ctx.config()
    logs.setup(None, verbose=ctx.args.verbose, console=ctx.args.verbose)
    with state.locked(ctx.state_file(config), wait=config.timeout) as current:
        verdicts = asyncio.run(
            detect_all(config, cooldowns=current.cooldowns, user_agent=USER_AGENT, ask_all=True)
        )
    _print_verdicts(verdicts)
    return OK if all(v.address for v in verdicts.values()) else TEMPORARY


def cmd_status(ctx: Context) -> int:
    config = ctx.config()
    print(f"Configuration  {ctx.config_path}")
    try:
        where = ctx.secret(config).where
    except SecretError as exc:
        where = f"MISSING: {exc}"
    print(f"Server         {config.server} (user {config.username}; secret: {where})")
    families = ", ".join(family_name(f.family) for f in config.families())
    print(f"Families       {families}")
    print(f"State          {ctx.state_file(config)}")
    print(f"Log            {ctx.log_file(config)}")
    current = state.load(ctx.state_file(config))
    print(f"Last run       {when(current.last_run)}: {current.last_result or '-'}")
    code = OK
    for name in config.hostnames:
        host = current.hosts.get(name, state.HostState())
        print(name)
        for family in config.families():
            sent = host.sent.get(str(family.family))
            shown = f"{sent.address} (accepted {when(sent.at)})" if sent else "never sent"
            print(f"  {family_name(family.family):<13}{shown}")
        if host.last_answer:
            print(f"  {'last answer':<13}{host.last_answer} ({when(host.last_attempt)})")
        if host.refused and host.refused.fingerprint == config.fingerprint(name):
            print(
                f"  {'STOPPED':<13}the server answered {host.refused.code}: {host.refused.reason}"
            )
            code = PERMANENT
        elif host.retry_at and host.retry_at > time.time():
            print(f"  {'retrying':<13}at {when(host.retry_at)} (after {host.failures} failure(s))")
        else:
            sent_at = [s.at for s in host.sent.values()]
            refresh = when(min(sent_at) + config.refresh_days * 86400) if sent_at else "now"
            print(f"  {'next due':<13}on the next change of address; refresh by {refresh}")
    print(f"Schedule       {_schedule_status(ctx)}")
    return code


def _schedule_status(ctx: Context) -> str:
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


# --- secret -----------------------------------------------------------------------------


def _system_secret_file(ctx: Context, config: ClientConfig, secret: str) -> Path:
    """Write the machine-wide secret file, readable by SYSTEM/root and administrators only."""
    path = ctx.paths.secret_file
    write_secret_file(path, secret)
    if sys.platform == "win32":
        checked(ctx.runner, wintask.protect_file_args(path))
    return path


def cmd_set_secret(ctx: Context) -> int:
    config = ctx.config()
    value = _read_secret(ctx.args, "--stdin")
    if config.secret_file is not None:
        where = save_secret(config, value, file=config.secret_file)
    elif ctx.system:
        where = str(_system_secret_file(ctx, config, value))
    else:
        where = save_secret(config, value)
    _forget_refusals(ctx, config)
    print(f"Stored the secret for {config.username} at {config.server} in {where}.")
    return OK


# --- scheduling -------------------------------------------------------------------------


def _system_copy(ctx: Context, config: ClientConfig, secret: Secret) -> Path:
    """For a machine-wide task or timer: the configuration and secret in system places."""
    target = ctx.paths.config_file
    if ctx.config_path.resolve() != target.resolve():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ctx.config_path, target)
        target.chmod(0o644)  # the service's own (dynamic) user must read it; it holds no secret
        print(f"Copied the configuration to {target}.")
    path = _system_secret_file(ctx, config, secret.value)
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


# --- update (one-shot, no configuration) ------------------------------------------------


def classify(status: int, body: str) -> int:
    """The exit status for one answer: the worst line wins."""
    from .answers import Kind, split_answers

    lines = [line for line in body.splitlines() if line.strip()]
    if status != 401 and not lines:
        return TEMPORARY
    kinds = {a.kind for a in split_answers(status, body, max(1, len(lines)))}
    if Kind.PERMANENT in kinds:
        return PERMANENT
    return TEMPORARY if Kind.TEMPORARY in kinds else OK


def cmd_update(ctx: Context) -> int:
    args = ctx.args
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = os.environ.get("NICUPDATE_PASSWORD", "")
    if not password:
        raise UsageError("no password: set NICUPDATE_PASSWORD or pass --password-stdin")
    params = {"hostname": ",".join(args.hostname)}
    if args.myip:
        params["myip"] = ",".join(args.myip)
    try:
        response = httpx.get(
            args.server.rstrip("/") + "/nic/update",
            params=params,
            auth=(args.username, password),
            headers={"User-Agent": USER_AGENT},
            timeout=15.0,
        )
    except httpx.HTTPError as exc:
        print(f"nicupdate-client: cannot reach {args.server}: {exc}", file=sys.stderr)
        return TEMPORARY
    print(response.text.strip())
    return classify(response.status_code, response.text)


# --- parser -----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        metavar="PATH",
        help="configuration file (default: $NICUPDATE_CLIENT_CONFIG, or client.toml in "
        "the user's configuration directory)",
    )
    common.add_argument("-v", "--verbose", action="store_true", help="log more detail")
    system = argparse.ArgumentParser(add_help=False)
    system.add_argument(
        "--system",
        action="store_true",
        help="machine-wide: runs as SYSTEM/root with a protected secret file",
    )
    parser = argparse.ArgumentParser(prog="nicupdate-client", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(
        name: str, handler: Callable[[Context], int], help: str, *parents: argparse.ArgumentParser
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help, parents=[common, *parents])
        sub.set_defaults(handler=handler)
        return sub

    init = add("init", cmd_init, "write the configuration and store the secret")
    init.add_argument("--server", help="e.g. https://ddns.example.com")
    init.add_argument("--hostname", action="append", help="host name to update (repeatable)")
    init.add_argument("--username", help="account name, or the host name with a host token")
    init.add_argument("--password-stdin", action="store_true", help="read the secret from stdin")
    init.add_argument("--secret-file", type=Path, help="keep the secret in this file instead")
    init.add_argument("--ipv4", action=argparse.BooleanOptionalAction, help="default: if found")
    init.add_argument("--ipv6", action=argparse.BooleanOptionalAction, help="default: if found")
    init.add_argument("--source4", action="append", metavar="SOURCE", help="IPv4 source")
    init.add_argument("--source6", action="append", metavar="SOURCE", help="IPv6 source")
    init.add_argument("--quorum", type=int, help="how many sources must agree (default 2)")
    init.add_argument("--force", action="store_true", help="replace an existing configuration")

    run = add("run", cmd_run, "check the address and update when it changed", system)
    run.add_argument("--once", action="store_true", help="one check, then exit (for schedulers)")
    add("status", cmd_status, "what was sent, the last answer, what is next", system)
    add("detect", cmd_detect, "what each address source says, and the verdict", system)
    secret = add("set-secret", cmd_set_secret, "store a new password or host token", system)
    secret.add_argument("--stdin", action="store_true", help="read it from standard input")

    task = add("install-task", cmd_install_task, "Windows: run every 5 min and on network", system)
    task.add_argument("--print-xml", action="store_true", help="print the task XML only")
    untask = add("remove-task", cmd_remove_task, "Windows: remove the scheduled task", system)
    untask.add_argument("--purge", action="store_true", help="also remove config, secret, state")
    timer = add("install-timer", cmd_install_timer, "Linux: a systemd timer every 5 min", system)
    timer.add_argument("--cron", action="store_true", help="print crontab lines instead")
    untimer = add("remove-timer", cmd_remove_timer, "Linux: remove the systemd timer", system)
    untimer.add_argument("--purge", action="store_true", help="also remove config, secret, state")

    once = add("update", cmd_update, "send one update given on the command line")
    once.add_argument("--server", required=True, help="e.g. https://ddns.example.com")
    once.add_argument("--hostname", required=True, action="append", help="may be repeated")
    once.add_argument("--myip", action="append", default=[], help="address (repeatable)")
    once.add_argument("--username", required=True, help="account name, or the host's FQDN")
    once.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password or host token from standard input (default: $NICUPDATE_PASSWORD)",
    )
    return parser


def main(argv: Sequence[str] | None = None, *, runner: Runner = run_command) -> int:
    args = build_parser().parse_args(argv)
    ctx = Context(args, runner)
    try:
        return int(args.handler(ctx))
    except (UsageError, ConfigError, SecretError) as exc:
        _say(f"nicupdate-client {args.command}: {exc}")
        return USAGE
    except (CommandError, state.Busy, OSError) as exc:
        _say(f"nicupdate-client {args.command}: {exc}")
        return FAILED
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        # Under the scheduled task there is no console: the log must carry the details.
        log.exception("unexpected error")
        _say(f"nicupdate-client {args.command}: unexpected error: {type(exc).__name__}: {exc}")
        return INTERNAL


def _say(message: str) -> None:
    if log.handlers:
        log.error("%s", message)
    if sys.stderr is not None:
        print(message, file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
