"""Backend ``huaweicloud``: Huawei Cloud DNS, through its v2 REST API signed with an
IAM user's access key (AK/SK, ``SDK-HMAC-SHA256``). ::

    [backends.huawei]
    type = "huaweicloud"
    access_key = "HPUAEXAMPLEKEY123456"               # the AK (an identifier, not secret)
    secret_key_file = "/etc/nicupdate/huawei.sk"      # a file holding the SK, or:
    # secret_key_env = "NICUPDATE_HUAWEI_SK"          # a variable holding it
    base_url = "https://dns.myhuaweicloud.com"        # or https://dns.<region>.myhuaweicloud.com
    # project_id = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"   # sent (signed) as X-Project-Id
    # zone_id = "ff8080825b8fc86c015b94bc6f8712c3"      # skips the zone lookup: one zone only
    timeout = 10.0                                    # seconds to wait for each answer

Huawei Cloud keeps all the values of one name and type in one record set. A host's
wildcard is the record set ``*.<fqdn>.``; its ACME challenge the TXT record set
``_acme-challenge.<fqdn>.``, whose values the API wants in quotation marks (``"token"``):
they go out quoted and are read back unquoted. A change
looks the zone up once (``GET /v2/zones?name=<zone>.&search_mode=equal``), then the
record set once (``GET .../recordsets?name=<fqdn>.&type=A&search_mode=equal``), and
remembers both ids and what the record set holds. It then creates the record set
(``POST``), replaces it (``PUT``) or deletes it (``DELETE``, for an empty address
tuple), and calls nothing at all when the record set already holds those addresses
with that TTL. A record set that is gone when it is written to (``DNS.0313``), or a zone
that is gone (``DNS.0302``), is looked up again once; a record set that exists when it
is created (``DNS.0312``/``DNS.0335``) is looked up and replaced.

The changes of one apply go out at most ``parallel`` (4) calls at a time. Errors:
throttling (HTTP 429 ``APIGW.0308``, 403 ``DNS.0014``) and 5xx are transient, with the
``Retry-After`` the service sends; refused keys (401 ``APIGW.0301``), missing
permissions (403) and invalid data (400) are permanent, with what to fix.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from ..signing.huawei import HuaweiSdkAuth
from .base import BackendError, RecordChange, TransientBackendError, ZoneChange
from .relay import HttpRelay
from .settings import TableReader
from .values import canonical, quote_txt, unquote_txt

DEFAULT_BASE_URL = "https://dns.myhuaweicloud.com"
KNOWN_KEYS = frozenset(
    {
        "type",
        "access_key",
        "secret_key_file",
        "secret_key_env",
        "base_url",
        "project_id",
        "zone_id",
        "timeout",
    }
)

# Error codes, from the "Error Codes" appendices of the DNS API reference and of the
# API signing guide (APIGW.*).
THROTTLED = frozenset({"APIGW.0308", "DNS.0014"})
NOT_STEADY = frozenset({"DNS.0209", "DNS.0314"})  # zone / record set busy: try again later
RECORDSET_GONE = frozenset({"DNS.0313", "DNS.0004"})
ZONE_GONE = frozenset({"DNS.0302"})
RECORDSET_EXISTS = frozenset({"DNS.0312", "DNS.0335"})
BAD_CREDENTIALS = frozenset({"APIGW.0301", "APIGW.0305", "DNS.0005"})

CREDENTIALS_FIX = (
    "check access_key and the secret key (secret_key_file / secret_key_env): they must be "
    "an enabled AK/SK pair of the IAM user (My Credentials > Access Keys), and this "
    "host's clock must be within 15 minutes of UTC; after 5 failures in a row Huawei "
    "Cloud locks the AK for 5 minutes"
)
PERMISSION_FIX = (
    "check AK/SK and that the IAM user has DNS FullAccess (or DNS Administrator) for "
    "the region/project of the zone, in IAM > User Groups > Permissions"
)
INVALID_FIX = {
    "DNS.0304": "the record name is not valid in this zone: check the host and zone names",
    "DNS.0308": "Huawei Cloud refused an address or TXT value as the record's value",
    "DNS.0319": "the TTL is outside Huawei Cloud's range: change the zone's ttl",
    "DNS.0403": "the account's record set quota is used up: delete some or raise the quota",
    "DNS.0040": "the account needs real-name authentication before DNS changes",
}
OTHER_FIX = "see Error Codes in Huawei Cloud DNS's API reference"


@dataclass(frozen=True, slots=True)
class _RecordSet:
    """What the provider holds for one name and type, as last read or written."""

    id: str | None  # None: no record set
    records: frozenset[str]
    ttl: int


ABSENT = _RecordSet(None, frozenset(), 0)


class _Stale(Exception):
    """A remembered id the provider no longer knows (or a record set that appeared)."""

    def __init__(self, zone: bool = False) -> None:
        super().__init__()
        self.zone = zone


class HuaweiCloudBackend(HttpRelay):
    """Relays record changes to Huawei Cloud DNS."""

    kind = "huaweicloud"
    min_ttl = 1  # the API takes 1 to 2147483647 (its default is 300)
    parallel = 4  # calls in flight at once within one apply

    def __init__(
        self,
        name: str,
        *,
        access_key: str,
        secret_key: str,
        base_url: str = DEFAULT_BASE_URL,
        project_id: str | None = None,
        zone_id: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        super().__init__(name, base_url=base_url, timeout=timeout)
        self.access_key = access_key
        self.project_id = project_id
        self.zone_id = zone_id
        self.auth = HuaweiSdkAuth(access_key, secret_key)
        self._headers = {"X-Project-Id": project_id} if project_id else {}
        self._zones: dict[str, str] = {}  # zone name -> zone id
        self._sets: dict[tuple[str, str], _RecordSet] = {}  # (fqdn, type) -> record set

    @classmethod
    def from_table(cls, name: str, table: Mapping[str, Any]) -> HuaweiCloudBackend:
        """Build the backend from its ``[backends.NAME]`` table; raises BackendUnavailable."""
        return cls(name, **_Settings(name, table).parse())

    # -- Backend protocol --------------------------------------------------------------

    async def apply(self, change: ZoneChange) -> None:
        if not change.changes:
            return
        ttl = self.ttl_for(change.zone)
        await self._zone_id(change.zone.name)  # once, before the changes fan out
        await _all(
            [self._apply_one(change.zone.name, record, ttl) for record in change.changes],
            self.parallel,
        )

    # -- one record set ----------------------------------------------------------------

    async def _apply_one(self, zone: str, change: RecordChange, ttl: int) -> None:
        """Upsert or delete one record set; a stale id is looked up again, once."""
        for attempt in range(2):
            try:
                await self._upsert(zone, change, ttl)
                return
            except _Stale as stale:
                self._sets.pop((change.fqdn, change.rtype), None)
                if stale.zone:
                    self._forget_zone(zone)
                if attempt:
                    raise TransientBackendError(
                        f"{self.label}: {change.fqdn} {change.rtype} changed in Huawei Cloud "
                        "DNS while nicupdate was writing it; will try again"
                    ) from None

    async def _upsert(self, zone: str, change: RecordChange, ttl: int) -> None:
        zone_id = await self._zone_id(zone)
        key = (change.fqdn, change.rtype)
        have = self._sets.get(key)
        if have is None:
            have = await self._lookup(zone_id, change)
        want = frozenset(canonical(change.rtype, value) for value in change.addresses)
        if not want:
            if have.id is not None:
                await self._write("DELETE", zone_id, have.id, change)
            self._sets[key] = ABSENT
            return
        if have.id is not None and have.records == want and have.ttl == ttl:
            self._sets[key] = have
            return
        body = {
            "name": _absolute(change.fqdn),
            "type": change.rtype,
            "ttl": ttl,
            "records": [_as_huawei(change.rtype, value) for value in sorted(want)],
        }
        if have.id is None:
            answer = await self._write("POST", zone_id, None, change, body)
            created = answer.get("id")
            if not isinstance(created, str) or not created:
                self._sets.pop(key, None)  # look it up next time
                return
            self._sets[key] = _RecordSet(created, want, ttl)
        else:
            await self._write("PUT", zone_id, have.id, change, body)
            self._sets[key] = _RecordSet(have.id, want, ttl)

    async def _lookup(self, zone_id: str, change: RecordChange) -> _RecordSet:
        name = _absolute(change.fqdn)
        response = await self.call(
            "GET",
            f"/v2/zones/{zone_id}/recordsets",
            params={"name": name, "type": change.rtype, "search_mode": "equal"},
            headers=self._headers,
        )
        what = f"looking up {change.fqdn} {change.rtype}"
        if response.status_code != 200:
            if _code(response) in ZONE_GONE:
                raise _Stale(zone=True)
            raise self._error(response, what)
        for item in self._list(response, "recordsets", what):
            if str(item.get("name", "")).lower() == name and item.get("type") == change.rtype:
                found, records = item.get("id"), item.get("records") or []
                return _RecordSet(
                    found if isinstance(found, str) and found else None,
                    frozenset(_from_huawei(change.rtype, str(r)) for r in records),
                    int(item.get("ttl") or 0),
                )
        return ABSENT

    async def _write(
        self,
        method: str,
        zone_id: str,
        recordset_id: str | None,
        change: RecordChange,
        body: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """POST, PUT or DELETE a record set; the answer's JSON object."""
        path = f"/v2/zones/{zone_id}/recordsets"
        if recordset_id is not None:
            path += f"/{recordset_id}"
        response = await self.call(method, path, json=body, headers=self._headers)
        verb = {"POST": "creating", "PUT": "changing", "DELETE": "deleting"}[method]
        what = f"{verb} {change.fqdn} {change.rtype}"
        if response.is_success:
            return self._object(response, what) if response.content else {}
        code = _code(response)
        if method == "POST" and code in RECORDSET_EXISTS:
            raise _Stale()
        if response.status_code == 404 and code in RECORDSET_GONE:
            raise _Stale()
        if code in ZONE_GONE:
            raise _Stale(zone=True)
        raise self._error(response, what)

    # -- the zone ----------------------------------------------------------------------

    async def _zone_id(self, zone: str) -> str:
        if self.zone_id is not None:
            return self.zone_id
        known = self._zones.get(zone)
        if known is not None:
            return known
        name = _absolute(zone)
        response = await self.call(
            "GET",
            "/v2/zones",
            params={"name": name, "search_mode": "equal"},
            headers=self._headers,
        )
        what = f"looking up zone {zone}"
        if response.status_code != 200:
            raise self._error(response, what)
        for item in self._list(response, "zones", what):
            if str(item.get("name", "")).lower() == name and item.get("id"):
                self._zones[zone] = str(item["id"])
                return self._zones[zone]
        raise self.permanent(
            f"zone {zone} is not among the account's zones",
            "create it in the Huawei Cloud DNS console (Public Zones), or use the AK/SK of "
            "the account that holds it",
        )

    def _forget_zone(self, zone: str) -> None:
        if self.zone_id is not None:
            raise self.permanent(
                f"zone_id {self.zone_id} does not exist",
                f"check backends.{self.name}.zone_id, or remove it to look {zone} up by name",
            )
        self._zones.pop(zone, None)
        for key in [k for k in self._sets if _within(k[0], zone)]:
            del self._sets[key]

    # -- answers -----------------------------------------------------------------------

    def _object(self, response: httpx.Response, what: str) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise TransientBackendError(
                f"{self.label}: {what}: the answer is not a JSON object "
                f"(HTTP {response.status_code}); is base_url the DNS endpoint?"
            )
        return body

    def _list(self, response: httpx.Response, field: str, what: str) -> list[dict[str, Any]]:
        items = self._object(response, what).get(field)
        if not isinstance(items, list):
            raise TransientBackendError(f"{self.label}: {what}: the answer has no {field} list")
        return [item for item in items if isinstance(item, dict)]

    def _error(self, response: httpx.Response, what: str) -> BackendError:
        """The error for a failed call: transient when waiting helps, else permanent."""
        status = response.status_code
        code, message = _error_fields(response)
        said = f"{code} {message}".strip() or "no error details"
        if status == 429 or code in THROTTLED:
            return self.transient(response, f"{what}: throttled, {said}")
        if status >= 500 or code in NOT_STEADY:
            return self.transient(response, f"{what} failed: {said}")
        if status == 401 or code in BAD_CREDENTIALS:
            return self.permanent(
                f"{what}: Huawei Cloud refused the AK/SK: {said}", CREDENTIALS_FIX, every_name=True
            )
        if status == 403:
            return self.permanent(f"{what}: not allowed: {said}", PERMISSION_FIX, every_name=True)
        if code == "APIGW.0101" or (status == 404 and not code):
            return self.permanent(
                f"{what}: no such API at {self.base_url}: {said}",
                f"check base_url: {DEFAULT_BASE_URL} or https://dns.<region>.myhuaweicloud.com",
            )
        fix = INVALID_FIX.get(code, OTHER_FIX)
        return self.permanent(f"{what}: refused: {said} (HTTP {status})", fix)


