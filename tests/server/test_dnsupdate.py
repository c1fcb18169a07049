"""The UPDATE messages the rfc2136 backend writes itself, read back by dnspython: A and
AAAA at host and wildcard names, TXT (ACME tokens, and any text) at _acme-challenge names."""

from __future__ import annotations

import base64
import os

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import dns.tsig
import dns.update
import pytest
from nicupdate_server.backends.base import RecordChange
from nicupdate_server.backends.dnsupdate import BadChange, SignedUpdate, UpdateWriter
from nicupdate_server.backends.rfc2136 import ALGORITHMS

ZONE = "dyn.example.test"


def make_key(algorithm: str = "hmac-sha256", name: str = "ddns-key") -> dns.tsig.Key:
    return dns.tsig.Key(name, base64.b64encode(os.urandom(32)).decode(), ALGORITHMS[algorithm])


TOKENS = (
    "LHDhK3oGRvkiefQnx7OOczTY5Tic_xZ6HcMOc_gmtoM",
    "Cvq0uV9ONeV2wpM1eQ9Jm-K4_7xQ0GJdSd8AiEpM-Ho",
)
TEXTS = ('a "quoted" word; \\ and é', "", "x" * 255)  # any text, up to 255 bytes
CHANGES = [
    RecordChange(f"home.{ZONE}", "A", ("203.0.113.7", "203.0.113.8")),
    RecordChange(f"home.{ZONE}", "AAAA", ("2001:db8::7",)),
    RecordChange(f"*.home.{ZONE}", "A", ("203.0.113.7", "203.0.113.8")),  # its wildcard
    RecordChange(f"*.home.{ZONE}", "AAAA", ()),
    RecordChange(f"_acme-challenge.home.{ZONE}", "TXT", TOKENS),  # two ACME tokens
    RecordChange(f"_acme-challenge.gone.{ZONE}", "TXT", ()),
    RecordChange(f"_acme-challenge.text.{ZONE}", "TXT", TEXTS),
    RecordChange(f"Office.Branch.{ZONE}.", "A", ("198.51.100.1",)),
    RecordChange(f"gone.{ZONE}", "AAAA", ()),
    RecordChange(ZONE, "A", ("192.0.2.1",)),  # the zone apex
    RecordChange(f"*.{ZONE}", "AAAA", ("2001:db8::1",)),  # the apex's wildcard
]


def written(changes: list[RecordChange], key: dns.tsig.Key, ttl: int = 60) -> SignedUpdate:
    writer = UpdateWriter(ZONE, ttl, key)
    for change in changes:
        writer.add(writer.encode(change))
    return writer.sign()


def reference(changes: list[RecordChange], key: dns.tsig.Key, ttl: int = 60) -> dns.message.Message:
    """The same message built by dnspython's UpdateMessage."""
    message = dns.update.UpdateMessage(ZONE, keyring=key)
    for change in changes:
        name = dns.name.from_text(change.fqdn.lower())
        if change.addresses and change.rtype == "TXT":  # each value one string, as it is
            rdatas = [txt(value) for value in change.addresses]
            message.replace(name, ttl, *rdatas)
        elif change.addresses:
            message.replace(name, ttl, change.rtype, *change.addresses)
        else:
            message.delete(name, change.rtype)
    return dns.message.from_wire(message.to_wire(), keyring=key)


def txt(value: str) -> dns.rdtypes.ANY.TXT.TXT:
    return dns.rdtypes.ANY.TXT.TXT(dns.rdataclass.IN, dns.rdatatype.TXT, [value.encode()])


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
def test_dnspython_reads_the_message_as_the_one_it_would_make(algorithm: str) -> None:
    key = make_key(algorithm)
    signed = written(CHANGES, key)
    # from_wire checks the TSIG signature with the key: a wrong one raises.
    ours = dns.message.from_wire(signed.wire, keyring=key)
    theirs = reference(CHANGES, key)
    assert isinstance(ours, dns.update.UpdateMessage)
    assert ours.opcode() == dns.opcode.UPDATE and ours.id == signed.id
    assert ours.zone == theirs.zone  # type: ignore[attr-defined]
    assert ours.prerequisite == []  # type: ignore[attr-defined]
    assert [r.to_text() for r in ours.update] == [r.to_text() for r in theirs.update]  # type: ignore[attr-defined]
    assert ours.had_tsig and ours.keyname == key.name and ours.mac == signed.mac
    with pytest.raises(dns.tsig.BadSignature):
        dns.message.from_wire(signed.wire, keyring=make_key(algorithm))


def test_txt_values_and_wildcards_read_back_as_written() -> None:
    key = make_key()
    ours = dns.message.from_wire(written(CHANGES, key).wire, keyring=key)
    added: dict[str, list[str]] = {}
    for rrset in ours.update:  # type: ignore[attr-defined]
        if rrset.rdtype == dns.rdatatype.TXT and rrset.deleting is None:
            values = added.setdefault(rrset.name.to_text(), [])
            values += (b"".join(rdata.strings).decode() for rdata in rrset)
    assert {name: sorted(values) for name, values in added.items()} == {
        f"_acme-challenge.home.{ZONE}.": sorted(TOKENS),
        f"_acme-challenge.text.{ZONE}.": sorted(TEXTS),
    }
    wildcard = [r for r in ours.update if r.name.to_text() == f"*.home.{ZONE}."]  # type: ignore[attr-defined]
    assert [r.to_text() for r in wildcard] == [
        f"*.home.{ZONE}. ANY A",  # delete the set, then add each address
        f"*.home.{ZONE}. 60 IN A 203.0.113.7",
        f"*.home.{ZONE}. 60 IN A 203.0.113.8",
        f"*.home.{ZONE}. ANY AAAA",
    ]


