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
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from .names import InvalidName, normalize_fqdn

ENV_PREFIX = "NICUPDATE_"
DEFAULT_FILE = "nicupdate.toml"
DEMO_ZONE = "dyn.example.test"
_DEMO_ZONE_TABLE = {"name": DEMO_ZONE, "nameserver_addresses": ["127.0.0.1"]}
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")
DATABASE_DRIVERS = ("sqlite+aiosqlite", "postgresql+asyncpg")
METRICS_PORT = 8246  # metrics.listen without a port

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
T = TypeVar("T")
# A value parser: raises ValueError with a message for the user.
Parse = Callable[[Any], Any]


# The SOA timers of a zone unless it sets its own (see ZoneSettings).
SOA_REFRESH = 3600
SOA_RETRY = 300
SOA_EXPIRE = 1_209_600  # 14 days


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


# -- value parsers ---------------------------------------------------------------------


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a string (got {value!r})")
    return value


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false (got {value!r})")
    return value


def _plain(number: float) -> str:
    """``1000000``, ``0.01``: never ``1e+06``."""
    return str(int(number)) if float(number).is_integer() else f"{number:g}"


def _number(low: float, high: float, *, integer: bool) -> Parse:
    def parse(value: Any) -> Any:
        kinds = (int,) if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds):
            raise ValueError(f"must be {'an integer' if integer else 'a number'} (got {value!r})")
        if not low <= value <= high:
            raise ValueError(f"must be between {_plain(low)} and {_plain(high)} (got {value!r})")
        return value

    return parse


def _choice(options: tuple[str, ...]) -> Parse:
    def parse(value: Any) -> str:
        if value not in options:
            raise ValueError(f"must be one of {', '.join(options)} (got {value!r})")
        return str(value)

    return parse


def _list_of(item: Callable[[Any], T], what: str, *, non_empty: bool = False) -> Parse:
    def parse(value: Any) -> tuple[T, ...]:
        if not isinstance(value, list | tuple):
            raise ValueError(f"must be a list of {what} (got {value!r})")
        if non_empty and not value:
            raise ValueError(f"needs at least one of {what}")
        return tuple(item(entry) for entry in value)

    return parse


def _endpoint(default_port: int) -> Parse:
    def parse(value: Any) -> str:
        parse_endpoint(_string(value), default_port)
        return str(value)

    return parse


def _fqdn(value: Any) -> str:
    try:
        return normalize_fqdn(_string(value))
    except InvalidName as exc:
        raise ValueError(str(exc)) from None


def _network(value: Any) -> IPNetwork:
    try:
        return ipaddress.ip_network(str(value))
    except ValueError:
        pass
    try:  # 192.0.2.10/24: one address, or the whole network? Ask rather than guess.
        network = ipaddress.ip_network(str(value), strict=False)
    except ValueError:
        raise ValueError(f"{value!r} is not an address or network (CIDR)") from None
    address = str(value).partition("/")[0]
    raise ValueError(
        f"{value!r} has host bits set: write the network {str(network)!r} "
        f"or the single address {address!r}"
    )


def _address(value: Any) -> IPAddress:
    try:
        return ipaddress.ip_address(str(value))
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address") from None


def _path(value: Any) -> Path:
    return Path(_string(value))


def _database(value: Any) -> str:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(_string(value))
    except (ArgumentError, ValueError):  # the URL may hold a password: never echo it
        raise ValueError("not a database URL (e.g. sqlite+aiosqlite:///nicupdate.db)") from None
    if url.drivername not in DATABASE_DRIVERS:
        raise ValueError(
            f"driver {url.drivername!r} is not supported: "
            "use sqlite+aiosqlite:///PATH or postgresql+asyncpg://USER@HOST/DB"
        )
    return str(value)


def _rname(value: Any) -> str:
    text = _string(value)
    try:  # hostmaster@example.com is accepted too
        return normalize_fqdn(text.replace("@", ".", 1))
    except InvalidName:
        raise ValueError(f"{text!r} is not a mailbox name (hostmaster.example.com)") from None


def _key(default: Any, parse: Parse) -> Any:
    """A dataclass field with its default and the parser that reads it from TOML."""
    if isinstance(default, list | dict):
        return field(default_factory=lambda: type(default)(default), metadata={"parse": parse})
    return field(default=default, metadata={"parse": parse})


def _required(parse: Parse) -> Any:
    return field(metadata={"parse": parse})


