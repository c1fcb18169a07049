"""``nicupdate-server``: run the server and administer accounts and hosts."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import secrets
import sys
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from . import __version__
from .config import Config, ConfigError, find_config_file, load_config
from .listeners import StartupError, shown

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from .admin import Following

PROG = "nicupdate-server"
PASSWORD_ATTEMPTS = 3  # at a terminal: a refused password is asked for again this often
T = TypeVar("T")


class CliError(Exception):
    """Printed as one line; exit status 1."""


def _run(coro: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop
    except ImportError:  # not on Windows
        return asyncio.run(coro)
    return uvloop.run(coro)


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        line = sys.stdin.readline()
        password = line.rstrip("\r\n")
        if not password:
            raise CliError("no password on standard input")
        return password
    if not sys.stdin.isatty():
        raise CliError("no terminal to ask for the password: pass --password-stdin")
    from .admin import AdminError, check_password

    for attempt in range(1, PASSWORD_ATTEMPTS + 1):
        first = getpass.getpass("Password: ")
        try:
            check_password(first)
        except AdminError as exc:
            problem = str(exc)
        else:
            if first == getpass.getpass("Repeat password: "):
                return first
            problem = "the passwords do not match"
        if attempt < PASSWORD_ATTEMPTS:
            print(f"{problem}; try again", file=sys.stderr)
    raise CliError(f"no password set after {PASSWORD_ATTEMPTS} attempts: {problem}")


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else "-"


async def with_engine(config: Config, work: Callable[[AsyncEngine], Awaitable[T]]) -> T:
    """``work(engine)`` on the configured database, migrated first; closed after."""
    from .db import create_engine, ensure_schema

    url = config.server.database_url()
    engine = create_engine(url)
    try:
        await ensure_schema(engine, url)
        return await work(engine)
    finally:
        await engine.dispose()


async def _with_admin(config: Config, work: Callable[[Any], Awaitable[T]]) -> T:
    from .admin import Admin

    return await with_engine(config, lambda engine: work(Admin(engine, config)))


def cmd_user(config: Config, args: argparse.Namespace) -> int:
    if args.action in ("add", "passwd"):
        password = _read_password(args)
        if args.action == "add":
            _run(_with_admin(config, lambda a: a.add_user(args.name, password, admin=args.admin)))
            print(f"{'admin' if args.admin else 'user'} {args.name} added")
        else:
            _run(_with_admin(config, lambda a: a.set_password(args.name, password)))
            print(f"password of {args.name} changed")
    elif args.action == "admin":
        on = args.state == "on"
        changed = _run(_with_admin(config, lambda a: a.set_admin(args.name, on)))
        what = "an admin" if on else "not an admin"
        print(f"{args.name} is {what}" + ("" if changed else " (it already was)"))
    elif args.action == "totp-off":
        changed = _run(_with_admin(config, lambda a: a.clear_totp(args.name)))
        print(f"two-factor sign-in of {args.name} " + ("turned off" if changed else "was not on"))
    elif args.action in ("disable", "enable"):
        off = args.action == "disable"
        changed = _run(_with_admin(config, lambda a: a.set_disabled(args.name, off)))
        print(f"user {args.name} {args.action}d" + ("" if changed else " (it already was)"))
    elif args.action == "list":
        rows = _run(_with_admin(config, lambda a: a.list_users()))
        if not rows:
            print(f"no users yet: add one with `{PROG} user add NAME`")
        for row in rows:
            flags = "".join(
                f"\t{flag}"
                for flag, on in (
                    ("admin", row.admin),
                    ("disabled", row.disabled_at is not None),
                    ("totp", row.totp),
                )
                if on
            )
            print(f"{row.name}\t{row.hosts} host(s)\tcreated {_when(row.created_at)}{flags}")
    elif args.action == "remove":
        removed = _run(
            _with_admin(config, lambda a: a.remove_user(args.name, with_hosts=args.with_hosts))
        )
        print(f"user {args.name} removed" + (f" with {removed} host(s)" if removed else ""))
    return 0


def cmd_token(config: Config, args: argparse.Namespace) -> int:
    from .apitokens import ApiTokens

    def tokens(work: Callable[[ApiTokens], Awaitable[T]]) -> T:
        return _run(with_engine(config, lambda engine: work(ApiTokens(engine))))

    if args.action == "add":
        secret, row = tokens(
            lambda t: t.add(
                args.user,
                args.name or "cli",
                hosts=args.hosts,
                read_only=args.read_only,
                acme_only=args.acme_only,
                expires_days=args.expires,
            )
        )
        expires = f", expires {_when(row.expires_at)} UTC" if row.expires_at else ""
        print(f"API token {row.id} for {row.user} ({row.scope.words()}{expires})")
        print(f"token (shown once; send it as `Authorization: Bearer TOKEN`): {secret}")
    elif args.action == "list":
        rows = tokens(lambda t: t.list(args.user))
        if not rows:
            print(f"no API tokens: add one with `{PROG} token add USER`")
        for row in rows:
            state = " EXPIRED" if row.expired() else ""
            print(
                f"{row.id}\t{row.user}\t{row.name}\t{row.scope.words()}\t"
                f"created {_when(row.created_at)}\texpires {_when(row.expires_at)}\t"
                f"used {_when(row.last_used_at)}{state}"
            )
    elif args.action == "revoke":
        if not tokens(lambda t: t.revoke(args.id)):
            raise CliError(f"no API token {args.id} (see: token list)")
        print(f"API token {args.id} revoked")
    return 0


def _token_id(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a token id (see: token list)") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a token id (see: token list)")
    return value


def _days(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of days") from None


def cmd_host(config: Config, args: argparse.Namespace) -> int:
    if args.action == "add":
        following = _following(args)
        token = _run(
            _with_admin(
                config,
                lambda a: a.add_host(
                    args.fqdn, args.owner, wildcard=args.wildcard, following=following
                ),
            )
        )
        print(f"host {args.fqdn} added for {args.owner}")
        print(f"host token (shown once; user name = {args.fqdn}): {token}")
        print(
            f"a running server answers for it once it reads the change (within "
            f"{config.server.poll_interval:g} s, server.poll_interval); until then: nohost"
        )
    elif args.action == "set":
        wildcard = None if args.wildcard is None else args.wildcard == "on"
        following = _following(args)
        if wildcard is None and following is None:
            raise CliError("host set: give --wildcard on|off, --follows HOST or --no-follow")
        done = _run(
            _with_admin(
                config, lambda a: a.set_host(args.fqdn, wildcard=wildcard, following=following)
            )
        )
        print(f"host {args.fqdn}: {', '.join(done) or 'unchanged'}")
    elif args.action == "token":
        token = _run(_with_admin(config, lambda a: a.rotate_token(args.fqdn)))
        print(f"new host token for {args.fqdn}: {token}")
        print(
            f"a running server takes it, and refuses the old one, once it reads the change "
            f"(within {config.server.poll_interval:g} s, server.poll_interval)"
        )
    elif args.action == "remove":
        _run(_with_admin(config, lambda a: a.remove_host(args.fqdn)))
        print(f"host {args.fqdn} removed")
    elif args.action == "unblock":
        if _run(_with_admin(config, lambda a: a.unblock_host(args.fqdn))):
            print(f"host {args.fqdn} unblocked: it may update again")
        else:
            print(f"host {args.fqdn} was not blocked")
    elif args.action == "log":
        return _host_log(config, args)
    elif args.action == "list":
        from .listing import columns, features, hosts_json

        rows = _run(_with_admin(config, lambda a: a.list_hosts()))
        if args.json:
            for line in hosts_json(rows):
                print(line)
            return 0
        if not rows:
            print(f"no hosts yet: add one with `{PROG} host add FQDN --owner NAME`")
            return 0
        header = (
            "HOST",
            "OWNER",
            "A",
            "AAAA",
            "LAST UPDATE",
            "LAST RESULT",
            "LAST SEEN",
            "NOCHG",
            "DNS",
            "BACKEND ERROR",
            "MORE",
        )
        table = [header] + [
            (
                row.fqdn,
                row.owner,
                ",".join(row.records.get("A", ())) or "-",
                ",".join(row.records.get("AAAA", ())) or "-",
                _when(row.last_update_at),
                f"abuse: blocked since {_when(row.blocked_at)} (host unblock)"
                if row.blocked_at is not None
                else row.last_result or "-",
                _when(row.last_seen_at),
                str(row.nochg_count),
                "; ".join(f"{b}: {'+'.join(t)} pending" for b, t in row.pending.items())
                or "applied",
                "; ".join(f"{b}: {e}" for b, e in row.errors.items()) or "-",
                features(row),
            )
            for row in rows
        ]
        for line in columns(table):
            print(line)
    return 0


def _following(args: argparse.Namespace) -> Following | None:
    """Whose IPv6 prefix ``host add``/``host set`` make the host follow (None: unchanged)."""
    from .admin import Following

    if getattr(args, "no_follow", False):
        return Following(None)
    if args.follows is None:
        if args.interface_id is not None or args.prefix_length is not None:
            raise CliError("--interface-id and --prefix-length go with --follows HOST")
        return None
    return Following(args.follows, args.interface_id, args.prefix_length)


def _host_log(config: Config, args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from .listing import history_json, history_table, parse_since

    since = None
    if args.since is not None:
        try:
            since = parse_since(args.since, datetime.now(UTC))
        except ValueError as exc:
            raise CliError(str(exc)) from None
    if not args.limit.isdigit():
        raise CliError(f"--limit: {args.limit!r} is not a number of answers (0: all)")
    limit = int(args.limit) or None
    history = _run(
        _with_admin(config, lambda a: a.host_history(args.fqdn, since=since, limit=limit))
    )
    for line in history_json(history) if args.json else history_table(history, since):
        print(line)
    return 0


def _check_database(config: Config) -> None:
    from .db import sqlite_location_problem

    problem = sqlite_location_problem(config.server.database)
    if problem is not None:
        raise ConfigError(problem)


def cmd_check_config(config: Config, args: argparse.Namespace) -> int:
    from .backends import BackendUnavailable, create_backend

    for name, table in config.backends.items():
        try:
            create_backend(name, table)
        except BackendUnavailable as exc:
            raise ConfigError(str(exc)) from None
    _check_database(config)
    transfer = config.dns.transfer
    if transfer.enabled:
        from .dns.tsig import KeyFileError, transfer_key

        try:
            key = transfer_key(transfer)
        except KeyFileError as exc:
            raise ConfigError(f"dns.transfer: {exc}") from None
        secondaries = f", transfers signed with key {key.name.to_text(omit_final_dot=True)}"
        secondaries += f" to {', '.join(map(str, transfer.allow)) or 'nobody'}"
        if transfer.notify:
            secondaries += f", NOTIFY to {', '.join(transfer.notify)}"
    else:
        secondaries = ""
    zones = ", ".join(
        f"{z.name} (backend {' + '.join(z.backends)}, ttl {z.ttl})" for z in config.zones
    )
    where = args.config_path or "built-in defaults"
    if not config.dns.enabled:
        dns = "off"
    elif not any("builtin" in z.backends for z in config.zones):
        dns = "off (no zone uses the builtin backend)"
    else:
        dns = shown(*config.dns.endpoint)
    print(
        f"configuration OK ({where}): HTTP {shown(*config.server.endpoint)}, "
        f"DNS {dns}{secondaries}, zones: {zones}"
    )
    for fqdn, reason in _run(_reserved_hosts(config)):
        print(
            f"warning: host {fqdn} is {reason}, not a host name: its updates are refused; "
            f"remove it with `{PROG} host remove {fqdn}`",
            file=sys.stderr,
        )
    return 0


async def _reserved_hosts(config: Config) -> list[tuple[str, str]]:
    """Hosts in an existing database that cannot be hosts; none if there is no database."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from .admin import Admin
    from .db import create_engine
    from .store import describe_failure

    url = config.server.database_url()
    database = make_url(url).database
    if make_url(url).get_backend_name() == "sqlite" and not (database and os.path.exists(database)):
        return []  # check-config does not create the database
    engine = create_engine(url)
    try:
        return await Admin(engine, config).reserved_hosts()
    except (SQLAlchemyError, OSError) as exc:
        print(
            f"warning: could not look at the hosts in the database: {describe_failure(exc)}",
            file=sys.stderr,
        )
        return []
    finally:
        await engine.dispose()


