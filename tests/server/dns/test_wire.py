"""The fast path gives dnspython's replies (the reference, dns/answer.py), byte for
byte where it counts: every query it takes, parsed, equals the reference's reply."""

from __future__ import annotations

from ipaddress import IPv4Address

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nicupdate_server.config import ZoneSettings
from nicupdate_server.dns.answer import respond
from nicupdate_server.dns.wire import ANSWER, ERROR, NODATA, NXDOMAIN, FastPath
from nicupdate_server.zonedata import AuthoritativeData

ZONE = "dyn.example.test"


def make_data() -> AuthoritativeData:
    data = AuthoritativeData()
    settings_ = ZoneSettings(
        name=ZONE,
        nameservers=(f"ns.{ZONE}", "ns2.elsewhere.example"),
        nameserver_addresses=(IPv4Address("127.0.0.1"),),
    )
    zone = data.add_zone(settings_, serial=2024010101)
    zone.set(f"home.{ZONE}", "A", ("203.0.113.7",))
    zone.set(f"home.{ZONE}", "AAAA", ("2001:db8::7",))
    zone.set(f"v4only.{ZONE}", "A", ("198.51.100.1",))
    zone.set(f"a.b.{ZONE}", "A", ("192.0.2.99",))
    zone.set(f"many.{ZONE}", "A", tuple(f"192.0.2.{i}" for i in range(1, 17)))
    zone.set(f"many.{ZONE}", "AAAA", tuple(f"2001:db8::{i:x}" for i in range(1, 17)))
    zone.set(f"huge.{ZONE}", "AAAA", tuple(f"2001:db8::{i:x}" for i in range(1, 61)))
    # Wildcards (RFC 4592) and ACME TXT records, as hosts have them.
    zone.set_host(f"wild.{ZONE}", {"A": ("192.0.2.80",), "AAAA": ("2001:db8::80",)}, True)
    zone.set(f"sub.wild.{ZONE}", "A", ("192.0.2.82",))  # a name that exists below it
    zone.set_host(f"v4wild.{ZONE}", {"A": ("192.0.2.81",), "TXT": ("token-1", "token-2")}, True)
    zone.set_host(f"acme.{ZONE}", {"TXT": ("t" * 255,)}, False)
    zone.set_host(
        f"manywild.{ZONE}", {"AAAA": tuple(f"2001:db8::{i:x}" for i in range(1, 61))}, True
    )
    other = data.add_zone(ZoneSettings(name="other.test", soa_rname="admin.example.net"), 7)
    other.set("x.other.test", "A", ("192.0.2.1",))
    return data


DATA = make_data()


def reference(wire: bytes) -> bytes | None:
    replied = respond(DATA, wire, max_size=None)
    return None if replied is None else replied[0]


FAST = FastPath(DATA, reference)

NAMES = [
    ZONE,
    f"home.{ZONE}",
    f"v4only.{ZONE}",
    f"a.b.{ZONE}",
    f"b.{ZONE}",  # an empty non-terminal
    f"many.{ZONE}",
    f"huge.{ZONE}",
    f"ns.{ZONE}",
    f"nothing.{ZONE}",
    f"deep.nothing.{ZONE}",
    "other.test",
    "x.other.test",
    "y.other.test",
    "example.com",
    "test",
    f"odd_name-1.{ZONE}",
    f"wild.{ZONE}",
    f"*.wild.{ZONE}",  # the wildcard itself
    f"x.wild.{ZONE}",  # made from it
    f"a.b.wild.{ZONE}",
    f"sub.wild.{ZONE}",  # exists: its own records
    f"x.sub.wild.{ZONE}",  # below a name that exists without a wildcard: NXDOMAIN
    f"y.*.wild.{ZONE}",
    f"odd\\.label.wild.{ZONE}",
    f"x.v4wild.{ZONE}",
    f"_acme-challenge.v4wild.{ZONE}",  # two TXT values, and below a wildcard's parent
    f"x._acme-challenge.v4wild.{ZONE}",
    f"_acme-challenge.acme.{ZONE}",  # one long value
    f"acme.{ZONE}",
    f"x.manywild.{ZONE}",  # too large for UDP
]
TYPES = ["A", "AAAA", "SOA", "NS", "ANY", "MX", "TXT", "DNSKEY", "CNAME", "PTR", "HINFO"]