def _build(cls: type[T], raw: Any, where: str) -> T:
    """Build the dataclass ``cls`` from a TOML table, naming the key of any problem."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: must be a table (got {raw!r})")
    known = {f.name: f for f in fields(cls) if f.init}  # type: ignore[arg-type]
    for key in raw:
        if key not in known:
            raise ConfigError(f"{where + '.' if where else ''}{key}: unknown key")
    values: dict[str, Any] = {}
    for name, spec in known.items():
        path = f"{where}.{name}" if where else name
        if name not in raw:
            if spec.default is MISSING and spec.default_factory is MISSING:
                raise ConfigError(f"{path}: missing (required)")
            continue
        try:
            values[name] = spec.metadata["parse"](raw[name])
        except ConfigError:
            raise
        except ValueError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    return cls(**values)


# -- the sections ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServerSettings:
    listen: str = _key("127.0.0.1:8245", _endpoint(8245))
    database: str = _key("sqlite+aiosqlite:///nicupdate.db", _database)
    database_password_file: Path | None = _key(None, _path)
    trusted_proxies: tuple[IPNetwork, ...] = _key((), _list_of(_network, "CIDRs"))
    realm: str = _key("nicupdate", _string)
    max_hosts_per_request: int = _key(20, _number(1, 1000, integer=True))
    blocked_agents: tuple[str, ...] = _key((), _list_of(_string, "strings"))
    access_log: bool = _key(False, _boolean)
    log_level: str = _key("info", _choice(LOG_LEVELS))
    # "json": one JSON object per line (time, level, logger, event, host, caller, ...).
    log_format: str = _key("text", _choice(LOG_FORMATS))
    # HTTPS on `listen`: PEM files, re-read on reload (SIGHUP). Both or neither.
    tls_certificate: Path | None = _key(None, _path)
    tls_key: Path | None = _key(None, _path)
    # Server processes sharing `listen` (SO_REUSEPORT); worker 0 serves the built-in DNS.
    workers: int = _key(1, _number(1, 64, integer=True))
    # How often the server looks at the change log for what other processes changed
    # (the CLI, other workers and instances); PostgreSQL also wakes it at each commit.
    poll_interval: float = _key(0.05, _number(0.005, 60, integer=False))
    # No longer used (the change log replaced the reloads); accepted so that older
    # files load, with a warning at start.
    reload_interval: float | None = _key(None, _number(0.01, 3600, integer=False))
    # How long a request waits for DNS to confirm its change before answering 911
    # (the change is stored either way, and applied as soon as DNS takes it).
    apply_deadline: float = _key(2.0, _number(0.05, 60, integer=False))
    # Back-off between attempts while a backend is unreachable: doubling, with jitter.
    retry_initial: float = _key(1.0, _number(0.01, 3600, integer=False))
    retry_max: float = _key(300.0, _number(0.01, 86400, integer=False))
    # Days the update history is kept (`host log`); 0 keeps it forever.
    history_days: int = _key(90, _number(0, 36500, integer=True))

    def __post_init__(self) -> None:
        if self.retry_max < self.retry_initial:
            raise ConfigError(
                f"server.retry_max: must be at least server.retry_initial ({self.retry_initial:g})"
            )
        if (self.tls_certificate is None) != (self.tls_key is None):
            missing = "tls_key" if self.tls_key is None else "tls_certificate"
            raise ConfigError(
                f"server.{missing}: missing (server.tls_certificate and server.tls_key go together)"
            )

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

    def __repr__(self) -> str:  # the database URL may hold a password
        from sqlalchemy.engine import make_url

        shown = make_url(self.database).render_as_string(hide_password=True)
        return f"ServerSettings(listen={self.listen!r}, database={shown!r}, ...)"


@dataclass(frozen=True, slots=True)
class RateLimitSettings:
    """Response rate limiting of UDP answers (``[dns.rate_limit]``, as BIND's ``rate-limit``).

    Identical answers to one source network (an answer: the same name and type; a
    nonexistent name: the same zone; an error: any) beyond the rate are dropped, and
    every ``slip``-th of those is sent truncated instead (TC=1, so a real resolver
    asks again over TCP, which is not limited). 0 turns a rate off."""

    responses_per_second: int = _key(20, _number(0, 1_000_000, integer=True))
    nodata_per_second: int | None = _key(None, _number(0, 1_000_000, integer=True))
    nxdomains_per_second: int | None = _key(None, _number(0, 1_000_000, integer=True))
    errors_per_second: int | None = _key(None, _number(0, 1_000_000, integer=True))
    all_per_second: int = _key(0, _number(0, 1_000_000, integer=True))
    window: int = _key(15, _number(1, 3600, integer=True))
    slip: int = _key(2, _number(0, 10, integer=True))
    ipv4_prefix_length: int = _key(24, _number(8, 32, integer=True))
    ipv6_prefix_length: int = _key(56, _number(16, 128, integer=True))
    exempt_clients: tuple[IPNetwork, ...] = _key((), _list_of(_network, "CIDRs"))
    max_table_size: int = _key(20_000, _number(100, 10_000_000, integer=True))
    log_only: bool = _key(False, _boolean)

    def rate(self, kind: str) -> int:
        """The rate of ``kind``: "responses", "nodata", "nxdomains" or "errors"."""
        value: int | None = getattr(self, f"{kind}_per_second")
        return self.responses_per_second if value is None else value


def _endpoints(value: Any) -> tuple[str, ...]:
    return _list_of(_endpoint(53), "addresses (IP or IP:PORT)")(value)  # type: ignore[no-any-return]


@dataclass(frozen=True, slots=True)
class TransferSettings:
    """Secondaries of the builtin zones (``[dns.transfer]``): who may transfer them
    (AXFR/IXFR, TSIG-signed), who is sent NOTIFY at each change, and an optional RFC 9432
    catalog zone listing them (see docs/secondaries.md)."""

    tsig_key_file: str = _key("", _string)  # tsig-keygen's output
    tsig_secret_file: str = _key("", _string)  # or: the base64 secret alone, with
    key_name: str = _key("", _string)  # ... the key's name
    algorithm: str = _key("hmac-sha256", _string)  # ... and algorithm
    allow: tuple[IPNetwork, ...] = _key((), _list_of(_network, "CIDRs"))
    notify: tuple[str, ...] = _key((), _endpoints)
    catalog: str = _key("", _fqdn)

    def __post_init__(self) -> None:
        if self.tsig_secret_file and not self.key_name:
            raise ConfigError("dns.transfer.key_name: missing (required with tsig_secret_file)")
        if (self.allow or self.notify) and not (self.tsig_key_file or self.tsig_secret_file):
            raise ConfigError(
                "dns.transfer: transfers are signed: give tsig_key_file (tsig-keygen's "
                "output), or tsig_secret_file and key_name"
            )
        if self.catalog and not self.allow:
            raise ConfigError("dns.transfer.catalog: needs dns.transfer.allow (who transfers it)")

    @property
    def enabled(self) -> bool:
        return bool(self.allow or self.notify)


@dataclass(frozen=True, slots=True)
class DnsSettings:
    enabled: bool = _key(True, _boolean)
    listen: str = _key("127.0.0.1:5353", _endpoint(53))
    # TCP connections the built-in DNS keeps open: in all, and from one address.
    tcp_clients: int = _key(1024, _number(1, 65_536, integer=True))
    tcp_per_source: int = _key(16, _number(1, 65_536, integer=True))
    rate_limit: RateLimitSettings = _key(
        RateLimitSettings(), lambda v: _build(RateLimitSettings, v, "dns.rate_limit")
    )
    transfer: TransferSettings = _key(
        TransferSettings(), lambda v: _build(TransferSettings, v, "dns.transfer")
    )

    @property
    def endpoint(self) -> tuple[str, int]:
        return parse_endpoint(self.listen, 53)


def _metrics_listen(value: Any) -> str:
    text = _string(value)
    if text:
        parse_endpoint(text, METRICS_PORT)
    return text


@dataclass(frozen=True, slots=True)
class MetricsSettings:
    """Prometheus metrics at ``/metrics`` (:mod:`.metrics`)."""

    enabled: bool = _key(True, _boolean)
    # "": on the HTTP listener (server.listen), for the callers in `allow` only;
    # "IP:PORT": on a listener of its own, for everyone who reaches it, and not on the other.
    listen: str = _key("", _metrics_listen)
    allow: tuple[IPNetwork, ...] = _key(
        (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")),
        _list_of(_network, "CIDRs"),
    )

    @property
    def endpoint(self) -> tuple[str, int] | None:
        """Where its own listener is; None: on the HTTP listener."""
        return parse_endpoint(self.listen, METRICS_PORT) if self.listen else None


@dataclass(frozen=True, slots=True)
class LimitSettings:
    """What one client may cost: password guessing, update rates, HTTP connections."""

    # Password guessing, counted per source (IPv4 /32, IPv6 /64, after trusted_proxies).
    auth_failures_per_source: int = _key(20, _number(1, 1_000_000, integer=True))
    auth_failures_per_user: int = _key(5, _number(1, 1_000_000, integer=True))
    auth_failure_window: float = _key(900.0, _number(1, 86400 * 7, integer=False))
    lockout_initial: float = _key(60.0, _number(1, 86400, integer=False))
    lockout_max: float = _key(3600.0, _number(1, 86400 * 7, integer=False))
    # Password checks waiting for a hash: in all, and per source.
    max_pending_checks: int = _key(32, _number(1, 100_000, integer=True))
    max_pending_checks_per_source: int = _key(2, _number(1, 1000, integer=True))
    hash_workers: int = _key(2, _number(1, 64, integer=True))
    # A 429 answer is held back this long (at most its Retry-After): a flood gets one
    # answer per connection per this, and costs its sender the waiting.
    throttle_delay: float = _key(1.0, _number(0, 60, integer=False))
    # Per host: a token bucket of updates (good or nochg answers).
    host_update_burst: int = _key(30, _number(1, 1_000_000, integer=True))
    host_update_interval: float = _key(10.0, _number(0, 86400, integer=False))
    # nochg answers per host within abuse_window that make it answer `abuse` (0: never).
    abuse_nochg_threshold: int = _key(0, _number(0, 10_000_000, integer=True))
    abuse_window: float = _key(86400.0, _number(60, 86400 * 30, integer=False))
    # HTTP connections.
    max_connections: int = _key(4096, _number(16, 1_000_000, integer=True))
    max_connections_per_source: int = _key(128, _number(1, 1_000_000, integer=True))
    header_timeout: float = _key(10.0, _number(0.1, 3600, integer=False))
    max_header_bytes: int = _key(8192, _number(1024, 1_048_576, integer=True))
    # Repeated failures are logged as one summary per source per interval.
    log_interval: float = _key(60.0, _number(0.1, 86400, integer=False))

    def __post_init__(self) -> None:
        if self.lockout_max < self.lockout_initial:
            raise ConfigError(
                "limits.lockout_max: must be at least limits.lockout_initial "
                f"({self.lockout_initial:g})"
            )


@dataclass(frozen=True, slots=True)
class ZoneSettings:
    name: str = _required(_fqdn)
    # One backend (`backend = "x"`) or several (`backends = ["x", "y"]`), each applied
    # and retried on its own; `backend` is then the first of them.
    backend: str = _key("builtin", _string)
    backends: tuple[str, ...] = _key((), _list_of(_string, "backend names", non_empty=True))
    ttl: int = _key(60, _number(1, 86400, integer=True))
    public_only: bool = _key(False, _boolean)
    # NS records at the apex; default: ns.<zone>.
    nameservers: tuple[str, ...] = _key((), _list_of(_fqdn, "host names"))
    # Addresses served for the nameserver names that lie inside the zone (glue).
    nameserver_addresses: tuple[IPAddress, ...] = _key((), _list_of(_address, "IP addresses"))
    soa_rname: str = _key("", _rname)
    # SOA timers for secondaries ([dns.transfer]): NOTIFY brings changes at once, so the
    # refresh is only a safety net; expire is long, so that secondaries keep answering
    # through a long outage of this server (RFC 1912 suggests 2-4 weeks).
    soa_refresh: int = _key(SOA_REFRESH, _number(60, 2_419_200, integer=True))
    soa_retry: int = _key(SOA_RETRY, _number(30, 2_419_200, integer=True))
    soa_expire: int = _key(SOA_EXPIRE, _number(3600, 31_536_000, integer=True))

    def __post_init__(self) -> None:
        if not self.backends:
            object.__setattr__(self, "backends", (self.backend,))
        object.__setattr__(self, "backend", self.backends[0])
        if not self.nameservers:
            object.__setattr__(self, "nameservers", (f"ns.{self.name}",))
        if not self.soa_rname:
            object.__setattr__(self, "soa_rname", f"hostmaster.{self.name}")


def _zones(value: Any) -> tuple[ZoneSettings, ...]:
    if not isinstance(value, list) or not value:
        raise ValueError("must be a list of at least one [[zones]] table")
    for index, table in enumerate(value):
        if isinstance(table, dict) and "backend" in table and "backends" in table:
            raise ConfigError(f"zones[{index}].backends: give either backend or backends, not both")
    return tuple(_build(ZoneSettings, table, f"zones[{i}]") for i, table in enumerate(value))


def _backends(value: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(value, dict) or not all(isinstance(t, dict) for t in value.values()):
        raise ValueError("must hold one [backends.NAME] table per backend")
    return {str(name): dict(table) for name, table in value.items()}


# What a webhook may be sent (:mod:`.webhooks`): the change log's kinds the outside sees.
WEBHOOK_EVENTS = (
    "records",
    "host.added",
    "host.removed",
    "host.blocked",
    "host.unblocked",
    "backend.error",
)


def _webhook_name(value: Any) -> str:
    text = _string(value)
    if not 0 < len(text) <= 64 or text.strip("abcdefghijklmnopqrstuvwxyz0123456789-"):
        raise ValueError(f"{text!r} must be 1-64 of a-z, 0-9 and -")
    return text


def _webhook_url(value: Any) -> str:
    import urllib.parse

    text = _string(value)  # never echoed: a URL may carry a secret
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host name")
    return text


def _webhook_event(value: Any) -> str:
    if value not in WEBHOOK_EVENTS:
        raise ValueError(f"unknown event {value!r}: use any of {', '.join(WEBHOOK_EVENTS)}")
    return str(value)


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    """``[[webhooks]]``: changes POSTed to ``url``, signed with the ``secret_file``'s key."""

    name: str = _required(_webhook_name)
    url: str = _required(_webhook_url)
    secret_file: Path = _required(_path)
    events: tuple[str, ...] = _key(
        WEBHOOK_EVENTS, _list_of(_webhook_event, "event names", non_empty=True)
    )
    timeout: float = _key(10.0, _number(0.1, 300, integer=False))

    def __repr__(self) -> str:  # the URL may hold a secret (a token in its path or query)
        return f"WebhookSettings(name={self.name!r}, events={self.events!r}, ...)"


def _webhooks(value: Any) -> tuple[WebhookSettings, ...]:
    if not isinstance(value, list):
        raise ValueError("must be a list of [[webhooks]] tables")
    built = tuple(_build(WebhookSettings, t, f"webhooks[{i}]") for i, t in enumerate(value))
    seen: set[str] = set()
    for index, hook in enumerate(built):
        if hook.name in seen:
            raise ConfigError(f"webhooks[{index}].name: webhook {hook.name!r} is listed twice")
        seen.add(hook.name)
        key = f"webhooks[{index}].secret_file"
        if not read_secret_file(hook.secret_file, key):
            raise ConfigError(f"{key}: {hook.secret_file} is empty (it holds the HMAC key)")
    return built


@dataclass(frozen=True, slots=True)
class Config:
    server: ServerSettings = _key(ServerSettings(), lambda v: _build(ServerSettings, v, "server"))
    dns: DnsSettings = _key(DnsSettings(), lambda v: _build(DnsSettings, v, "dns"))
    limits: LimitSettings = _key(LimitSettings(), lambda v: _build(LimitSettings, v, "limits"))
    metrics: MetricsSettings = _key(
        MetricsSettings(), lambda v: _build(MetricsSettings, v, "metrics")
    )
    zones: tuple[ZoneSettings, ...] = _key(
        (_build(ZoneSettings, _DEMO_ZONE_TABLE, "zones[0]"),), _zones
    )
    backends: Mapping[str, Mapping[str, Any]] = _key({}, _backends)
    webhooks: tuple[WebhookSettings, ...] = _key((), _webhooks)
    # Names that cannot be hosts, with the reason: zone apexes and nameserver names.
    reserved: Mapping[str, str] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        reserved: dict[str, str] = {}
        for zone in self.zones:
            for ns in zone.nameservers:
                reserved.setdefault(
                    ns, f"a nameserver of zone {zone.name} (its NS record and glue)"
                )
        for zone in self.zones:
            reserved[zone.name] = f"the apex of zone {zone.name} (its SOA and NS records)"
        object.__setattr__(self, "reserved", reserved)
        seen: set[str] = set()
        for index, zone in enumerate(self.zones):
            if zone.name in seen:
                raise ConfigError(f"zones[{index}].name: zone {zone.name!r} is listed twice")
            seen.add(zone.name)
            key = "backend" if len(zone.backends) == 1 else "backends"
            for name in zone.backends:
                if name != "builtin" and name not in self.backends:
                    raise ConfigError(
                        f"zones[{index}].{key}: no backend named {name!r} "
                        f'(use "builtin" or define [backends.{name}])'
                    )
            if len(set(zone.backends)) != len(zone.backends):
                raise ConfigError(f"zones[{index}].backends: a backend is listed twice")

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


def _env_order(name: str) -> list[tuple[int, int, str]]:
    """Sort key: list items in numeric order (``__2`` before ``__10``)."""
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in name.lower().split("__")]


