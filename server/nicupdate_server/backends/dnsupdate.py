"""The UPDATE messages (RFC 2136) the rfc2136 backend sends, on the wire and TSIG-signed.

These messages have one shape: a zone, and for each changed name and type either
"delete the record set, add these records" (a replace) or "delete the record set". The
records are A and AAAA addresses, and TXT values (each one character-string: a length
byte and at most 255 bytes of UTF-8); an owner may be a wildcard (``*.<fqdn>``).
dnspython's :class:`dns.update.UpdateMessage` builds them from rdata objects and renders
them generically, which costs about 60 µs per changed name: at full load a third of
what an update costs the server, which made the DNS side the bottleneck. This module
writes the same bytes directly (owner names compressed against the zone name) and signs
them with dnspython's :func:`dns.tsig.sign`; answers are read with dnspython too.
tests/server/test_dnsupdate.py checks that dnspython reads every message back, signature
included, as the one ``UpdateMessage`` makes.
"""

from __future__ import annotations

import secrets
import socket
import struct
import time
from dataclasses import dataclass

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TSIG
import dns.tsig

from .base import RecordChange

HEADER = struct.Struct("!HHHHHH")  # id, flags, zone, prerequisite, update, additional
RECORD = struct.Struct("!HHIH")  # type, class, TTL, data length
POINTER_TO_ZONE = b"\xc0\x0c"  # the zone name comes right after the 12-byte header
FLAGS = dns.opcode.to_flags(dns.opcode.UPDATE)
FUDGE = 300  # seconds of clock difference the primary accepts (RFC 8945's advice)
TYPES = {"A": dns.rdatatype.A, "AAAA": dns.rdatatype.AAAA, "TXT": dns.rdatatype.TXT}
FAMILIES = {"A": socket.AF_INET, "AAAA": socket.AF_INET6}
MAX_STRING = 255  # bytes in one DNS character-string (RFC 1035 3.3)
IN, ANY = dns.rdataclass.IN, dns.rdataclass.ANY
MAX_NAME = 255


class BadChange(ValueError):
    """A change this message cannot carry (a name outside the zone, a bad value)."""


# One change as update-section bytes: (the bytes, resource records in them, its type).
# A plain tuple: this runs once per changed name at full load.
Encoded = tuple[bytes, int, str]


@dataclass(frozen=True)
class SignedUpdate:
    """One UPDATE message ready to send, and what checks its answer."""

    wire: bytes
    id: int
    mac: bytes  # the request's TSIG MAC: the answer's signature covers it
    rtypes: frozenset[str] = frozenset()  # the types of the record sets it changes

    def read_answer(self, wire: bytes, key: dns.tsig.Key) -> tuple[dns.message.Message, bool]:
        """The primary's answer, its signature checked; and whether it was signed.

        PowerDNS answers an update signed with a key it does not accept without a
        signature, so an unsigned answer is returned (flagged) instead of raising.
        Raises :class:`dns.exception.DNSException` for an answer that is not one.
        """
        try:
            answer = dns.message.from_wire(wire, keyring=key, request_mac=self.mac)
            signed = True
        except dns.exception.FormError:
            answer = dns.message.from_wire(wire, keyring=False)
            if answer.had_tsig:
                raise
            signed = False
        if (
            answer.id != self.id
            or not answer.flags & dns.flags.QR
            or answer.opcode() != dns.opcode.UPDATE
        ):
            raise dns.exception.FormError(  # type: ignore[no-untyped-call]
                "the answer is not an answer to this update"
            )
        return answer, signed


