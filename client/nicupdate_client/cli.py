"""``nicupdate-client``: send one dyndns2 update and report the server's answer.

Exit status: 0 the server accepted (``good``/``nochg``), 3 a temporary failure
(``911``, ``dnserr``, network error: try again later), 4 a permanent one
(``badauth``, ``nohost``, ``notfqdn``, ``numhost``, ``badagent``, ``abuse``: fix the
configuration before trying again), 2 a usage error.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import httpx

from . import __version__

OK, USAGE, TEMPORARY, PERMANENT = 0, 2, 3, 4
PERMANENT_CODES = frozenset({"badauth", "nohost", "notfqdn", "numhost", "badagent", "abuse"})
USER_AGENT = f"nicupdate-client/{__version__}"


def classify(status: int, body: str) -> int:
    """The exit status for one answer: the worst line wins."""
    lines = [line.split()[0] for line in body.splitlines() if line.strip()]
    if not lines:
        return TEMPORARY
    if status == 401 or any(code in PERMANENT_CODES for code in lines):
        return PERMANENT
    if all(code in ("good", "nochg") for code in lines):
        return OK
    return TEMPORARY


def update(
    server: str,
    hostnames: Sequence[str],
    addresses: Sequence[str],
    username: str,
    password: str,
    *,
    timeout: float = 15.0,
) -> tuple[int, str]:
    params = {"hostname": ",".join(hostnames)}
    if addresses:
        params["myip"] = ",".join(addresses)
    response = httpx.get(
        server.rstrip("/") + "/nic/update",
        params=params,
        auth=(username, password),
        headers={"User-Agent": USER_AGENT},
        timeout=timeout,
        trust_env=False,
    )
    return response.status_code, response.text


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nicupdate-client", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    once = commands.add_parser("update", help="send one update now")
    once.add_argument("--server", required=True, help="e.g. https://ddns.example.com")
    once.add_argument("--hostname", required=True, action="append", help="may be repeated")
    once.add_argument(
        "--myip",
        action="append",
        default=[],
        help="address to set (repeat for IPv4 and IPv6); default: the server "
        "uses the address the request comes from",
    )
    once.add_argument("--username", required=True, help="account name, or the host's FQDN")
    once.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password or host token from standard input (default: $NICUPDATE_PASSWORD)",
    )
    args = parser.parse_args(argv)
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = os.environ.get("NICUPDATE_PASSWORD", "")
    if not password:
        print(
            "nicupdate-client: no password: set NICUPDATE_PASSWORD or pass --password-stdin",
            file=sys.stderr,
        )
        return USAGE
    try:
        status, body = update(args.server, args.hostname, args.myip, args.username, password)
    except httpx.HTTPError as exc:
        print(f"nicupdate-client: cannot reach {args.server}: {exc}", file=sys.stderr)
        return TEMPORARY
    print(body.strip())
    return classify(status, body)


if __name__ == "__main__":
    sys.exit(main())