def _apply_env(raw: dict[str, Any], environ: Mapping[str, str]) -> dict[str, str]:
    """Apply ``NICUPDATE_<SECTION>__<KEY>`` variables to ``raw``; return which variable
    set which key (``zones[0].ttl`` -> ``NICUPDATE_ZONES__0__TTL``)."""
    origins: dict[str, str] = {}
    names = [n for n in environ if n.startswith(ENV_PREFIX) and "__" in n[len(ENV_PREFIX) :]]
    for name in sorted(names, key=_env_order):
        path = [part.lower() for part in name[len(ENV_PREFIX) :].split("__")]
        node: Any = raw
        dotted = ""
        for depth, part in enumerate(path):
            last = depth == len(path) - 1
            value = _parse_env_value(environ[name]) if last else None
            if isinstance(node, list):
                if not part.isdigit() or int(part) > len(node):
                    raise ConfigError(
                        f"{name}: no list item {part} to set: the list has {len(node)}, "
                        f"and a new item must be the next one ({len(node)})"
                    )
                dotted += f"[{part}]"
                if int(part) == len(node):  # a new item at the end
                    following = "" if last else path[depth + 1]
                    node.append(value if last else [] if following.isdigit() else {})
                elif last:
                    node[int(part)] = value
                node = node[int(part)]
                continue
            if not isinstance(node, dict):
                raise ConfigError(f"{name}: {dotted} is not a table")
            dotted += f".{part}" if dotted else part
            if last:
                node[part] = value
            elif part not in node:
                node[part] = [] if path[depth + 1].isdigit() else {}
            node = node[part]
        origins[dotted] = name
    return origins


