"""A fake Alibaba Cloud DNS (Alidns 2015-01-09, RPC style) that checks requests as Alidns does.

Every call is ``GET /?Action=...`` (or POST) with all parameters in the query string. The
fake recomputes the RPC v1 signature (HMAC-SHA1 over the sorted, RFC 3986-encoded query,
``Signature`` left out) with the secret it was given, checks the time stamp (15 minutes)
and that no ``SignatureNonce`` comes twice, and answers with Alidns's JSON shapes:

    {"RequestId": ..., "RecordId": ...}                         success
    {"RequestId", "HostId", "Code", "Message", "Recommend"}     error (HTTP 400/403/404/5xx)

Error codes and statuses as Alibaba Cloud sends them: ``InvalidAccessKeyId.NotFound``
(404), ``SignatureDoesNotMatch``, ``SignatureNonceUsed``, ``InvalidTimeStamp.Expired``,
``Throttling.User``, ``DomainRecordDuplicate``, ``DomainRecordNotBelongToUser``,
``QuotaExceeded.TTL``, ``InvalidDomainName.NoExist`` (400), ``Forbidden.RAM`` (403),
``ServiceUnavailable`` (503). Alidns sends no Retry-After.

Only the record calls a relay uses exist: DescribeSubDomainRecords, AddDomainRecord,
UpdateDomainRecord, DeleteDomainRecord, DeleteSubDomainRecords. Any other action is
unexpected. Records are A, AAAA and TXT; an RR may be a wildcard (``*.home``). A TXT
value is kept and listed as sent: Alidns takes it as plain text, without quotes (an
empty one is not expected from a relay).
"""

from __future__ import annotations

import ipaddress
import itertools
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

from nicupdate_server.signing.alidns import encode_params, percent_encode, rpc_signature
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from . import FakeProvider

VERSION = "2015-01-09"
HOST_ID = "alidns.aliyuncs.com"
SKEW = timedelta(minutes=15)
COMMON = (
    "Action",
    "Version",
    "Format",
    "AccessKeyId",
    "SignatureMethod",
    "SignatureVersion",
    "SignatureNonce",
    "Timestamp",
    "Signature",
)
WRITES = frozenset(
    {"AddDomainRecord", "UpdateDomainRecord", "DeleteDomainRecord", "DeleteSubDomainRecords"}
)
FAILURES = {
    "throttle": (400, "Throttling.User", "Request was denied due to user flow control."),
    "server": (
        503,
        "ServiceUnavailable",
        "The request has failed due to a temporary failure of the server.",
    ),
    "credentials": (404, "InvalidAccessKeyId.NotFound", "Specified access key is not found."),
    "forbidden": (
        403,
        "Forbidden.RAM",
        "User not authorized to operate on the specified resource, "
        "or this API doesn't support RAM.",
    ),
}


