"""``nicupdate-server acme add|list|remove``: the acme-dns accounts (docs/acme.md).

``acme add FQDN`` prints, on standard output and nowhere else, the JSON that acme-dns's
``/register`` answers, so that an ACME client's account file can be written from it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from ..config import Config

if TYPE_CHECKING:
    from .admin import AcmeAdmin

T = TypeVar("T")


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``acme`` command, among ``commands`` (the CLI's sub-parsers)."""
    acme = commands.add_parser(
        "acme", help="manage acme-dns accounts (TXT records for ACME DNS-01, docs/acme.md)"
    )
    actions = acme.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = actions.add_parser(
        "add",
        help="an account that sets a host's _acme-challenge TXT records (prints its JSON once)",
    )
    add.add_argument("fqdn")
    listing = actions.add_parser("list", help="list the accounts")
    listing.add_argument("--owner", metavar="USER", help="only the accounts of USER's hosts")
    remove = actions.add_parser("remove", help="remove an account, or every account of a host")
    remove.add_argument("name", metavar="USERNAME|FQDN")
    acme.set_defaults(func=cmd_acme)


async def _with_admin(config: Config, work: Callable[[AcmeAdmin], Awaitable[T]]) -> T:
    from ..cli import with_engine
    from .admin import AcmeAdmin

    return await with_engine(config, lambda engine: work(AcmeAdmin(engine)))


def cmd_acme(config: Config, args: argparse.Namespace) -> int:
    from ..cli import PROG, _run

    if args.action == "add":
        registration = _run(_with_admin(config, lambda a: a.add_account(args.fqdn)))
        print(json.dumps(registration.as_json(), indent=2))
        print(
            f"acme-dns account {registration.username} added for "
            f"{registration.fulldomain}; its password is shown only this once. Give the "
            "ACME client https://YOUR-SERVER/acme-dns as its acme-dns server and this JSON "
            "as its account (docs/acme.md)",
            file=sys.stderr,
        )
    elif args.action == "list":
        rows = _run(_with_admin(config, lambda a: a.list_accounts(args.owner)))
        if not rows:
            print(f"no acme-dns accounts yet: add one with `{PROG} acme add FQDN`")
        for row in rows:
            created = row.created_at.strftime("%Y-%m-%d %H:%M:%S")
            print(f"{row.username}\t{row.fqdn}\towner {row.owner}\tcreated {created}")
    elif args.action == "remove":
        for row in _run(_with_admin(config, lambda a: a.remove_accounts(args.name))):
            print(f"acme-dns account {row.username} of {row.fqdn} removed")
    return 0
