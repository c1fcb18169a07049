"""Backend ``cloudflare``: A, AAAA and TXT records through the Cloudflare API v4.

Needs a scoped API token (My Profile → API Tokens → Create Token) with the
permissions Zone → Zone → Read and Zone → DNS → Edit on the zones it serves. ::

    [backends.cf]
    type = "cloudflare"
    api_token_file = "/etc/nicupdate/cloudflare.token"  # or:
    # api_token_env = "CLOUDFLARE_API_TOKEN"            # a variable holding the token
    base_url = "https://api.cloudflare.com/client/v4"   # the default
    timeout = 10            # seconds to wait for each answer
    proxied = false         # true: the records go through Cloudflare's proxy (TTL automatic)
    # zone_id = "023e105f4ecef8ad9ca31a8372d0c353"      # skips the zone lookup; only for
    #                                                    # a backend that serves one zone

Cloudflare holds one record per address, so a :class:`RecordChange` becomes the few
calls that turn the records of its name and type into the wanted set: records that
already match stay, others are changed in place (``PATCH``), the rest are created or
deleted. Zone ids and records are looked up once and remembered; a remembered record
that Cloudflare no longer knows (deleted or changed in the dashboard) is looked up
again and the change retried once. Cloudflare's TTLs are 1 (automatic) or 60 to 86400
seconds: a zone TTL below 60 is raised to 60, with one warning line.

A wildcard owner is a record named ``*.<fqdn>`` there, like any other name (proxied
too, with ``proxied``). TXT records (ACME challenges at ``_acme-challenge.<fqdn>``) go
out as Cloudflare documents their content, one quoted character-string (``"token"``),
and are never proxied (Cloudflare cannot proxy TXT), so they keep the zone's TTL. TXT
content read back is unquoted, whether quoted or not in the dashboard.
"""

from __future__ import annotations

import re
from collections.abc import Generator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from ..config import ZoneSettings
from .base import (
    BackendError,
    PermanentBackendError,
    RecordChange,
    TransientBackendError,
    ZoneChange,
)
from .relay import HttpRelay
from .settings import TableReader
from .values import canonical, quote_txt, unquote_txt

DEFAULT_BASE_URL = "https://api.cloudflare.com/client/v4"
KNOWN_KEYS = frozenset(
    {"type", "api_token_file", "api_token_env", "base_url", "timeout", "proxied", "zone_id"}
)
PER_PAGE = 100
ZONE_ID = re.compile(r"[0-9a-fA-F]{32}")
TOKEN = re.compile(r"[\x21-\x7e]+")  # what fits in an HTTP header: visible ASCII
GLOBAL_API_KEY = re.compile(r"[0-9a-f]{37}")

# Cloudflare's error codes that nicupdate acts on.
AUTH_CODES = frozenset({6003, 6111, 9106, 9109, 10000, 10001})
BAD_TTL = 9021
CNAME_IN_THE_WAY = 81054
RECORD_EXISTS = frozenset({81057, 81058})
RECORD_GONE = 81044
NO_ROUTE = frozenset({7000, 7003})
TOKEN_FIX = (
    "check the API token, and that it has the permissions Zone Read and DNS Edit on this zone"
)

Record = tuple[str, str, int, bool]  # id, content (a TXT value unquoted), ttl, proxied
PROXIABLE = frozenset({"A", "AAAA"})  # of the types nicupdate writes


class BearerToken(httpx.Auth):
    """``Authorization: Bearer <token>``; the repr leaves the token out."""

    def __init__(self, token: str) -> None:
        self._token = token

    def __repr__(self) -> str:
        return "BearerToken(<hidden>)"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._token}"
        yield request


@dataclass
class _Stale(Exception):
    """Cloudflare does not know an id we remembered, or holds a record we did not know."""

    kind: Literal["record", "exists", "zone"]
    detail: str


