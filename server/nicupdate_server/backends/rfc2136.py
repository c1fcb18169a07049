"""Backend ``rfc2136``: TSIG-signed DNS UPDATE messages (RFC 2136) to a primary server.

Works with any primary that takes dynamic updates: BIND 9, PowerDNS, Knot. Tested
set-ups for the first two are in ``deploy/bind`` and ``deploy/powerdns``. ::

    [backends.primary]
    type = "rfc2136"
    server = "192.0.2.53"          # the primary's IP address (v4 or v6)
    port = 53
    tsig_key_name = "ddns-key"
    tsig_algorithm = "hmac-sha256" # or hmac-sha512, -sha384, -sha224, -sha1, hmac-md5
    tsig_secret_file = "/etc/nicupdate/ddns-key.secret"  # the base64 secret, or:
    # tsig_key_file = "/etc/nicupdate/ddns-key.conf"     # tsig-keygen's key clause
    # tsig_secret_env = "NICUPDATE_TSIG_SECRET"          # a variable holding the secret
    timeout = 5.0                  # seconds to wait for each answer
    transport = "tcp"              # or "udp" (TCP when an update is too big or truncated)
    max_records = 500              # record sets (one name and type) per UPDATE message
    max_message_bytes = 60000      # wire size per UPDATE message (udp: at most 1232)
    coalesce_window = 0.002        # seconds to gather changes into one message
    drift_check_interval = 3600    # seconds between read-backs of the primary (0: never)

Each :class:`RecordChange` replaces the record set of its name and type (or deletes it
when it has no value); the other types are never touched. The names are a host's, its
wildcard ``*.<fqdn>`` (A and AAAA) and ``_acme-challenge.<fqdn>`` (TXT), so the key must
be allowed all three types: in BIND, ``update-policy { grant KEY zonesub A AAAA TXT; };``.
:mod:`.dnsupdate` writes and signs the messages. A zone change goes out in as
few UPDATE messages as the two limits allow, one after the other over one TCP connection
that stays open between changes. The server applies each message atomically; when a
later message fails, the earlier ones stay applied, and sending the whole change again
is safe because every message states complete record sets.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import ipaddress
import logging
import math
import re
from collections.abc import Collection, Iterator, Mapping
from typing import Any

import dns.asyncquery
import dns.exception
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.tsig
import dns.update
import dns.xfr
import dns.zone

from ..config import ZoneSettings
from . import FACTORIES
from .base import (
    BackendError,
    PermanentBackendError,
    TransientBackendError,
    ZoneChange,
)
from .dnsupdate import BadChange, SignedUpdate, UpdateWriter
from .settings import TableReader
from .values import owner_types

log = logging.getLogger("nicupdate.backend")

ALGORITHMS: dict[str, dns.name.Name] = {
    "hmac-md5": dns.tsig.HMAC_MD5,
    "hmac-sha1": dns.tsig.HMAC_SHA1,
    "hmac-sha224": dns.tsig.HMAC_SHA224,
    "hmac-sha256": dns.tsig.HMAC_SHA256,
    "hmac-sha384": dns.tsig.HMAC_SHA384,
    "hmac-sha512": dns.tsig.HMAC_SHA512,
}
SECRET_SOURCES = ("tsig_secret_file", "tsig_key_file", "tsig_secret_env")
KNOWN_KEYS = frozenset(
    {
        "type",
        "server",
        "port",
        "tsig_key_name",
        "tsig_algorithm",
        *SECRET_SOURCES,
        "timeout",
        "transport",
        "max_records",
        "max_message_bytes",
        "coalesce_window",
        "drift_check_interval",
    }
)
# Refusals that concern the zone or the key, not the names in the message.
ZONE_WIDE_RCODES = frozenset({dns.rcode.REFUSED, dns.rcode.NOTAUTH, dns.rcode.NOTIMP})
UDP_LIMIT = 1232  # the DNS flag day 2020 payload size: never fragmented
TCP_LIMIT = 65535
QUERY_WINDOW = 32  # read-back queries in flight at once on one connection

# Why a primary answers an UPDATE with this rcode, and what to do about it.
UPDATE_RCODES = {
    dns.rcode.REFUSED: (
        "the key is not allowed to update this zone, or the zone is not dynamic: check "
        "update-policy / allow-update in BIND, or TSIG-ALLOW-DNSUPDATE and "
        "allow-dnsupdate-from in PowerDNS"
    ),
    dns.rcode.NOTAUTH: (
        "the server is not authoritative for the zone, or the key is unknown: check the "
        "zone's name and the server's key clause"
    ),
    dns.rcode.NOTZONE: "a name lies outside the zone: check the zone's name",
    dns.rcode.NOTIMP: "the server takes no updates: set dnsupdate=yes in PowerDNS",
    dns.rcode.FORMERR: "the server could not parse the message: see its log",
}


class Rfc2136Backend:
    """Sends record changes to one primary as TSIG-signed UPDATE messages."""

    def __init__(
        self,
        name: str,
        *,
        server: str,
        port: int = 53,
        key_name: str,
        algorithm: str = "hmac-sha256",
        secret: bytes,
        timeout: float = 5.0,
        transport: str = "tcp",
        max_records: int = 500,
        max_message_bytes: int | None = None,
        coalesce_window: float = 0.002,
        drift_check_interval: float = 3600.0,
    ) -> None:
        self.name = name
        self.server = server
        self.port = port
        self.key_name = key_name
        self.algorithm = algorithm
        self.timeout = timeout
        self.transport = transport
        self.max_records = max_records
        default_size = UDP_LIMIT if transport == "udp" else 60000
        self.max_message_bytes = max_message_bytes or default_size
        self.coalesce_window = coalesce_window
        self.drift_check_interval = drift_check_interval
        self.messages_sent = 0  # UPDATE messages the primary has answered
        self._key = _Key(key_name, secret, ALGORITHMS[algorithm])
        self._connection: _Connection | None = None
        self._lock: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def from_table(cls, name: str, table: Mapping[str, Any]) -> Rfc2136Backend:
        """Build the backend from its ``[backends.NAME]`` table; raises BackendUnavailable."""
        return cls(name, **_Settings(name, table).parse())

    @property
    def max_batch(self) -> int:
        """The most record changes one UPDATE message carries."""
        return self.max_records

    @property
    def label(self) -> str:
        host = f"[{self.server}]" if ":" in self.server else self.server
        return f"{self.name} {host}:{self.port}"

    def __repr__(self) -> str:
        return (
            f"Rfc2136Backend(name={self.name!r}, server={self.label.split()[-1]!r}, "
            f"key={self.key_name!r}, algorithm={self.algorithm!r}, transport={self.transport!r})"
        )

    # -- Backend protocol --------------------------------------------------------------

    async def start(self) -> None:
        """Nothing to do: the connection opens with the first change, so a primary that
        is down at start-up delays only the changes, not the server."""

    async def apply(self, change: ZoneChange) -> None:
        with self._errors():
            for message in self._messages(change):
                response, signed = message.read_answer(await self._exchange(message), self._key)
                self._check_update(response, signed, change.zone.name, message.rtypes)
                self.messages_sent += 1

    async def read(
        self, zone: ZoneSettings, names: Collection[str]
    ) -> dict[tuple[str, str], tuple[str, ...]]:
        """What the primary serves for ``names``: ``(owner, type)`` -> sorted values.

        Every requested owner appears with each type it holds (:func:`.values.owner_types`:
        A and AAAA, or TXT at ``_acme-challenge.<fqdn>``); a type without records maps to
        an empty tuple. A wildcard owner (``*.<fqdn>``) is read as the records stored at
        it. Reads the zone with a signed AXFR, or, when the primary refuses the transfer,
        with one query per owner and type.
        """
        wanted = [(fqdn, rtype) for fqdn in names for rtype in owner_types(fqdn)]
        if not wanted:
            return {}
        with self._errors():
            transferred = await self._transfer(dns.name.from_text(zone.name))
            if transferred is not None:
                return {
                    (fqdn, rtype): _zone_values(transferred, fqdn, rtype) for fqdn, rtype in wanted
                }
            return await self._query(wanted)

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.close()

    # -- building UPDATE messages ------------------------------------------------------

    def _messages(self, change: ZoneChange) -> Iterator[SignedUpdate]:
        """The UPDATE messages for ``change``, each within max_records and max_message_bytes."""
        writer = None
        for record in change.changes:
            try:
                encoded = (writer or self._writer(change)).encode(record)
            except BadChange as exc:
                raise PermanentBackendError(str(exc)) from None
            if writer is not None and (
                writer.records >= self.max_records
                or writer.size + len(encoded[0]) > self.max_message_bytes
            ):
                yield writer.sign()
                writer = None
            writer = writer or self._writer(change)
            writer.add(encoded)
        if writer is not None:
            yield writer.sign()

    def _writer(self, change: ZoneChange) -> UpdateWriter:
        return UpdateWriter(change.zone.name, change.zone.ttl, self._key)

    # -- talking to the primary --------------------------------------------------------

    async def _exchange(self, request: SignedUpdate) -> bytes:
        """Send ``request``; return the answer's bytes."""
        if self.transport == "udp" and len(request.wire) <= UDP_LIMIT:
            answer = await _udp_exchange(self.server, self.port, request.wire, self.timeout)
            if answer is not None:
                return answer
        async with self._current_lock():
            return await self._tcp_exchange(request.wire)

    def _current_lock(self) -> asyncio.Lock:
        """The lock that lets one exchange at a time use the kept connection."""
        loop = asyncio.get_running_loop()
        if self._lock is None or self._loop is not loop:
            # A connection made on another (finished) loop cannot be used here.
            self._loop, self._lock, self._connection = loop, asyncio.Lock(), None
        return self._lock

    async def _tcp_exchange(self, wire: bytes) -> bytes:
        """One request and its answer over the kept connection, opened when needed.

        A kept connection the server has closed meanwhile is opened again once.
        """
        for _ in range(2):
            reused = self._connection is not None
            try:
                async with asyncio.timeout(self.timeout):
                    if self._connection is None:
                        self._connection = await _Connection.open(self.server, self.port)
                    return await self._connection.exchange(wire)
            except (EOFError, ConnectionError) as exc:
                await self.close()
                if not reused:
                    raise exc from None
            except BaseException:
                await self.close()
                raise
        raise AssertionError("unreachable")

    def _check_update(
        self, response: dns.message.Message, signed: bool, zone: str, rtypes: Collection[str]
    ) -> None:
        rcode = response.rcode()
        text = dns.rcode.to_text(rcode)
        if not signed and rcode == dns.rcode.NOERROR:
            raise PermanentBackendError(
                f"{self.label} answered the update of {zone} without a TSIG signature, so its "
                "answer cannot be trusted: check that the server uses the key for this zone",
                every_name=True,
            )
        if not signed:
            raise PermanentBackendError(
                f"{self.label} rejected the update of {zone} signed with TSIG key "
                f"{self.key_name}: {text}, unsigned (the server does not know a key "
                f"{self.key_name} with algorithm {self.algorithm}, the secret differs from "
                "the server's, or the clocks differ by more than 5 minutes; the server's log "
                "says which)",
                every_name=True,
            )
        if rcode == dns.rcode.NOERROR:
            return
        if rcode == dns.rcode.SERVFAIL:
            raise TransientBackendError(
                f"{self.label} failed to apply the update of {zone}: SERVFAIL "
                "(a problem on the server, e.g. an unwritable journal or database: see its log)"
            )
        verb = "refused" if rcode == dns.rcode.REFUSED else "rejected"
        reason = UPDATE_RCODES.get(rcode, "an answer nicupdate does not expect to an update")
        every_name = rcode in ZONE_WIDE_RCODES
        if rcode == dns.rcode.REFUSED and "TXT" in rtypes:
            # A key allowed A and AAAA only is refused for the TXT records (ACME
            # challenges) alone: the reconciler must find the hosts that have them, not
            # give up on every name.
            reason = (
                f"the key may not update TXT records (ACME challenges), or not this zone at "
                f"all: grant it TXT too, in BIND update-policy {{ grant {self.key_name} "
                f"zonesub A AAAA TXT; }}; otherwise {reason}"
            )
            every_name = False
        raise PermanentBackendError(
            f"{self.label} {verb} the update of {zone}: {text} ({reason})", every_name=every_name
        )

    # -- reading the primary back ------------------------------------------------------

    async def _transfer(self, origin: dns.name.Name) -> dns.zone.Zone | None:
        """The whole zone by signed AXFR, or None when the primary does not allow it."""
        zone = dns.zone.Zone(origin)
        query, _ = dns.xfr.make_query(zone, serial=None, keyring=self._key)
        try:
            await dns.asyncquery.inbound_xfr(
                self.server, zone, query, port=self.port, timeout=self.timeout
            )
        except dns.xfr.TransferError:
            return None
        return zone

    async def _query(self, wanted: list[tuple[str, str]]) -> dict[tuple[str, str], tuple[str, ...]]:
        """Ask for each (name, type), QUERY_WINDOW queries at a time on one connection."""
        found: dict[tuple[str, str], tuple[str, ...]] = {}
        async with asyncio.timeout(self.timeout):
            connection = await _Connection.open(self.server, self.port)
        try:
            for start in range(0, len(wanted), QUERY_WINDOW):
                chunk = wanted[start : start + QUERY_WINDOW]
                async with asyncio.timeout(self.timeout):
                    answers = await connection.pipeline([_query_for(n, t) for n, t in chunk])
                for (fqdn, rtype), answer in zip(chunk, answers, strict=True):
                    found[fqdn, rtype] = self._answer_values(answer, fqdn, rtype)
        finally:
            await connection.close()
        return found

    def _answer_values(self, answer: dns.message.Message, fqdn: str, rtype: str) -> tuple[str, ...]:
        rcode = answer.rcode()
        if rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            text = dns.rcode.to_text(rcode)
            if rcode == dns.rcode.SERVFAIL:
                raise TransientBackendError(f"{self.label} answered SERVFAIL for {fqdn} {rtype}")
            raise PermanentBackendError(
                f"{self.label} refused to answer {fqdn} {rtype}: {text} "
                "(allow nicupdate's address to query and transfer the zone)"
            )
        name = dns.name.from_text(fqdn)
        rdtype = dns.rdatatype.from_text(rtype)
        rrset = answer.get_rrset(answer.answer, name, dns.rdataclass.IN, rdtype)
        return _sorted_values(rtype, rrset or ())

    # -- errors ------------------------------------------------------------------------

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """Turn network, DNS and TSIG failures into BackendErrors; log the permanent ones."""
        try:
            try:
                yield
            except BackendError:
                raise
            except (dns.exception.DNSException, OSError, EOFError, _BadAnswer) as exc:
                raise self._translate(exc) from None
        except PermanentBackendError as exc:
            log.warning("%s", exc)
            raise

    def _translate(self, exc: BaseException) -> BackendError:
        key = f"{self.label} rejected the TSIG key {self.key_name}"
        if isinstance(exc, dns.tsig.PeerBadSignature):
            return PermanentBackendError(
                f"{key}: BADSIG (the secret differs from the server's)", every_name=True
            )
        if isinstance(exc, dns.tsig.PeerBadKey):
            return PermanentBackendError(
                f"{key}: BADKEY (the server has no key {self.key_name} with algorithm "
                f"{self.algorithm}: check tsig_key_name and tsig_algorithm)",
                every_name=True,
            )
        if isinstance(exc, dns.tsig.PeerBadTime | dns.tsig.BadTime):
            return PermanentBackendError(
                f"{key}: BADTIME (the clocks of this machine and the server differ by more "
                "than 5 minutes: synchronise them)",
                every_name=True,
            )
        if isinstance(exc, dns.tsig.PeerError):
            return PermanentBackendError(f"{key}: {exc}", every_name=True)
        if isinstance(exc, dns.tsig.BadSignature | dns.tsig.BadKey | dns.message.UnknownTSIGKey):
            return PermanentBackendError(
                f"the answer of {self.label} is not signed with TSIG key {self.key_name} "
                "and this secret: check the server's key",
                every_name=True,
            )
        if isinstance(exc, dns.exception.Timeout | TimeoutError):
            return TransientBackendError(f"{self.label} did not answer within {self.timeout:g} s")
        if isinstance(exc, ConnectionRefusedError):
            return TransientBackendError(
                f"cannot connect to {self.label}: connection refused "
                f"(is it running, and listening on port {self.port}?)"
            )
        if isinstance(exc, EOFError):
            return TransientBackendError(f"{self.label} closed the connection without answering")
        if isinstance(exc, OSError):
            return TransientBackendError(f"cannot talk to {self.label}: {exc.strerror or exc}")
        return TransientBackendError(f"{self.label} sent an answer nicupdate cannot read: {exc}")


