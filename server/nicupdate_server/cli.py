"""``nicupdate-server``: run the server and administer accounts and hosts."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import secrets
import sys
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, TypeVar

from . import __version__
from .config import Config, ConfigError, find_config_file, load_config

PROG = "nicupdate-server"
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
    first = getpass.getpass("Password: ")
    if first != getpass.getpass("Repeat password: "):
        raise CliError("the passwords do not match")
    return first


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else "-"


async def _with_admin(config: Config, work: Callable[[Any], Awaitable[T]]) -> T:
    from .admin import Admin
    from .db import create_engine, ensure_schema

    url = config.server.database_url()
    engine = create_engine(url)
    try:
        await ensure_schema(engine, url)
        return await work(Admin(engine, config))
    finally:
        await engine.dispose()


def cmd_user(config: Config, args: argparse.Namespace) -> int:
    if args.action in ("add", "passwd"):
        password = _read_password(args)
        if args.action == "add":
            _run(_with_admin(config, lambda a: a.add_user(args.name, password)))
            print(f"user {args.name} added")
        else:
            _run(_with_admin(config, lambda a: a.set_password(args.name, password)))
            print(f"password of {args.name} changed")
    elif args.action == "list":
        rows = _run(_with_admin(config, lambda a: a.list_users()))
        if not rows:
            print(f"no users yet: add one with `{PROG} user add NAME`")
        for row in rows:
            print(f"{row.name}\t{row.hosts} host(s)\tcreated {_when(row.created_at)}")
    elif args.action == "remove":
        removed = _run(
            _with_admin(config, lambda a: a.remove_user(args.name, with_hosts=args.with_hosts))
        )
        print(f"user {args.name} removed" + (f" with {removed} host(s)" if removed else ""))
    return 0


def cmd_host(config: Config, args: argparse.Namespace) -> int:
    if args.action == "add":
        token = _run(_with_admin(config, lambda a: a.add_host(args.fqdn, args.owner)))
        print(f"host {args.fqdn} added for {args.owner}")
        print(f"host token (shown once; user name = {args.fqdn}): {token}")
    elif args.action == "token":
        token = _run(_with_admin(config, lambda a: a.rotate_token(args.fqdn)))
        print(f"new host token for {args.fqdn} (the old one no longer works): {token}")
    elif args.action == "remove":
        _run(_with_admin(config, lambda a: a.remove_host(args.fqdn)))
        print(f"host {args.fqdn} removed")
    elif args.action == "unblock":
        if _run(_with_admin(config, lambda a: a.unblock_host(args.fqdn))):
            print(f"host {args.fqdn} unblocked: it may update again")
        else:
            print(f"host {args.fqdn} was not blocked")
    elif args.action == "list":
        rows = _run(_with_admin(config, lambda a: a.list_hosts()))
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
            )
            for row in rows
        ]
        widths = [max(len(line[i]) for line in table) for i in range(len(header))]
        for line in table:
            print(
                "  ".join(
                    cell.ljust(width) for cell, width in zip(line, widths, strict=True)
                ).rstrip()
            )
    return 0


def cmd_check_config(config: Config, args: argparse.Namespace) -> int:
    from .backends import BackendUnavailable, create_backend

    for name, table in config.backends.items():
        try:
            create_backend(name, table)
        except BackendUnavailable as exc:
            raise ConfigError(str(exc)) from None
    zones = ", ".join(
        f"{z.name} (backend {' + '.join(z.backends)}, ttl {z.ttl})" for z in config.zones
    )
    where = args.config_path or "built-in defaults"
    print(
        f"configuration OK ({where}): HTTP {config.server.listen}, "
        f"DNS {config.dns.listen if config.dns.enabled else 'off'}, zones: {zones}"
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


def cmd_serve(config: Config, args: argparse.Namespace) -> int:
    from .backends import BackendUnavailable
    from .runtime import Runtime, serve, setup_logging

    setup_logging(config.server.log_level)
    try:
        runtime = Runtime(config)
    except BackendUnavailable as exc:
        raise ConfigError(str(exc)) from None
    if args.demo:
        user, password, fqdn = _run(_demo(config))
        host, port = config.server.endpoint
        dns_host, dns_port = config.dns.endpoint
        print(
            f"Demo account ready: user {user!r}, password {password!r}, host {fqdn}\n"
            f"Try it:\n"
            f"  curl -u {user}:{password} "
            f"'http://{host}:{port}/nic/update?hostname={fqdn}&myip=203.0.113.7'\n"
            f"  dig @{dns_host} -p {dns_port} {fqdn} A\n",
            flush=True,
        )

    def explain_if_empty(started: Runtime) -> None:
        if not started.state.users:
            print(
                f"No accounts yet. Create one and a host, in another terminal:\n"
                f"  {PROG} user add alice\n"
                f"  {PROG} host add home.{config.zones[0].name} --owner alice\n"
                f"(or start with `{PROG} serve --demo` to get a ready-made demo account)\n",
                flush=True,
            )

    try:
        _run(serve(runtime, explain_if_empty))
    except KeyboardInterrupt:
        pass
    return 0


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
    user_actions.add_parser("list", help="list accounts")
    remove = user_actions.add_parser("remove", help="remove an account")
    remove.add_argument("name")
    remove.add_argument("--with-hosts", action="store_true", help="also remove its hosts")
    user.set_defaults(func=cmd_user)

    host = commands.add_parser("host", help="manage hosts")
    host_actions = host.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = host_actions.add_parser("add", help="add a host (prints its token once)")
    add.add_argument("fqdn")
    add.add_argument("--owner", required=True, help="the account that may update it")
    token = host_actions.add_parser("token", help="replace a host's token")
    token.add_argument("fqdn")
    host_actions.add_parser("list", help="list hosts with addresses and last results")
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from .admin import AdminError
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
    except (AdminError, CliError, DatabaseError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
