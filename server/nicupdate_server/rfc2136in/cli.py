"""``nicupdate-server key add|list|remove``: UPDATE messages' TSIG keys (docs/rfc2136-inbound.md).

``key add`` prints the key clause, secret and all, on standard output and nowhere else,
as ``tsig-keygen`` prints it: saved to a file it is what ``nsupdate -k FILE`` reads.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from ..config import Config
from .keys import ALGORITHMS, DEFAULT_ALGORITHM

if TYPE_CHECKING:
    from .admin import KeyAdmin

T = TypeVar("T")


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``key`` command, among ``commands`` (the CLI's sub-parsers)."""
    key = commands.add_parser(
        "key",
        help="manage TSIG keys for DNS UPDATE messages (nsupdate, routers, ACME clients; "
        "docs/rfc2136-inbound.md)",
    )
    actions = key.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = actions.add_parser(
        "add", help="a key that updates a user's hosts, or one host (prints its secret once)"
    )
    add.add_argument("name", help="the key's name (a DNS name, like home-router)")
    add.add_argument("--owner", metavar="USER", required=True, help="the user whose key it is")
    add.add_argument("--host", metavar="FQDN", help="only this host of USER's (default: all)")
    add.add_argument(
        "--algorithm",
        choices=tuple(ALGORITHMS),
        default=DEFAULT_ALGORITHM,
        help=f"the HMAC (default {DEFAULT_ALGORITHM}; hmac-md5 for MikroTik routers)",
    )
    listing = actions.add_parser("list", help="list the keys (never their secrets)")
    listing.add_argument("--owner", metavar="USER", help="only USER's keys")
    remove = actions.add_parser("remove", help="remove a key: it stops working at once")
    remove.add_argument("name")
    key.set_defaults(func=cmd_key)


async def _with_admin(config: Config, work: Callable[[KeyAdmin], Awaitable[T]]) -> T:
    from ..cli import with_engine
    from .admin import KeyAdmin

    return await with_engine(config, lambda engine: work(KeyAdmin(engine)))


def cmd_key(config: Config, args: argparse.Namespace) -> int:
    from ..cli import PROG, _run

    if args.action == "add":
        new = _run(
            _with_admin(
                config, lambda a: a.add_key(args.name, args.owner, args.host, args.algorithm)
            )
        )
        sys.stdout.write(new.clause)
        hosts = new.row.host or f"every host of {new.row.owner}"
        print(
            f"key {new.row.name} ({new.row.algorithm}) added for {hosts}; its secret is shown "
            "only this once. Save the clause above to a file for `nsupdate -k FILE`, or give "
            "the key's name and secret to the client (docs/rfc2136-inbound.md)",
            file=sys.stderr,
        )
    elif args.action == "list":
        rows = _run(_with_admin(config, lambda a: a.list_keys(args.owner)))
        if not rows:
            print(f"no keys yet: add one with `{PROG} key add NAME --owner USER`")
        for row in rows:
            hosts = f"host {row.host}" if row.host else "all hosts"
            created = row.created_at.strftime("%Y-%m-%d %H:%M:%S")
            print(f"{row.name}\towner {row.owner}\t{hosts}\t{row.algorithm}\tcreated {created}")
    elif args.action == "remove":
        row = _run(_with_admin(config, lambda a: a.remove_key(args.name)))
        print(f"key {row.name} of {row.owner} removed")
    return 0