# NICUPDATE_ variables that are not configuration keys: the file's name, the client's.
OTHER_VARIABLES = frozenset({"NICUPDATE_CONFIG", "NICUPDATE_CLIENT_CONFIG", "NICUPDATE_PASSWORD"})


def _named_variables(node: Any) -> set[str]:
    """The variables that ``*_env`` keys name (``tsig_secret_env = "NICUPDATE_TSIG"``)."""
    if isinstance(node, dict):
        found = {v for k, v in node.items() if k.endswith("_env") and isinstance(v, str)}
        for value in node.values():
            found |= _named_variables(value)
        return found
    if isinstance(node, list):
        return set().union(*(_named_variables(item) for item in node))
    return set()


def _check_variables(raw: dict[str, Any], environ: Mapping[str, str]) -> None:
    """A ``NICUPDATE_`` variable that sets nothing is a typo: say so, never ignore it."""
    named = _named_variables(raw)
    for name in sorted(environ):
        rest = name[len(ENV_PREFIX) :]
        if not name.startswith(ENV_PREFIX) or "__" in rest:
            continue
        if name in OTHER_VARIABLES or name in named:
            continue
        hint = ""
        for section in (f.name for f in fields(Config) if f.init):
            if rest.lower().startswith(section + "_"):
                key = rest[len(section) + 1 :].upper()
                hint = f" (did you mean {ENV_PREFIX}{section.upper()}__{key}?)"
                break
        raise ConfigError(
            f"{name}: not a configuration variable: keys are set as "
            f"{ENV_PREFIX}<SECTION>__<KEY>, with two underscores{hint}"
        )


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
        raw["zones"] = [dict(_DEMO_ZONE_TABLE)]  # overriding the built-in demo zone
    origins = _apply_env(raw, environ)
    _check_variables(raw, environ)
    try:
        config = _build(Config, raw, "")
    except ConfigError as exc:
        message = str(exc)
        for dotted, name in origins.items():
            if message.startswith((f"{dotted}:", f"{dotted}.")):
                raise ConfigError(f"{message} (set by {name})") from None
        raise ConfigError(f"{message}{where}") from None
    if config.server.database_password_file is not None:
        read_secret_file(config.server.database_password_file, "server.database_password_file")
    return config