class CloudflareBackend(HttpRelay):
    """Keeps the A, AAAA and TXT records of hosts at Cloudflare."""

    kind = "cloudflare"
    min_ttl = 60

    def __init__(
        self,
        name: str,
        *,
        token: str,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float = 10.0,
        proxied: bool = False,
        zone_id: str | None = None,
    ) -> None:
        super().__init__(name, base_url=base_url, timeout=timeout)
        self.auth = BearerToken(token)
        self.proxied = proxied
        self.zone_id = zone_id
        self._zone_ids: dict[str, str] = {}  # zone name -> id
        self._zone_of_id: str | None = None  # with zone_id: the one zone it serves
        self._records: dict[tuple[str, str, str], list[Record]] = {}  # (zone id, fqdn, type)

    @classmethod
    def from_table(cls, name: str, table: Mapping[str, Any]) -> CloudflareBackend:
        """Build the backend from its ``[backends.NAME]`` table; raises BackendUnavailable."""
        return cls(name, **_Settings(name, table).parse())

    def __repr__(self) -> str:
        return (
            f"CloudflareBackend(name={self.name!r}, base_url={self.base_url!r}, "
            f"proxied={self.proxied!r}, zone_id={self.zone_id!r})"
        )

    # -- Backend protocol --------------------------------------------------------------

    async def apply(self, change: ZoneChange) -> None:
        for record in change.changes:
            await self._apply_one(change.zone, record)

    async def _apply_one(self, zone: ZoneSettings, change: RecordChange) -> None:
        """Reconcile one name and type; on a stale id, forget and look up again, once."""
        for attempt in (1, 2):
            zone_id = await self._zone_id(zone.name)
            key = (zone_id, change.fqdn, change.rtype)
            try:
                have = self._records.get(key)
                if have is None:
                    have = await self._lookup(zone_id, change)
                self._records[key] = await self._reconcile(zone_id, zone, change, have)
                return
            except _Stale as stale:
                self._forget(zone.name, key, zone_id=stale.kind == "zone")
                if attempt == 2 or (stale.kind == "zone" and self.zone_id is not None):
                    raise self._stale_error(zone.name, change, stale) from None
            except BackendError as error:
                # What Cloudflare holds is uncertain now: read it again next time.
                self._forget(zone.name, key, zone_id=isinstance(error, PermanentBackendError))
                raise

    def _forget(self, zone: str, key: tuple[str, str, str], *, zone_id: bool) -> None:
        """Drop what we remember of one record set (and of the zone's id)."""
        self._records.pop(key, None)
        if zone_id:
            self._zone_ids.pop(zone, None)
            for other in [k for k in self._records if k[0] == key[0]]:
                del self._records[other]

    # -- zones and records -------------------------------------------------------------

    async def _zone_id(self, zone: str) -> str:
        if self.zone_id is not None:
            self._zone_of_id = self._zone_of_id or zone
            if self._zone_of_id != zone:
                raise self.permanent(
                    f"zone_id is set, so this backend serves the zone {self._zone_of_id} only, "
                    f"not {zone}",
                    f"remove backends.{self.name}.zone_id, or give {zone} a backend of its own",
                )
            return self.zone_id
        known = self._zone_ids.get(zone)
        if known is not None:
            return known
        what = f"looking up the zone {zone}"
        found = await self._get(what, "/zones", {"name": zone})
        ids = [z.get("id") for z in found if isinstance(z, dict) and z.get("name") == zone]
        if not ids or not isinstance(ids[0], str):
            raise self.permanent(
                f"the zone {zone} is not in this Cloudflare account, or the token cannot read it",
                "check the zone's name, and give the token Zone Read and DNS Edit on it",
            )
        self._zone_ids[zone] = ids[0]
        return ids[0]

    async def _lookup(self, zone_id: str, change: RecordChange) -> list[Record]:
        what = f"reading the {change.rtype} records of {change.fqdn}"
        params = {"type": change.rtype, "name": change.fqdn}
        found = await self._get(what, f"/zones/{zone_id}/dns_records", params)
        return [
            _record(r)
            for r in found
            if isinstance(r, dict)
            and r.get("type") == change.rtype
            and str(r.get("name", "")).lower() == change.fqdn.lower()
        ]

    async def _get(self, what: str, path: str, params: dict[str, str]) -> list[Any]:
        """Every page of a list."""
        items: list[Any] = []
        page = 1
        while True:
            query = {**params, "page": str(page), "per_page": str(PER_PAGE)}
            body = self._check(await self.call("GET", path, params=query), what)
            result = body.get("result")
            if not isinstance(result, list):
                raise self._unreadable(what)
            items.extend(result)
            info = body.get("result_info")
            pages = info.get("total_pages") if isinstance(info, dict) else None
            if not isinstance(pages, int) or page >= pages or not result:
                return items
            page += 1

    async def _reconcile(
        self, zone_id: str, zone: ZoneSettings, change: RecordChange, have: list[Record]
    ) -> list[Record]:
        """Make the records ``have`` the wanted set; returns what Cloudflare then holds."""
        proxied = self.proxied and change.rtype in PROXIABLE
        ttl = 1 if proxied else self.ttl_for(zone)
        plan = plan_writes(have, change.addresses, ttl, proxied, change.rtype)
        path = f"/zones/{zone_id}/dns_records"
        where = f"{change.fqdn} {change.rtype}"
        done = list(plan.keep)
        for old, value in plan.change:
            body = {"content": _content(change.rtype, value), "ttl": ttl, "proxied": proxied}
            what = f"changing {where} to {value}"
            done.append(await self._write(what, "PATCH", f"{path}/{old[0]}", body))
        for value in plan.create:
            body = {
                "type": change.rtype,
                "name": change.fqdn,
                "content": _content(change.rtype, value),
                "ttl": ttl,
                "proxied": proxied,
            }
            done.append(await self._write(f"creating {where} {value}", "POST", path, body))
        for old in plan.delete:
            what = f"deleting {where} {old[1]}"
            self._check(await self.call("DELETE", f"{path}/{old[0]}"), what)
        return done

    async def _write(self, what: str, method: str, path: str, body: dict[str, Any]) -> Record:
        result = self._check(await self.call(method, path, json=body), what).get("result")
        if not isinstance(result, dict):
            raise self._unreadable(what)
        return _record(result)

    # -- Cloudflare's answers ----------------------------------------------------------

    def _check(self, response: httpx.Response, what: str) -> dict[str, Any]:
        """The answer's envelope when it succeeded; otherwise the error to raise."""
        status = response.status_code
        body = _envelope(response)
        errors = _errors(body)
        said = "; ".join(f"{message} ({code})" for code, message in errors)
        if status == 429:
            raise self.transient(response, f"{what}: rate limit reached ({said or 'throttled'})")
        if status >= 500:
            raise self.transient(response, f"{what}: Cloudflare failed ({said or 'server error'})")
        if body is None:
            raise self._unreadable(what, status)
        if 200 <= status < 300 and body.get("success") is True:
            return body
        codes = {code for code, _ in errors}
        said = said or f"HTTP {status}"
        if status in (401, 403) or codes & AUTH_CODES:
            raise self.permanent(
                f"{what}: Cloudflare refused the API token: {said}", TOKEN_FIX, every_name=True
            )
        if RECORD_GONE in codes:
            raise _Stale("record", said)
        if codes & RECORD_EXISTS:
            raise _Stale("exists", said)
        if codes & NO_ROUTE:
            raise _Stale("zone", said)
        if BAD_TTL in codes:
            raise self.permanent(
                f"{what}: Cloudflare refused the TTL: {said}",
                "set the zone's ttl to 60..86400 seconds",
            )
        if CNAME_IN_THE_WAY in codes:
            raise self.permanent(
                f"{what}: a CNAME record holds this name: {said}",
                "delete the CNAME record in the Cloudflare dashboard, or use another host name",
            )
        raise self.permanent(
            f"{what}: Cloudflare refused: {said}", "check the host name and the zone settings"
        )

    def _stale_error(self, zone: str, change: RecordChange, stale: _Stale) -> BackendError:
        where = f"{change.fqdn} {change.rtype}"
        if stale.kind == "zone":
            if self.zone_id is not None:
                return self.permanent(
                    f"Cloudflare does not know the zone id {self.zone_id}: {stale.detail}",
                    f"check backends.{self.name}.zone_id (the zone's Overview page shows it), "
                    "or remove it",
                )
            return self.permanent(
                f"Cloudflare does not know the id it gave for the zone {zone}: {stale.detail}",
                "check that the zone still exists in the account",
            )
        if stale.kind == "exists":
            return self.permanent(
                f"updating {where}: Cloudflare says the record already exists: {stale.detail}",
                "remove the duplicate record in the Cloudflare dashboard",
            )
        return TransientBackendError(
            f"{self.label}: the records of {where} changed at Cloudflare while nicupdate "
            f"updated them ({stale.detail}); will try again"
        )

    def _unreadable(self, what: str, status: int | None = None) -> PermanentBackendError:
        code = f" (HTTP {status})" if status is not None else ""
        return self.permanent(
            f"{what}: the answer{code} is not from the Cloudflare API v4",
            f"check backends.{self.name}.base_url ({self.base_url})",
        )


