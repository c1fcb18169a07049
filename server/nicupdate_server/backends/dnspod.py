"""Backend ``dnspod``: Tencent Cloud DNSPod, API 3.0 (version 2021-03-23). ::

    [backends.tencent]
    type = "dnspod"
    secret_id = "AKIDxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"   # a CAM API key's SecretId
    secret_key_file = "/etc/nicupdate/dnspod.secret"    # its SecretKey, or:
    # secret_key_env = "NICUPDATE_DNSPOD_SECRET_KEY"
    base_url = "https://dnspod.tencentcloudapi.com"     # the default
    timeout = 10.0                 # seconds per API call
    record_line = "默认"           # the split-zone line the records are on (the default line)
    min_ttl = 600                  # the plan's minimum TTL: 600 free; paid plans allow less

Every call is a POST of JSON to ``/`` signed with TC3-HMAC-SHA256
(:class:`~nicupdate_server.signing.tc3.Tc3Auth`), its action in ``X-TC-Action``:

* ``DescribeRecordList {Domain, Subdomain, RecordType}``: the records of a name and
  type; none is the *error* ``ResourceNotFound.NoDataOfRecord``.
* ``CreateRecord``, ``ModifyRecord {RecordId}``, ``DeleteRecord {RecordId}``: one
  record each. DNSPod records hold one value, so n addresses are n records.

``SubDomain`` is the owner's name relative to the zone: ``@`` for the apex, ``*.home``
for a host's wildcard, ``_acme-challenge.home`` (``RecordType`` TXT, the value as it is,
unquoted) for its ACME challenge.

The records found are cached per name and type and kept current with each write: a
changed address costs one ModifyRecord, an unchanged one no call. A RecordId DNSPod no
longer knows means someone changed the records elsewhere: they are looked up again,
once. DNSPod has no synchronous batch call: the names of one apply go out five calls at
a time. ``read`` (used by ``nicupdate reconcile``) lists the zone, 3000 records a call.
The zone's TTL is raised to ``min_ttl`` (said once in the log). Errors come as
HTTP 200 with ``{"Response": {"Error": {"Code", "Message"}, "RequestId"}}``;
:meth:`DnspodBackend._refusal` sorts them into permanent and transient.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from ..config import ZoneSettings
from .base import BackendError, PermanentBackendError, TransientBackendError, ZoneChange
from .relay import HttpRelay
from .settings import TableReader
from .values import canonical, owner_types

API_VERSION = "2021-03-23"
DEFAULT_BASE_URL = "https://dnspod.tencentcloudapi.com"
DEFAULT_LINE = "默认"
CONTENT_TYPE = "application/json; charset=utf-8"
MAX_TTL = 604800
PAGE = 3000  # DescribeRecordList's largest Limit
PARALLEL = 5  # calls in flight per apply: DescribeRecordList allows 100 a second
KNOWN_KEYS = frozenset(
    {
        "type",
        "secret_id",
        "secret_key_file",
        "secret_key_env",
        "base_url",
        "timeout",
        "record_line",
        "min_ttl",
    }
)
# The records are not what the cache says: look them up again.
CHANGED_ELSEWHERE = frozenset(
    {
        "ResourceNotFound.NoDataOfRecord",  # DescribeRecordList: nothing there
        "InvalidParameter.RecordIdInvalid",  # ModifyRecord/DeleteRecord: no such id
        "InvalidParameter.DomainRecordExist",  # the value is there already
    }
)
CREDENTIALS = (
    "check secret_id and the SecretKey in secret_key_file/secret_key_env: they must be "
    "one enabled API key pair (CAM console, API keys)"
)
PERMISSION = "give the CAM user of secret_id the policy QcloudDNSPodFullAccess"
TRANSIENT = ("RequestLimitExceeded", "InternalError", "ResourceUnavailable", "ServiceUnavailable")

Key = tuple[str, str, str]  # (zone, subdomain, rtype)


@dataclass(frozen=True, slots=True)
class _Record:
    id: int
    value: str
    ttl: int


class _ChangedElsewhere(Exception):
    """DNSPod's records differ from the cached ones (an internal signal, never raised out)."""


