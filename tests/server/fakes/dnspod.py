"""A fake of Tencent Cloud DNSPod's API 3.0 (version 2021-03-23), as strict as the real one.

Every request is a POST of JSON to ``/`` naming its action in ``X-TC-Action``. The fake
checks the TC3-HMAC-SHA256 signature by computing it again from what it received (method,
host, content type, body, ``X-TC-Timestamp``) with the SecretKey the test gave it, the
credential scope (the timestamp's date, service ``dnspod``) and the clock skew (at most
300 s), and answers as DNSPod does: HTTP 200 with
``{"Response": {"Error": {"Code", "Message"}, "RequestId"}}``.

It keeps domains and records with numeric RecordIds, implements the four record calls
the backend uses (any other action, version or parameter is a test failure), refuses a
TTL below the plan's minimum (600 on the free plan), and fails on demand. Records are A,
AAAA and TXT (the value kept and listed as sent, unquoted, at most 512 characters); a
SubDomain may be a wildcard (``*.home``). Failures on demand:
``fail_next("throttle")`` RequestLimitExceeded, ``"server"`` InternalError, ``"http500"``
a bare HTTP 500 from the gateway, ``"credentials"`` AuthFailure.SecretIdNotFound.
"""

from __future__ import annotations

import hmac
import ipaddress
import itertools
import json
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from nicupdate_server.signing.tc3 import tc3_headers
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from . import FakeProvider, Seen

VERSION = "2021-03-23"
DEFAULT_LINE = "默认"
MAX_SKEW = 300
AUTHORIZATION = re.compile(
    r"TC3-HMAC-SHA256 Credential=(?P<id>[^/]+)/(?P<date>\d{4}-\d{2}-\d{2})/(?P<service>[^/]+)"
    r"/tc3_request, SignedHeaders=(?P<signed>[^,]+), Signature=(?P<signature>[0-9a-f]{64})"
)
# The parameters each action takes (required ones first), as in the API reference.
PARAMETERS: dict[str, tuple[set[str], set[str]]] = {
    "DescribeRecordList": (
        {"Domain"},
        {"Subdomain", "RecordType", "RecordLine", "Offset", "Limit"},
    ),
    "CreateRecord": ({"Domain", "RecordType", "RecordLine", "Value"}, {"SubDomain", "TTL"}),
    "ModifyRecord": (
        {"Domain", "RecordId", "RecordType", "RecordLine", "Value"},
        {"SubDomain", "TTL"},
    ),
    "DeleteRecord": ({"Domain", "RecordId"}, set()),
}
WRITES = {"CreateRecord", "ModifyRecord", "DeleteRecord"}
# (code, message) as DNSPod sends them (its messages use full-width punctuation).
NO_RECORDS = ("ResourceNotFound.NoDataOfRecord", "记录列表为空。")
BAD_RECORD_ID = ("InvalidParameter.RecordIdInvalid", "记录编号错误。")
RECORD_EXISTS = ("InvalidParameter.DomainRecordExist", "记录已经存在，无需再次添加。")  # noqa: RUF001
NO_DOMAIN = ("InvalidParameterValue.DomainNotExists", "当前域名有误，请返回重新操作。")  # noqa: RUF001
TTL_LIMIT = ("LimitExceeded.RecordTtlLimit", "记录的TTL值超出了限制。")
BAD_LINE = ("InvalidParameter.RecordLineInvalid", "记录线路不正确。")
BAD_VALUE = ("InvalidParameter.RecordValueInvalid", "记录的值不正确。")
FAILURES = {
    "throttle": ("RequestLimitExceeded", "Your current request times equals to `101` in a second"),
    "server": ("InternalError", "An internal error has occurred. Retry your request."),
    "credentials": (
        "AuthFailure.SecretIdNotFound",
        "The SecretId is not found, please ensure that your SecretId is correct.",
    ),
}
SIGNATURE_FAILURE = (
    "AuthFailure.SignatureFailure",
    "The provided credentials could not be validated. Please check your signature is correct.",
)
SIGNATURE_EXPIRE = (
    "AuthFailure.SignatureExpire",
    "Signature expired. Timestamp and server time cannot differ by more than five minutes.",
)
INVALID_AUTHORIZATION = (
    "AuthFailure.InvalidAuthorization",
    "Authorization in the request header is invalid.",
)


@dataclass
class Record:
    domain: str
    name: str
    type: str
    value: str
    ttl: int
    line: str = DEFAULT_LINE


