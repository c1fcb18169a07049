"""A fake of the Cloudflare API v4: zones and DNS records, as nicupdate uses them.

Served under ``/client/v4`` like the real API. It checks ``Authorization: Bearer
<token>`` exactly (a malformed header is ``400 6003/6111``, another token ``403 9109``),
keeps records with random 32-hex ids, answers in Cloudflare's envelope::

    {"success": true, "errors": [], "messages": [], "result": ..., "result_info": {...}}

and refuses what Cloudflare refuses: a bad TTL (9021), an address that is not one of
the type (9005), an identical record (81058), an A or AAAA where a CNAME is (81054), a
record id it does not know (404, 81044), a zone id it does not know (400, 7003/7000), a
proxied TXT record (9004), TXT content past 2048 characters (9100).

Names are kept as given, lower-cased: a wildcard is a record named ``*.<name>``. TXT
content is kept and returned as sent: Cloudflare documents it as quoted character-strings
(``"token"``) but takes bare text too, and the dashboard shows what was sent.

Routes: ``GET /zones?name=``, ``GET /zones/{zid}/dns_records?type=&name=``, ``POST
/zones/{zid}/dns_records``, ``PATCH|PUT|DELETE /zones/{zid}/dns_records/{rid}``.
A call to any other route, or with a query parameter or body field that nicupdate has
no business sending, is recorded as unexpected.
"""

from __future__ import annotations

import ipaddress
import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from . import FakeProvider

PREFIX = "/client/v4"
ZONE_PARAMS = frozenset({"name", "status", "page", "per_page", "order", "direction", "match"})
RECORD_PARAMS = frozenset(
    {"type", "name", "content", "proxied", "page", "per_page", "order", "direction", "match"}
)
RECORD_FIELDS = frozenset({"type", "name", "content", "ttl", "proxied", "comment", "tags"})
TYPES = ("A", "AAAA", "CNAME", "TXT")
PROXIABLE = ("A", "AAAA", "CNAME")
MAX_TXT = 2048
WELL_FORMED = re.compile(r"Bearer [A-Za-z0-9_-]{40}")

Error = tuple[int, int, str]  # HTTP status, Cloudflare code, message
THROTTLED: Error = (429, 971, "Please wait and consider throttling your request speed")
BAD_TOKEN: Error = (403, 9109, "Invalid access token")
RECORD_GONE: Error = (404, 81044, "Record does not exist.")
IDENTICAL: Error = (400, 81058, "An identical record already exists.")
CNAME_THERE: Error = (
    400,
    81054,
    "A CNAME record with that host already exists. For more details, refer to "
    "<https://developers.cloudflare.com/dns/manage-dns-records/troubleshooting/"
    "records-with-same-name/>.",
)
BAD_TTL: Error = (400, 9021, "TTL must be between 60 and 86400 seconds, or 1 for Automatic.")


BAD_HEADERS: Error = (400, 6003, "Invalid request headers")
CHAINS = {6003: [{"code": 6111, "message": "Invalid format for Authorization header"}]}


def envelope(result: Any, *, info: dict[str, int] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"success": True, "errors": [], "messages": [], "result": result}
    if info is not None:
        body["result_info"] = info
    return body