def same(wire: bytes) -> tuple[bytes, str, bytes] | None:
    """The fast reply to ``wire``, checked against the reference."""
    made = FAST.reply(wire)
    if made is None:
        return None
    expected = reference(wire)
    assert expected is not None
    got, want = dns.message.from_wire(made[0]), dns.message.from_wire(expected)
    assert got == want, f"\n{got}\n--- reference ---\n{want}"
    assert (got.flags, got.rcode(), got.edns, got.ednsflags, got.payload) == (
        want.flags,
        want.rcode(),
        want.edns,
        want.ednsflags,
        want.payload,
    )
    assert got.question[0].name.to_text() == want.question[0].name.to_text()  # 0x20 kept
    assert len(made[0]) <= len(expected) + 2 * 4 + 16  # compression as good, give or take
    return made


def spelled(name: str, pattern: int) -> str:
    return "".join(c.upper() if pattern >> (i % 16) & 1 else c for i, c in enumerate(name))


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(NAMES),
    case=st.integers(0, 0xFFFF),
    rdtype=st.sampled_from(TYPES),
    edns=st.sampled_from([None, 0]),
    do=st.booleans(),
    payload=st.sampled_from([512, 1232, 4096, 600]),
    rd=st.booleans(),
    cd=st.booleans(),
    padding=st.sampled_from([0, 0, 16, 200]),
)
def test_fast_path_matches_the_reference(
    name: str,
    case: int,
    rdtype: str,
    edns: int | None,
    do: bool,
    payload: int,
    rd: bool,
    cd: bool,
    padding: int,
) -> None:
    options = (
        [dns.edns.GenericOption(dns.edns.OptionType.PADDING, b"\0" * padding)] if padding else []
    )
    query = dns.message.make_query(
        spelled(name, case),
        rdtype,
        use_edns=edns if edns is not None else False,
        want_dnssec=do and edns is not None,
        payload=payload,
        options=options if edns is not None else None,
    )
    query.flags = (dns.flags.RD if rd else 0) | (dns.flags.CD if cd else 0)
    same(query.to_wire())


def test_the_common_queries_take_the_fast_path() -> None:
    def kind(name: str, rdtype: str, edns: bool = False) -> tuple[str, bytes] | None:
        query = dns.message.make_query(name, rdtype, use_edns=0 if edns else False)
        made = same(query.to_wire())
        return None if made is None else (made[1], made[2])

    # Answers are counted by question (any spelling), NXDOMAIN by zone, errors by source.
    assert kind(f"Home.{ZONE}", "A") == kind(f"home.{ZONE}", "A") != kind(f"home.{ZONE}", "AAAA")
    assert kind(f"HOME.{ZONE}", "AAAA", edns=True) == kind(f"home.{ZONE}", "AAAA")
    for name, rdtype, edns, expected in (
        (f"home.{ZONE}", "A", False, ANSWER),
        (ZONE, "SOA", False, ANSWER),
        (ZONE, "NS", True, ANSWER),
        (f"v4only.{ZONE}", "AAAA", False, NODATA),
        (f"b.{ZONE}", "A", True, NODATA),
        (f"nothing.{ZONE}", "A", False, NXDOMAIN),
        (f"other.{ZONE}", "MX", True, NXDOMAIN),
        ("example.com", "A", False, ERROR),
    ):
        made = kind(name, rdtype, edns)
        assert made is not None and made[0] == expected, (name, rdtype)
    assert kind(f"nothing.{ZONE}", "A") == (NXDOMAIN, ZONE.encode())
    assert kind("example.com", "A") == (ERROR, b"")
    # A wildcard's answers are the fast path's too, counted by the wildcard (any name
    # below it is one account, as in BIND); ACME TXT records by their question.
    wildcard = b"\x01*\x04wild\x03dyn\x07example\x04test\x00"
    assert kind(f"x.wild.{ZONE}", "A") == (ANSWER, wildcard + b"\x00\x01\x00\x01")
    assert kind(f"A.B.wild.{ZONE}", "AAAA", edns=True) == (ANSWER, wildcard + b"\x00\x1c\x00\x01")
    assert kind(f"x.wild.{ZONE}", "TXT") == (NODATA, wildcard + b"\x00\x10\x00\x01")
    assert kind(f"x.sub.wild.{ZONE}", "A") == (NXDOMAIN, ZONE.encode())
    acme = f"_acme-challenge.v4wild.{ZONE}"
    made = kind(acme, "TXT")
    assert made is not None and made[0] == ANSWER
    assert kind(f"x.{acme}", "TXT") == (NXDOMAIN, ZONE.encode())
    # Too large for UDP, unusual names, transfers: the reference answers.
    assert kind(f"huge.{ZONE}", "AAAA") is None
    assert kind(f"Odd\\.name.{ZONE}", "A") is None
    assert kind(ZONE, "AXFR") is None


