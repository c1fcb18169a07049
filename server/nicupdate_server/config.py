"""Configuration: TOML file, environment overrides, validation.

Where the configuration comes from, in order (later wins):

1. built-in defaults (SQLite in the current directory, HTTP on 127.0.0.1:8245,
   the built-in DNS on 127.0.0.1:5353 serving the demo zone ``dyn.example.test``);
2. the TOML file: ``--config PATH``, else ``$NICUPDATE_CONFIG``, else
   ``./nicupdate.toml`` when it exists;
3. environment variables ``NICUPDATE_<SECTION>__<KEY>``, for example
   ``NICUPDATE_SERVER__LISTEN=0.0.0.0:8245`` or ``NICUPDATE_ZONES__0__TTL=120``.
   Values are read as TOML values when they parse as one (``60``, ``true``,
   ``["10.0.0.0/8"]``) and as plain strings otherwise.

A secret may be given as ``<key>_file`` instead of inline (``database_password_file``).
Every problem is reported as one :class:`ConfigError` line naming the key.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .names import InvalidName, normalize_fqdn

ENV_PREFIX = "NICUPDATE_"
DEFAULT_FILE = "nicupdate.toml"
DEMO_ZONE = "dyn.example.test"

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class ConfigError(Exception):
    """A configuration problem, phrased as one line that names the key."""


def parse_endpoint(value: str, default_port: int) -> tuple[str, int]:
    """Split ``host:port`` (``[v6]:port`` for IPv6) into an IP literal and a port."""
    host, sep, port_text = value.rpartition(":")
    if not sep:
        host, port_text = value, str(default_port)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{value!r} is not IP:PORT (an IP literal, e.g. 127.0.0.1:8245)") from None
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"{value!r} has no valid port (0-65535)")
    return host, int(port_text)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerSettings(_Section):
    listen: str = "127.0.0.1:8245"
    database: str = "sqlite+aiosqlite:///nicupdate.db"
    database_password_file: Path | None = None
    trusted_proxies: tuple[IPNetwork, ...] = ()
    realm: str = "nicupdate"
    max_hosts_per_request: int = Field(default=20, ge=1, le=1000)
    blocked_agents: tuple[str, ...] = ()
    access_log: bool = False
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # How often the running server looks for account and host changes made by the CLI.
    reload_interval: float = Field(default=1.0, gt=0, le=3600)

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        parse_endpoint(value, 8245)
        return value

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _networks(cls, value: Any) -> Any:
        if not isinstance(value, list | tuple):
            raise ValueError('must be a list of CIDRs, e.g. ["10.0.0.0/8"]')
        networks = []
        for item in value:
            try:
                networks.append(ipaddress.ip_network(str(item), strict=False))
            except ValueError:
                raise ValueError(f"{item!r} is not an address or network (CIDR)") from None
        return tuple(networks)

    @field_validator("database")
    @classmethod
    def _database(cls, value: str) -> str:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            url = make_url(value)
        except ArgumentError:
            raise ValueError("not a database URL (e.g. sqlite+aiosqlite:///nicupdate.db)") from None
        if url.drivername not in ("sqlite+aiosqlite", "postgresql+asyncpg"):
            raise ValueError(
                f"driver {url.drivername!r} is not supported: "
                "use sqlite+aiosqlite:///PATH or postgresql+asyncpg://USER@HOST/DB"
            )
        return value

    @property
    def endpoint(self) -> tuple[str, int]:
        return parse_endpoint(self.listen, 8245)

    def database_url(self) -> str:
        """The database URL with the password from ``database_password_file`` put in."""
        if self.database_password_file is None:
            return self.database
        from sqlalchemy.engine import make_url

        secret = read_secret_file(self.database_password_file, "server.database_password_file")
        return make_url(self.database).set(password=secret).render_as_string(hide_password=False)


class DnsSettings(_Section):
    enabled: bool = True
    listen: str = "127.0.0.1:5353"

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        parse_endpoint(value, 53)
        return value

    @property
    def endpoint(self) -> tuple[str, int]:
        return parse_endpoint(self.listen, 53)


class ZoneSettings(_Section):
    name: str
    backend: str = "builtin"
    ttl: int = Field(default=60, ge=1, le=86400)
    public_only: bool = False
    # NS records at the apex; default: ns.<zone>.
    nameservers: tuple[str, ...] = ()
    # Addresses served for the nameserver names that lie inside the zone (glue).
    nameserver_addresses: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...] = ()
    soa_rname: str = ""

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        try:
            return normalize_fqdn(value)
        except InvalidName as exc:
            raise ValueError(str(exc)) from None

    @field_validator("nameserver_addresses", mode="before")
    @classmethod
    def _addresses(cls, value: Any) -> Any:
        if not isinstance(value, list | tuple):
            raise ValueError("must be a list of IP addresses")
        addresses = []
        for item in value:
            try:
                addresses.append(ipaddress.ip_address(str(item)))
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address") from None
        return tuple(addresses)

    @field_validator("nameservers")
    @classmethod
    def _nameservers(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        try:
            return tuple(normalize_fqdn(item) for item in value)
        except InvalidName as exc:
            raise ValueError(str(exc)) from None

    @field_validator("soa_rname")
    @classmethod
    def _rname(cls, value: str) -> str:
        if not value:
            return value
        mailbox = value.replace("@", ".", 1)  # hostmaster@example.com is accepted too
        try:
            return normalize_fqdn(mailbox)
        except InvalidName:
            raise ValueError(f"{value!r} is not a mailbox name (hostmaster.example.com)") from None

    @model_validator(mode="after")
    def _defaults(self) -> ZoneSettings:
        if not self.nameservers:
            object.__setattr__(self, "nameservers", (f"ns.{self.name}",))
        if not self.soa_rname:
            object.__setattr__(self, "soa_rname", f"hostmaster.{self.name}")
        return self


def _default_zones() -> tuple[ZoneSettings, ...]:
    return (
        ZoneSettings(
            name=DEMO_ZONE,
            nameserver_addresses=(ipaddress.IPv4Address("127.0.0.1"),),
        ),
    )


class Config(_Section):
    server: ServerSettings = ServerSettings()
    dns: DnsSettings = DnsSettings()
    zones: tuple[ZoneSettings, ...] = Field(default_factory=_default_zones, min_length=1)
    backends: Mapping[str, Mapping[str, Any]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check_zones(self) -> Config:
        seen: set[str] = set()
        for index, zone in enumerate(self.zones):
            if zone.name in seen:
                raise ValueError(f"zones[{index}].name: zone {zone.name!r} is listed twice")
            seen.add(zone.name)
            if zone.backend != "builtin" and zone.backend not in self.backends:
                raise ValueError(
                    f"zones[{index}].backend: no backend named {zone.backend!r} "
                    '(use "builtin" or define [backends.' + zone.backend + "])"
                )
        return self

    def zone_for(self, fqdn: str) -> ZoneSettings | None:
        """The most specific configured zone that contains ``fqdn``."""
        best: ZoneSettings | None = None
        for zone in self.zones:
            if (fqdn == zone.name or fqdn.endswith("." + zone.name)) and (
                best is None or len(zone.name) > len(best.name)
            ):
                best = zone
        return best


def read_secret_file(path: Path, key: str) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read {path}: {exc.strerror}") from None


def _parse_env_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _apply_env(raw: dict[str, Any], environ: Mapping[str, str]) -> None:
    for name, text in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX) or "__" not in name or name == "NICUPDATE_CONFIG":
            continue
        path = [part.lower() for part in name[len(ENV_PREFIX) :].split("__")]
        node: Any = raw
        for depth, part in enumerate(path[:-1]):
            following = path[depth + 1]
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise ConfigError(f"{name}: no list item {part} to override")
                node = node[int(part)]
                continue
            if not isinstance(node, dict):
                raise ConfigError(f"{name}: {'.'.join(path[:depth])} is not a table")
            if part not in node:
                node[part] = [] if following.isdigit() else {}
            node = node[part]
        leaf = path[-1]
        if isinstance(node, list):
            if not leaf.isdigit() or int(leaf) >= len(node):
                raise ConfigError(f"{name}: no list item {leaf} to override")
            node[int(leaf)] = _parse_env_value(text)
        elif isinstance(node, dict):
            node[leaf] = _parse_env_value(text)
        else:
            raise ConfigError(f"{name}: {'.'.join(path[:-1])} is not a table")


def _location(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + part
    return text or "(top level)"


def _format_error(exc: ValidationError) -> str:
    error = exc.errors(include_url=False)[0]
    where = _location(tuple(error["loc"]))
    if error["type"] == "extra_forbidden":
        return f"{where}: unknown key"
    message = error["msg"].removeprefix("Value error, ")
    if message.startswith("zones["):  # already names the key
        return message
    given = error.get("input")
    shown = f" (got {given!r})" if isinstance(given, str | int | float | bool) else ""
    if where == "server.database":  # a URL may hold a password: never echo it
        shown = ""
    return f"{where}: {message}{shown}"


def find_config_file(explicit: str | None, environ: Mapping[str, str]) -> Path | None:
    if explicit:
        return Path(explicit)
    if environ.get("NICUPDATE_CONFIG"):
        return Path(environ["NICUPDATE_CONFIG"])
    default = Path(DEFAULT_FILE)
    return default if default.is_file() else None


def load_config(path: Path | None, environ: Mapping[str, str] | None = None) -> Config:
    """Read, merge and validate the configuration; raise :class:`ConfigError`."""
    environ = os.environ if environ is None else environ
    raw: dict[str, Any] = {}
    where = ""
    if path is not None:
        where = f" (in {path})"
        try:
            with path.open("rb") as handle:
                raw = tomllib.load(handle)
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    if "zones" not in raw and any(k.startswith(ENV_PREFIX + "ZONES__") for k in environ):
        # Overriding the built-in demo zone: start from it.
        raw["zones"] = [zone.model_dump(mode="json") for zone in _default_zones()]
    _apply_env(raw, environ)
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_error(exc) + where) from None
    if config.server.database_password_file is not None:
        read_secret_file(config.server.database_password_file, "server.database_password_file")
    return config
