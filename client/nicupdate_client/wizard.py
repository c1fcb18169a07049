"""``nicupdate-client init``: ask for what is missing, find the families, store the secret."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from .config import FamilyConfig, new_config, parse, render
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
    secret = read_secret(args)
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
    forget_refusals(ctx, config)
    families = " and ".join(family_name(f.family) for f in config.families())
    print(f"Wrote {ctx.config_path} ({', '.join(config.hostnames)}, {families}).")
    print(f"Stored the secret in {where}.")
    print("Next: 'nicupdate-client run --once' sends the first update; then")
    if sys.platform == "win32":
        print("'nicupdate-client install-task' keeps it up to date every 5 minutes.")
    else:
        print("'nicupdate-client install-timer' keeps it up to date every 5 minutes.")
    return OK
