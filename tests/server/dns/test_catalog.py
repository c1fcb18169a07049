"""The catalog zone (RFC 9432, version 2): its records, member ids that never change,
a serial that rises with the membership and never goes back, and the zone as a
secondary receives it by AXFR (and IXFR) through :class:`Transfers`."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import dns.name
import dns.query
import dns.rdatatype
import dns.xfr
import dns.zone
import pytest
from nicupdate_server.config import ZoneSettings
from nicupdate_server.dns.catalog import CatalogZone, member_id

from tests.server.dns.test_transfer import (
    HOST,
    KEY,
    TIMEOUT,
    ZONE,
    Primary,
    serving,
    start_transfers,
)
from tests.server.secondaries import Kind, running_secondary

CATALOG = "catalog.invalid"


@pytest.fixture
def primary() -> Iterator[Primary]:
    yield from serving()


def test_member_ids_are_a_hash_of_the_name_and_never_change() -> None:
    wire = b"\x03dyn\x07example\x04test\x00"
    assert member_id("dyn.example.test") == hashlib.sha256(wire).hexdigest()[:32]
    assert member_id("DYN.example.test") == member_id("dyn.example.test")
    assert member_id("other.example") != member_id("dyn.example.test")
    assert len(member_id("dyn.example.test")) <= 63  # one label


def test_the_records_are_those_of_a_version_2_catalog() -> None:
    catalog = CatalogZone(CATALOG, ["b.example", "a.example", "a.example"], now=5)
    text = "\n".join(rrset.to_text() for rrset in catalog.rrsets())
    zone = dns.zone.from_text(text, origin=CATALOG)
    soa = zone.get_soa()
    assert soa.serial == 5
    ns = zone.get_rdataset("@", "NS")
    assert ns is not None and [r.target.to_text() for r in ns] == ["invalid."]
    version = zone.get_rdataset("version", "TXT")
    assert version is not None and [r.strings for r in version] == [(b"2",)]
    members = {
        name.to_text(): rdata.target.to_text() for name, _, rdata in zone.iterate_rdatas("PTR")
    }
    assert members == {
        f"{member_id('a.example')}.zones": "a.example.",
        f"{member_id('b.example')}.zones": "b.example.",
    }
    assert len(list(zone.iterate_rdatas())) == 5  # SOA, NS, TXT and one PTR per member


def test_the_serial_rises_with_the_membership_and_never_goes_back() -> None:
    catalog = CatalogZone(CATALOG, ["a.example"], now=1000)
    assert not catalog.set_members(["a.example"], now=2000)
    assert catalog.serial == 1000  # nothing changed, nothing to transfer
    assert catalog.set_members(["a.example", "b.example"], now=2000)
    assert catalog.serial == 2000
    assert catalog.set_members(["b.example"], now=1500)  # the clock went back
    assert catalog.serial == 2001
    restarted = CatalogZone(CATALOG, ["b.example"], now=2500)
    assert restarted.serial > catalog.serial
    assert catalog.soa()[0].serial == 2001


def test_a_secondary_transfers_the_catalog(primary: Primary) -> None:
    catalog = CatalogZone(CATALOG, [ZONE, "other.example"], now=77)
    start_transfers(primary, catalog=catalog)
    zone = dns.zone.Zone(f"{CATALOG}.")
    query, _ = dns.xfr.make_query(zone, serial=None, keyring=KEY)
    dns.query.inbound_xfr(HOST, zone, query, port=primary.tcp_port, timeout=TIMEOUT)
    expected = dns.zone.from_text(
        "\n".join(rrset.to_text() for rrset in catalog.rrsets()), origin=CATALOG
    )
    assert zone == expected

    query, _ = dns.xfr.make_query(zone, serial=0, keyring=KEY)  # IXFR at 77: current
    dns.query.inbound_xfr(HOST, zone, query, port=primary.tcp_port, timeout=TIMEOUT)
    assert zone == expected

    primary.run(lambda: catalog.set_members([ZONE], now=78))
    query, _ = dns.xfr.make_query(zone, serial=0, keyring=KEY)  # IXFR: the whole zone
    dns.query.inbound_xfr(HOST, zone, query, port=primary.tcp_port, timeout=TIMEOUT)
    assert zone.get_soa().serial == 78
    members = [rdata.target.to_text() for _, _, rdata in zone.iterate_rdatas("PTR")]
    assert members == [f"{ZONE}."]
    assert primary.transfers is not None
    assert primary.transfers.soa(CATALOG) == catalog.soa()
    assert dns.name.from_text(CATALOG) == catalog.origin
    assert dns.rdatatype.SOA == catalog.soa().rdtype


@pytest.mark.parametrize("kind", ["bind", "knot"])
def test_a_secondary_serves_the_member_zones_the_catalog_lists(
    primary: Primary, tmp_path: Path, kind: Kind
) -> None:
    """BIND and Knot, configured from deploy/secondaries, read the catalog and transfer
    a member zone that their configuration does not name."""
    if shutil.which({"bind": "named", "knot": "knotd"}[kind]) is None:
        pytest.skip(f"{kind} is not installed")
    member = "member.example"
    zone = primary.run(
        lambda: primary.data.add_zone(
            ZoneSettings(name=member),
            2024060101,
            [(f"www.{member}", {"A": ("192.0.2.80",)}, False)],
        )
    )
    catalog = CatalogZone(CATALOG, [member], now=500)
    start_transfers(primary, catalog=catalog)
    with running_secondary(kind, tmp_path, primary.tcp_port, [ZONE], KEY, CATALOG) as secondary:
        secondary.wait_serial(member, zone.serial, timeout=TIMEOUT)  # (Knot serves no catalog)
        answer = secondary.query(f"www.{member}", "A")
        assert [rdata.to_text() for rdata in answer.answer[0]] == ["192.0.2.80"]