def failure(
    error: Error, *, more: list[dict[str, Any]] | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    status, code, message = error
    first: dict[str, Any] = {"code": code, "message": message}
    if code in CHAINS:
        first["error_chain"] = CHAINS[code]
    errors = [first, *(more or [])]
    body = {"success": False, "errors": errors, "messages": [], "result": None}
    return JSONResponse(body, status_code=status, headers=headers)


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class FakeCloudflare(FakeProvider):
    """Cloudflare with one account: the token it accepts, its zones and their records."""

    token: str = ""
    zones: dict[str, str] = field(default_factory=dict)  # id -> name
    records: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> record
    server_errors: int = 0

    def add_zone(self, name: str) -> str:
        zone_id = uuid.uuid4().hex
        with self.lock:
            self.zones[zone_id] = name
        return zone_id

    def add_record(self, fqdn: str, rtype: str, content: str, ttl: int = 1) -> str:
        """A record put in as if in the dashboard (no checks)."""
        zone_id = next(z for z, name in self.zones.items() if _in_zone(fqdn, name))
        record = self._new(zone_id, {"type": rtype, "name": fqdn, "content": content, "ttl": ttl})
        with self.lock:
            self.records[record["id"]] = record
        return str(record["id"])

    def find(self, fqdn: str, rtype: str) -> list[dict[str, Any]]:
        with self.lock:
            return [
                dict(r) for r in self.records.values() if r["name"] == fqdn and r["type"] == rtype
            ]

    def addresses(self, fqdn: str, rtype: str) -> list[str]:
        """The records' content, sorted (TXT content as stored, maybe quoted)."""
        return sorted(r["content"] for r in self.find(fqdn, rtype))

    def ttl(self, fqdn: str, rtype: str) -> int | None:
        ttls = {r["ttl"] for r in self.find(fqdn, rtype)}
        return ttls.pop() if len(ttls) == 1 else None

    def forget(self, fqdn: str, rtype: str) -> None:
        with self.lock:
            for record_id in [
                i for i, r in self.records.items() if r["name"] == fqdn and r["type"] == rtype
            ]:
                del self.records[record_id]

    def calls(self, method: str, path: str) -> int:
        """Requests seen for ``method`` and ``path`` (below /client/v4; ``*``: any id)."""
        pattern = re.compile(re.escape(PREFIX + path).replace(r"\*", "[0-9a-f]{32}") + "$")
        with self.lock:
            return sum(1 for s in self.seen if s.method == method and pattern.match(s.path))

    # -- the app -----------------------------------------------------------------------

    def app(self) -> Starlette:
        records = PREFIX + "/zones/{zone_id}/dns_records"
        return Starlette(
            routes=[
                Route(PREFIX + "/zones", self.list_zones, methods=["GET"]),
                Route(records, self.list_records, methods=["GET"]),
                Route(records, self.create_record, methods=["POST"]),
                Route(
                    records + "/{record_id}",
                    self.change_record,
                    methods=["PATCH", "PUT", "DELETE"],
                ),
            ]
        )

    async def gate(self, request: Request, params: frozenset[str]) -> Response | None:
        """Record the request; answer a queued failure, a bad token or a bad query."""
        await self.record(request)
        if request.method in ("POST", "PATCH", "PUT", "DELETE"):
            with self.lock:
                self.writes += 1
        kind = self.take_failure()
        if kind == "throttle":
            return failure(THROTTLED, headers={"retry-after": "1"})
        if kind == "server":
            self.server_errors += 1
            if self.server_errors % 2:  # the edge, when the API behind it is down
                return Response("error code: 502", status_code=502, media_type="text/plain")
            return failure((500, 10001, "Internal server error"))
        if kind == "credentials":
            return failure(BAD_TOKEN)
        if kind is not None:
            raise AssertionError(f"unknown failure kind {kind!r}")
        given = request.headers.get("authorization", "")
        if not WELL_FORMED.fullmatch(given):
            return failure(BAD_HEADERS)
        if given != f"Bearer {self.token}":
            return failure(BAD_TOKEN)
        unknown = sorted(set(request.query_params) - params)
        if unknown:
            return self.not_expected(request, f"query parameters {unknown}")
        zone_id = request.path_params.get("zone_id")
        if zone_id is not None and zone_id not in self.zones:
            return failure(
                (
                    400,
                    7003,
                    f"Could not route to {request.url.path}, perhaps your object identifier "
                    "is invalid?",
                ),
                more=[{"code": 7000, "message": "No route for that URI"}],
            )
        return None

    async def list_zones(self, request: Request) -> Response:
        refused = await self.gate(request, ZONE_PARAMS)
        if refused is not None:
            return refused
        name = request.query_params.get("name")
        zones = [
            {
                "id": zone_id,
                "name": zone,
                "status": "active",
                "paused": False,
                "type": "full",
                "name_servers": ["ada.ns.cloudflare.com", "bob.ns.cloudflare.com"],
            }
            for zone_id, zone in sorted(self.zones.items(), key=lambda z: z[1])
            if name is None or zone == name
        ]
        return self.page(request, zones, default=20, most=50)

    async def list_records(self, request: Request) -> Response:
        refused = await self.gate(request, RECORD_PARAMS)
        if refused is not None:
            return refused
        zone_id = request.path_params["zone_id"]
        query = request.query_params
        wanted = {key: query[key] for key in ("type", "name", "content") if key in query}
        with self.lock:
            found = [
                dict(r)
                for r in self.records.values()
                if r["zone_id"] == zone_id and all(r[k] == v for k, v in wanted.items())
            ]
        found.sort(key=lambda r: (r["type"], r["name"], r["content"]))
        return self.page(request, found, default=100, most=5_000_000)

    def page(self, request: Request, items: list[Any], *, default: int, most: int) -> Response:
        try:
            page = max(1, int(request.query_params.get("page", "1")))
            per_page = min(most, max(5, int(request.query_params.get("per_page", default))))
        except ValueError:
            return self.not_expected(request, "page and per_page are numbers")
        start = (page - 1) * per_page
        shown = items[start : start + per_page]
        info = {
            "page": page,
            "per_page": per_page,
            "count": len(shown),
            "total_count": len(items),
            "total_pages": max(1, -(-len(items) // per_page)),
        }
        return JSONResponse(envelope(shown, info=info))

    async def create_record(self, request: Request) -> Response:
        refused = await self.gate(request, frozenset())
        if refused is not None:
            return refused
        body = await self.body(request)
        if isinstance(body, Response):
            return body
        missing = [key for key in ("type", "name", "content") if key not in body]
        if missing:
            return self.not_expected(request, f"a new record without {missing}")
        record = self._new(request.path_params["zone_id"], body)
        with self.lock:
            problem = self.check(record)
            if problem is not None:
                return failure(problem)
            self.records[record["id"]] = record
        return JSONResponse(envelope(record))

    async def change_record(self, request: Request) -> Response:
        refused = await self.gate(request, frozenset())
        if refused is not None:
            return refused
        record_id = request.path_params["record_id"]
        zone_id = request.path_params["zone_id"]
        if request.method == "DELETE":
            with self.lock:
                old = self.records.get(record_id)
                if old is None or old["zone_id"] != zone_id:
                    return failure(RECORD_GONE)
                del self.records[record_id]
            return JSONResponse(envelope({"id": record_id}))
        body = await self.body(request)
        if isinstance(body, Response):
            return body
        if request.method == "PUT" and not {"type", "name", "content"} <= set(body):
            return self.not_expected(request, "PUT replaces the whole record")
        with self.lock:
            old = self.records.get(record_id)
            if old is None or old["zone_id"] != zone_id:
                return failure(RECORD_GONE)
            fields = {k: old[k] for k in ("type", "name", "content", "ttl", "proxied")}
            new = self._new(zone_id, fields | body, record_id, created=old["created_on"])
            problem = self.check(new)
            if problem is not None:
                return failure(problem)
            self.records[record_id] = new
        return JSONResponse(envelope(new))

    async def body(self, request: Request) -> dict[str, Any] | Response:
        if request.headers.get("content-type", "").split(";")[0] != "application/json":
            return self.not_expected(request, "the body is not sent as application/json")
        try:
            body = json.loads(await request.body())
        except ValueError:
            return failure((400, 9207, "Request body is invalid."))
        if not isinstance(body, dict):
            return failure((400, 9207, "Request body is invalid."))
        unknown = sorted(set(body) - RECORD_FIELDS)
        if unknown:
            return self.not_expected(request, f"record fields {unknown}")
        if body.get("type", "A") not in TYPES:
            return self.not_expected(request, f"a {body['type']} record")
        return body

    # -- records -----------------------------------------------------------------------

    def _new(
        self,
        zone_id: str,
        fields: dict[str, Any],
        record_id: str | None = None,
        created: str | None = None,
    ) -> dict[str, Any]:
        zone = self.zones[zone_id]
        name = str(fields["name"]).lower().rstrip(".")
        if name == "@":
            name = zone
        elif not _in_zone(name, zone):  # Cloudflare takes other names as relative
            name = f"{name}.{zone}"
        proxied = fields.get("proxied", False)
        content = fields["content"]
        if fields["type"] in ("A", "AAAA"):  # kept in canonical form
            try:
                content = str(ipaddress.ip_address(content))
            except ValueError:
                pass
        stamp = now()
        return {
            "id": record_id or uuid.uuid4().hex,
            "zone_id": zone_id,
            "zone_name": zone,
            "name": name,
            "type": fields["type"],
            "content": content,
            "proxiable": fields["type"] in PROXIABLE,
            "proxied": proxied,
            "ttl": 1 if proxied is True else fields.get("ttl", 1),  # proxied: automatic
            "settings": {},
            "meta": {},
            "comment": fields.get("comment"),
            "tags": fields.get("tags", []),
            "created_on": created or stamp,
            "modified_on": stamp,
        }

    def check(self, record: dict[str, Any]) -> Error | None:
        """Cloudflare's refusal of ``record`` (caller holds the lock), or None."""
        rtype, content, ttl = record["type"], record["content"], record["ttl"]
        if rtype in ("A", "AAAA"):
            version = 4 if rtype == "A" else 6
            try:
                valid = ipaddress.ip_address(content).version == version
            except ValueError:
                valid = False
            if not valid:
                family = "IPv4" if version == 4 else "IPv6"
                return (400, 9005, f"Content for {rtype} record must be a valid {family} address.")
        if (
            isinstance(ttl, bool)
            or not isinstance(ttl, int)
            or not (ttl == 1 or 60 <= ttl <= 86400)
        ):
            return BAD_TTL
        if not isinstance(record["proxied"], bool):
            return (400, 9003, "Invalid 'proxied' value, must be a boolean.")
        if record["proxied"] and rtype not in PROXIABLE:
            return (400, 9004, "This record type cannot be proxied.")
        if rtype == "TXT" and not 0 < len(str(content)) <= MAX_TXT:
            return (400, 9100, "Content for TXT record is invalid: at most 2048 characters.")
        for other in self.records.values():
            if other["id"] == record["id"] or other["name"] != record["name"]:
                continue
            if other["type"] == "CNAME" and rtype != "CNAME":
                return CNAME_THERE
            if rtype == "CNAME":
                return (400, 81053, "An A, AAAA, or CNAME record with that host already exists.")
            if other["type"] == rtype and other["content"] == content:
                return IDENTICAL
        return None


def _in_zone(name: str, zone: str) -> bool:
    return name == zone or name.endswith("." + zone)
