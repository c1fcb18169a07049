"""Backend ``route53``: AWS Route 53 through its REST API (2013-04-01), signed with SigV4. ::

    [backends.aws]
    type = "route53"
    access_key_id = "AKIAIOSFODNN7EXAMPLE"
    secret_access_key_file = "/etc/nicupdate/aws-secret-access-key"  # or:
    # secret_access_key_env = "NICUPDATE_AWS_SECRET_ACCESS_KEY"
    # session_token_file = "..."      # temporary (ASIA...) keys: their session token (or _env)
    # hosted_zone_id = "Z0123456789ABCDEFGHIJ"  # default: looked up by the zone's name
    base_url = "https://route53.amazonaws.com"
    timeout = 10.0                    # seconds to wait for each answer
    drift_check_interval = 3600       # seconds between read-backs of the zone (0: never)

The key needs, in IAM, ``route53:ListHostedZonesByName`` (unless ``hosted_zone_id`` is
given; it takes ``Resource: "*"``), and ``route53:ListResourceRecordSets`` and
``route53:ChangeResourceRecordSets`` on ``arn:aws:route53:::hostedzone/ID``.

How a change goes out: the hosted zone's id comes from ``ListHostedZonesByName`` once
and is kept (a kept id Route 53 no longer knows is looked up again). The backend keeps
what it last wrote or read of each record set; a record set it knows nothing of is read
first (one ``ListResourceRecordSets`` call per name and type for up to three of them,
otherwise the zone is listed page by page). Record sets that already hold the addresses
and the TTL are left alone; the others go out in one ``ChangeResourceRecordSets`` call
(split only past Route 53's limits of 1,000 records and 32,000 characters per call,
an UPSERT counting twice): an UPSERT with every address for a set that has some, a
DELETE restating the current set exactly for one that has none. When Route 53 refuses a
DELETE because the set changed behind nicupdate's back, the sets are read again and
the change is sent once more. The drift check (:meth:`Route53Backend.read`) lists the
zone and refreshes what the backend keeps.

Names and values as Route 53 wants them: a wildcard owner is sent as ``*.<fqdn>``, but
Route 53 lists it as ``\\052.<fqdn>`` (the octal escape of ``*``), which the backend maps
back (and sends as the start name of a listing). TXT values (ACME challenges at
``_acme-challenge.<fqdn>``) must be enclosed in quotation marks: each goes out as one
quoted character-string, ``"token"`` (other bytes than printable ASCII as Route 53's
octal escapes, ``\\303\\251`` for ``é``), and is read back unquoted.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from ..config import ZoneSettings
from ..signing.sigv4 import SigV4Auth
from .base import BackendError, ZoneChange
from .relay import HttpRelay
from .settings import TableReader
from .values import canonical_set, owner_types, quote_txt, unquote_txt

T = TypeVar("T")
NS = "https://route53.amazonaws.com/doc/2013-04-01/"
API = "/2013-04-01"
DEFAULT_BASE_URL = "https://route53.amazonaws.com"
REGION, SERVICE = "us-east-1", "route53"
KNOWN_KEYS = frozenset(
    {
        "type",
        "access_key_id",
        "secret_access_key",  # known so that an inline secret is refused with a hint
        "secret_access_key_file",
        "secret_access_key_env",
        "session_token",
        "session_token_file",
        "session_token_env",
        "hosted_zone_id",
        "base_url",
        "timeout",
        "drift_check_interval",
    }
)
# Per ChangeResourceRecordSets call; each record and character of an UPSERT counts twice.
MAX_RECORDS_PER_CALL = 1000
MAX_CHARS_PER_CALL = 32000
PAGE_SIZE = 300  # the most record sets ListResourceRecordSets returns at once
RTYPES = frozenset({"A", "AAAA", "TXT"})  # the types nicupdate keeps
ESCAPE = re.compile(r"\\([0-7]{3})")  # \ooo in a name Route 53 lists
READ_ONE_BY_ONE = 3  # unknown record sets read one by one; more than this: list the zone

IAM_FIX = (
    "allow route53:ListHostedZonesByName, route53:ListResourceRecordSets and "
    "route53:ChangeResourceRecordSets on the hosted zone in the key's IAM policy"
)
TRANSIENT_CODES = frozenset(
    {"Throttling", "ThrottlingException", "PriorRequestNotComplete", "ServiceUnavailable"}
)
# Route 53 refused the credentials: what to fix.
CREDENTIAL_CODES = {
    "InvalidClientTokenId": (
        "AWS does not know this access key: check access_key_id, and that the key is active in IAM"
    ),
    "SignatureDoesNotMatch": (
        "the secret access key does not belong to access_key_id, or this machine's clock "
        "is more than 5 minutes off: check secret_access_key_file/_env and the clock"
    ),
    "IncompleteSignature": "the request was not signed completely: check access_key_id",
    "MissingAuthenticationToken": "the request was not signed: check access_key_id",
    "ExpiredToken": (
        "the session token of these temporary credentials has expired: renew the key and "
        "session_token_file/_env"
    ),
    "UnrecognizedClientException": "check access_key_id and session_token_file/_env",
    "AccessDenied": IAM_FIX,
    "AccessDeniedException": IAM_FIX,
}


def q(tag: str) -> str:
    """``tag`` in Route 53's XML namespace."""
    return f"{{{NS}}}{tag}"


