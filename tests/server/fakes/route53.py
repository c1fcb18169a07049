"""Route 53 for tests: the real moto server, behind a proxy that does what moto does not.

moto (``ThreadedMotoServer`` on 127.0.0.1) implements the hosted zones and record sets
for real, but checks no signature and accepts a DELETE that does not restate the current
record set. :class:`Route53Proxy` stands in front of it and, like Route 53:

- verifies the SigV4 ``Authorization`` header by recomputing it from the request with
  the secret the test gave (403 ``InvalidClientTokenId`` / ``SignatureDoesNotMatch``);
- refuses a DELETE whose TTL and values are not exactly the current ones (400
  ``InvalidChangeBatch``, with Route 53's messages);
- refuses a TXT value that is not enclosed in quotation marks, or holds a string past
  255 characters (400 ``InvalidChangeBatch``, Route 53's ``InvalidCharacterString`` and
  ``CharacterStringTooLong``);
- spells ``*`` in the names it lists as ``\\052``, as Route 53 does, and takes either
  spelling in a change or as the start name of a listing (moto knows only ``*``);
- answers queued failures with Route 53's error shapes: ``throttle`` (400 ``Throttling``),
  ``busy`` (400 ``PriorRequestNotComplete``), ``server`` (503 ``ServiceUnavailable``),
  ``internal`` (500 ``InternalFailure``), ``credentials`` (403 ``SignatureDoesNotMatch``),
  ``denied`` (403 ``AccessDenied``);
- routes only ListHostedZonesByName, ListResourceRecordSets and ChangeResourceRecordSets
  (anything else, and a change batch past Route 53's limits, is ``not_expected``);

and otherwise forwards the request to moto and returns moto's answer. :class:`Moto`
reads and edits moto's records directly, as the AWS console would.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import re
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, urlencode

import httpx
from moto.server import ThreadedMotoServer
from nicupdate_server.signing.sigv4 import SigV4Auth, sigv4_headers
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import FakeProvider, Seen, is_quoted_txt

NS = "https://route53.amazonaws.com/doc/2013-04-01/"
API = "/2013-04-01"
REGION, SERVICE = "us-east-1", "route53"
# AWS's documentation example key (not a real one).
ACCESS_KEY_ID = "AKIAIOSFODNN7EXAMPLE"
AUTHORIZATION = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/\s,]+)/(?P<day>\d{8})/(?P<region>[^/]+)/"
    r"(?P<service>[^/]+)/aws4_request, SignedHeaders=(?P<signed>[a-z0-9;-]+), "
    r"Signature=(?P<signature>[0-9a-f]{64})"
)
MAX_SKEW = timedelta(minutes=5)

SIGNATURE_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. Consult the service "
    "documentation for details."
)
INVALID_TOKEN = "The security token included in the request is invalid."
# kind -> (HTTP status, Type, Code, Message)
FAILURES = {
    "throttle": (400, "Sender", "Throttling", "Rate exceeded"),
    "busy": (
        400,
        "Sender",
        "PriorRequestNotComplete",
        "The request was rejected because Route 53 was still processing a prior request.",
    ),
    "server": (503, "Receiver", "ServiceUnavailable", "Service Unavailable"),
    "internal": (500, "Receiver", "InternalFailure", "An internal error occurred."),
    "credentials": (403, "Sender", "SignatureDoesNotMatch", SIGNATURE_MISMATCH),
    "denied": (
        403,
        "Sender",
        "AccessDenied",
        "User: arn:aws:iam::123456789012:user/nicupdate is not authorized to perform: "
        "route53:ChangeResourceRecordSets on resource: arn:aws:route53:::hostedzone/*",
    ),
}
# The query parameters each read call has.
ZONES_BY_NAME_PARAMS = {"dnsname", "hostedzoneid", "maxitems"}
LIST_RRSETS_PARAMS = {"name", "type", "identifier", "maxitems"}


def q(tag: str) -> str:
    return f"{{{NS}}}{tag}"


def error_response(status: int, kind: str, code: str, message: str) -> Response:
    """Route 53's error document."""
    root = ET.Element(q("ErrorResponse"))
    error = ET.SubElement(root, q("Error"))
    ET.SubElement(error, q("Type")).text = kind
    ET.SubElement(error, q("Code")).text = code
    ET.SubElement(error, q("Message")).text = message
    ET.SubElement(root, q("RequestId")).text = str(uuid.uuid4())
    body = ET.tostring(root, encoding="utf-8", xml_declaration=True, default_namespace=NS)
    return Response(body, status_code=status, media_type="text/xml")