# -- helpers -----------------------------------------------------------------------------


async def _all(work: list[Coroutine[Any, Any, None]], limit: int) -> None:
    """Run ``work`` at most ``limit`` at a time; on failure, cancel the rest and raise one
    error: a transient one when there is any (wait, then retry all), else a permanent one."""
    if len(work) == 1:
        await work[0]
        return
    gate = asyncio.Semaphore(limit)

    async def gated(step: Coroutine[Any, Any, None]) -> None:
        async with gate:
            await step

    try:
        async with asyncio.TaskGroup() as group:
            for step in work:
                group.create_task(gated(step))
    except BaseExceptionGroup as failed:
        errors = failed.exceptions
        if not all(isinstance(error, BackendError) for error in errors):
            raise
        transient = [e for e in errors if isinstance(e, TransientBackendError)]
        if transient:
            raise max(transient, key=lambda e: e.retry_after or 0.0) from None
        raise errors[0] from None


def _error_fields(response: httpx.Response) -> tuple[str, str]:
    """(code, message) of an error answer: ``{"code","message"}`` from DNS, or
    ``{"error_code","error_msg"}`` from the API gateway; empty when there is none."""
    try:
        body = response.json()
    except ValueError:
        return "", ""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        body = body["error"]
    if not isinstance(body, dict):
        return "", ""
    code = body.get("code") or body.get("error_code") or ""
    message = body.get("message") or body.get("error_msg") or ""
    return str(code), str(message)