class AlidnsError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass
class FakeAlidns(FakeProvider):
    """One Alibaba Cloud account holding ``domains``, reached with one AccessKey pair."""

    access_key_id: str = "LTAI5tFakeKeyId0001"
    access_key_secret: str = "fake-secret-9f8e7d6c5b4a"
    domains: set[str] = field(default_factory=lambda: {"home.example.test"})
    edition_min_ttl: int = 600  # free and personal editions; enterprise: 60 or less
    # RecordId -> {"RecordId", "DomainName", "RR", "Type", "Value", "TTL", "Line", ...}
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    nonces: set[str] = field(default_factory=set)
    clock: Any = field(default_factory=lambda: _now, repr=False)  # the gateway's clock
    _ids: Any = field(default_factory=lambda: itertools.count(1_000_000_001), repr=False)

    # -- what tests read and change behind the backend -------------------------------------

    def actions(self) -> list[str]:
        """The Action of every request received, in order."""
        return [dict(parse_qsl(seen.query)).get("Action", "") for seen in self.seen]

    def find(self, fqdn: str, rtype: str) -> list[dict[str, Any]]:
        domain, rr = self.split(fqdn)
        with self.lock:
            return [
                dict(r)
                for r in self.records.values()
                if r["DomainName"] == domain and r["RR"] == rr and r["Type"] == rtype
            ]

    def put(self, fqdn: str, rtype: str, value: str, ttl: int = 600) -> str:
        """Add a record as the console would."""
        domain, rr = self.split(fqdn)
        with self.lock:
            return self._add(domain, rr, rtype, value, ttl, "default")

    def forget(self, fqdn: str, rtype: str) -> None:
        domain, rr = self.split(fqdn)
        with self.lock:
            for record_id, record in list(self.records.items()):
                if (record["DomainName"], record["RR"], record["Type"]) == (domain, rr, rtype):
                    del self.records[record_id]

    def split(self, fqdn: str) -> tuple[str, str]:
        """(domain, RR) of a name in one of the account's domains."""
        for domain in sorted(self.domains, key=len, reverse=True):
            if fqdn == domain:
                return domain, "@"
            if fqdn.endswith("." + domain):
                return domain, fqdn[: -len(domain) - 1]
        raise KeyError(fqdn)

    # -- the API ------------------------------------------------------------------------

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/", self.endpoint, methods=["GET", "POST"])])

    async def endpoint(self, request: Request) -> Response:
        seen = await self.record(request)
        request_id = str(uuid.uuid4()).upper()
        pairs = parse_qsl(seen.query, keep_blank_values=True)
        params = dict(pairs)
        if len(params) != len(pairs) or seen.body:
            return self.not_expected(request, "repeated parameters or a body")
        try:
            failure = self.take_failure()
            if failure is not None:
                raise AlidnsError(*FAILURES[failure])
            self.authenticate(request.method, params)
            handler = {
                "DescribeSubDomainRecords": self.describe_sub_domain_records,
                "AddDomainRecord": self.add_domain_record,
                "UpdateDomainRecord": self.update_domain_record,
                "DeleteDomainRecord": self.delete_domain_record,
                "DeleteSubDomainRecords": self.delete_sub_domain_records,
            }.get(params["Action"])
            if handler is None:
                return self.not_expected(request, f"Action {params['Action']} is not faked")
            if params["Action"] in WRITES:
                with self.lock:
                    self.writes += 1
            body = handler(params)
        except AlidnsError as error:
            return JSONResponse(
                {
                    "RequestId": request_id,
                    "HostId": HOST_ID,
                    "Code": error.code,
                    "Message": error.message,
                    "Recommend": f"https://api.aliyun.com/troubleshoot?q={error.code}"
                    f"&product=Alidns&requestId={request_id}",
                },
                status_code=error.status,
            )
        except _Unexpected as why:
            return self.not_expected(request, str(why))
        return JSONResponse({"RequestId": request_id, **body})

    def authenticate(self, method: str, params: dict[str, str]) -> None:
        """Check the request as Alibaba Cloud's gateway does, in its order."""
        for name in COMMON:
            if not params.get(name):
                raise AlidnsError(
                    400,
                    "MissingParameter",
                    f'The input parameter "{name}" that is mandatory for processing this '
                    "request is not supplied.",
                )
        if params["Version"] != VERSION:
            raise AlidnsError(
                400, "InvalidParameter", 'The specified parameter "Action or Version" is not valid.'
            )
        if params["Format"] != "JSON":
            raise _Unexpected(f"Format={params['Format']}: the relay reads JSON")
        if params["AccessKeyId"] != self.access_key_id:
            raise AlidnsError(*FAILURES["credentials"])
        if params["SignatureMethod"] != "HMAC-SHA1" or params["SignatureVersion"] != "1.0":
            raise AlidnsError(
                400, "InvalidParameter", 'The specified parameter "SignatureMethod" is not valid.'
            )
        try:
            when = datetime.strptime(params["Timestamp"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        except ValueError:
            raise AlidnsError(
                400,
                "InvalidTimeStamp.Format",
                "Specified time stamp or date value is not well formatted.",
            ) from None
        if abs(self.clock() - when) > SKEW:
            raise AlidnsError(
                400, "InvalidTimeStamp.Expired", "Specified time stamp or date value is expired."
            )
        signed = {k: v for k, v in params.items() if k != "Signature"}
        expected = rpc_signature(method, signed, self.access_key_secret)
        if params["Signature"] != expected:
            to_sign = f"{method}&%2F&{percent_encode(encode_params(signed))}"
            raise AlidnsError(
                400,
                "SignatureDoesNotMatch",
                f"Specified signature is not matched with our calculation. server string to "
                f"sign is:{to_sign}",
            )
        with self.lock:
            if params["SignatureNonce"] in self.nonces:
                raise AlidnsError(
                    400, "SignatureNonceUsed", "Specified signature nonce was used already."
                )
            self.nonces.add(params["SignatureNonce"])

    # -- actions ------------------------------------------------------------------------

    def describe_sub_domain_records(self, params: dict[str, str]) -> dict[str, Any]:
        sub = params["SubDomain"].lower()
        domain = params.get("DomainName", "").lower()
        self.known(domain)
        if sub == domain:
            rr = "@"
        elif sub.endswith("." + domain):
            rr = sub[: -len(domain) - 1]
        else:
            raise _Unexpected(f"SubDomain {sub} is not in DomainName {domain}")
        rtype = params.get("Type", "").upper()
        line = params.get("Line")
        size = int(params.get("PageSize", "20"))
        page = int(params.get("PageNumber", "1"))
        if not 1 <= size <= 100 or page < 1:
            raise _Unexpected("PageSize must be 1..100, PageNumber at least 1")
        with self.lock:
            found = [
                dict(r)
                for _, r in sorted(self.records.items())
                if r["DomainName"] == domain
                and r["RR"] == rr
                and (not rtype or r["Type"] == rtype)
                and (line is None or r["Line"] == line)
            ]
        return {
            "TotalCount": len(found),
            "PageNumber": page,
            "PageSize": size,
            "DomainRecords": {"Record": found[(page - 1) * size : page * size]},
        }

    def add_domain_record(self, params: dict[str, str]) -> dict[str, Any]:
        domain = params["DomainName"].lower()
        self.known(domain)
        rtype, value = self.value(params)
        ttl = self.ttl(params)
        with self.lock:
            record_id = self._add(
                domain, params["RR"].lower(), rtype, value, ttl, params.get("Line", "default")
            )
        return {"RecordId": record_id}

    def update_domain_record(self, params: dict[str, str]) -> dict[str, Any]:
        rtype, value = self.value(params)
        ttl = self.ttl(params)
        rr, line = params["RR"].lower(), params.get("Line", "default")
        with self.lock:
            record = self.owned(params["RecordId"])
            now = (record["RR"], record["Type"], record["Value"], record["TTL"], record["Line"])
            if now == (rr, rtype, value, ttl, line) or self._same(
                record["DomainName"], rr, rtype, value, line, but=record["RecordId"]
            ):
                raise _duplicate()
            record.update(RR=rr, Type=rtype, Value=value, TTL=ttl, Line=line)
        return {"RecordId": record["RecordId"]}

    def delete_domain_record(self, params: dict[str, str]) -> dict[str, Any]:
        with self.lock:
            record = self.owned(params["RecordId"])
            del self.records[record["RecordId"]]
        return {"RecordId": record["RecordId"]}

    def delete_sub_domain_records(self, params: dict[str, str]) -> dict[str, Any]:
        domain, rr = params["DomainName"].lower(), params["RR"].lower()
        self.known(domain)
        rtype = params.get("Type", "").upper()
        with self.lock:
            gone = [
                i
                for i, r in self.records.items()
                if r["DomainName"] == domain and r["RR"] == rr and (not rtype or r["Type"] == rtype)
            ]
            for record_id in gone:
                del self.records[record_id]
        return {"RR": rr, "TotalCount": str(len(gone))}

    # -- checks -------------------------------------------------------------------------

    def known(self, domain: str) -> None:
        if domain not in self.domains:
            raise AlidnsError(
                400,
                "InvalidDomainName.NoExist",
                "The specified domain name does not exist. Refresh the page and try again.",
            )

    def owned(self, record_id: str) -> dict[str, Any]:
        record = self.records.get(record_id)
        if record is None:
            raise AlidnsError(
                400, "DomainRecordNotBelongToUser", "The DNS record does not exist in your account."
            )
        return record

    def value(self, params: dict[str, str]) -> tuple[str, str]:
        rtype, value = params["Type"].upper(), params["Value"]
        if rtype == "TXT":
            if not value:
                raise _Unexpected("an empty TXT value")
            return rtype, value
        if rtype not in ("A", "AAAA"):
            raise _Unexpected(f"record type {rtype}")
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            raise _Unexpected(f"{value!r} is not an address") from None
        if address.version != (4 if rtype == "A" else 6):
            raise _Unexpected(f"{value} in a record of type {rtype}")
        return rtype, value

    def ttl(self, params: dict[str, str]) -> int:
        ttl = int(params.get("TTL", "600"))
        if not self.edition_min_ttl <= ttl <= 86400:
            raise AlidnsError(
                400,
                "QuotaExceeded.TTL",
                f"The specified TTL is invalid. A valid TTL must be in the range of "
                f"{self.edition_min_ttl} to 86400.",
            )
        return ttl

    def _same(self, domain: str, rr: str, rtype: str, value: str, line: str, but: str = "") -> bool:
        return any(
            (r["DomainName"], r["RR"], r["Type"], r["Value"], r["Line"])
            == (domain, rr, rtype, value, line)
            and r["RecordId"] != but
            for r in self.records.values()
        )

    def _add(self, domain: str, rr: str, rtype: str, value: str, ttl: int, line: str) -> str:
        if self._same(domain, rr, rtype, value, line):
            raise _duplicate()
        record_id = str(next(self._ids))
        self.records[record_id] = {
            "RecordId": record_id,
            "DomainName": domain,
            "RR": rr,
            "Type": rtype,
            "Value": value,
            "TTL": ttl,
            "Line": line,
            "Status": "ENABLE",
            "Locked": False,
            "Weight": 1,
        }
        return record_id


def _now() -> datetime:
    return datetime.now(UTC)


class _Unexpected(Exception):
    """A request the real API might take but a relay should never send."""


def _duplicate() -> AlidnsError:
    return AlidnsError(400, "DomainRecordDuplicate", "The DNS record already exists.")