def record_sets(document: bytes) -> list[tuple[str, str, int | None, list[str]]]:
    """(name, type, ttl, values) of each ResourceRecordSet in a Route 53 answer."""
    found = []
    for rrset in ET.fromstring(document).iter(q("ResourceRecordSet")):
        ttl = rrset.findtext(q("TTL"))
        values = [v.text or "" for v in rrset.iter(q("Value"))]
        name, rtype = rrset.findtext(q("Name")) or "", rrset.findtext(q("Type")) or ""
        found.append((name, rtype, int(ttl) if ttl else None, values))
    return found


@dataclass
class Route53Proxy(FakeProvider):
    """Route 53's signature check, error shapes and strict DELETEs in front of moto."""

    moto_url: str = ""
    access_key_id: str = ACCESS_KEY_ID
    secret_access_key: str = ""
    session_token: str | None = None

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route(f"{API}/hostedzonesbyname", self.zones_by_name, methods=["GET"]),
                Route(f"{API}/hostedzone/{{zone_id}}/rrset", self.list_rrsets, methods=["GET"]),
                Route(f"{API}/hostedzone/{{zone_id}}/rrset/", self.change_rrsets, methods=["POST"]),
            ]
        )

    def paths(self) -> list[str]:
        """``METHOD path`` of every request so far."""
        with self.lock:
            return [f"{seen.method} {seen.path}" for seen in self.seen]

    # -- routes ----------------------------------------------------------------------------

    async def zones_by_name(self, request: Request) -> Response:
        return await self.read_call(request, ZONES_BY_NAME_PARAMS)

    async def list_rrsets(self, request: Request) -> Response:
        return await self.read_call(request, LIST_RRSETS_PARAMS, escaped=True)

    async def read_call(self, request: Request, known: set[str], escaped: bool = False) -> Response:
        seen = await self.record(request)
        unknown = set(request.query_params) - known
        if unknown:
            return self.not_expected(request, f"unknown parameters {sorted(unknown)}")
        refused = self.refusal(request, seen)
        if refused is not None:
            return refused
        if not escaped:
            return await self.forward(seen, request)
        # Route 53 takes \052 for * in the start name, and lists * as \052: moto does neither.
        query = urlencode([(k, unescaped(v)) for k, v in parse_qsl(seen.query)])
        answer = await self.forward(seen, request, query=query)
        return Response(
            escape_names(answer.body), status_code=answer.status_code, media_type=answer.media_type
        )

    async def change_rrsets(self, request: Request) -> Response:
        seen = await self.record(request)
        if request.query_params:
            return self.not_expected(request, "ChangeResourceRecordSets takes no parameters")
        try:
            root = ET.fromstring(seen.body)
        except ET.ParseError:
            return self.not_expected(request, "the body is not XML")
        if root.tag != q("ChangeResourceRecordSetsRequest"):
            return self.not_expected(request, f"the body is a {root.tag}")
        too_big = over_limits(root)
        if too_big:
            return self.not_expected(request, too_big)
        refused = self.refusal(request, seen)
        if refused is not None:
            return refused
        with self.lock:
            self.writes += 1
        for name in root.iter(q("Name")):  # Route 53 takes \052 for *; moto takes only *
            name.text = unescaped(name.text or "")
        problems = check_txt(root)
        problems += await self.check_deletes(request.path_params["zone_id"], root, seen)
        if problems:
            message = f"[{', '.join(problems)}]"
            return error_response(400, "Sender", "InvalidChangeBatch", message)
        body = ET.tostring(root, encoding="utf-8", xml_declaration=True, default_namespace=NS)
        return await self.forward(seen, request, body=body)

    # -- what Route 53 checks and moto does not ------------------------------------------

    def refusal(self, request: Request, seen: Seen) -> Response | None:
        """The answer to a request that is not signed right, or to a queued failure."""
        refused = self.check_signature(request, seen)
        if refused is not None:
            return refused
        failure = self.take_failure()
        if failure is None:
            return None
        status, kind, code, message = FAILURES[failure]
        return error_response(status, kind, code, message)

    def check_signature(self, request: Request, seen: Seen) -> Response | None:
        """Recompute the SigV4 signature from the request, as Route 53 does."""
        header = seen.headers.get("authorization", "")
        found = AUTHORIZATION.fullmatch(header)
        if not header:
            return error_response(
                403, "Sender", "MissingAuthenticationToken", "Missing Authentication Token"
            )
        if found is None:
            return error_response(
                403, "Sender", "IncompleteSignature", "Authorization header is malformed"
            )
        if found["key"] != self.access_key_id:
            return error_response(403, "Sender", "InvalidClientTokenId", INVALID_TOKEN)
        token = seen.headers.get("x-amz-security-token")
        if token != self.session_token:
            return error_response(403, "Sender", "InvalidClientTokenId", INVALID_TOKEN)
        stamp = seen.headers.get("x-amz-date", "")
        try:
            when = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        except ValueError:
            return error_response(403, "Sender", "IncompleteSignature", "X-Amz-Date is missing")
        now = datetime.now(UTC)
        if abs(now - when) > MAX_SKEW:
            message = f"Signature expired: {stamp} is now earlier than {now:%Y%m%dT%H%M%SZ}"
            return error_response(403, "Sender", "SignatureDoesNotMatch", message)
        if found["region"] != REGION or found["service"] != SERVICE or found["day"] != stamp[:8]:
            message = "Credential should be scoped to a valid region, service and date."
            return error_response(403, "Sender", "SignatureDoesNotMatch", message)
        signed = found["signed"].split(";")
        if "host" not in signed or any(name not in seen.headers for name in signed):
            return error_response(403, "Sender", "SignatureDoesNotMatch", SIGNATURE_MISMATCH)
        expected = sigv4_headers(
            method=seen.method,
            host=seen.headers["host"],
            path=request.scope["raw_path"].decode("ascii"),
            query=parse_qsl(seen.query, keep_blank_values=True),
            headers=[(name, seen.headers[name]) for name in signed],
            body=seen.body,
            when=when,
            access_key_id=self.access_key_id,
            secret_access_key=self.secret_access_key,
            region=REGION,
            service=SERVICE,
            session_token=token,
        )
        if not hmac.compare_digest(expected["Authorization"], header):
            return error_response(403, "Sender", "SignatureDoesNotMatch", SIGNATURE_MISMATCH)
        return None

    async def check_deletes(self, zone_id: str, root: ET.Element, seen: Seen) -> list[str]:
        """Route 53's messages for DELETEs that do not state the current set exactly."""
        problems = []
        for change in root.iter(q("Change")):
            if change.findtext(q("Action")) != "DELETE":
                continue
            rrset = change.find(q("ResourceRecordSet"))
            assert rrset is not None
            name, rtype = rrset.findtext(q("Name")) or "", rrset.findtext(q("Type")) or ""
            ttl = rrset.findtext(q("TTL"))
            values = sorted(v.text or "" for v in rrset.iter(q("Value")))
            where = f"Tried to delete resource record set [name='{name}', type='{rtype}'] but"
            current = await self.current(zone_id, name, rtype, seen)
            if current is None:
                problems.append(f"{where} it was not found")
            elif current != (int(ttl) if ttl else None, values):
                problems.append(f"{where} the values provided do not match the current values")
        return problems

    async def current(
        self, zone_id: str, name: str, rtype: str, seen: Seen
    ) -> tuple[int | None, list[str]] | None:
        async with httpx.AsyncClient(trust_env=False) as client:
            answer = await client.get(
                f"{self.moto_url}{API}/hostedzone/{zone_id}/rrset",
                params={"name": name, "type": rtype, "maxitems": "1"},
                headers=forwarded(seen),
            )
        for found_name, found_type, ttl, values in record_sets(answer.content):
            if found_name.rstrip(".") == name.rstrip(".") and found_type == rtype:
                return ttl, sorted(values)
        return None

    async def forward(
        self, seen: Seen, request: Request, *, query: str | None = None, body: bytes | None = None
    ) -> Response:
        """Send the request on to moto (with ``query`` or ``body`` instead of its own)."""
        raw_path = request.scope["raw_path"].decode("ascii")
        query = seen.query if query is None else query
        url = self.moto_url + raw_path + (f"?{query}" if query else "")
        async with httpx.AsyncClient(trust_env=False) as client:
            content = seen.body if body is None else body
            headers = forwarded(seen)
            answer = await client.request(seen.method, url, content=content, headers=headers)
        media_type = answer.headers.get("content-type", "text/xml")
        return Response(answer.content, status_code=answer.status_code, media_type=media_type)


