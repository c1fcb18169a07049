"""``nicupdate-client init``: ask for what is missing, find the families, store the secret."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from .config import DEFAULT_SOURCES, parse, render
from .context import Context, UsageError, forget_refusals, read_secret
from .credentials import save_secret, store_name
from .detect import detect_all
from .updater import OK, USER_AGENT, family_name


def _ask(value: str | None, prompt: str, option: str) -> str:
    if value:
        return value
    if not sys.stdin or not sys.stdin.isatty():
        raise UsageError(f"missing {option} (or run init in a terminal to be asked)")
    answer = input(prompt).strip()
    if not answer:
        raise UsageError(f"missing {option}")
    return answer


def _family(family: int, sources: list[str] | None, quorum: int | None) -> dict[str, Any]:
    section: dict[str, Any] = {}
    if sources:
        section["sources"] = sources
    if quorum is not None:
        section["quorum"] = min(quorum, len(sources or DEFAULT_SOURCES[family]))
    return section


def _found_families(raw: dict[str, Any], wanted: dict[int, bool | None]) -> dict[int, bool]:
    """Families the user left open are enabled where the sources find an address.

    Only the sources of the open families are asked: a family turned on or off with
    ``--ipv4``/``--ipv6`` is settled already.
    """
    found = {family: bool(on) for family, on in wanted.items()}
    open_families = [family for family, on in sorted(wanted.items()) if on is None]
    if not open_families:
        return found
    print("Looking for this machine's public addresses...")
    asked = dict(raw)
    for family in wanted:
        asked[f"ipv{family}"] = {**raw[f"ipv{family}"], "enabled": family in open_families}
    verdicts = asyncio.run(detect_all(parse(asked), cooldowns={}, user_agent=USER_AGENT))
    for family, verdict in sorted(verdicts.items()):
        print(f"  {family_name(family)}: {verdict.reason}")
        found[family] = verdict.address is not None
    if not any(found.values()):
        fallback = open_families[0]
        print(f"  No address found: enabling {family_name(fallback)}. Check with 'detect'.")
        found[fallback] = True
    return found


def cmd_init(ctx: Context) -> int:
    args = ctx.args
    if ctx.config_path.exists() and not args.force:
        raise UsageError(f"{ctx.config_path} exists: pass --force to replace it")
    if args.ipv4 is False and args.ipv6 is False:
        raise UsageError("--no-ipv4 and --no-ipv6 leave nothing to update: drop one of them")
    raw: dict[str, Any] = {
        "server": _ask(args.server, "Server URL (e.g. https://ddns.example.com): ", "--server"),
        "hostnames": args.hostname or [_ask(None, "Host name to update: ", "--hostname")],
        "username": _ask(
            args.username, "User name (or the host name, with a host token): ", "--username"
        ),
        "ipv4": _family(4, args.source4, args.quorum),
        "ipv6": _family(6, args.source6, args.quorum),
    }
    for family, on in ((4, args.ipv4), (6, args.ipv6)):
        if on is not None:
            raw[f"ipv{family}"]["enabled"] = on
    parse(raw)  # a mistyped URL or host name is reported before the secret is asked for
    secret = read_secret(args)
    for family, on in _found_families(raw, {4: args.ipv4, 6: args.ipv6}).items():
        raw[f"ipv{family}"]["enabled"] = on
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
    forget_refusals(ctx, config)
    families = " and ".join(family_name(f.family) for f in config.families())
    print(f"Wrote {ctx.config_path} ({', '.join(config.hostnames)}, {families}).")
    print(f"Stored the secret in {where}.")
    scheduler = "install-task" if sys.platform == "win32" else "install-timer"
    print("Next: 'nicupdate-client run --once' sends the first update; then")
    print(f"'nicupdate-client {scheduler}' keeps it up to date every 5 minutes.")
    return OK