class Refused(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(code)
        self.code, self.message = code, message


@dataclass
class DnspodFake(FakeProvider):
    secret_id: str = "AKIDfakefakefakefakefakefakefakefake"
    secret_key: str = "fake-secret-key-0123456789abcdef"
    domains: set[str] = field(default_factory=lambda: {"home.example.test"})
    min_ttl: int = 600  # the free plan's
    clock: Callable[[], float] = time.time
    records: dict[int, Record] = field(default_factory=dict)
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1_000_001))

    def __post_init__(self) -> None:
        # As DNSPod adds them to every domain: its NS records at the apex.
        for domain in sorted(self.domains):
            for server in ("f1g1ns1.dnspod.net.", "f1g1ns2.dnspod.net."):
                self.put(Record(domain, "@", "NS", server, 86400))

    # -- what tests look at and change -------------------------------------------------

    def find(self, domain: str, name: str, rtype: str) -> list[Record]:
        with self.lock:
            return [
                r
                for r in self.records.values()
                if (r.domain, r.name, r.type) == (domain, name, rtype)
            ]

    def put(self, record: Record) -> int:
        with self.lock:
            record_id = next(self.ids)
            self.records[record_id] = record
            return record_id

    def drop(self, domain: str, name: str, rtype: str) -> None:
        with self.lock:
            for record_id, record in list(self.records.items()):
                if (record.domain, record.name, record.type) == (domain, name, rtype):
                    del self.records[record_id]

    def actions(self) -> list[str]:
        """The X-TC-Action of every request so far."""
        with self.lock:
            return [seen.headers.get("x-tc-action", "") for seen in self.seen]

    # -- the API -----------------------------------------------------------------------

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/", self.handle, methods=["POST"])])

    async def handle(self, request: Request) -> Response:
        seen = await self.record(request)
        action = seen.headers.get("x-tc-action", "")
        if action not in PARAMETERS:
            return self.not_expected(request, f"no action {action!r} here")
        if seen.headers.get("x-tc-version") != VERSION:
            return self.not_expected(request, f"X-TC-Version {seen.headers.get('x-tc-version')}")
        failure = self.take_failure()
        if failure == "http500":
            return PlainTextResponse("Internal Server Error", status_code=500)
        if failure is not None:
            return answer(error=FAILURES[failure])
        try:
            self.check_signature(seen)
            params = json.loads(seen.body)
            if not isinstance(params, dict):
                raise Refused("InvalidParameter", "The request body is not a JSON object.")
            self.check_parameters(action, params)
            if action in WRITES:
                with self.lock:
                    self.writes += 1
            actions = {
                "DescribeRecordList": self.describe_record_list,
                "CreateRecord": self.create_record,
                "ModifyRecord": self.modify_record,
                "DeleteRecord": self.delete_record,
            }
            return answer(actions[action](params))
        except Refused as refused:
            return answer(error=(refused.code, refused.message))
        except ValueError as exc:
            return self.not_expected(request, f"a body that is not JSON: {exc}")

    def check_signature(self, seen: Seen) -> None:
        match = AUTHORIZATION.fullmatch(seen.headers.get("authorization", ""))
        stamp = seen.headers.get("x-tc-timestamp", "")
        if match is None or not stamp.isdigit():
            raise Refused(*INVALID_AUTHORIZATION)
        if match["id"] != self.secret_id:
            raise Refused(*FAILURES["credentials"])
        timestamp = int(stamp)
        if abs(self.clock() - timestamp) > MAX_SKEW:
            raise Refused(*SIGNATURE_EXPIRE)
        date = datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")
        if (match["date"], match["service"], match["signed"]) != (
            date,
            "dnspod",
            "content-type;host",
        ):
            raise Refused(*SIGNATURE_FAILURE)
        expected = tc3_headers(
            method=seen.method,
            host=seen.headers.get("host", ""),
            content_type=seen.headers.get("content-type", ""),
            body=seen.body,
            timestamp=timestamp,
            secret_id=self.secret_id,
            secret_key=self.secret_key,
            service="dnspod",
        )["Authorization"]
        if not hmac.compare_digest(expected, seen.headers["authorization"]):
            raise Refused(*SIGNATURE_FAILURE)
        if not seen.headers.get("content-type", "").startswith("application/json"):
            raise Refused("InvalidParameter", "Content-Type must be application/json.")

    def check_parameters(self, action: str, params: dict[str, Any]) -> None:
        required, optional = PARAMETERS[action]
        missing, unknown = required - params.keys(), params.keys() - required - optional
        if missing:
            raise Refused(
                "MissingParameter", f"The request is missing a required parameter `{min(missing)}`."
            )
        if unknown:
            raise Refused("UnknownParameter", f"The parameter `{min(unknown)}` is not recognized.")
        if params["Domain"] not in self.domains:
            raise Refused(*NO_DOMAIN)

    # -- the four actions ---------------------------------------------------------------

    def describe_record_list(self, params: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            rows = [
                (record_id, r)
                for record_id, r in sorted(self.records.items())
                if r.domain == params["Domain"]
                and params.get("Subdomain", r.name) == r.name
                and params.get("RecordType", r.type) == r.type
                and params.get("RecordLine", r.line) == r.line
            ]
        if not rows:
            raise Refused(*NO_RECORDS)
        offset, limit = int(params.get("Offset", 0)), int(params.get("Limit", 100))
        if not 1 <= limit <= 3000:
            raise Refused("InvalidParameterValue.LimitInvalid", "分页长度数量错误。")
        page = rows[offset : offset + limit]
        return {
            "RecordCountInfo": {
                "SubdomainCount": len(rows),
                "ListCount": len(page),
                "TotalCount": len(rows),
            },
            "RecordList": [_item(record_id, r) for record_id, r in page],
        }

    def create_record(self, params: dict[str, Any]) -> dict[str, Any]:
        record = self.checked(params)
        with self.lock:
            if any(_same(record, r) for r in self.records.values()):
                raise Refused(*RECORD_EXISTS)
        return {"RecordId": self.put(record)}

    def modify_record(self, params: dict[str, Any]) -> dict[str, Any]:
        record = self.checked(params)
        record_id = params["RecordId"]
        with self.lock:
            if self.owned(record_id, params["Domain"]) is None:
                raise Refused(*BAD_RECORD_ID)
            if any(_same(record, r) for i, r in self.records.items() if i != record_id):
                raise Refused(*RECORD_EXISTS)
            self.records[record_id] = record
        return {"RecordId": record_id}

    def delete_record(self, params: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            if self.owned(params["RecordId"], params["Domain"]) is None:
                raise Refused(*BAD_RECORD_ID)
            del self.records[params["RecordId"]]
        return {}

    def owned(self, record_id: Any, domain: str) -> Record | None:
        record = self.records.get(record_id) if isinstance(record_id, int) else None
        return record if record is not None and record.domain == domain else None

    def checked(self, params: dict[str, Any]) -> Record:
        """The record a Create or Modify asks for, checked as DNSPod checks it."""
        rtype, value, ttl = params["RecordType"], params["Value"], params.get("TTL", 600)
        if rtype not in ("A", "AAAA", "TXT"):
            raise Refused("InvalidParameter.RecordTypeInvalid", "记录类型不正确。")
        if params["RecordLine"] != DEFAULT_LINE:
            raise Refused(*BAD_LINE)
        if rtype == "TXT":
            if not isinstance(value, str) or not 0 < len(value) <= 512:
                raise Refused(*BAD_VALUE)
        elif not _is_address(value, 4 if rtype == "A" else 6):
            raise Refused(*BAD_VALUE)
        if not isinstance(ttl, int) or not self.min_ttl <= ttl <= 604800:
            raise Refused(*TTL_LIMIT)
        name = params.get("SubDomain", "@")
        return Record(params["Domain"], name, rtype, value, ttl, params["RecordLine"])


def _is_address(value: Any, version: int) -> bool:
    try:
        return ipaddress.ip_address(value).version == version
    except ValueError:
        return False


def _same(a: Record, b: Record) -> bool:
    return (a.domain, a.name, a.type, a.line, a.value) == (
        b.domain,
        b.name,
        b.type,
        b.line,
        b.value,
    )


def _item(record_id: int, record: Record) -> dict[str, Any]:
    """A RecordListItem, with every field DNSPod sends."""
    return {
        "RecordId": record_id,
        "Value": record.value,
        "Status": "ENABLE",
        "UpdatedOn": "2024-05-01 12:00:00",
        "Name": record.name,
        "Line": record.line,
        "LineId": "0",
        "Type": record.type,
        "Weight": None,
        "MonitorStatus": "",
        "Remark": "",
        "TTL": record.ttl,
        "MX": 0,
        "DefaultNS": record.type == "NS",
    }


def answer(
    result: dict[str, Any] | None = None, *, error: tuple[str, str] | None = None
) -> JSONResponse:
    """DNSPod's answer, HTTP 200 either way: the result or the error, and a RequestId."""
    body: dict[str, Any] = dict(result or {})
    if error is not None:
        body = {"Error": {"Code": error[0], "Message": error[1]}}
    body["RequestId"] = str(uuid.uuid4())
    return JSONResponse({"Response": body})