def unescaped(name: str) -> str:
    """A name with Route 53's octal escapes (``\\052``) undone, as moto wants it."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), name)


def escape_names(document: bytes) -> bytes:
    """A listing with ``*`` in its names spelt ``\\052``, as Route 53 lists them."""
    return re.sub(
        rb"(<(?:Name|NextRecordName)>)([^<]*)",
        lambda m: m.group(1) + m.group(2).replace(b"*", b"\\052"),
        document,
    )


def check_txt(root: ET.Element) -> list[str]:
    """Route 53's messages for TXT values it refuses: each must be enclosed in quotation
    marks, each quoted string at most 255 characters."""
    problems = []
    for rrset in root.iter(q("ResourceRecordSet")):
        if rrset.findtext(q("Type")) != "TXT":
            continue
        for found in rrset.iter(q("Value")):
            value = found.text or ""
            if not is_quoted_txt(value):
                problems.append(
                    "Invalid Resource Record: 'FATAL problem: InvalidCharacterString (Value "
                    f"should be enclosed in quotation marks) encountered with '{value}''"
                )
            elif any(len(s) > 255 for s in re.findall(r'"((?:[^"\\]|\\.)*)"', value)):
                problems.append(
                    "Invalid Resource Record: 'FATAL problem: CharacterStringTooLong (Value "
                    f"is too long) encountered with '{value}''"
                )
    return problems


def forwarded(seen: Seen) -> dict[str, str]:
    """The headers moto reads (it tells the service by the credential's scope)."""
    names = ("authorization", "x-amz-date", "x-amz-security-token", "content-type")
    return {name: seen.headers[name] for name in names if name in seen.headers}


def over_limits(root: ET.Element) -> str | None:
    """Why a change batch is past Route 53's per-call limits (an UPSERT counts twice)."""
    records = chars = 0
    for change in root.iter(q("Change")):
        weight = 2 if change.findtext(q("Action")) == "UPSERT" else 1
        values = [v.text or "" for v in change.iter(q("Value"))]
        records += weight * len(values)
        chars += weight * sum(len(v) for v in values)
    if records > 1000:
        return f"{records} records in one change batch (Route 53 takes 1,000)"
    if chars > 32000:
        return f"{chars} characters of values in one change batch (Route 53 takes 32,000)"
    return None


# -- moto itself ---------------------------------------------------------------------------


class Moto:
    """The moto server, and direct access to its records (as the AWS console would)."""

    def __init__(self) -> None:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.server.start()
        self.url = f"http://127.0.0.1:{self.server._server.server_port}"  # type: ignore[union-attr]
        # moto checks no signature, but finds the service by the credential's scope.
        auth = SigV4Auth(ACCESS_KEY_ID, "moto-checks-no-signature", REGION, SERVICE)
        self.client = httpx.Client(base_url=self.url, auth=auth, trust_env=False, timeout=10)

    def stop(self) -> None:
        self.client.close()
        self.server.stop()

    def reset(self) -> None:
        """Forget every hosted zone."""
        self.client.post("/moto-api/reset").raise_for_status()

    def create_zone(self, name: str) -> str:
        """A new public hosted zone ``name``; its id."""
        root = ET.Element(q("CreateHostedZoneRequest"))
        ET.SubElement(root, q("Name")).text = name + "."
        ET.SubElement(root, q("CallerReference")).text = str(uuid.uuid4())
        body = ET.tostring(root, encoding="utf-8", xml_declaration=True, default_namespace=NS)
        answer = self.client.post(f"{API}/hostedzone", content=body)
        answer.raise_for_status()
        zone_id = ET.fromstring(answer.content).findtext(f"{q('HostedZone')}/{q('Id')}") or ""
        return zone_id.removeprefix("/hostedzone/")

    def record_set(
        self, zone_id: str, fqdn: str, rtype: str
    ) -> tuple[int | None, list[str]] | None:
        """(ttl, values in moto's order) of ``fqdn`` ``rtype``, or None."""
        answer = self.client.get(
            f"{API}/hostedzone/{zone_id}/rrset",
            params={"name": fqdn + ".", "type": rtype, "maxitems": "1"},
        )
        answer.raise_for_status()
        for name, found_type, ttl, values in record_sets(answer.content):
            if name.rstrip(".").lower() == fqdn.lower() and found_type == rtype:
                return ttl, values
        return None

    def change(
        self, zone_id: str, action: str, fqdn: str, rtype: str, ttl: int, values: list[str]
    ) -> None:
        root = ET.Element(q("ChangeResourceRecordSetsRequest"))
        changes = ET.SubElement(ET.SubElement(root, q("ChangeBatch")), q("Changes"))
        change = ET.SubElement(changes, q("Change"))
        ET.SubElement(change, q("Action")).text = action
        rrset = ET.SubElement(change, q("ResourceRecordSet"))
        ET.SubElement(rrset, q("Name")).text = fqdn + "."
        ET.SubElement(rrset, q("Type")).text = rtype
        ET.SubElement(rrset, q("TTL")).text = str(ttl)
        records = ET.SubElement(rrset, q("ResourceRecords"))
        for value in values:
            ET.SubElement(ET.SubElement(records, q("ResourceRecord")), q("Value")).text = value
        body = ET.tostring(root, encoding="utf-8", xml_declaration=True, default_namespace=NS)
        self.client.post(f"{API}/hostedzone/{zone_id}/rrset/", content=body).raise_for_status()

    def alias(self, zone_id: str, fqdn: str, rtype: str, target: str, target_zone: str) -> None:
        """An alias record set (no TTL, no values) at ``fqdn``."""
        root = ET.Element(q("ChangeResourceRecordSetsRequest"))
        changes = ET.SubElement(ET.SubElement(root, q("ChangeBatch")), q("Changes"))
        change = ET.SubElement(changes, q("Change"))
        ET.SubElement(change, q("Action")).text = "UPSERT"
        rrset = ET.SubElement(change, q("ResourceRecordSet"))
        ET.SubElement(rrset, q("Name")).text = fqdn + "."
        ET.SubElement(rrset, q("Type")).text = rtype
        alias = ET.SubElement(rrset, q("AliasTarget"))
        ET.SubElement(alias, q("HostedZoneId")).text = target_zone
        ET.SubElement(alias, q("DNSName")).text = target
        ET.SubElement(alias, q("EvaluateTargetHealth")).text = "false"
        body = ET.tostring(root, encoding="utf-8", xml_declaration=True, default_namespace=NS)
        self.client.post(f"{API}/hostedzone/{zone_id}/rrset/", content=body).raise_for_status()

    def delete(self, zone_id: str, fqdn: str, rtype: str) -> None:
        """Delete the record set, restating it exactly."""
        current = self.record_set(zone_id, fqdn, rtype)
        if current is not None and current[0] is not None:
            self.change(zone_id, "DELETE", fqdn, rtype, current[0], current[1])


@contextlib.contextmanager
def running_moto() -> Iterator[Moto]:
    moto = Moto()
    try:
        yield moto
    finally:
        moto.stop()
