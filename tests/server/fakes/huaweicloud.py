"""Huawei Cloud DNS (API v2) as it behaves for the calls nicupdate makes.

It checks every request's ``SDK-HMAC-SHA256`` signature as the API gateway does: the
canonical request is rebuilt from the method, the raw path and query, the headers the
request says it signed and the body, with the test's AK/SK, and ``X-Sdk-Date`` must be
within 15 minutes; otherwise 401 ``APIGW.0301``. It keeps zones (each with its default
SOA and NS record sets) and record sets with the real JSON shapes: A, AAAA and TXT, a
wildcard named ``*.<name>.``, a TXT value only in quotation marks (``"token"``, each
quoted string at most 255 characters; otherwise 400 ``DNS.0308``), listed as stored. It
serves only:

- ``GET /v2/zones`` (``name``, ``search_mode``: ``like`` by default, or ``equal``)
- ``GET|POST /v2/zones/{zone_id}/recordsets`` (``name``, ``type``, ``search_mode``)
- ``PUT|DELETE /v2/zones/{zone_id}/recordsets/{recordset_id}``

Errors carry the codes of the DNS API reference's "Error Codes" appendix
(``{"code","message"}``) and of the gateway (``{"error_code","error_msg","request_id"}``).
Queued failures: ``throttle`` (429 ``APIGW.0308``), ``flow_control`` (403 ``DNS.0014``),
``server`` (500 ``DNS.0001``), ``unavailable`` (503, not JSON), ``credentials``
(401 ``APIGW.0301``), ``forbidden`` (403 ``DNS.0013``).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

from nicupdate_server.signing.huawei import huawei_headers
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from tests.server.fakes import FakeProvider, Seen, is_quoted_txt

AUTHORIZATION = re.compile(
    r"SDK-HMAC-SHA256 Access=([^,\s]+), SignedHeaders=([a-z0-9;_-]+), Signature=([0-9a-f]{64})"
)
MAX_SKEW = timedelta(minutes=15)
MAX_TTL = 2147483647
ZONE_PARAMS = {"name", "search_mode", "type", "limit", "offset", "marker", "status"}
RECORDSET_PARAMS = {"name", "type", "search_mode", "limit", "offset", "marker", "status"}
BAD_SIGNATURE = "Incorrect IAM authentication information: verify aksk signature fail"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]


def _bare(name: str) -> str:
    return name.rstrip(".").lower()


def _dns_error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"code": code, "message": message}, status_code=status)


def _gateway_error(status: int, code: str, message: str, **headers: str) -> JSONResponse:
    body = {"error_msg": message, "error_code": code, "request_id": uuid.uuid4().hex}
    return JSONResponse(body, status_code=status, headers=headers)


@dataclass
class FakeHuaweiCloud(FakeProvider):
    access_key: str = "HPUAFAKEACCESSKEY0001"
    secret_key: str = "fakeSK0dGVzdC1zZWNyZXQta2V5LWZvci1odWF3ZWk"
    project_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    retry_after: str | None = None  # Huawei's gateway sends none; a test may set one
    zones: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> zone
    recordsets: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> record set

    # -- state, as a test sees it ---------------------------------------------------------

    def add_zone(self, name: str) -> str:
        zone_id = uuid.uuid4().hex
        absolute = _bare(name) + "."
        with self.lock:
            self.zones[zone_id] = {
                "id": zone_id,
                "name": absolute,
                "description": None,
                "email": f"hostmaster@{_bare(name)}",
                "ttl": 300,
                "serial": 1,
                "masters": [],
                "status": "ACTIVE",
                "links": {"self": f"/v2/zones/{zone_id}"},
                "pool_id": uuid.uuid4().hex,
                "project_id": self.project_id,
                "zone_type": "public",
                "created_at": _now(),
                "updated_at": _now(),
                "record_num": 2,
            }
        soa = f"ns1.huaweicloud-dns.org. {self.zones[zone_id]['email']}. 1 7200 900 1209600 300"
        self.plant(absolute, "SOA", [soa], 300, default=True)
        self.plant(
            absolute,
            "NS",
            ["ns1.huaweicloud-dns.org.", "ns1.huaweicloud-dns.cn."],
            172800,
            default=True,
        )
        return zone_id

    def recreate_zone(self, name: str) -> str:
        """The zone deleted and created again: a new id, the same record sets."""
        old = self.zone_id(name)
        new = uuid.uuid4().hex
        with self.lock:
            zone = self.zones.pop(old)
            self.zones[new] = zone | {"id": new, "links": {"self": f"/v2/zones/{new}"}}
            for recordset in self.recordsets.values():
                if recordset["zone_id"] == old:
                    recordset["zone_id"] = new
        return new

    def zone_id(self, name: str) -> str:
        with self.lock:
            return next(i for i, z in self.zones.items() if _bare(z["name"]) == _bare(name))

    def find(self, fqdn: str, rtype: str) -> dict[str, Any] | None:
        with self.lock:
            for recordset in self.recordsets.values():
                if _bare(recordset["name"]) == _bare(fqdn) and recordset["type"] == rtype:
                    return recordset
        return None

    def records(self, fqdn: str, rtype: str) -> list[str]:
        found = self.find(fqdn, rtype)
        return sorted(found["records"]) if found else []

    def ttl(self, fqdn: str, rtype: str) -> int | None:
        found = self.find(fqdn, rtype)
        return int(found["ttl"]) if found else None

    def forget(self, fqdn: str, rtype: str) -> None:
        found = self.find(fqdn, rtype)
        if found is not None:
            with self.lock:
                del self.recordsets[found["id"]]

    def plant(
        self, fqdn: str, rtype: str, records: list[str], ttl: int, *, default: bool = False
    ) -> str:
        """A record set made behind nicupdate's back (or a zone's default one)."""
        zone = next(z for z in self.zones.values() if self._within(fqdn, z))
        stored = self._store(zone, _bare(fqdn) + ".", rtype, ttl, records, default=default)
        return str(stored["id"])

    # -- the API ---------------------------------------------------------------------------

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v2/zones", self.list_zones, methods=["GET"]),
                Route(
                    "/v2/zones/{zone_id}/recordsets",
                    self.zone_recordsets,
                    methods=["GET", "POST"],
                ),
                Route(
                    "/v2/zones/{zone_id}/recordsets/{recordset_id}",
                    self.one_recordset,
                    methods=["PUT", "DELETE"],
                ),
            ]
        )

    async def list_zones(self, request: Request) -> Response:
        seen = await self.record(request)
        refused = self._gate(request, seen, ZONE_PARAMS)
        if refused is not None:
            return refused
        name, mode = request.query_params.get("name"), request.query_params.get("search_mode")
        with self.lock:
            zones = [z for z in self.zones.values() if _matches(z["name"], name, mode)]
        return JSONResponse(
            {
                "links": {"self": str(request.url)},
                "zones": zones,
                "metadata": {"total_count": len(zones)},
            }
        )

    async def zone_recordsets(self, request: Request) -> Response:
        seen = await self.record(request)
        refused = self._gate(request, seen, RECORDSET_PARAMS if request.method == "GET" else set())
        if refused is not None:
            return refused
        zone = self.zones.get(request.path_params["zone_id"])
        if zone is None:
            return _dns_error(404, "DNS.0302", "This zone does not exist.")
        if request.method == "GET":
            return self._list_recordsets(request, zone)
        with self.lock:
            self.writes += 1
        body, problem = _recordset_body(seen.body)
        if problem is not None:
            return problem
        name = _bare(body["name"]) + "."
        if not body["name"].endswith(".") or not self._within(name, zone):
            return _dns_error(400, "DNS.0304", "Invalid record set name.")
        if self.find(name, body["type"]) is not None:
            return _dns_error(400, "DNS.0312", "This record set already exists.")
        created = self._store(zone, name, body["type"], body["ttl"], body["records"])
        return JSONResponse(created | {"status": "PENDING_CREATE"}, status_code=202)

    async def one_recordset(self, request: Request) -> Response:
        seen = await self.record(request)
        refused = self._gate(request, seen, set())
        if refused is not None:
            return refused
        zone_id = request.path_params["zone_id"]
        if zone_id not in self.zones:
            return _dns_error(404, "DNS.0302", "This zone does not exist.")
        with self.lock:
            self.writes += 1
            recordset = self.recordsets.get(request.path_params["recordset_id"])
        if recordset is None or recordset["zone_id"] != zone_id:
            return _dns_error(404, "DNS.0313", "This record set does not exist.")
        if request.method == "DELETE":
            if recordset["default"]:
                return _dns_error(
                    400, "DNS.0317", "This record set is a default one and cannot be deleted."
                )
            with self.lock:
                del self.recordsets[recordset["id"]]
            return JSONResponse(recordset | {"status": "PENDING_DELETE"}, status_code=202)
        if recordset["default"]:
            return _dns_error(
                400, "DNS.0318", "This record set is a default one and cannot be updated."
            )
        body, problem = _recordset_body(seen.body)
        if problem is not None:
            return problem
        if _bare(body["name"]) != _bare(recordset["name"]):
            return _dns_error(400, "DNS.0304", "Invalid record set name.")
        if body["type"] != recordset["type"]:
            return _dns_error(400, "DNS.0307", "Invalid record set type.")
        with self.lock:
            recordset.update(ttl=body["ttl"], records=body["records"], updated_at=_now())
        return JSONResponse(recordset | {"status": "PENDING_UPDATE"}, status_code=202)

    # -- helpers ---------------------------------------------------------------------------

    def _list_recordsets(self, request: Request, zone: dict[str, Any]) -> Response:
        name = request.query_params.get("name")
        mode = request.query_params.get("search_mode")
        rtype = request.query_params.get("type")
        with self.lock:
            found = [
                dict(r)
                for r in self.recordsets.values()
                if r["zone_id"] == zone["id"]
                and _matches(r["name"], name, mode)
                and (rtype is None or r["type"] == rtype)
            ]
        return JSONResponse(
            {
                "links": {"self": str(request.url)},
                "recordsets": found,
                "metadata": {"total_count": len(found)},
            }
        )

    def _store(
        self,
        zone: dict[str, Any],
        name: str,
        rtype: str,
        ttl: int,
        records: list[str],
        *,
        default: bool = False,
    ) -> dict[str, Any]:
        recordset_id = uuid.uuid4().hex
        recordset = {
            "id": recordset_id,
            "name": name,
            "description": None,
            "zone_id": zone["id"],
            "zone_name": zone["name"],
            "type": rtype,
            "ttl": ttl,
            "records": list(records),
            "created_at": _now(),
            "updated_at": _now(),
            "status": "ACTIVE",
            "default": default,
            "project_id": self.project_id,
            "links": {"self": f"/v2/zones/{zone['id']}/recordsets/{recordset_id}"},
        }
        with self.lock:
            self.recordsets[recordset_id] = recordset
        return dict(recordset)

    @staticmethod
    def _within(name: str, zone: dict[str, Any]) -> bool:
        bare, origin = _bare(name), _bare(zone["name"])
        return bare == origin or bare.endswith("." + origin)

    def _gate(self, request: Request, seen: Seen, params: set[str]) -> Response | None:
        """A queued failure, a refused signature, or an unknown query parameter."""
        failure = self.take_failure()
        if failure == "throttle":
            extra = {"Retry-After": self.retry_after} if self.retry_after else {}
            return _gateway_error(
                429,
                "APIGW.0308",
                "The throttling threshold has been reached: policy user over ratelimit,"
                "limit:20,time:1 second",
                **extra,
            )
        if failure == "flow_control":
            return _dns_error(403, "DNS.0014", "Request forbidden by flow control.")
        if failure == "server":
            return _dns_error(500, "DNS.0001", "Internal error.")
        if failure == "unavailable":
            return PlainTextResponse("<html>503 Service Temporarily Unavailable</html>", 503)
        if failure == "credentials" or not self._signed(request, seen):
            return _gateway_error(401, "APIGW.0301", BAD_SIGNATURE)
        if failure == "forbidden":
            return _dns_error(
                403,
                "DNS.0013",
                "You do not have the permission to perform this operation using the API.",
            )
        unknown = {key for key, _ in parse_qsl(seen.query, keep_blank_values=True)} - params
        if unknown:
            return self.not_expected(request, f"query parameters {sorted(unknown)}")
        return None

    def _signed(self, request: Request, seen: Seen) -> bool:
        """Whether ``seen`` carries the signature the gateway computes for it."""
        raw_path = request.scope.get("raw_path") or seen.path.encode()
        header = seen.headers.get("authorization", "")
        match = AUTHORIZATION.fullmatch(header)
        stamp = seen.headers.get("x-sdk-date", "")
        try:
            when = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        except ValueError:
            return False
        if match is None or abs(datetime.now(UTC) - when) > MAX_SKEW:
            return False
        signed = match.group(2).split(";")
        if any(name not in seen.headers for name in signed):
            return False
        expected = huawei_headers(
            method=seen.method,
            host=seen.headers.get("host", ""),
            path=raw_path.decode("ascii").split("?", 1)[0],
            query=parse_qsl(seen.query, keep_blank_values=True),
            headers=[(n, seen.headers[n]) for n in signed if n not in ("host", "x-sdk-date")],
            body=seen.body,
            when=when,
            access_key=self.access_key,
            secret_key=self.secret_key,
        )
        return hmac.compare_digest(expected["Authorization"], header)


def _matches(name: str, wanted: str | None, mode: str | None) -> bool:
    if wanted is None:
        return True
    if mode == "equal":
        return _bare(name) == _bare(wanted)
    return _bare(wanted) in _bare(name)


def _recordset_body(raw: bytes) -> tuple[dict[str, Any], Response | None]:
    """The checked body of a POST or PUT, or the error Huawei Cloud answers."""
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("name"), str):
        return {}, _dns_error(400, "DNS.0002", "Invalid request.")
    rtype = body.get("type")
    if rtype not in ("A", "AAAA", "TXT"):
        return {}, _dns_error(400, "DNS.0307", "Invalid record set type.")
    ttl = body.get("ttl", 300)
    if isinstance(ttl, bool) or not isinstance(ttl, int) or not 1 <= ttl <= MAX_TTL:
        return {}, _dns_error(
            400,
            "DNS.0319",
            f"The TTL parameter has been out of range. The value ranges from 1 to {MAX_TTL}.",
        )
    records = body.get("records")
    if not isinstance(records, list) or not records or not all(_valid(rtype, r) for r in records):
        return {}, _dns_error(400, "DNS.0308", "Invalid record set value.")
    return body | {"ttl": ttl}, None


def _valid(rtype: str, value: Any) -> bool:
    if rtype == "TXT":
        return _is_txt(value)
    return _is(ipaddress.IPv4Address if rtype == "A" else ipaddress.IPv6Address, value)


def _is_txt(value: Any) -> bool:
    """A TXT value as Huawei Cloud takes it: quoted strings of at most 255 characters."""
    if not isinstance(value, str) or not is_quoted_txt(value):
        return False
    return all(len(s) <= 255 for s in re.findall(r'"((?:[^"\\]|\\.)*)"', value))


def _is(family: type[ipaddress.IPv4Address | ipaddress.IPv6Address], value: Any) -> bool:
    try:
        family(value)
    except (ValueError, TypeError):
        return False
    return True