def _code(response: httpx.Response) -> str:
    return _error_fields(response)[0]


def _absolute(name: str) -> str:
    """``router.example.com`` -> ``router.example.com.``, as Huawei Cloud names things."""
    return name.rstrip(".").lower() + "."


def _within(fqdn: str, zone: str) -> bool:
    fqdn, zone = fqdn.rstrip(".").lower(), zone.rstrip(".").lower()
    return fqdn == zone or fqdn.endswith("." + zone)


def _as_huawei(rtype: str, value: str) -> str:
    """A value as Huawei Cloud takes it: a TXT value in quotation marks."""
    return quote_txt(value) if rtype == "TXT" else value


def _from_huawei(rtype: str, value: str) -> str:
    """A value Huawei Cloud lists, as nicupdate compares it."""
    return unquote_txt(value) if rtype == "TXT" else canonical(rtype, value)


# -- configuration -----------------------------------------------------------------------


class _Settings(TableReader):
    """Reads a ``[backends.NAME]`` table of type huaweicloud."""

    def parse(self) -> dict[str, Any]:
        self.check_keys(KNOWN_KEYS, "huaweicloud")
        return {
            "access_key": self.identifier(
                "access_key", "the AK of the IAM user's access key", required=True
            ),
            "secret_key": self.secret("secret_key", "secret access key (SK)"),
            "base_url": self.url("base_url", DEFAULT_BASE_URL),
            "project_id": self.identifier("project_id", "a project ID"),
            "zone_id": self.identifier("zone_id", "a zone ID"),
            "timeout": self.number("timeout", 10.0, 0.1, 300),
        }

    def identifier(self, key: str, what: str, required: bool = False) -> str | None:
        value = self.required(key, what) if required else self.string(key)
        if value is not None and not (value.isascii() and value.isalnum()):
            raise self.error(key, f"must be {what}: letters and digits only")
        return value
