"""The client's TOML configuration: what to update, where, and how to find the address.

A minimal file::

    server = "https://ddns.example.com"
    username = "alice"                   # or the host's FQDN with a host token
    hostnames = ["home.dyn.example.com"]

Everything else has a default (see ``docs/client.md``). The secret is not in this
file: it lives in the OS credential store, or in ``secret_file``.
"""

from __future__ import annotations

import ipaddress
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import tomli_w

# "server" is the nicupdate server's own /myip; the others are public echo services,
# mixed so that some are reachable from mainland China (shared/CLIENT.md).
DEFAULT_SOURCES = {
    4: (
        "server",
        "https://api.ipify.org",
        "https://ipv4.icanhazip.com",
        "https://4.ipw.cn",
        "https://ip.3322.net",
        "https://checkip.amazonaws.com",
        "https://v4.ident.me",
    ),
    6: (
        "server",
        "https://api6.ipify.org",
        "https://ipv6.icanhazip.com",
        "https://6.ipw.cn",
        "https://v6.ident.me",
        "https://speed.neu6.edu.cn/getIP.php",
    ),
}
SOURCE_KINDS = ("server", "http://", "https://", "interface:", "command:")


class ConfigError(Exception):
    """The configuration is unusable; the message names the file and the key."""


@dataclass(frozen=True)
class FamilyConfig:
    """How to find the address of one family (4 or 6)."""

    family: int
    enabled: bool = True
    sources: tuple[str, ...] = ()
    quorum: int = 2
    # Accept private, CGNAT and documentation addresses (a LAN-only zone).
    accept_private: bool = False


@dataclass(frozen=True)
class ClientConfig:
    server: str
    username: str
    hostnames: tuple[str, ...]
    ipv4: FamilyConfig
    ipv6: FamilyConfig
    path: Path | None = None
    secret_file: Path | None = None
    state_dir: Path | None = None
    log_dir: Path | None = None
    interval: float = 300.0  # between checks in `run`
    refresh_days: float = 25.0  # resend an unchanged address after this long
    timeout: float = 10.0  # per HTTP request
    network_wait: float = 120.0  # how long `run --once` waits for a network after boot
    backoff_initial: float = 60.0
    backoff_max: float = 3600.0

    def families(self) -> tuple[FamilyConfig, ...]:
        return tuple(f for f in (self.ipv4, self.ipv6) if f.enabled)

    @property
    def update_url(self) -> str:
        return self.server.rstrip("/") + "/nic/update"

    @property
    def myip_url(self) -> str:
        return self.server.rstrip("/") + "/myip"

    def fingerprint(self, hostname: str) -> str:
        """What a permanent refusal of ``hostname`` depended on: change it to retry."""
        return f"{self.server.rstrip('/')}|{self.username}|{hostname}"


def load(path: Path) -> ClientConfig:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no such file: run 'nicupdate-client init' or pass --config"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    try:
        return parse(raw, path)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def parse(raw: Mapping[str, Any], path: Path | None = None) -> ClientConfig:
    reader = _Reader(raw, "")
    server = reader.text("server", None)
    split = urlsplit(server)
    if split.scheme not in ("http", "https") or not split.hostname:
        raise ConfigError(f"server: {server!r} is not an http:// or https:// URL")
    hostnames = reader.names("hostnames")
    config = ClientConfig(
        server=server,
        username=reader.text("username", None),
        hostnames=hostnames,
        ipv4=_family(raw, 4),
        ipv6=_family(raw, 6),
        path=path,
        secret_file=reader.path("secret_file"),
        state_dir=reader.path("state_dir"),
        log_dir=reader.path("log_dir"),
        interval=reader.seconds("interval", 300.0, minimum=10.0),
        refresh_days=reader.seconds("refresh_days", 25.0, minimum=0.0),
        timeout=reader.seconds("timeout", 10.0, minimum=0.5),
        network_wait=reader.seconds("network_wait", 120.0, minimum=0.0),
        backoff_initial=_Reader(raw.get("backoff", {}), "backoff.").seconds(
            "initial", 60.0, minimum=0.1
        ),
        backoff_max=_Reader(raw.get("backoff", {}), "backoff.").seconds(
            "maximum", 3600.0, minimum=0.1
        ),
    )
    if not config.families():
        raise ConfigError("ipv4.enabled and ipv6.enabled are both false: nothing to update")
    known = {"server", "username", "hostnames", "secret_file", "state_dir", "log_dir"}
    known |= {"interval", "refresh_days", "timeout", "network_wait", "backoff", "ipv4", "ipv6"}
    _no_unknown(raw, known, "")
    _no_unknown(raw.get("backoff", {}), {"initial", "maximum"}, "backoff.")
    return config