@dataclass(frozen=True)
class Plan:
    """The writes that turn a name's records into the wanted set."""

    keep: list[Record]  # already right
    change: list[tuple[Record, str]]  # PATCH the record to the address
    create: list[str]  # POST
    delete: list[Record]  # DELETE


def plan_writes(
    have: list[Record], addresses: tuple[str, ...], ttl: int, proxied: bool, rtype: str = "A"
) -> Plan:
    """One record per address (or TXT value) with the fewest writes: a record that is
    right stays; one with the right value but another TTL or proxy setting is changed;
    the others are changed to the missing values, and what is left over is created or
    deleted."""
    missing = list(dict.fromkeys(canonical(rtype, a) for a in addresses))
    spare = list(have)

    def take(address: str, settings: tuple[int, bool] | None) -> Record | None:
        for record in spare:
            if record[1] == address and settings in (None, record[2:]):
                spare.remove(record)
                missing.remove(address)
                return record
        return None

    keep = [r for a in list(missing) if (r := take(a, (ttl, proxied))) is not None]
    change = [(r, a) for a in list(missing) if (r := take(a, None)) is not None]
    change += zip(spare, missing, strict=False)
    return Plan(keep, change, missing[len(spare) :], spare[len(missing) :])


def _envelope(response: httpx.Response) -> dict[str, Any] | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) and "success" in body else None