# -- the wire ---------------------------------------------------------------------------


class _Key(dns.tsig.Key):
    """A TSIG key whose repr leaves out the secret (dnspython's shows it)."""

    def __repr__(self) -> str:
        return f"<TSIG key {self.name} {self.algorithm}>"


class _BadAnswer(Exception):
    """An answer that does not belong to the request, or cannot be one."""


class _Connection:
    """One TCP connection to the primary: length-prefixed DNS messages, RFC 7766."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, server: str, port: int) -> _Connection:
        reader, writer = await asyncio.open_connection(server, port)
        return cls(reader, writer)

    async def exchange(self, wire: bytes) -> bytes:
        if self.writer.is_closing():
            raise ConnectionResetError("the server closed the connection")
        try:
            self.writer.write(len(wire).to_bytes(2, "big") + wire)
        except RuntimeError:  # uvloop: the transport closed under us
            raise ConnectionResetError("the server closed the connection") from None
        await self.writer.drain()
        answer = await self.receive()
        if answer[:2] != wire[:2]:
            raise _BadAnswer("the answer's ID is not the request's")
        return answer

    async def pipeline(self, queries: list[dns.message.Message]) -> list[dns.message.Message]:
        """Send all ``queries`` at once; their answers, in the same order."""
        for number, query in enumerate(queries):
            query.id = number
        self.writer.write(b"".join(q.to_wire(prepend_length=True) for q in queries))
        await self.writer.drain()
        answers: dict[int, dns.message.Message] = {}
        while len(answers) < len(queries):
            answer = dns.message.from_wire(await self.receive())
            if not 0 <= answer.id < len(queries) or not queries[answer.id].is_response(answer):
                raise _BadAnswer("an answer to a query that was not asked")
            answers[answer.id] = answer
        return [answers[number] for number in range(len(queries))]

    async def receive(self) -> bytes:
        size = int.from_bytes(await self.reader.readexactly(2), "big")
        return await self.reader.readexactly(size)

    async def close(self) -> None:
        with contextlib.suppress(OSError, RuntimeError):  # RuntimeError: its loop has ended
            self.writer.close()
            await self.writer.wait_closed()


class _UdpAnswer(asyncio.DatagramProtocol):
    def __init__(self, request_id: bytes) -> None:
        self.request_id = request_id
        self.answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if data[:2] == self.request_id and not self.answer.done():
            self.answer.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.answer.done():
            self.answer.set_exception(exc)


async def _udp_exchange(server: str, port: int, wire: bytes, timeout: float) -> bytes | None:
    """Send one datagram and wait for its answer; None when the answer is truncated."""
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        lambda: _UdpAnswer(wire[:2]), remote_addr=(server, port)
    )
    try:
        transport.sendto(wire)
        async with asyncio.timeout(timeout):
            answer = await protocol.answer
    finally:
        transport.close()
    truncated = len(answer) > 2 and answer[2] & 0x02
    return None if truncated else answer


def _query_for(fqdn: str, rtype: str) -> dns.message.Message:
    return dns.message.make_query(fqdn, rtype, use_edns=False)


def _sorted_values(rtype: str, rdatas: Any) -> tuple[str, ...]:
    """Canonical addresses, or TXT values (a record's strings joined), sorted."""
    if rtype == "TXT":
        return tuple(sorted(b"".join(r.strings).decode("utf-8", "replace") for r in rdatas))
    return tuple(sorted(str(ipaddress.ip_address(rdata.address)) for rdata in rdatas))


def _zone_values(zone: dns.zone.Zone, fqdn: str, rtype: str) -> tuple[str, ...]:
    rdataset = zone.get_rdataset(dns.name.from_text(fqdn), rtype)
    return _sorted_values(rtype, rdataset or ())


# -- configuration ---------------------------------------------------------------------


class _Settings(TableReader):
    """Reads a ``[backends.NAME]`` table of type rfc2136."""

    def parse(self) -> dict[str, Any]:
        self.check_keys(KNOWN_KEYS, "rfc2136")
        transport = self.choice("transport", ("tcp", "udp"), "tcp")
        size_limit = UDP_LIMIT if transport == "udp" else TCP_LIMIT
        key_name, algorithm, secret = self.key()
        return {
            "server": self.server(),
            "port": int(self.number("port", 53, 1, 65535, integer=True)),
            "key_name": key_name,
            "algorithm": algorithm,
            "secret": secret,
            "timeout": self.number("timeout", 5.0, 0.1, 300),
            "transport": transport,
            "max_records": int(self.number("max_records", 500, 1, 10000, integer=True)),
            "max_message_bytes": int(
                self.number("max_message_bytes", min(60000, size_limit), 512, size_limit, True)
            ),
            "coalesce_window": self.number("coalesce_window", 0.002, 0, 60),
            "drift_check_interval": self.number("drift_check_interval", 3600, 0, math.inf),
        }

    def server(self) -> str:
        value = self.string("server")
        if value is None:
            raise self.error("server", "missing (the primary's IP address)")
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            raise self.error(
                "server", f"{value!r} is not an IP address: give the primary's IPv4 or IPv6 address"
            ) from None

    def algorithm(self, key: str, value: str) -> str:
        name = value.lower().rstrip(".").removesuffix(".sig-alg.reg.int")
        if name not in ALGORITHMS:
            raise self.error(
                key, f"unknown TSIG algorithm {value!r} (use one of {', '.join(ALGORITHMS)})"
            )
        return name

    def key_name(self, key: str, value: str) -> str:
        try:
            dns.name.from_text(value)
        except dns.exception.DNSException:
            raise self.error(key, f"{value!r} is not a valid key name") from None
        return value.rstrip(".")

    # -- the TSIG key

    def key(self) -> tuple[str, str, bytes]:
        """(key name, algorithm, secret) from exactly one of the secret sources."""
        sources = [key for key in SECRET_SOURCES if key in self.table]
        if not sources:
            raise self.error(
                "tsig_secret_file",
                "missing: give the TSIG secret as tsig_secret_file, tsig_key_file or "
                "tsig_secret_env",
            )
        if len(sources) > 1:
            raise self.error(
                sources[1],
                f"give only one of {', '.join(SECRET_SOURCES)} (found {' and '.join(sources)})",
            )
        given_name = self.string("tsig_key_name")
        given_algorithm = self.string("tsig_algorithm")
        if sources[0] == "tsig_key_file":
            return self.key_from_file(given_name, given_algorithm)
        if given_name is None:
            raise self.error(
                "tsig_key_name", "missing (the name of the TSIG key, as the server knows it)"
            )
        name = self.key_name("tsig_key_name", given_name)
        algorithm = self.algorithm("tsig_algorithm", given_algorithm or "hmac-sha256")
        if sources[0] == "tsig_secret_file":
            text = self.read_file("tsig_secret_file")
            where = f"{self.table['tsig_secret_file']} does not hold"
        else:
            text, where = self.read_env("tsig_secret_env"), "the variable does not hold"
        return name, algorithm, self.decode(sources[0], text, where)

    def decode(self, key: str, text: str, where: str) -> bytes:
        try:
            secret = base64.b64decode("".join(text.split()), validate=True)
        except (binascii.Error, ValueError):
            secret = b""
        if not secret:
            hint = (
                " (a file with a key clause is a tsig_key_file)" if key != "tsig_key_file" else ""
            )
            raise self.error(key, f"{where} a base64 secret, as tsig-keygen prints it{hint}")
        return secret

    def key_from_file(
        self, given_name: str | None, given_algorithm: str | None
    ) -> tuple[str, str, bytes]:
        path = self.table["tsig_key_file"]
        text = _strip_comments(self.read_file("tsig_key_file"))
        clauses = {name.rstrip("."): body for name, body in KEY_CLAUSE.findall(text)}
        if not clauses:
            raise self.error(
                "tsig_key_file",
                f'{path} holds no key clause (tsig-keygen\'s output: key "NAME" {{ algorithm ...; '
                'secret "..."; };)',
            )
        if given_name is not None and given_name.rstrip(".") not in clauses:
            raise self.error(
                "tsig_key_name",
                f"{given_name!r} does not match the key in {path} ({', '.join(clauses)})",
            )
        if given_name is None and len(clauses) > 1:
            raise self.error(
                "tsig_key_name", f"missing: {path} holds several keys ({', '.join(clauses)})"
            )
        name = given_name.rstrip(".") if given_name is not None else next(iter(clauses))
        body = clauses[name]
        found_algorithm = re.search(r'algorithm\s+"?([\w.-]+)"?\s*;', body)
        found_secret = re.search(r'secret\s+"([^"]*)"\s*;', body)
        if found_algorithm is None or found_secret is None:
            raise self.error(
                "tsig_key_file", f"the key {name} in {path} lacks its algorithm or secret"
            )
        algorithm = self.algorithm("tsig_key_file", found_algorithm.group(1))
        if (
            given_algorithm is not None
            and self.algorithm("tsig_algorithm", given_algorithm) != algorithm
        ):
            raise self.error(
                "tsig_algorithm",
                f"{given_algorithm!r} does not match the key in {path} ({algorithm})",
            )
        self.key_name("tsig_key_file", name)
        secret = self.decode(
            "tsig_key_file", found_secret.group(1), f"the key {name} in {path} lacks"
        )
        return name, algorithm, secret


KEY_CLAUSE = re.compile(r'\bkey\s+"?([\w.-]+)"?\s*\{(.*?)\}\s*;', re.DOTALL)
# Quoted strings (kept: a base64 secret may hold "//") and the three comment styles.
_STRINGS_OR_COMMENTS = re.compile(r'("[^"]*")|//[^\n]*|#[^\n]*|/\*.*?\*/', re.DOTALL)


def _strip_comments(text: str) -> str:
    return _STRINGS_OR_COMMENTS.sub(lambda m: m.group(1) or " ", text)


FACTORIES["rfc2136"] = Rfc2136Backend.from_table