async def _demo(config: Config) -> tuple[str, str, str]:
    from .admin import AdminError

    zone = next((z for z in config.zones if "builtin" in z.backends), config.zones[0])
    fqdn = f"demo.{zone.name}"
    password = secrets.token_urlsafe(12)

    async def setup(admin: Any) -> None:
        try:
            await admin.add_user("demo", password)
        except AdminError:
            await admin.set_password("demo", password)
        try:
            await admin.add_host(fqdn, "demo")
        except AdminError:
            pass  # already there from an earlier --demo run

    await _with_admin(config, setup)
    return "demo", password, fqdn


def _worker_count(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        count = 0
    if not 1 <= count <= 64:
        raise argparse.ArgumentTypeError(f"must be a number from 1 to 64 (got {text!r})")
    return count


def cmd_serve(config: Config, args: argparse.Namespace) -> int:
    from .backends import BackendUnavailable
    from .runtime import Runtime, WorkerRole, serve, setup_logging
    from .workers import parse_role

    if args.worker is not None:
        from .logformat import set_worker

        set_worker(parse_role(args.worker)[0])
    setup_logging(config.server.log_level, config.server.log_format)
    path = Path(args.config_path) if args.config_path else None
    count = args.workers or config.server.workers
    if args.worker is None and count > 1:
        return _serve_workers(config, path, count, demo=args.demo)
    role = None
    if args.worker is not None:
        role = WorkerRole(*parse_role(args.worker))
    try:
        runtime = Runtime(config, role)
    except BackendUnavailable as exc:
        raise ConfigError(str(exc)) from None
    demo = _run(_demo(config)) if args.demo else None

    def explain(started: Runtime) -> None:
        if demo is not None:
            user, password, fqdn = demo
            host, port = config.server.endpoint
            lines = [
                f"Demo account ready: user {user!r}, password {password!r}, host {fqdn}",
                "Try it:",
                f"  curl -u {user}:{password} "
                f"'http://{shown(host, port)}/nic/update?hostname={fqdn}&myip=203.0.113.7'",
            ]
            if started.dns is not None:  # only a DNS server that really listens
                lines.append(f"  dig @{config.dns.endpoint[0]} -p {started.dns.port} {fqdn} A")
            else:
                lines.append("  (no built-in DNS here: dns.enabled is off or no zone uses it)")
            print("\n".join(lines) + "\n", flush=True)
        elif not started.state.users:
            print(
                f"No accounts yet. Create one and a host, in another terminal:\n"
                f"  {PROG} user add alice\n"
                f"  {PROG} host add home.{config.zones[0].name} --owner alice\n"
                f"(or start with `{PROG} serve --demo` to get a ready-made demo account)\n",
                flush=True,
            )

    try:
        _run(serve(runtime, explain, load=lambda: load_config(path)))
    except KeyboardInterrupt:
        pass
    return 0


def _serve_workers(config: Config, path: Path | None, count: int, *, demo: bool) -> int:
    """The supervisor of ``count`` workers (:mod:`.workers`): the schema once, first."""
    from . import workers
    from .db import create_engine, ensure_schema

    async def migrate() -> None:
        engine = create_engine(config.server.database_url())
        try:
            await ensure_schema(engine, config.server.database_url())
        finally:
            await engine.dispose()

    _run(migrate())
    if demo:
        user, password, fqdn = _run(_demo(config))
        host, port = config.server.endpoint
        print(
            f"Demo account ready: user {user!r}, password {password!r}, host {fqdn}\n"
            f"Try it:\n  curl -u {user}:{password} "
            f"'http://{shown(host, port)}/nic/update?hostname={fqdn}&myip=203.0.113.7'\n",
            flush=True,
        )
    return workers.run(count, path)


def cmd_reconcile(config: Config, args: argparse.Namespace) -> int:
    from .backends import BackendUnavailable
    from .repair import reconcile_now

    try:
        result = _run(reconcile_now(config, timeout=args.timeout))
    except BackendUnavailable as exc:
        raise ConfigError(str(exc)) from None
    failed = False
    for report in result.reports:
        if report.error:
            print(f"{report.backend}: cannot read DNS back: {report.error}")
            failed = True
            continue
        fixed = len(report.repaired)
        print(f"{report.backend}: {report.checked} names checked, {fixed} differed from DNS")
        for line in report.repaired:
            print(f"  re-applied {line}")
    for backend, names in result.stuck.items():
        failed = True
        print(f"{backend}: {len(names)} names still not applied:")
        for line in names:
            print(f"  {line}")
    if not result.reports and not result.stuck:
        print("nothing to reconcile: no backend besides builtin is configured")
    elif not failed:
        print("all backends have the desired records")
    return 1 if failed or not result.settled else 0


def cmd_backup(config: Config, args: argparse.Namespace) -> int:
    from .backup import BackupError, backup_sqlite, pg_dump_command, sqlite_path

    database = sqlite_path(config.server.database)
    if database is None:
        command = pg_dump_command(
            config.server.database, config.server.database_password_file, args.path
        )
        raise CliError(f"server.database is PostgreSQL: back it up with `{command}`")
    try:
        print(backup_sqlite(database, args.path, force=args.force).summary())
    except BackupError as exc:
        raise CliError(str(exc)) from None
    return 0


def _following_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--follows",
        metavar="HOST",
        help="take HOST's IPv6 prefix (as its updates send it) for this host's AAAA record",
    )
    parser.add_argument(
        "--interface-id",
        metavar="IID",
        help="this machine's interface id, appended to the prefix (e.g. ::1234:5678:9abc:def0)",
    )
    parser.add_argument(
        "--prefix-length",
        metavar="N",
        type=int,
        help="bits taken from the prefix, the rest from the interface id (default 64)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Dynamic DNS update server (dyndns2).")
    parser.add_argument(
        "--config",
        metavar="PATH",
        help="TOML configuration file (default: $NICUPDATE_CONFIG, ./nicupdate.toml)",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the HTTP update endpoint and the built-in DNS")
    serve.add_argument(
        "--demo",
        action="store_true",
        help="create a demo account and host and print how to try them",
    )
    serve.add_argument(
        "--workers",
        type=_worker_count,
        metavar="N",
        help="N processes sharing the HTTP port (default: server.workers, 1)",
    )
    serve.add_argument("--worker", help=argparse.SUPPRESS)  # I/N/GROUP: one of them
    serve.set_defaults(func=cmd_serve)

    user = commands.add_parser("user", help="manage accounts")
    user_actions = user.add_subparsers(dest="action", required=True, metavar="ACTION")
    for action, text in (("add", "add an account"), ("passwd", "change an account's password")):
        sub = user_actions.add_parser(action, help=text)
        sub.add_argument("name")
        sub.add_argument(
            "--password-stdin",
            action="store_true",
            help="read the password from the first line of standard input",
        )
        if action == "add":
            sub.add_argument(
                "--admin",
                action="store_true",
                help="an admin: manages every account and sees the server's status (web UI, API)",
            )
    admin = user_actions.add_parser("admin", help="make an account an admin, or not")
    admin.add_argument("name")
    admin.add_argument("state", choices=["on", "off"])
    for action, text in (
        ("disable", "refuse an account everywhere (its passwords, host tokens, API tokens)"),
        ("enable", "let a disabled account in again"),
        ("totp-off", "turn off an account's two-factor sign-in to the web UI (a lost phone)"),
    ):
        user_actions.add_parser(action, help=text).add_argument("name")
    user_actions.add_parser("list", help="list accounts")
    remove = user_actions.add_parser("remove", help="remove an account")
    remove.add_argument("name")
    remove.add_argument("--with-hosts", action="store_true", help="also remove its hosts")
    user.set_defaults(func=cmd_user)

    token = commands.add_parser("token", help="manage REST API tokens (/api/v1)")
    token_actions = token.add_subparsers(dest="action", required=True, metavar="ACTION")
    token_add = token_actions.add_parser("add", help="make an API token (printed once)")
    token_add.add_argument("user")
    token_add.add_argument("--name", help="what it is for (shown in lists; default: cli)")
    token_add.add_argument(
        "--host",
        dest="hosts",
        action="append",
        metavar="FQDN",
        help="only this host of the user (repeat for more; default: every host)",
    )
    token_add.add_argument("--read-only", action="store_true", help="may only read")
    token_add.add_argument(
        "--acme-only",
        action="store_true",
        help="may only set the hosts' _acme-challenge TXT records",
    )
    token_add.add_argument(
        "--expires", type=_days, metavar="DAYS", help="expires after DAYS days (default: never)"
    )
    token_list = token_actions.add_parser("list", help="list API tokens (never their secrets)")
    token_list.add_argument("user", nargs="?", help="only this user's")
    token_revoke = token_actions.add_parser("revoke", help="revoke an API token")
    token_revoke.add_argument("id", type=_token_id, help="its id (see: token list)")
    token.set_defaults(func=cmd_token)

    host = commands.add_parser("host", help="manage hosts")
    host_actions = host.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = host_actions.add_parser("add", help="add a host (prints its token once)")
    add.add_argument("fqdn")
    add.add_argument("--owner", required=True, help="the account that may update it")
    add.add_argument("--wildcard", action="store_true", help="*.FQDN carries its addresses too")
    _following_arguments(add)
    host_set = host_actions.add_parser(
        "set", help="turn a host's wildcard on or off, or change whose IPv6 prefix it follows"
    )
    host_set.add_argument("fqdn")
    host_set.add_argument("--wildcard", choices=("on", "off"), help="*.FQDN carries its addresses")
    _following_arguments(host_set)
    host_set.add_argument(
        "--no-follow", action="store_true", help="follow no host's prefix any more"
    )
    token = host_actions.add_parser("token", help="replace a host's token")
    token.add_argument("fqdn")
    listing = host_actions.add_parser("list", help="list hosts with addresses and last results")
    listing.add_argument("--json", action="store_true", help="one JSON object per host and line")
    history = host_actions.add_parser(
        "log", help="a host's update history: every answer but nochg, oldest first"
    )
    history.add_argument("fqdn")
    history.add_argument(
        "--since", metavar="WHEN", help="only answers since: 90s, 30m, 12h, 7d, 2w, or a UTC date"
    )
    history.add_argument(
        "--limit", metavar="N", default="50", help="the newest N answers (default 50; 0: all)"
    )
    history.add_argument("--json", action="store_true", help="one JSON object per answer and line")
    host_remove = host_actions.add_parser("remove", help="remove a host and its records")
    host_remove.add_argument("fqdn")
    unblock = host_actions.add_parser(
        "unblock", help="let a host blocked for abuse (answering `abuse`) update again"
    )
    unblock.add_argument("fqdn")
    host.set_defaults(func=cmd_host)

    reconcile = commands.add_parser(
        "reconcile", help="read the records back from each backend and re-apply what differs"
    )
    reconcile.add_argument(
        "--timeout", type=float, default=120.0, help="seconds to wait for DNS (default 120)"
    )
    reconcile.set_defaults(func=cmd_reconcile)

    check = commands.add_parser("check-config", help="validate the configuration")
    check.set_defaults(func=cmd_check_config)

    backup = commands.add_parser(
        "backup", help="write a consistent copy of the live SQLite database (docs/backup.md)"
    )
    backup.add_argument("path", metavar="PATH", help="the file to write (0600)")
    backup.add_argument("--force", action="store_true", help="replace PATH if it exists")
    backup.set_defaults(func=cmd_backup)

    from .acmedns.cli import add_commands as add_acme_commands
    from .rfc2136in.cli import add_commands as add_key_commands

    add_acme_commands(commands)
    add_key_commands(commands)
    return parser


def _refused_by_admin(exc: Exception) -> bool:
    """Whether ``exc`` is an :class:`~.admin.AdminError`, without importing ``admin``
    (and the ORM mapping it brings) into ``serve``, which never raises one."""
    from .admin import AdminError

    return isinstance(exc, AdminError)


def main(argv: Sequence[str] | None = None) -> int:
    from .db import DatabaseError

    args = build_parser().parse_args(argv)
    # The database and any secret this process writes are for its owner alone.
    os.umask(0o077)
    path = find_config_file(args.config, os.environ)
    args.config_path = str(path) if path else None
    try:
        config = load_config(path)
        result: int = args.func(config, args)
        return result
    except ConfigError as exc:
        print(f"{PROG}: config error: {exc}", file=sys.stderr)
        return 2
    except (CliError, DatabaseError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    except StartupError as exc:
        print(f"{PROG}: cannot start: {exc}", file=sys.stderr)
        return 3
    except Exception as exc:
        if not _refused_by_admin(exc):
            raise
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