def test_answers_follow_the_data() -> None:
    data = make_data()
    fast = FastPath(data, lambda wire: (respond(data, wire, max_size=None) or (None,))[0])
    zone = data.zones[ZONE]

    def ask(name: str, rdtype: str) -> dns.message.Message:
        made = fast.reply(dns.message.make_query(name, rdtype).to_wire())
        assert made is not None
        return dns.message.from_wire(made[0])

    assert ask(ZONE, "SOA").answer[0][0].serial == 2024010101
    zone.set(f"new.{ZONE}", "A", ("192.0.2.55",))
    zone.serial += 1
    assert ask(ZONE, "SOA").answer[0][0].serial == 2024010102  # the apex cache follows
    assert ask(f"new.{ZONE}", "A").answer[0][0].to_text() == "192.0.2.55"
    assert ask(f"nope.{ZONE}", "A").authority[0][0].serial == 2024010102
    zone.set(f"new.{ZONE}", "A", ())
    assert ask(f"new.{ZONE}", "A").rcode() == dns.rcode.NXDOMAIN


def test_padding_is_never_sent_over_udp() -> None:
    """RFC 7830: padding is for encrypted transports; a padded query gets none back."""
    option = dns.edns.GenericOption(dns.edns.OptionType.PADDING, b"\0" * 20)
    for name, rdtype in ((f"home.{ZONE}", "A"), (ZONE, "SOA"), ("example.com", "A")):
        query = dns.message.make_query(name, rdtype, use_edns=0, options=[option])
        reply = dns.message.from_wire(reference(query.to_wire()))  # type: ignore[arg-type]
        assert not reply.options
        made = FAST.reply(query.to_wire())
        if made is not None:
            assert not dns.message.from_wire(made[0]).options


def test_malformed_queries_are_left_to_the_reference() -> None:
    good = dns.message.make_query(f"home.{ZONE}", "A", use_edns=0).to_wire()
    assert FAST.reply(good) is not None
    for broken in (
        good[:-1],  # a short OPT record
        good + b"\0",  # trailing garbage
        good[:10] + b"\x00\x02" + good[12:],  # two additional records claimed
        good[:4] + b"\x00\x02" + good[6:],  # two questions claimed
        good[:2] + bytes([good[2] | 0x80]) + good[3:],  # a response
        good[:12] + b"\xc0\x0c" + good[-15:],  # a compression pointer in the question
    ):
        assert FAST.reply(broken) is None


def test_kept_answers_follow_every_change() -> None:
    """Repeated questions are answered from what the fast path kept, until the zone's
    records or serial change (or the zone is reloaded)."""
    data = make_data()
    fast = FastPath(data, lambda wire: (respond(data, wire, max_size=None) or (None,))[0])
    zone = data.zones[ZONE]

    def ask(name: str, rdtype: str, **kwargs: object) -> dns.message.Message:
        query = dns.message.make_query(name, rdtype, **kwargs)  # type: ignore[arg-type]
        made = fast.reply(query.to_wire())
        assert made is not None
        reply = dns.message.from_wire(made[0])
        assert reply.id == query.id and reply.question == query.question
        return reply

    for _ in range(3):  # the first builds it, the others find it kept
        assert ask(f"HOME.{ZONE}", "A").answer[0][0].to_text() == "203.0.113.7"
        assert ask(f"home.{ZONE}", "A", use_edns=0, want_dnssec=True).ednsflags & dns.flags.DO
        assert not ask(f"home.{ZONE}", "A", use_edns=0).ednsflags & dns.flags.DO
    zone.set(f"home.{ZONE}", "A", ("203.0.113.8",))  # no serial change: still seen
    assert ask(f"home.{ZONE}", "A").answer[0][0].to_text() == "203.0.113.8"
    assert ask(f"v4only.{ZONE}", "AAAA").authority[0][0].serial == 2024010101
    zone.serial += 5
    assert ask(f"v4only.{ZONE}", "AAAA").authority[0][0].serial == 2024010106
    reloaded = make_data()
    reloaded.zones[ZONE].set(f"home.{ZONE}", "A", ("198.51.100.200",))
    data.zones = reloaded.zones  # a reloaded configuration: new zone objects
    assert ask(f"home.{ZONE}", "A").answer[0][0].to_text() == "198.51.100.200"
    # A kept answer too large for a smaller UDP size is made again (and truncated).
    assert ask(f"many.{ZONE}", "AAAA", use_edns=0, payload=4096).answer
    query = dns.message.make_query(f"many.{ZONE}", "AAAA")
    made = fast.reply(query.to_wire())
    assert made is None or len(made[0]) <= 512
