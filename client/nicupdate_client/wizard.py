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
    """Families the user left open are enabled where the sources find an address."""
    if None not in wanted.values():
        return {family: bool(on) for family, on in wanted.items()}
    print("Looking for this machine's public addresses...")
    verdicts = asyncio.run(detect_all(parse(raw), cooldowns={}, user_agent=USER_AGENT))
    found = {}
    for family, verdict in sorted(verdicts.items()):
        print(f"  {family_name(family)}: {verdict.reason}")
        on = wanted[family]
        found[family] = verdict.address is not None if on is None else on
    if not any(found.values()):
        print("  No address found for either family: enabling IPv4. Check with 'detect'.")
        found[4] = True
    return found


def cmd_init(ctx: Context) -> int:
    args = ctx.args
    if ctx.config_path.exists() and not args.force:
        raise UsageError(f"{ctx.config_path} exists: pass --force to replace it")
    raw: dict[str, Any] = {
        "server": _ask(args.server, "Server URL (e.g. https://ddns.example.com): ", "--server"),
        "hostnames": args.hostname or [_ask(None, "Host name to update: ", "--hostname")],
        "username": _ask(
            args.username, "User name (or the host name, with a host token): ", "--username"
        ),
        "ipv4": _family(4, args.source4, args.quorum),
        "ipv6": _family(6, args.source6, args.quorum),
    }
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
