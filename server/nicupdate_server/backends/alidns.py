"""Backend ``alidns``: Alibaba Cloud DNS (Alidns, API version 2015-01-09, RPC style). ::

    [backends.aliyun]
    type = "alidns"
    access_key_id = "LTAI5tExampleKeyId"                     # a RAM user's AccessKey ID
    access_key_secret_file = "/etc/nicupdate/alidns.secret"  # its AccessKey secret, or:
    # access_key_secret_env = "NICUPDATE_ALIDNS_SECRET"      # a variable holding it
    base_url = "https://alidns.aliyuncs.com"
    timeout = 10.0          # seconds per API call
    min_ttl = 600           # the edition's minimum TTL: 600 on free/personal editions;
                            # enterprise editions may set 60 (or less, as their plan allows)
    line = "default"        # the resolution line the records live on

The zone's name is the Alidns domain name; a record name (``RR``) is the owner's name
relative to the zone (``@`` for the apex, ``*.home`` for a host's wildcard,
``_acme-challenge.home`` for its ACME challenge, of ``Type`` TXT). One record holds one
address or TXT value (as it is, unquoted), so a set of them is as many records. Per
name and type, the backend reads the records once (``DescribeSubDomainRecords``) and
keeps their ids and values; afterwards it writes only what differs:
``UpdateDomainRecord`` for a record whose value or TTL changes, ``AddDomainRecord`` for
an extra value, ``DeleteDomainRecord`` for a record too many (all of them when the host
goes offline). A value the provider already has makes no call
(Alidns refuses such an update with ``DomainRecordDuplicate``; if one comes anyway, the
value is there, which is success). A kept id that Alidns no longer knows
(``DomainRecordNotBelongToUser``: the record was removed behind nicupdate's back) makes
the backend read that name again, once.

Calls are signed with the RPC signature v1 (HMAC-SHA1, :mod:`..signing.alidns`). Errors:
throttling (``Throttling``, ``Throttling.User``...), ``ServiceUnavailable``,
``InternalError``, ``LastOperationNotFinished`` and 5xx are transient; a refused AccessKey
or signature, a RAM user without permission, a zone not in the account, a TTL below the
edition's minimum and the clock off by more than 15 minutes are permanent, with what to
fix. The TTL is the zone's, raised to ``min_ttl`` (said once in the log).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Collection, Mapping
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import httpx

from ..config import ZoneSettings
from ..signing.alidns import AliyunRpcAuth
from .base import BackendError, TransientBackendError, ZoneChange
from .relay import HttpRelay
from .settings import TableReader
from .values import canonical, owner_types

log = logging.getLogger("nicupdate.backend")
T = TypeVar("T")

API_VERSION = "2015-01-09"
DEFAULT_URL = "https://alidns.aliyuncs.com"
KNOWN_KEYS = frozenset(
    {
        "type",
        "access_key_id",
        "access_key_secret_file",
        "access_key_secret_env",
        "base_url",
        "timeout",
        "min_ttl",
        "line",
    }
)
PAGE_SIZE = 100  # the most DescribeSubDomainRecords returns per page
PARALLEL = 4  # record sets worked on at once (writes are limited to 60/s per account)

# The provider's error codes, sorted by what to do about them.
GONE = "DomainRecordNotBelongToUser"  # a record id the account does not have (any more)
DUPLICATE = "DomainRecordDuplicate"  # the record already exists with that value
TRANSIENT = frozenset(
    {
        "Throttling",
        "Throttling.User",
        "Throttling.Api",
        "ServiceUnavailable",
        "InternalError",
        "LastOperationNotFinished",
        "SignatureNonceUsed",  # a fresh nonce goes with the next attempt
        "UnknownError",
        GONE,  # still gone after reading the name again: it changed meanwhile
    }
)
CREDENTIALS = frozenset(
    {
        "InvalidAccessKeyId",
        "InvalidAccessKeyId.NotFound",
        "InvalidAccessKeyId.Inactive",
        "InvalidAccessKeySecret",
        "SignatureDoesNotMatch",
        "IncompleteSignature",
    }
)
NO_ZONE = frozenset({"InvalidDomainName.NoExist", "IncorrectDomainUser", "DomainNotExist"})
PERMISSIONS = (
    "attach the policy AliyunDNSFullAccess to the RAM user, or allow the actions "
    "alidns:DescribeSubDomainRecords, AddDomainRecord, UpdateDomainRecord and "
    "DeleteDomainRecord"
)


@dataclass(frozen=True, slots=True)
class _Record:
    """One Alidns record of a name and type: one address."""

    id: str
    value: str
    ttl: int


class _ApiError(Exception):
    """An error answer: the provider's ``Code`` and ``Message``."""

    def __init__(self, response: httpx.Response, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.response = response
        self.code = code
        self.message = message


class AlidnsBackend(HttpRelay):
    """Keeps A, AAAA and TXT records in Alibaba Cloud DNS, one record per value."""

    kind = "alidns"
    min_ttl = 600

    def __init__(
        self,
        name: str,
        *,
        access_key_id: str,
        access_key_secret: str,
        base_url: str = DEFAULT_URL,
        timeout: float = 10.0,
        min_ttl: int = 600,
        line: str = "default",
    ) -> None:
        super().__init__(name, base_url=base_url, timeout=timeout)
        self.access_key_id = access_key_id
        self.min_ttl = min_ttl  # the edition's minimum
        self.line = line
        self.auth = AliyunRpcAuth(access_key_id, access_key_secret)
        # (fqdn, type) -> its records, as last read or written
        self._records: dict[tuple[str, str], tuple[_Record, ...]] = {}
        self._semaphores: dict[asyncio.AbstractEventLoop, asyncio.Semaphore] = {}

    @classmethod
    def from_table(cls, name: str, table: Mapping[str, Any]) -> AlidnsBackend:
        """Build the backend from its ``[backends.NAME]`` table; raises BackendUnavailable."""
        reader = TableReader(name, table)
        reader.check_keys(KNOWN_KEYS, "alidns")
        return cls(
            name,
            access_key_id=reader.required(
                "access_key_id", "the AccessKey ID of a RAM user allowed to edit the zone"
            ),
            access_key_secret=reader.secret("access_key_secret", "AccessKey secret"),
            base_url=reader.url("base_url", DEFAULT_URL),
            timeout=reader.number("timeout", 10.0, 0.1, 300),
            min_ttl=int(reader.number("min_ttl", 600, 1, 86400, integer=True)),
            line=reader.string("line") or "default",
        )

    def __repr__(self) -> str:
        return (
            f"AlidnsBackend(name={self.name!r}, base_url={self.base_url!r}, "
            f"access_key_id={self.access_key_id!r})"
        )

    # -- Backend protocol --------------------------------------------------------------

    async def apply(self, change: ZoneChange) -> None:
        ttl = self.ttl_for(change.zone)
        latest = {(c.fqdn.lower().rstrip("."), c.rtype): c.addresses for c in change.changes}
        results = await asyncio.gather(
            *(
                self._limited(self._set(change.zone, fqdn, rtype, addresses, ttl))
                for (fqdn, rtype), addresses in latest.items()
            ),
            return_exceptions=True,
        )
        _raise_first(results)

    async def read(
        self, zone: ZoneSettings, names: Collection[str]
    ) -> dict[tuple[str, str], tuple[str, ...]]:
        """What Alidns holds for ``names``: ``(owner, type)`` -> sorted values, for the
        types each owner holds (A and AAAA, or TXT at ``_acme-challenge.<fqdn>``)."""
        wanted = [(fqdn, rtype) for fqdn in names for rtype in owner_types(fqdn)]
        results = await asyncio.gather(
            *(
                self._limited(self._read(zone, fqdn.lower().rstrip("."), rtype))
                for fqdn, rtype in wanted
            ),
            return_exceptions=True,
        )
        _raise_first(results)
        return {
            key: tuple(sorted(r.value for r in result))
            for key, result in zip(wanted, results, strict=True)
            if not isinstance(result, BaseException)
        }

    # -- one record set ----------------------------------------------------------------

    async def _set(
        self, zone: ZoneSettings, fqdn: str, rtype: str, addresses: tuple[str, ...], ttl: int
    ) -> None:
        """Make the records of ``fqdn`` and ``rtype`` hold ``addresses`` with ``ttl``."""
        rr = self._relative(zone, fqdn)
        wanted = sorted({canonical(rtype, a) for a in addresses})
        key = (fqdn, rtype)
        for attempt in range(2):
            kept = self._records.get(key)
            current = kept if kept is not None else await self._read(zone, fqdn, rtype)
            try:
                records, certain = await self._converge(zone, rr, rtype, current, wanted, ttl)
            except _ApiError as error:
                self._records.pop(key, None)  # unsure what is there now: read it next time
                if error.code == GONE and kept is not None and attempt == 0:
                    log.info(
                        "%s: the records of %s %s changed behind nicupdate; reading them again",
                        self.label,
                        fqdn,
                        rtype,
                    )
                    continue
                raise self._failure(error, f"{fqdn} {rtype}") from None
            if certain:
                self._records[key] = records
            else:  # Alidns had a value already: its record id is unknown, read it next time
                self._records.pop(key, None)
            return

    async def _converge(
        self,
        zone: ZoneSettings,
        rr: str,
        rtype: str,
        current: tuple[_Record, ...],
        wanted: list[str],
        ttl: int,
    ) -> tuple[tuple[_Record, ...], bool]:
        """Make the writes that turn ``current`` into ``wanted``: the records afterwards,
        and whether all their ids are known."""
        missing = list(wanted)
        matched: list[_Record] = []
        spare: list[_Record] = []
        for record in current:
            if record.value in missing:
                missing.remove(record.value)
                matched.append(record)
            else:
                spare.append(record)
        result: list[_Record] = []
        certain = True
        for record in matched:  # the right value; the TTL may still differ
            if record.ttl != ttl:
                certain &= await self._update(record.id, rr, rtype, record.value, ttl)
            result.append(replace(record, ttl=ttl))
        for record, value in zip(spare, missing, strict=False):  # reuse a record for a value
            certain &= await self._update(record.id, rr, rtype, value, ttl)
            result.append(_Record(record.id, value, ttl))
        for value in missing[len(spare) :]:
            added = await self._add(zone, rr, rtype, value, ttl)
            certain &= added is not None
            result.append(_Record(added or "", value, ttl))
        for record in spare[len(missing) :]:
            await self._rpc("DeleteDomainRecord", RecordId=record.id)
        return tuple(result), certain

    async def _update(self, record_id: str, rr: str, rtype: str, value: str, ttl: int) -> bool:
        """Update a record; False when Alidns says it has that already."""
        body = await self._write(
            "UpdateDomainRecord", RecordId=record_id, RR=rr, Type=rtype, Value=value, TTL=str(ttl)
        )
        return body is not None

    async def _add(
        self, zone: ZoneSettings, rr: str, rtype: str, value: str, ttl: int
    ) -> str | None:
        """Add a record; its id, or None when Alidns has that record already."""
        body = await self._write(
            "AddDomainRecord", DomainName=zone.name, RR=rr, Type=rtype, Value=value, TTL=str(ttl)
        )
        if body is None:
            return None
        return str(body.get("RecordId", "")) or None

    async def _write(self, action: str, **params: str) -> dict[str, Any] | None:
        """A write on our line; None when Alidns answers that it has that record already."""
        try:
            return await self._rpc(action, Line=self.line, **params)
        except _ApiError as error:
            if error.code != DUPLICATE:
                raise
            return None

    async def _read(self, zone: ZoneSettings, fqdn: str, rtype: str) -> tuple[_Record, ...]:
        """The records of ``fqdn`` and ``rtype`` on our line, read from Alidns and kept."""
        rr = self._relative(zone, fqdn)
        records: list[_Record] = []
        page = 1
        while True:
            try:
                body = await self._rpc(
                    "DescribeSubDomainRecords",
                    SubDomain=fqdn,
                    DomainName=zone.name,
                    Type=rtype,
                    Line=self.line,
                    PageNumber=str(page),
                    PageSize=str(PAGE_SIZE),
                )
            except _ApiError as error:
                raise self._failure(error, f"{fqdn} {rtype}") from None
            items = _items(body)
            for item in items:
                record = _record(item, rr, rtype, self.line)
                if record is not None:
                    records.append(record)
            total = _integer(body.get("TotalCount"), len(items))
            if not items or page * PAGE_SIZE >= total:
                break
            page += 1
        self._records[(fqdn, rtype)] = tuple(records)
        return tuple(records)

    def _relative(self, zone: ZoneSettings, fqdn: str) -> str:
        if fqdn == zone.name:
            return "@"
        suffix = "." + zone.name
        if not fqdn.endswith(suffix):
            raise self.permanent(f"{fqdn} is not in the zone {zone.name}", "check the zone's name")
        return fqdn[: -len(suffix)]

    async def _limited(self, work: Awaitable[T]) -> T:
        """Run ``work`` with at most PARALLEL others of this backend at once."""
        loop = asyncio.get_running_loop()
        semaphore = self._semaphores.get(loop)
        if semaphore is None:
            self._semaphores = {loop: (semaphore := asyncio.Semaphore(PARALLEL))}
        async with semaphore:
            return await work

    # -- calls and errors --------------------------------------------------------------

    async def _rpc(self, action: str, **params: str) -> dict[str, Any]:
        """One signed call; the JSON answer, or :class:`_ApiError` for an error answer."""
        response = await self.call(
            "GET", "/", params={"Action": action, "Version": API_VERSION, **params}
        )
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.is_success and isinstance(body, dict):
            return body
        if isinstance(body, dict) and body.get("Code"):
            raise _ApiError(response, str(body["Code"]), str(body.get("Message", "")))
        if response.status_code == 429 or response.status_code >= 500:
            raise self.transient(response, f"{action} failed")
        raise self.permanent(
            f"{action} got an answer that is not Alidns JSON (HTTP {response.status_code})",
            "check base_url: it should be https://alidns.aliyuncs.com",
        )

    def _failure(self, error: _ApiError, what: str) -> BackendError:
        """The backend error for an error answer about ``what`` (a name and type)."""
        code, status = error.code, error.response.status_code
        said = f"{code}: {error.message}" if error.message else code
        if code in CREDENTIALS:
            # SignatureDoesNotMatch's message holds the string to sign: leave it out.
            return self.permanent(
                f"Alibaba Cloud refused the AccessKey ({code})",
                "check access_key_id and the secret in access_key_secret_file or "
                "access_key_secret_env: they must be one enabled AccessKey pair",
                every_name=True,
            )
        if code == "Forbidden" or code.startswith(("Forbidden.", "NoPermission")):
            return self.permanent(
                f"the AccessKey may not change {what} ({said})", PERMISSIONS, every_name=True
            )
        if code.startswith(("InvalidTimeStamp", "IllegalTimestamp")):
            return self.permanent(
                f"Alibaba Cloud refused the request time ({code})",
                "set this machine's clock right (NTP): it must be within 15 minutes",
            )
        if "TTL" in code.replace("Invalid", "").split("."):  # QuotaExceeded.TTL, InvalidTTL
            return self.permanent(
                f"Alidns refused the TTL for {what} ({said})",
                f"set backends.{self.name}.min_ttl to your edition's minimum TTL "
                "(600 on the free and personal editions)",
            )
        if code in NO_ZONE:
            return self.permanent(
                f"the zone of {what} is not in this Alibaba Cloud account ({said})",
                "add the domain in the Alibaba Cloud DNS console, or check the zone's name",
            )
        if code in TRANSIENT or code.startswith("Throttling") or status == 429 or status >= 500:
            return self.transient(error.response, f"{what}: {said}")
        return self.permanent(
            f"Alidns refused {what} ({said})",
            f"see https://api.aliyun.com/troubleshoot?q={code}&product=Alidns",
        )


def _raise_first(results: list[Any]) -> None:
    """Raise from gathered results: anything unexpected first, then transient (the
    largest Retry-After), then permanent errors."""
    errors = [r for r in results if isinstance(r, BaseException)]
    for error in errors:
        if not isinstance(error, BackendError):
            raise error
    transient = [e for e in errors if isinstance(e, TransientBackendError)]
    if transient:
        raise max(transient, key=lambda e: e.retry_after or 0.0)
    if errors:
        raise errors[0]


def _items(body: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    records = body.get("DomainRecords")
    items = records.get("Record") if isinstance(records, Mapping) else None
    return [i for i in items if isinstance(i, Mapping)] if isinstance(items, list) else []


def _record(item: Mapping[str, Any], rr: str, rtype: str, line: str) -> _Record | None:
    """The record in a DescribeSubDomainRecords item, if it is of this name, type and line."""
    if (
        not item.get("RecordId")
        or str(item.get("Type", "")).upper() != rtype
        or str(item.get("RR", "")).lower() != rr.lower()
        or str(item.get("Line", line)) != line
    ):
        return None
    return _Record(
        str(item["RecordId"]),
        canonical(rtype, str(item.get("Value", ""))),
        _integer(item.get("TTL"), 0),
    )


def _integer(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default
