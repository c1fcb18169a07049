"""The public address of a local network interface (an ``interface:NAME`` source).

On Linux we ask ``ip -j addr``, on Windows PowerShell's ``Get-NetIPAddress``; both
print JSON, which the pure parsers :func:`parse_ip_json` and
:func:`parse_powershell_json` turn into candidate addresses, best first:

- only global-scope addresses in a usable state (not deprecated, tentative or
  duplicate);
- on Linux, temporary (privacy) addresses are dropped; stable ones come first
  (static or ``valid_lft forever``, then the SLAAC ``mngtmpaddr`` address), then the
  other dynamic ones — the order ddclient uses;
- on Windows, manual and link-layer (EUI-64) suffixes come first, DHCP next, and
  ``Random`` suffixes last: Windows randomises the stable address too by default
  (``randomizeidentifiers``), so a random suffix alone cannot tell a temporary address
  from the stable one; among those the longer-lived one wins.

:func:`interface_address` then returns the first candidate that passes
:func:`~nicupdate_client.addresses.check_public`.
"""

from __future__ import annotations

import ipaddress
import json
import sys
from typing import Any

from .addresses import AddressProblem, check_public
from .runner import CommandResult, Runner

FOREVER = 4294967295  # the kernel's "infinite" lifetime (valid_lft forever)
_TIMESPAN_MAX_TICKS = 9223372036854775807  # .NET TimeSpan.MaxValue: "Infinite"

# Get-NetIPAddress enums: ConvertTo-Json prints them as numbers (Windows PowerShell
# 5.1) or names, depending on the version; both are accepted.
_SUFFIX_ORIGIN = {0: "Other", 1: "Manual", 2: "WellKnown", 3: "Dhcp", 4: "Link", 5: "Random"}
_ADDRESS_STATE = {0: "Invalid", 1: "Tentative", 2: "Duplicate", 3: "Deprecated", 4: "Preferred"}
_SUFFIX_RANK = {"Manual": 0, "Link": 0, "WellKnown": 0, "Dhcp": 1, "Other": 1, "Random": 2}


def any_interface(name: str) -> bool:
    return name in ("", "*")


def parse_ip_json(text: str, family: int) -> list[str]:
    """Candidate addresses of ``family`` in ``ip -j addr`` output, best first."""
    entries = _load(text, "ip")
    if not isinstance(entries, list):
        raise AddressProblem("ip printed JSON that is not a list of interfaces")
    ranked: list[tuple[int, int, str]] = []
    for link in entries:
        infos = link.get("addr_info", []) if isinstance(link, dict) else []
        for info in infos if isinstance(infos, list) else []:
            if not isinstance(info, dict):
                continue
            address = _address(info.get("local"), family)
            if address is None or info.get("scope") != "global":
                continue
            if any(_flag(info, f) for f in ("temporary", "deprecated", "tentative", "dadfailed")):
                continue
            if info.get("preferred_life_time") == 0:
                continue  # deprecated, whatever the flags say
            if info.get("valid_life_time") == FOREVER or not _flag(info, "dynamic"):
                rank = 0
            elif _flag(info, "mngtmpaddr"):
                rank = 1
            else:
                rank = 2
            ranked.append((rank, len(ranked), address))
    return [address for _, _, address in sorted(ranked)]


def _flag(info: dict[str, Any], name: str) -> bool:
    # iproute2 prints a flag as "name": true; accept a list of flags as well.
    flags = info.get("flags")
    return info.get(name) is True or (isinstance(flags, list) and name in flags)


def parse_powershell_json(text: str, family: int) -> list[str]:
    """Candidate addresses of ``family`` in ``Get-NetIPAddress | ConvertTo-Json``, best first."""
    if not text.strip():
        return []  # nothing matched: PowerShell prints nothing at all
    loaded = _load(text, "PowerShell")
    rows = loaded if isinstance(loaded, list) else [loaded]
    ranked: list[tuple[int, float, int, str]] = []
    for row in rows:
        if not isinstance(row, dict):
            continue
        address = _address(row.get("IPAddress"), family)
        if address is None:
            continue
        if _enum(row.get("AddressState"), _ADDRESS_STATE) != "Preferred":
            continue  # deprecated, tentative, duplicate or invalid
        rank = _SUFFIX_RANK.get(_enum(row.get("SuffixOrigin"), _SUFFIX_ORIGIN), 1)
        ranked.append((rank, -_lifetime(row.get("ValidLifetime")), len(ranked), address))
    return [address for *_, address in sorted(ranked)]


def _enum(value: object, names: dict[int, str]) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return names.get(value, str(value))
    return value if isinstance(value, str) else ""


def _lifetime(value: object) -> float:
    """Seconds of a serialised TimeSpan (``{"Ticks": ..., "TotalSeconds": ...}``)."""
    if isinstance(value, dict):
        ticks = value.get("Ticks")
        if isinstance(ticks, int) and ticks >= _TIMESPAN_MAX_TICKS:
            return float("inf")
        seconds = value.get("TotalSeconds")
        if isinstance(seconds, int | float):
            return float(seconds)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return 0.0


def _load(text: str, program: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        raise AddressProblem(f"{program} printed something that is not JSON") from None


def _address(value: object, family: int) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        ip = ipaddress.ip_address(value.partition("%")[0])  # Windows adds "%zone"
    except ValueError:
        return None
    return str(ip) if ip.version == family else None


def ip_command(name: str, family: int) -> list[str]:
    args = ["ip", "-j", f"-{family}", "addr", "show"]
    return args if any_interface(name) else [*args, "dev", name]


def powershell_command(name: str, family: int) -> list[str]:
    alias = ""
    if not any_interface(name):
        # A single-quoted PowerShell string: quotes (typographic ones too) are doubled.
        quoted = "".join(c * 2 if c in "'\u2018\u2019\u201a\u201b" else c for c in name)
        alias = f" -InterfaceAlias '{quoted}'"
    script = (
        "[Console]::OutputEncoding = [Text.Encoding]::UTF8; "
        f"Get-NetIPAddress -AddressFamily IPv{family}{alias}"
        " | Select-Object IPAddress,InterfaceAlias,PrefixOrigin,SuffixOrigin,"
        "AddressState,ValidLifetime | ConvertTo-Json"
    )
    return ["powershell", "-NoProfile", "-NonInteractive", "-Command", script]


def interface_address(
    name: str,
    family: int,
    *,
    runner: Runner,
    platform: str = sys.platform,
    accept_private: bool,
) -> str:
    """The best public address of ``family`` on interface ``name`` (``*``: any interface)."""
    windows = platform == "win32"
    args = powershell_command(name, family) if windows else ip_command(name, family)
    result = runner(args)
    if not result.ok:
        raise AddressProblem(_failure(args[0], result))
    parse = parse_powershell_json if windows else parse_ip_json
    candidates = parse(result.stdout, family)
    refused: list[str] = []
    for address in candidates:
        try:
            check_public(address, family, accept_private)
        except AddressProblem as problem:
            refused.append(str(problem))
            continue
        return address
    where = "no interface has" if any_interface(name) else f"interface {name} has"
    because = f" ({refused[0]})" if refused else ""
    raise AddressProblem(f"{where} no public IPv{family} address{because}")


def _failure(program: str, result: CommandResult) -> str:
    said = [line.strip() for line in (result.stderr or result.stdout).splitlines()]
    detail = next((line for line in said if line), f"exit status {result.returncode}")
    return detail if detail.startswith(f"{program}:") else f"{program}: {detail}"