@dataclass(frozen=True, slots=True)
class RecordSet:
    """One name and type as Route 53 holds it. ``values`` are as Route 53 spells them (TXT
    quoted), in its order (a DELETE restates them); ``simple`` is False for an alias or
    a set with a routing policy."""

    ttl: int
    values: tuple[str, ...]
    simple: bool = True

    def holds(self, rtype: str, ttl: int, wanted: Collection[str]) -> bool:
        return (
            self.simple
            and self.ttl == ttl
            and _values(rtype, self.values) == canonical_set(rtype, wanted)
        )


@dataclass(frozen=True, slots=True)
class Change:
    action: str  # "UPSERT" or "DELETE"
    fqdn: str  # lower case, without the final dot
    rtype: str
    records: RecordSet


class ApiError(Exception):
    """An answer other than 2xx, with Route 53's error code and message."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.code, self.message = _error_of(response)
        super().__init__(f"{self.code or response.status_code}: {self.message}")


class StaleZone(Exception):
    """Route 53 no longer knows the hosted zone id in use."""


class Route53Backend(HttpRelay):
    """Relays record changes to Route 53, one ChangeResourceRecordSets call per apply."""

    kind = "route53"
    min_ttl = 0  # Route 53 takes any TTL from 0 on
    # Record sets per apply: 500 UPSERTs of one address each are Route 53's 1,000 records.
    max_batch = 500

    def __init__(
        self,
        name: str,
        *,
        access_key_id: str,
        secret_access_key: str,
        session_token: str | None = None,
        hosted_zone_id: str | None = None,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float = 10.0,
        drift_check_interval: float = 3600.0,
    ) -> None:
        super().__init__(name, base_url=base_url, timeout=timeout)
        self.auth = SigV4Auth(access_key_id, secret_access_key, REGION, SERVICE, session_token)
        self.hosted_zone_id = hosted_zone_id
        self.drift_check_interval = drift_check_interval
        self._zone_ids: dict[str, str] = {}  # zone name -> hosted zone id
        # (zone id, fqdn, type) -> what Route 53 holds (None: nothing); absent: unknown.
        self._known: dict[tuple[str, str, str], RecordSet | None] = {}

    @classmethod
    def from_table(cls, name: str, table: Mapping[str, Any]) -> Route53Backend:
        """Build the backend from its ``[backends.NAME]`` table; raises BackendUnavailable."""
        return cls(name, **_Settings(name, table).parse())

    # -- Backend protocol ----------------------------------------------------------------

    async def apply(self, change: ZoneChange) -> None:
        wanted: dict[tuple[str, str], tuple[str, ...]] = {
            (_fqdn(c.fqdn), c.rtype): c.addresses for c in change.changes
        }
        if wanted:
            ttl = self.ttl_for(change.zone)
            await self._in_zone(change.zone.name, lambda zid: self._apply(zid, wanted, ttl))

    async def read(
        self, zone: ZoneSettings, names: Collection[str]
    ) -> dict[tuple[str, str], tuple[str, ...]]:
        """What Route 53 holds for ``names``: ``(owner, type)`` -> sorted values (empty:
        none), for the types each owner holds (A and AAAA, or TXT at
        ``_acme-challenge.<fqdn>``), TXT values unquoted. Lists the zone, and keeps what
        it read."""

        async def work(zone_id: str) -> dict[tuple[str, str], tuple[str, ...]]:
            found = await self._list_zone(zone_id)
            result = {}
            for fqdn in names:
                for rtype in owner_types(fqdn):
                    records = found.get((_fqdn(fqdn), rtype))
                    self._known[(zone_id, _fqdn(fqdn), rtype)] = records
                    result[(fqdn, rtype)] = _values(rtype, records.values) if records else ()
            return result

        return await self._in_zone(zone.name, work)

    # -- the hosted zone -----------------------------------------------------------------

    async def _in_zone(self, zone: str, work: Callable[[str], Awaitable[T]]) -> T:
        """``await work(zone_id)``; a looked-up id Route 53 no longer knows is looked up
        again, once."""
        for attempt in range(2):
            zone_id = await self._zone_id(zone)
            try:
                return await work(zone_id)
            except StaleZone:
                self._zone_ids.pop(zone, None)
                self._known = {k: v for k, v in self._known.items() if k[0] != zone_id}
                if self.hosted_zone_id is not None or attempt:
                    fix = (
                        "check hosted_zone_id"
                        if self.hosted_zone_id is not None
                        else "was it deleted and created again meanwhile?"
                    )
                    raise self.permanent(
                        f"Route 53 has no hosted zone {zone_id} (for {zone})", fix
                    ) from None
        raise AssertionError("unreachable")

    async def _zone_id(self, zone: str) -> str:
        if self.hosted_zone_id is not None:
            return self.hosted_zone_id
        known = self._zone_ids.get(zone)
        if known is not None:
            return known
        # The answer lists the zones from that name on: keep those of exactly that name.
        root = await self._request(
            "GET",
            f"{API}/hostedzonesbyname",
            f"looking up the hosted zone {zone}",
            params={"dnsname": zone + ".", "maxitems": "10"},
        )
        found = [
            (_text(hz, "Id").removeprefix("/hostedzone/"), _text(hz, "PrivateZone") == "true")
            for hz in root.iter(q("HostedZone"))
            if _fqdn(_text(hz, "Name")) == _fqdn(zone)
        ]
        candidates = [zid for zid, private in found if not private] or [zid for zid, _ in found]
        if not candidates:
            raise self.permanent(
                f"Route 53 has no hosted zone named {zone}",
                "create it in the Route 53 console, or set hosted_zone_id",
            )
        if len(candidates) > 1:
            raise self.permanent(
                f"Route 53 has {len(candidates)} hosted zones named {zone} "
                f"({', '.join(candidates)})",
                "set hosted_zone_id to the one whose name servers the domain uses",
            )
        self._zone_ids[zone] = candidates[0]
        return candidates[0]

    # -- applying ------------------------------------------------------------------------

    async def _apply(
        self,
        zone_id: str,
        wanted: Mapping[tuple[str, str], tuple[str, ...]],
        ttl: int,
        *,
        again: bool = False,
    ) -> None:
        if again:  # what we kept turned out stale: read every set afresh
            for fqdn, rtype in wanted:
                self._known.pop((zone_id, fqdn, rtype), None)
        fresh = await self._learn(zone_id, wanted)
        changes = self._changes(zone_id, wanted, ttl)
        for batch in _batches(changes):
            try:
                await self._change(zone_id, batch)
            except ApiError as error:
                stale = any(c.action == "DELETE" and (c.fqdn, c.rtype) not in fresh for c in batch)
                if error.code == "InvalidChangeBatch" and stale and not again:
                    await self._apply(zone_id, wanted, ttl, again=True)
                    return
                raise self._error(error, _describe(batch)) from None
            for c in batch:
                self._known[(zone_id, c.fqdn, c.rtype)] = (
                    c.records if c.action == "UPSERT" else None
                )

    def _changes(
        self, zone_id: str, wanted: Mapping[tuple[str, str], tuple[str, ...]], ttl: int
    ) -> list[Change]:
        changes = []
        for (fqdn, rtype), addresses in wanted.items():
            current = self._known[(zone_id, fqdn, rtype)]
            if current is not None and not current.simple:
                raise self.permanent(
                    f"{fqdn} {rtype} in Route 53 is an alias or has a routing policy",
                    "nicupdate writes simple record sets only: delete that record in the "
                    "Route 53 console, or use another host name",
                )
            if addresses:
                if current is None or not current.holds(rtype, ttl, addresses):
                    values = _as_route53(rtype, addresses)
                    changes.append(Change("UPSERT", fqdn, rtype, RecordSet(ttl, values)))
            elif current is not None:
                changes.append(Change("DELETE", fqdn, rtype, current))
        return changes

    async def _change(self, zone_id: str, batch: list[Change]) -> None:
        await self._request(
            "POST",
            f"{API}/hostedzone/{zone_id}/rrset/",
            _describe(batch),
            content=_change_request(batch),
            passing=("InvalidChangeBatch",),
        )

    # -- reading -------------------------------------------------------------------------

    async def _learn(self, zone_id: str, keys: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
        """Read the record sets of ``keys`` not known yet; return the keys read."""
        unknown = [key for key in keys if (zone_id, *key) not in self._known]
        if len(unknown) <= READ_ONE_BY_ONE:
            for fqdn, rtype in unknown:
                self._known[(zone_id, fqdn, rtype)] = await self._read_one(zone_id, fqdn, rtype)
        else:
            found = await self._list_zone(zone_id)
            for (fqdn, rtype), records in found.items():
                self._known[(zone_id, fqdn, rtype)] = records
            for fqdn, rtype in unknown:
                self._known.setdefault((zone_id, fqdn, rtype), None)
        return set(unknown)

    async def _read_one(self, zone_id: str, fqdn: str, rtype: str) -> RecordSet | None:
        """The set of ``fqdn`` and ``rtype`` (the answer starts there: check it is that one)."""
        root = await self._list(
            zone_id,
            {"name": _escaped(fqdn) + ".", "type": rtype, "maxitems": "1"},
            f"reading {fqdn} {rtype}",
        )
        for name, found_type, records in _record_sets(root):
            if name == fqdn and found_type == rtype:
                return records
        return None

    async def _list_zone(self, zone_id: str) -> dict[tuple[str, str], RecordSet]:
        """Every A, AAAA and TXT set of the zone, page by page."""
        found: dict[tuple[str, str], RecordSet] = {}
        params = {"maxitems": str(PAGE_SIZE)}
        while True:
            root = await self._list(zone_id, params, f"listing hosted zone {zone_id}")
            for name, rtype, records in _record_sets(root):
                if rtype in RTYPES:
                    found[(name, rtype)] = records
            if _text(root, "IsTruncated") != "true":
                return found
            params = {"maxitems": str(PAGE_SIZE), "name": _text(root, "NextRecordName")}
            params |= {"type": _text(root, "NextRecordType")}
            if identifier := _text(root, "NextRecordIdentifier"):
                params["identifier"] = identifier

    async def _list(self, zone_id: str, params: dict[str, str], what: str) -> ET.Element:
        return await self._request("GET", f"{API}/hostedzone/{zone_id}/rrset", what, params=params)

    # -- calls and errors ----------------------------------------------------------------

    async def _request(
        self,
        method: str,
        path: str,
        what: str,
        *,
        params: Mapping[str, str] | None = None,
        content: bytes | None = None,
        passing: Collection[str] = (),
    ) -> ET.Element:
        """One call; its XML answer. Errors become BackendErrors, but NoSuchHostedZone
        raises StaleZone and the codes in ``passing`` an ApiError, for the caller."""
        response = await self.call(method, path, params=params, content=content)
        if not response.is_success:
            error = ApiError(response)
            if error.code == "NoSuchHostedZone":
                raise StaleZone()
            if error.code in passing:
                raise error
            raise self._error(error, what)
        try:
            return ET.fromstring(response.content)
        except ET.ParseError:
            raise self.permanent(
                f"{what}: the answer is not Route 53's XML",
                f"check base_url (now {self.base_url})",
            ) from None

    def _error(self, error: ApiError, what: str) -> BackendError:
        status, code = error.response.status_code, error.code
        said = f"{code}: {error.message}" if code else f"HTTP {status}"
        if code in TRANSIENT_CODES or status >= 500 or status == 429:
            return self.transient(error.response, f"{what}: {said}")
        if code in CREDENTIAL_CODES or (status in (401, 403) and not code):
            fix = CREDENTIAL_CODES.get(code, "check access_key_id and the secret access key")
            return self.permanent(
                f"{what}: Route 53 refused the credentials ({said})", fix, every_name=True
            )
        if code == "InvalidChangeBatch":
            fix = "usual causes: a CNAME or an alias at that name, a name outside the zone"
        elif code == "InvalidInput":
            fix = "check the zone's name and ttl"
        elif not code:
            fix = f"is base_url ({self.base_url}) Route 53's API?"
        else:
            fix = "see Route 53's message"
        return self.permanent(f"{what}: Route 53 refused it ({said})", fix)


# -- XML ---------------------------------------------------------------------------------


def _change_request(batch: list[Change]) -> bytes:
    """A ChangeResourceRecordSetsRequest document for ``batch``."""
    root = ET.Element(q("ChangeResourceRecordSetsRequest"))
    changes = ET.SubElement(ET.SubElement(root, q("ChangeBatch")), q("Changes"))
    for change in batch:
        item = ET.SubElement(changes, q("Change"))
        ET.SubElement(item, q("Action")).text = change.action
        rrset = ET.SubElement(item, q("ResourceRecordSet"))
        ET.SubElement(rrset, q("Name")).text = change.fqdn + "."
        ET.SubElement(rrset, q("Type")).text = change.rtype
        ET.SubElement(rrset, q("TTL")).text = str(change.records.ttl)
        records = ET.SubElement(rrset, q("ResourceRecords"))
        for value in change.records.values:
            ET.SubElement(ET.SubElement(records, q("ResourceRecord")), q("Value")).text = value
    body: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True, default_namespace=NS)
    return body


def _record_sets(root: ET.Element) -> Iterator[tuple[str, str, RecordSet]]:
    """(fqdn, type, set) of each ResourceRecordSet in a ListResourceRecordSets answer."""
    for rrset in root.iter(q("ResourceRecordSet")):
        values = tuple(v.text or "" for v in rrset.iter(q("Value")))
        simple = rrset.find(q("AliasTarget")) is None and rrset.find(q("SetIdentifier")) is None
        ttl = _text(rrset, "TTL")
        records = RecordSet(int(ttl) if ttl.isdigit() else -1, values, simple)
        yield _fqdn(_text(rrset, "Name")), _text(rrset, "Type"), records


def _text(element: ET.Element, tag: str) -> str:
    """The text of the first ``tag`` below ``element`` (namespaced or not), or ""."""
    for found in element.iter():
        if found.tag in (q(tag), tag):
            return (found.text or "").strip()
    return ""


def _error_of(response: httpx.Response) -> tuple[str, str]:
    """(code, message) of an error answer: ``<ErrorResponse><Error><Code>``, or the
    older ``<InvalidChangeBatch><Messages><Message>``; ("", "") when it is neither."""
    try:
        root = ET.fromstring(response.content)
    except ET.ParseError:
        return "", ""
    if root.tag in (q("InvalidChangeBatch"), "InvalidChangeBatch"):
        messages = [m.text or "" for m in root.iter() if m.tag in (q("Message"), "Message")]
        return "InvalidChangeBatch", "; ".join(messages)
    return _text(root, "Code"), _text(root, "Message")


# -- helpers -----------------------------------------------------------------------------


def _fqdn(name: str) -> str:
    """A name as nicupdate writes it: Route 53's escapes (``\\052`` for ``*``) undone,
    lower case, without the final dot."""
    return ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), name).rstrip(".").lower()


def _escaped(fqdn: str) -> str:
    """A name as Route 53 lists it: ``*`` as ``\\052``."""
    return fqdn.replace("*", "\\052")


def _as_route53(rtype: str, values: Iterable[str]) -> tuple[str, ...]:
    """Values as Route 53 takes them: TXT values in quotation marks (bytes outside
    printable ASCII as octal escapes), addresses as they are."""
    return tuple(quote_txt(v, octal=True) for v in values) if rtype == "TXT" else tuple(values)


def _values(rtype: str, values: Iterable[str]) -> tuple[str, ...]:
    """Values as nicupdate compares them: sorted, canonical addresses (``2001:DB8:0::7``
    is ``2001:db8::7``), TXT values unquoted."""
    if rtype == "TXT":
        return tuple(sorted({unquote_txt(v, octal=True) for v in values}))
    return canonical_set(rtype, values)


def _batches(changes: list[Change]) -> Iterator[list[Change]]:
    """``changes`` in as few calls as Route 53's per-call limits allow."""
    batch: list[Change] = []
    records = chars = 0
    for change in changes:
        weight = 2 if change.action == "UPSERT" else 1
        more = weight * len(change.records.values)
        longer = weight * sum(len(v) for v in change.records.values)
        if batch and (records + more > MAX_RECORDS_PER_CALL or chars + longer > MAX_CHARS_PER_CALL):
            yield batch
            batch, records, chars = [], 0, 0
        batch.append(change)
        records, chars = records + more, chars + longer
    if batch:
        yield batch