def test_the_message_says_which_types_it_changes() -> None:
    key = make_key()
    assert written(CHANGES[:2], key).rtypes == {"A", "AAAA"}
    assert written(CHANGES, key).rtypes == {"A", "AAAA", "TXT"}


def test_the_size_is_known_before_signing() -> None:
    for algorithm in ALGORITHMS:
        writer = UpdateWriter(ZONE, 60, make_key(algorithm, name="a.longer.key.name"))
        for change in CHANGES:
            writer.add(writer.encode(change))
        assert writer.records == len(CHANGES)
        assert writer.size == len(writer.sign().wire), algorithm


def test_ttl_is_the_zones() -> None:
    key = make_key()
    ours = dns.message.from_wire(written(CHANGES[:1], key, ttl=300).wire, keyring=key)
    added = [r for r in ours.update if r.deleting is None]  # type: ignore[attr-defined]
    assert [r.to_text() for r in added] == [
        f"home.{ZONE}. 300 IN A 203.0.113.7",
        f"home.{ZONE}. 300 IN A 203.0.113.8",
    ]


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (RecordChange("home.example.org", "A", ("192.0.2.1",)), "not inside zone"),
        (RecordChange(f"x{ZONE}", "A", ("192.0.2.1",)), "not inside zone"),
        (RecordChange(f"home.{ZONE}", "A", ("2001:db8::1",)), "not an A address"),
        (RecordChange(f"home.{ZONE}", "AAAA", ("192.0.2.1",)), "not an AAAA address"),
        (RecordChange(f"{'a' * 64}.{ZONE}", "A", ("192.0.2.1",)), "not a valid DNS name"),
        (RecordChange(f"a..b.{ZONE}", "A", ("192.0.2.1",)), "not a valid DNS name"),
        (RecordChange(f"{'abcdefgh.' * 30}{ZONE}", "A", ()), "not a valid DNS name"),
        (RecordChange(f"bücher.{ZONE}", "A", ()), "not an ASCII"),
        (
            RecordChange(f"_acme-challenge.home.{ZONE}", "TXT", ("x" * 256,)),
            "is 256 bytes long; DNS takes at most 255 in one string",
        ),
        (RecordChange(f"_acme-challenge.home.{ZONE}", "TXT", ("é" * 128,)), "256 bytes long"),
    ],
)
def test_changes_a_message_cannot_carry_are_refused(change: RecordChange, problem: str) -> None:
    writer = UpdateWriter(ZONE, 60, make_key())
    with pytest.raises(BadChange, match=problem):
        writer.encode(change)
    assert writer.records == 0


def answer_to(signed: SignedUpdate, key: dns.tsig.Key, rcode: int = dns.rcode.NOERROR) -> bytes:
    request = dns.message.from_wire(signed.wire, keyring=key)
    response = dns.message.make_response(request)  # signed with the request's key and MAC
    response.set_rcode(rcode)
    return response.to_wire()


def test_a_signed_answer_is_checked_against_the_request() -> None:
    key = make_key()
    signed = written(CHANGES, key)
    answer, was_signed = signed.read_answer(answer_to(signed, key, dns.rcode.REFUSED), key)
    assert was_signed and answer.rcode() == dns.rcode.REFUSED
    # An answer to another message (its MAC covers another request MAC) is refused.
    other = written(CHANGES, key)
    with pytest.raises(dns.exception.DNSException):
        signed.read_answer(answer_to(other, key), key)


def test_an_unsigned_answer_is_flagged() -> None:
    key = make_key()
    signed = written(CHANGES, key)
    # What PowerDNS sends back for a key it does not know: the rcode, and no signature.
    response = dns.update.UpdateMessage(ZONE, id=signed.id)
    response.flags |= dns.flags.QR
    response.set_rcode(dns.rcode.NOTAUTH)
    answer, was_signed = signed.read_answer(response.to_wire(), key)
    assert not was_signed and answer.rcode() == dns.rcode.NOTAUTH


def test_an_answer_with_another_id_is_refused() -> None:
    key = make_key()
    signed = written(CHANGES, key)
    wire = bytearray(answer_to(signed, key))
    query = dns.message.make_query(ZONE, "SOA")
    query.id = signed.id
    response = dns.message.make_response(query)  # right ID, but a QUERY, not an UPDATE
    with pytest.raises(dns.exception.DNSException):
        signed.read_answer(response.to_wire(), key)
    wire[0] ^= 0xFF  # another ID: the signature no longer matches either
    with pytest.raises(dns.exception.DNSException):
        signed.read_answer(bytes(wire), key)