class DnspodBackend(HttpRelay):
    """Relays record changes to DNSPod, one record per address or TXT value."""

    kind = "dnspod"
    min_ttl = 600

    def __init__(
        self,
        name: str,
        *,
        secret_id: str,
        secret_key: str,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float = 10.0,
        record_line: str = DEFAULT_LINE,
        min_ttl: int = 600,
    ) -> None:
        from ..signing.tc3 import Tc3Auth

        super().__init__(name, base_url=base_url, timeout=timeout)
        self.record_line = record_line
        self.min_ttl = min_ttl
        self.auth = Tc3Auth(secret_id, secret_key, service="dnspod")
        self._cache: dict[Key, list[_Record]] = {}

    @classmethod
    def from_table(cls, name: str, table: Mapping[str, Any]) -> DnspodBackend:
        """Build the backend from its ``[backends.NAME]`` table; raises BackendUnavailable."""
        return cls(name, **_Settings(name, table).parse())

    # -- Backend protocol --------------------------------------------------------------

    async def apply(self, change: ZoneChange) -> None:
        zone = change.zone.name.rstrip(".").lower()
        ttl = self.ttl_for(change.zone)
        wanted = {
            (self._subdomain(record.fqdn, zone), record.rtype): record.addresses
            for record in change.changes
        }
        limit = asyncio.Semaphore(PARALLEL)

        async def one(name: str, rtype: str, addresses: tuple[str, ...]) -> None:
            async with limit:
                await self._set(zone, name, rtype, addresses, ttl)

        results = await asyncio.gather(
            *(one(name, rtype, addresses) for (name, rtype), addresses in wanted.items()),
            return_exceptions=True,
        )
        errors = [result for result in results if isinstance(result, BaseException)]
        if errors:
            # A permanent error first: the reconciler then splits the batch to find it.
            raise next((e for e in errors if isinstance(e, PermanentBackendError)), errors[0])

    async def read(
        self, zone: ZoneSettings, names: Collection[str]
    ) -> dict[tuple[str, str], tuple[str, ...]]:
        """What DNSPod holds for ``names``: ``(owner, type)`` -> sorted values, for the
        types each owner holds (A and AAAA, or TXT at ``_acme-challenge.<fqdn>``).

        Lists the zone's records (3000 a call) and refreshes the cache with them.
        """
        domain = zone.name.rstrip(".").lower()
        subdomains = {fqdn: self._subdomain(fqdn, domain) for fqdn in names}
        found: dict[Key, list[_Record]] = {
            (domain, name, rtype): []
            for fqdn, name in subdomains.items()
            for rtype in owner_types(fqdn)
        }
        offset, total = 0, 1
        while offset < total:
            page = {"Domain": domain, "Offset": offset, "Limit": PAGE}
            try:
                answer = await self._call("DescribeRecordList", page)
            except _ChangedElsewhere:  # ResourceNotFound.NoDataOfRecord: an empty zone
                break
            rows = answer.get("RecordList") or []
            for row in rows:
                key = (domain, str(row.get("Name", "")).lower(), str(row.get("Type", "")))
                if key in found and row.get("Line") == self.record_line:
                    found[key].append(self._record(row))
            count = (answer.get("RecordCountInfo") or {}).get("TotalCount")
            offset += len(rows)
            total = count if rows and isinstance(count, int) else offset
        self._cache.update(found)
        return {
            (fqdn, rtype): tuple(
                sorted(canonical(rtype, r.value) for r in found[(domain, name, rtype)])
            )
            for fqdn, name in subdomains.items()
            for rtype in owner_types(fqdn)
        }

    # -- one name and type -------------------------------------------------------------

    async def _set(
        self, zone: str, name: str, rtype: str, addresses: tuple[str, ...], ttl: int
    ) -> None:
        key = (zone, name, rtype)
        for _ in range(2):
            # Taken out of the cache while being changed: put back only when known right.
            records = self._cache.pop(key, None)
            if records is None:
                records = await self._lookup(zone, name, rtype)
            try:
                self._cache[key] = await self._converge(key, records, addresses, ttl)
                return
            except _ChangedElsewhere:
                continue
        raise TransientBackendError(
            f"{self.label}: the records of {_fqdn(name, zone)} {rtype} kept changing while "
            "being updated (edited elsewhere at the same time?); will retry"
        )

    async def _lookup(self, zone: str, name: str, rtype: str) -> list[_Record]:
        try:
            answer = await self._call(
                "DescribeRecordList", {"Domain": zone, "Subdomain": name, "RecordType": rtype}
            )
        except _ChangedElsewhere:  # ResourceNotFound.NoDataOfRecord: no records
            return []
        return [
            self._record(row)
            for row in answer.get("RecordList") or []
            if str(row.get("Name", "")).lower() == name
            and row.get("Type") == rtype
            and row.get("Line") == self.record_line
        ]

    async def _converge(
        self, key: Key, records: list[_Record], addresses: tuple[str, ...], ttl: int
    ) -> list[_Record]:
        """Make ``records`` hold exactly ``addresses`` with ``ttl``; return them then."""
        zone, name, rtype = key
        missing = list(dict.fromkeys(canonical(rtype, a) for a in addresses))
        done: list[_Record] = []
        spare: list[_Record] = []
        for record in records:
            value = canonical(rtype, record.value)
            if value in missing and record.ttl == ttl:
                missing.remove(value)
                done.append(record)
            else:
                spare.append(record)
        fields = {"SubDomain": name, "RecordType": rtype, "RecordLine": self.record_line}
        for value in missing:
            # Reuse a record: the one with this value (its TTL differs), else any spare.
            reuse = next((r for r in spare if canonical(rtype, r.value) == value), None)
            reuse = reuse or (spare[0] if spare else None)
            body = {"Domain": zone, **fields, "Value": value, "TTL": ttl}
            if reuse is not None:
                spare.remove(reuse)
                await self._call("ModifyRecord", {**body, "RecordId": reuse.id})
                done.append(_Record(reuse.id, value, ttl))
            else:
                answer = await self._call("CreateRecord", body)
                done.append(_Record(self._id(answer.get("RecordId"), "CreateRecord"), value, ttl))
        for record in spare:
            await self._call("DeleteRecord", {"Domain": zone, "RecordId": record.id})
        return done

    def _subdomain(self, fqdn: str, zone: str) -> str:
        """The name relative to the zone, as DNSPod's SubDomain: ``@`` for the apex."""
        name = fqdn.rstrip(".").lower()
        if name == zone:
            return "@"
        if name.endswith("." + zone):
            return name[: -len(zone) - 1]
        raise self.permanent(f"{fqdn} is not in the zone {zone}", "check the zone's name")

    def _record(self, row: Mapping[str, Any]) -> _Record:
        value, ttl = row.get("Value"), row.get("TTL")
        if not isinstance(value, str) or isinstance(ttl, bool) or not isinstance(ttl, int):
            raise self._garbled("DescribeRecordList", "a record without Value or TTL")
        return _Record(self._id(row.get("RecordId"), "DescribeRecordList"), value, ttl)

    def _id(self, value: Any, action: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._garbled(action, f"RecordId {value!r}")
        return value

    def _garbled(self, action: str, what: str) -> PermanentBackendError:
        return self.permanent(
            f"{action} answered {what}, not a Tencent Cloud API answer",
            f"check backends.{self.name}.base_url",
        )

    # -- calls -------------------------------------------------------------------------

    async def _call(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        """POST ``action``; its ``Response``, or a BackendError (or _ChangedElsewhere)."""
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        headers = {"Content-Type": CONTENT_TYPE, "X-TC-Action": action, "X-TC-Version": API_VERSION}
        response = await self.call("POST", "/", content=body, headers=headers)
        if response.status_code == 429 or response.status_code >= 500:
            raise self.transient(response, f"{action} failed")
        try:
            answer = response.json()["Response"]
            error = answer.get("Error")
        except (ValueError, KeyError, TypeError, AttributeError):
            raise self._garbled(action, f"HTTP {response.status_code}") from None
        if not error:
            return dict(answer)
        if not isinstance(error, Mapping):
            raise self._garbled(action, f"the error {error!r}")
        code, message = str(error.get("Code", "")), str(error.get("Message", ""))
        if code in CHANGED_ELSEWHERE:
            raise _ChangedElsewhere(code)
        raise self._refusal(action, code, message, payload, response)

    def _refusal(
        self,
        action: str,
        code: str,
        message: str,
        payload: Mapping[str, Any],
        response: httpx.Response,
    ) -> BackendError:
        """The error for DNSPod's answer ``code``: what it means and what to fix."""
        what = f"{action} refused: {code} ({message})"
        if "Value" in payload:  # a write: which record
            record = f"{_fqdn(payload['SubDomain'], payload['Domain'])} {payload['RecordType']}"
            what = f"{action} of {record} {payload['Value']} refused: {code} ({message})"
        if code.startswith(TRANSIENT) or code == "FailedOperation.UnknowError":
            return self.transient(response, f"{action}: {code} ({message})")
        if code == "AuthFailure.SignatureExpire":
            return self.permanent(
                what,
                "the clocks differ by more than 5 minutes: set this machine's clock (NTP)",
                every_name=True,
            )
        if code.startswith(("AuthFailure.UnauthorizedOperation", "UnauthorizedOperation")):
            return self.permanent(what, PERMISSION, every_name=True)
        if code.startswith("AuthFailure"):
            return self.permanent(what, f"{CREDENTIALS}; and {PERMISSION}", every_name=True)
        if code.startswith("OperationDenied"):
            return self.permanent(what, f"{PERMISSION}, in the account that holds the domain")
        if code == "LimitExceeded.RecordTtlLimit":
            return self.permanent(
                f"TTL {payload.get('TTL')} is below the DNSPod plan's minimum: {what}",
                f"set backends.{self.name}.min_ttl to the plan's minimum (600 on the free plan)",
            )
        if code == "InvalidParameter.RecordLineInvalid":
            return self.permanent(
                what, f"set backends.{self.name}.record_line to a line of the domain's plan"
            )
        if code in ("InvalidParameterValue.DomainNotExists", "InvalidParameter.DomainInvalid"):
            return self.permanent(
                f"the domain {payload.get('Domain')} is not in this account: {what}",
                "add it in the DNSPod console, or fix the zone's name",
            )
        return self.permanent(what, "DNSPod's message says why; see its API error codes")


def _fqdn(name: str, zone: str) -> str:
    return zone if name == "@" else f"{name}.{zone}"


class _Settings(TableReader):
    """Reads a ``[backends.NAME]`` table of type dnspod."""

    def parse(self) -> dict[str, Any]:
        self.check_keys(KNOWN_KEYS, "dnspod")
        return {
            "secret_id": self.required("secret_id", "the SecretId of a Tencent Cloud API key"),
            "secret_key": self.secret("secret_key", "SecretKey"),
            "base_url": self.url("base_url", DEFAULT_BASE_URL),
            "timeout": self.number("timeout", 10.0, 0.1, 300),
            "record_line": self.string("record_line") or DEFAULT_LINE,
            "min_ttl": int(self.number("min_ttl", 600, 1, MAX_TTL, integer=True)),
        }