def _family(raw: Mapping[str, Any], family: int) -> FamilyConfig:
    section = raw.get(f"ipv{family}", {})
    where = f"ipv{family}."
    if not isinstance(section, Mapping):
        raise ConfigError(f"ipv{family}: must be a table")
    reader = _Reader(section, where)
    sources = reader.strings("sources", DEFAULT_SOURCES[family])
    for source in sources:
        if not source.startswith(SOURCE_KINDS) or source in ("interface:", "command:"):
            raise ConfigError(
                f"{where}sources: {source!r} is not 'server', an http(s):// URL, "
                "'interface:NAME' or 'command:COMMAND'"
            )
    enabled = reader.boolean("enabled", True)
    quorum = reader.integer("quorum", min(2, len(sources)))
    if enabled and not sources:
        raise ConfigError(f"{where}sources: empty; list at least one source")
    if enabled and not 1 <= quorum <= len(sources):
        raise ConfigError(
            f"{where}quorum: {quorum} cannot be met by {len(sources)} source(s); "
            f"use 1 to {len(sources)}"
        )
    _no_unknown(section, {"enabled", "sources", "quorum", "accept_private"}, where)
    return FamilyConfig(
        family=family,
        enabled=enabled,
        sources=sources,
        quorum=quorum,
        accept_private=reader.boolean("accept_private", False),
    )


def _no_unknown(raw: object, known: set[str], where: str) -> None:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where.rstrip('.')}: must be a table")
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{where}{unknown[0]}: unknown setting")


class _Reader:
    """Typed access to one TOML table; every error names the key."""

    def __init__(self, raw: Mapping[str, Any], where: str) -> None:
        self.raw = raw
        self.where = where

    def _get(self, key: str, default: Any) -> Any:
        if key in self.raw:
            return self.raw[key]
        if default is None:
            raise ConfigError(f"{self.where}{key}: missing")
        return default

    def text(self, key: str, default: str | None) -> str:
        value = self._get(key, default)
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{self.where}{key}: must be a non-empty string")
        return value.strip()

    def strings(self, key: str, default: tuple[str, ...]) -> tuple[str, ...]:
        value = self._get(key, default)
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{self.where}{key}: must be a list of strings")
        return tuple(v.strip() for v in value if v.strip())

    def names(self, key: str) -> tuple[str, ...]:
        value = self._get(key, None)
        names = (value,) if isinstance(value, str) else value
        if not isinstance(names, list | tuple) or not names:
            raise ConfigError(f"{self.where}{key}: must be a list of host names")
        out = []
        for name in names:
            if not isinstance(name, str) or not _is_hostname(name.strip().rstrip(".")):
                raise ConfigError(f"{self.where}{key}: {name!r} is not a host name")
            out.append(name.strip().rstrip(".").lower())
        return tuple(dict.fromkeys(out))

    def boolean(self, key: str, default: bool) -> bool:
        value = self._get(key, default)
        if not isinstance(value, bool):
            raise ConfigError(f"{self.where}{key}: must be true or false")
        return value

    def integer(self, key: str, default: int) -> int:
        value = self._get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{self.where}{key}: must be a whole number")
        return value

    def seconds(self, key: str, default: float, *, minimum: float) -> float:
        value = self._get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
            raise ConfigError(f"{self.where}{key}: must be a number")
        if value < minimum:
            raise ConfigError(f"{self.where}{key}: {value} is below the minimum {minimum:g}")
        return float(value)

    def path(self, key: str) -> Path | None:
        if key not in self.raw:
            return None
        return Path(self.text(key, None)).expanduser()


def _is_hostname(name: str) -> bool:
    if not name or len(name) > 253 or "." not in name:
        return False
    try:
        ipaddress.ip_address(name)
        return False
    except ValueError:
        pass
    labels = name.split(".")
    return all(
        0 < len(label) <= 63
        and not label.startswith("-")
        and not label.endswith("-")
        and all(c.isalnum() or c in "-_" for c in label)
        for label in labels
    )


def render(config: ClientConfig) -> str:
    """The TOML text ``init`` writes: the chosen values, with the defaults spelled out."""
    data: dict[str, Any] = {
        "server": config.server,
        "username": config.username,
        "hostnames": list(config.hostnames),
    }
    if config.secret_file is not None:
        data["secret_file"] = str(config.secret_file)
    data |= {
        "interval": config.interval,
        "refresh_days": config.refresh_days,
        "timeout": config.timeout,
        "network_wait": config.network_wait,
        "backoff": {"initial": config.backoff_initial, "maximum": config.backoff_max},
    }
    for family in (config.ipv4, config.ipv6):
        data[f"ipv{family.family}"] = {
            "enabled": family.enabled,
            "quorum": family.quorum,
            "accept_private": family.accept_private,
            "sources": list(family.sources),
        }
    header = (
        "# nicupdate-client configuration (docs/client.md).\n"
        "# The secret is not here: it is in the OS credential store, or in secret_file.\n\n"
    )
    return header + tomli_w.dumps(data, multiline_strings=False)