def _describe(batch: list[Change]) -> str:
    names = sorted({f"{c.fqdn} {c.rtype}" for c in batch})
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    return f"changing {shown}"


# -- configuration -----------------------------------------------------------------------

ACCESS_KEY_ID = re.compile(r"\w{16,128}")
HOSTED_ZONE_ID = re.compile(r"[A-Za-z0-9]{1,32}")


class _Settings(TableReader):
    """Reads a ``[backends.NAME]`` table of type route53."""

    def parse(self) -> dict[str, Any]:
        self.check_keys(KNOWN_KEYS, "route53")
        access_key_id = self.access_key_id()
        return {
            "access_key_id": access_key_id,
            "secret_access_key": self.secret("secret_access_key", "AWS secret access key"),
            "session_token": self.session_token(access_key_id),
            "hosted_zone_id": self.hosted_zone_id(),
            "base_url": self.url("base_url", DEFAULT_BASE_URL),
            "timeout": self.number("timeout", 10.0, 0.1, 300),
            "drift_check_interval": self.number("drift_check_interval", 3600, 0, math.inf),
        }

    def access_key_id(self) -> str:
        value = self.required("access_key_id", "the AWS access key id, AKIA...")
        if not ACCESS_KEY_ID.fullmatch(value):  # not echoed: it may be the secret by mistake
            raise self.error(
                "access_key_id",
                "does not look like an AWS access key id (16 to 128 letters and digits, "
                "AKIA...); the secret access key goes in secret_access_key_file",
            )
        return value

    def session_token(self, access_key_id: str) -> str | None:
        if any(
            k in self.table for k in ("session_token", "session_token_file", "session_token_env")
        ):
            return self.secret("session_token", "AWS session token")
        if access_key_id.startswith("ASIA"):
            raise self.error(
                "session_token_file",
                "missing: an ASIA... access key is temporary and needs its session token "
                "(session_token_file or session_token_env)",
            )
        return None

    def hosted_zone_id(self) -> str | None:
        value = self.string("hosted_zone_id")
        if value is None:
            return None
        zone_id = value.removeprefix("/hostedzone/")
        if not HOSTED_ZONE_ID.fullmatch(zone_id):
            raise self.error(
                "hosted_zone_id",
                f"{value!r} is not a hosted zone id (letters and digits, as Z0123456789ABC)",
            )
        return zone_id