class UpdateWriter:
    """Collects the record changes of one zone into one UPDATE message."""

    def __init__(self, zone: str, ttl: int, key: dns.tsig.Key) -> None:
        origin = dns.name.from_text(zone)
        self.zone = origin.to_text(omit_final_dot=True).lower()
        self._suffix = "." + self.zone
        self._zone_wire = _wire(origin)
        self._ttl = ttl
        self._key = key
        self._body = bytearray()
        self.records = 0  # record sets changed
        self._count = 0  # resource records in the update section
        self._rtypes: set[str] = set()
        mac_size = dns.tsig.mac_sizes.get(key.algorithm, 64)
        self._signature_size = len(_wire(key.name)) + RECORD.size + len(_wire(key.algorithm))
        self._signature_size += 16 + mac_size  # times, fudge, sizes, ids, error, the MAC

    @property
    def size(self) -> int:
        """Bytes of the message once signed."""
        return HEADER.size + len(self._zone_wire) + 4 + len(self._body) + self._signature_size

    def encode(self, change: RecordChange) -> Encoded:
        """``change`` as update-section bytes.

        Every record names its owner as the labels below the zone followed by a pointer
        to the zone name, so the bytes do not depend on where they go in the message."""
        rtype = change.rtype
        rdtype = TYPES[rtype]
        owner = self._owner(change.fqdn)
        parts = [owner, RECORD.pack(rdtype, ANY, 0, 0)]  # delete the record set
        family = FAMILIES.get(rtype)
        for value in change.addresses:  # then add each record
            if family is None:
                data = _character_string(change.fqdn, value)
            else:
                try:
                    data = socket.inet_pton(family, value)
                except (OSError, ValueError):
                    raise BadChange(f"{value!r} is not an {rtype} address") from None
            parts += (owner, RECORD.pack(rdtype, IN, self._ttl, len(data)), data)
        return b"".join(parts), 1 + len(change.addresses), rtype

    def add(self, encoded: Encoded) -> None:
        """Append a change :meth:`encode` made."""
        data, count, rtype = encoded
        self._body += data
        self._count += count
        self.records += 1
        self._rtypes.add(rtype)

    def sign(self) -> SignedUpdate:
        message_id = secrets.randbits(16)
        question = self._zone_wire + struct.pack("!HH", dns.rdatatype.SOA, IN)
        unsigned = HEADER.pack(message_id, FLAGS, 1, 0, self._count, 0) + question + self._body
        template = dns.rdtypes.ANY.TSIG.TSIG(  # type: ignore[no-untyped-call]
            ANY, dns.rdatatype.TSIG, self._key.algorithm, 0, FUDGE, b"", message_id, 0, b""
        )
        tsig, _ = dns.tsig.sign(  # type: ignore[no-untyped-call]
            unsigned, self._key, template, int(time.time())
        )
        rdata = tsig.to_wire()
        signature = _wire(self._key.name) + RECORD.pack(dns.rdatatype.TSIG, ANY, 0, len(rdata))
        wire = (
            HEADER.pack(message_id, FLAGS, 1, 0, self._count, 1)
            + question
            + self._body
            + signature
            + rdata
        )
        return SignedUpdate(wire, message_id, tsig.mac, frozenset(self._rtypes))

    def _owner(self, fqdn: str) -> bytes:
        """The owner name: its labels below the zone, then a pointer to the zone name."""
        name = fqdn.rstrip(".").lower()
        if name == self.zone:
            return POINTER_TO_ZONE
        if not name.endswith(self._suffix):
            raise BadChange(f"{fqdn} is not inside zone {self.zone}")
        try:
            labels = name[: -len(self._suffix)].encode("ascii").split(b".")
        except UnicodeEncodeError:
            raise BadChange(f"{fqdn} is not an ASCII (IDNA) name") from None
        if any(not 0 < len(label) < 64 for label in labels) or (
            sum(len(label) + 1 for label in labels) + len(self._zone_wire) > MAX_NAME
        ):
            raise BadChange(f"{fqdn} is not a valid DNS name")
        return b"".join(bytes((len(label),)) + label for label in labels) + POINTER_TO_ZONE


def _character_string(fqdn: str, value: str) -> bytes:
    """The record data of one TXT value: one character-string, a length byte and UTF-8."""
    data = value.encode("utf-8")
    if len(data) > MAX_STRING:
        raise BadChange(
            f"a TXT value of {fqdn} is {len(data)} bytes long; DNS takes at most "
            f"{MAX_STRING} in one string"
        )
    return bytes((len(data),)) + data


def _wire(name: dns.name.Name) -> bytes:
    wire = name.to_wire()
    assert wire is not None  # None only when writing to a file
    return wire
