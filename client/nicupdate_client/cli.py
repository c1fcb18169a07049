"""``nicupdate-client``: keep host names on a nicupdate (dyndns2) server at this machine's address.

Exit status of ``run --once`` and ``update``: 0 sent and accepted, 1 nothing to do,
3 temporary failure (retried later, with back-off), 4 permanent refusal (fix the
configuration or the secret, or run ``resume`` once the server's operator fixed the
cause). Every command: 2 for a usage or configuration error; other commands: 0 done,
1 failed.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx

from . import __version__, logs, state
from .config import ClientConfig, ConfigError
from .context import (
    Context,
    UsageError,
    forget_refusals,
    read_secret,
    system_secret_file,
)
from .credentials import SecretError, save_secret
from .detect import Verdict, detect_all
from .runner import CommandError, Runner, run_command
from .schedule import (
    cmd_install_task,
    cmd_install_timer,
    cmd_remove_task,
    cmd_remove_timer,
    schedule_status,
)
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
    server_wait,
    when,
)
from .wizard import cmd_init

FAILED = 1
INTERNAL = 70  # EX_SOFTWARE: a bug; the log has the traceback
log = logging.getLogger("nicupdate_client")


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
        refused = host.refused_for(config.fingerprint(name))
        if refused is not None:
            print(f"  {'STOPPED':<13}the server answered {refused.code}: {refused.reason}")
            code = PERMANENT
        elif host.retry_at and host.retry_at > time.time():
            why = [f"after {host.failures} failure(s)"] if host.failures else []
            why += [server_wait(host)] if host.asked_until else []
            shown = f" ({'; '.join(why)})" if why else ""
            print(f"  {'retrying':<13}at {when(host.retry_at)}{shown}")
        else:
            sent_at = [s.at for s in host.sent.values()]
            refresh = when(min(sent_at) + config.refresh_days * 86400) if sent_at else "now"
            print(f"  {'next due':<13}on the next change of address; refresh by {refresh}")
    print(f"Schedule       {schedule_status(ctx)}")
    return code


# --- secret, resume ---------------------------------------------------------------------


def cmd_set_secret(ctx: Context) -> int:
    config = ctx.config()
    value = read_secret(ctx.args, "--stdin")
    if config.secret_file is not None:
        where = save_secret(config, value, file=config.secret_file)
    elif ctx.system:
        where = str(system_secret_file(ctx, config, value))
    else:
        where = save_secret(config, value)
    forget_refusals(ctx, config)
    print(f"Stored the secret for {config.username} at {config.server} in {where}.")
    return OK


def cmd_resume(ctx: Context) -> int:
    config = ctx.config()
    lifted = forget_refusals(ctx, config)
    if not lifted:
        print("No host is stopped: nothing to resume.")
        return OK
    print(f"Resumed {', '.join(lifted)}: the next run sends the update again.")
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
    add("resume", cmd_resume, "update a stopped host again, once its cause is fixed", system)

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