def _errors(body: dict[str, Any] | None) -> list[tuple[int, str]]:
    """(code, message) of each error and of each error's chain."""
    found: list[tuple[int, str]] = []
    entries = body.get("errors") if body is not None else None
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict):
            continue
        code, message = entry.get("code"), entry.get("message")
        found.append((code if isinstance(code, int) else 0, str(message or "").strip()))
        chain = entry.get("error_chain")
        if isinstance(chain, list):
            found += _errors({"errors": chain})
    return found


def _content(rtype: str, value: str) -> str:
    """A record's content as Cloudflare wants it: a TXT value as a quoted string."""
    return quote_txt(value) if rtype == "TXT" else value


def _record(item: Mapping[str, Any]) -> Record:
    ttl = item.get("ttl")
    rtype, content = str(item.get("type")), str(item.get("content"))
    return (
        str(item.get("id")),
        unquote_txt(content) if rtype == "TXT" else canonical(rtype, content),
        ttl if isinstance(ttl, int) else 0,
        item.get("proxied") is True,
    )


# -- configuration ---------------------------------------------------------------------


class _Settings(TableReader):
    """Reads a ``[backends.NAME]`` table of type cloudflare."""

    def parse(self) -> dict[str, Any]:
        self.check_keys(KNOWN_KEYS, "cloudflare")
        return {
            "token": self.token(),
            "base_url": self.url("base_url", DEFAULT_BASE_URL),
            "timeout": self.number("timeout", 10.0, 0.1, 300),
            "proxied": self.boolean("proxied", False),
            "zone_id": self.zone_id(),
        }

    def token(self) -> str:
        token = self.secret("api_token", "Cloudflare API token")
        key = "api_token_file" if "api_token_file" in self.table else "api_token_env"
        if not TOKEN.fullmatch(token):
            raise self.error(key, "the API token holds spaces or characters a token does not have")
        if GLOBAL_API_KEY.fullmatch(token):
            raise self.error(
                key,
                "this looks like the Global API Key: create an API token with Zone Read and "
                "DNS Edit instead (My Profile > API Tokens)",
            )
        return token

    def boolean(self, key: str, default: bool) -> bool:
        value = self.table.get(key, default)
        if not isinstance(value, bool):
            raise self.error(key, f"must be true or false (got {value!r})")
        return value

    def zone_id(self) -> str | None:
        value = self.string("zone_id")
        if value is not None and not ZONE_ID.fullmatch(value):
            raise self.error(
                "zone_id",
                f"{value!r} is not a zone id (32 hex digits, on the zone's Overview page)",
            )
        return value.lower() if value is not None else None
