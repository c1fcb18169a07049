"""The BIND, Knot and NSD secondaries start from the shipped examples and follow a real
primary (BIND, from tests/server/primaries.py): AXFR first, then NOTIFY and IXFR."""

from __future__ import annotations

import base64
import re
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path

import dns.query
import dns.rcode
import dns.tsig
import dns.update
import pytest

from tests.server.primaries import Primary, free_port, running_bind
from tests.server.process import wait_for
from tests.server.secondaries import (
    CONFIGS,
    EXAMPLES,
    KINDS,
    Kind,
    Secondary,
    nsd_config,
    parse_transfers,
    running_secondary,
)

KEY_NAME = "xfr-key"
CATALOG = "catalog.invalid"
MEMBERS = ("one.example.test", "two.example.test")
# A secret that no test server has (base64 of 32 bytes).
WRONG_SECRET = base64.b64encode(b"nicupdate-test-not-the-secret-!!").decode()
# How long a change may take to reach a secondary: NOTIFY at once, NSD reloads after
# at most a second (xfrd-reload-timeout).
PROPAGATION = 5.0
# named applies a catalog change at most every min-update-interval (5 s by default)
# after the one before.
CATALOG_INTERVAL = 5.0
# What each secondary logs when the primary rejects the signature of its request.
TSIG_FAILURE = {
    "bind": "refresh: failure trying primary 127.0.0.1",  # ...: tsig indicates error
    "knot": "failed (failed to verify TSIG)",
    "nsd": "bad tsig signature",
}


# -- the primary -----------------------------------------------------------------------


def serve_secondaries(primary: Primary, ports: Iterable[int], catalog: str | None = None) -> None:
    """Let the BIND primary NOTIFY the secondaries on ``ports`` at once (signed with its
    key) and answer IXFR with the changes however small the zone; with ``catalog``, also
    serve that catalog zone (members: the primary's ``more_zones``). Restarts it."""
    notify = " ".join(f"127.0.0.1 port {port} key {primary.key_name};" for port in ports)
    allow = f"allow-transfer {{ key {primary.key_name}; }};"
    config = primary.directory / "named.conf"
    text = config.read_text()
    if catalog is not None:
        (primary.directory / f"{catalog}.zone").write_text(catalog_zone(primary.more_zones[:1]))
        text += (
            f'\nzone "{catalog}" {{\n    type primary;\n'
            f'    file "{primary.directory}/{catalog}.zone";\n'
            f"    update-policy {{ grant {primary.key_name} zonesub ANY; }};\n"
            f"    {allow}\n}};\n"
        )
    zones = 1 + len(primary.more_zones) + (catalog is not None)
    assert text.count(allow) == zones, "the primary's zone clauses changed: update this helper"
    text = text.replace(
        allow,
        f"{allow}\n    notify explicit;\n    also-notify {{ {notify} }};\n"
        "    notify-delay 0;\n    max-ixfr-ratio unlimited;",
    )
    config.write_text(text)
    primary.stop()
    primary.start()


def catalog_zone(members: Iterable[str]) -> str:
    """An RFC 9432 catalog zone (schema version 2) listing ``members``."""
    lines = [
        "$TTL 0",
        "@ IN SOA invalid. invalid. 1 3600 600 2147483646 0",
        "@ IN NS invalid.",
        'version IN TXT "2"',
    ]
    lines += [f"m{index}.zones IN PTR {zone}." for index, zone in enumerate(members)]
    return "\n".join(lines) + "\n"


def served_transfers(primary: Primary, zone: str) -> list[str]:
    """What the primary says it sent for ``zone``: "AXFR" or "IXFR" per transfer (an IXFR
    answered with the whole zone counts as AXFR)."""
    pattern = re.compile(
        rf"transfer of '{re.escape(zone)}/IN': (AXFR|IXFR|AXFR-style IXFR) started"
    )
    found = pattern.findall(primary.stderr_path.read_text(errors="replace"))
    return ["IXFR" if what == "IXFR" else "AXFR" for what in found]


def key_of(primary: Primary, secret: str | None = None) -> dns.tsig.Key:
    return dns.tsig.Key(primary.key_name, secret or primary.secret, primary.algorithm)


@pytest.fixture
def primary(tmp_path: Path) -> Iterator[Primary]:
    with running_bind(tmp_path / "primary", key_name=KEY_NAME) as running:
        yield running


@pytest.fixture(params=KINDS)
def secondary(
    request: pytest.FixtureRequest, primary: Primary, tmp_path: Path
) -> Iterator[Secondary]:
    """Each kind of secondary of the primary's zone, NOTIFYed by it."""
    port = free_port()
    serve_secondaries(primary, [port])
    key = key_of(primary)
    with running_secondary(
        request.param, tmp_path, primary.port, [primary.zone], key, port=port
    ) as running:
        yield running


def addresses(secondary: Secondary, name: str) -> list[str]:
    answer = secondary.query(name, "A")
    return sorted(rdata.to_text() for rrset in answer.answer for rdata in rrset)


# -- tests -----------------------------------------------------------------------------


def test_follows_the_primary_by_axfr_then_notify_and_ixfr(
    primary: Primary, secondary: Secondary
) -> None:
    zone = primary.zone
    assert secondary.wait_serial(zone, 1) == 1
    answer = secondary.query(zone, "NS")
    assert answer.rcode() == dns.rcode.NOERROR
    assert [rdata.to_text() for rdata in answer.answer[0]] == ["ns1.example.com."]

    primary.edit(f"h1.{zone}", "A", ["192.0.2.10"])
    assert secondary.wait_serial(zone, 2, timeout=PROPAGATION) == 2
    assert addresses(secondary, f"h1.{zone}") == ["192.0.2.10"]
    primary.edit(f"h1.{zone}", "A", ["192.0.2.11", "192.0.2.12"])
    secondary.wait_serial(zone, 3, timeout=PROPAGATION)
    assert addresses(secondary, f"h1.{zone}") == ["192.0.2.11", "192.0.2.12"]

    assert secondary.transfers() == ["AXFR", "IXFR", "IXFR"]
    assert secondary.transfers(zone) == ["AXFR", "IXFR", "IXFR"]
    assert secondary.transfers("other.example.test") == []
    assert served_transfers(primary, zone) == ["AXFR", "IXFR", "IXFR"]


def test_restarted_secondary_keeps_its_copy_and_catches_up_by_ixfr(
    primary: Primary, secondary: Secondary
) -> None:
    zone = primary.zone
    secondary.wait_serial(zone, 1)
    pid, port = secondary.pid, secondary.port
    secondary.stop()
    primary.edit(f"h1.{zone}", "A", ["192.0.2.21"])
    primary.edit(f"h2.{zone}", "A", ["192.0.2.22"])

    secondary.start()
    assert secondary.pid != pid
    assert secondary.port == port
    assert secondary.wait_serial(zone, 1) in (1, 3)  # its own copy, or caught up already
    # A change NOTIFYs it; whichever serial it had, it now asks for the difference.
    primary.edit(f"h3.{zone}", "A", ["192.0.2.23"])
    secondary.wait_serial(zone, 4, timeout=PROPAGATION)
    assert [addresses(secondary, f"h{n}.{zone}") for n in (1, 2, 3)] == [
        ["192.0.2.21"],
        ["192.0.2.22"],
        ["192.0.2.23"],
    ]
    transfers = secondary.transfers(zone)
    assert transfers[0] == "AXFR"
    assert transfers[1:] and set(transfers[1:]) == {"IXFR"}, transfers
    assert served_transfers(primary, zone) == transfers


@pytest.mark.parametrize("kind", KINDS)
def test_a_secondary_with_the_wrong_secret_gets_no_zone(
    kind: Kind, primary: Primary, tmp_path: Path
) -> None:
    port = free_port()
    serve_secondaries(primary, [port])
    key = key_of(primary, secret=WRONG_SECRET)
    with running_secondary(kind, tmp_path, primary.port, [primary.zone], key, port=port) as wrong:
        # The primary refuses its request, and it says why.
        wait_for(
            lambda: "tsig verify failure" in primary.stderr_path.read_text(errors="replace"),
            timeout=10,
            what=f"the primary to refuse {kind}'s request",
        )
        wait_for(
            lambda: TSIG_FAILURE[kind] in wrong.log_text(),
            timeout=10,
            what=f"{kind} to log its failed transfer",
        )
        assert wrong.serial(primary.zone) is None
        assert wrong.query(primary.zone, "SOA").rcode() != dns.rcode.NOERROR
        assert wrong.transfers() == []
        assert served_transfers(primary, primary.zone) == []


@pytest.mark.parametrize("kind", ["bind", "knot"])
def test_catalog_members_are_provisioned_without_config_changes(kind: Kind, tmp_path: Path) -> None:
    with running_bind(tmp_path / "primary", key_name=KEY_NAME, more_zones=MEMBERS) as primary:
        port = free_port()
        serve_secondaries(primary, [port], catalog=CATALOG)
        key = key_of(primary)
        with running_secondary(
            kind, tmp_path, primary.port, [primary.zone], key, catalog=CATALOG, port=port
        ) as secondary:
            # (Knot answers no queries for the catalog zone itself: REFUSED.)
            secondary.wait_serial(MEMBERS[0], 1)
            assert secondary.serial(MEMBERS[1]) is None  # not in the catalog yet
            assert MEMBERS[0] not in secondary.config.read_text()

            # A new member in the catalog: the secondary adds and transfers the zone.
            update = dns.update.UpdateMessage(CATALOG, keyring=key)
            update.add(f"m1.zones.{CATALOG}.", 0, "PTR", f"{MEMBERS[1]}.")
            assert dns.query.tcp(update, primary.host, port=primary.port, timeout=5).rcode() == 0
            secondary.wait_serial(MEMBERS[1], 1, timeout=PROPAGATION + CATALOG_INTERVAL)

            # Members follow their primary like any zone.
            primary.edit(f"h1.{MEMBERS[1]}", "A", ["192.0.2.40"])
            secondary.wait_serial(MEMBERS[1], 2, timeout=PROPAGATION)
            assert addresses(secondary, f"h1.{MEMBERS[1]}") == ["192.0.2.40"]
            assert secondary.transfers(CATALOG) == ["AXFR", "IXFR"]
            assert secondary.transfers(MEMBERS[1]) == ["AXFR", "IXFR"]


def test_nsd_has_no_catalog_consumer(tmp_path: Path) -> None:
    key = dns.tsig.Key(KEY_NAME, WRONG_SECRET, "hmac-sha256")
    with pytest.raises(ValueError, match="no catalog"):
        nsd_config(tmp_path, 53, 53, ["dyn.example.test"], key, CATALOG)
    assert "NSD 4.6 has no catalog zone consumer" in (EXAMPLES / "nsd" / "nsd.conf").read_text()


# -- the shipped examples --------------------------------------------------------------

# How each server checks a configuration file ("{}": the file).
CHECKS = {
    "bind": ["named-checkconf", "{}"],
    "knot": ["knotc", "-c", "{}", "conf-check"],
    "nsd": ["nsd-checkconf", "{}"],
}
COMMENTS = ("#", "//")


@pytest.mark.parametrize("kind", KINDS)
def test_the_examples_are_valid_as_shipped(kind: Kind) -> None:
    example = EXAMPLES / kind / CONFIGS[kind][0]
    check = [str(example) if arg == "{}" else arg for arg in CHECKS[kind]]
    done = subprocess.run(check, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("kind", KINDS)
def test_the_fixture_runs_the_examples_changing_only_machine_strings(
    kind: Kind, tmp_path: Path
) -> None:
    name, build = CONFIGS[kind]
    example = (EXAMPLES / kind / name).read_text()
    key = dns.tsig.Key("test-key", WRONG_SECRET, "hmac-sha512")
    catalog = None if kind == "nsd" else "catalog.test"
    running = build(tmp_path, 5300, 5301, ["a.test", "b.test"], key, catalog)
    rewritten = ["dyn.example.com", "catalog.invalid", "xfr-key", "hmac-sha256", "192.0.2.1"]
    rewritten += ["/var/", "/run/", "@53", "port 53", "user", "target:", "secret"]
    kept = [line for line in example.splitlines() if not any(s in line for s in rewritten)]
    assert len(kept) > 20
    assert set(kept) <= set(running.splitlines())
    for zone in ("a.test", "b.test"):
        assert zone in running
    assert f"{tmp_path}" in running
    assert "5300" in running and "5301" in running
    settings = [line for line in running.splitlines() if not line.lstrip().startswith(COMMENTS)]
    assert not [line for line in settings if "192.0.2.1" in line or "xfr-key" in line]
    assert WRONG_SECRET in running and "test-key" in running and "hmac-sha512" in running


def test_parses_each_servers_transfer_lines() -> None:
    bind = """
transfer of 'z.test/IN' from 127.0.0.1#5300: got nonincremental response
transfer of 'z.test/IN' from 127.0.0.1#5300: Transfer status: success
transfer of 'z.test/IN' from 127.0.0.1#5300: Transfer completed: 1 messages, 3 records
transfer of 'z.test/IN' from 127.0.0.1#5300: got incremental response
transfer of 'z.test/IN' from 127.0.0.1#5300: Transfer status: success
transfer of 'z.test/IN' from 127.0.0.1#5300: Transfer completed: 1 messages, 5 records
transfer of 'y.test/IN' from 127.0.0.1#5300: Transfer status: tsig verify failure
transfer of 'y.test/IN' from 127.0.0.1#5300: Transfer completed: 0 messages, 0 records
"""
    assert parse_transfers("bind", bind) == ["AXFR", "IXFR"]
    assert parse_transfers("bind", bind, "y.test") == []
    knot = """
info: [z.test.] AXFR, incoming, remote 127.0.0.1@5300, started
info: [z.test.] AXFR, incoming, remote 127.0.0.1@5300, finished, 0.00 seconds, 1 messages
info: [z.test.] IXFR, incoming, remote 127.0.0.1@5300, finished, 0.00 seconds, 1 messages
info: [y.test.] IXFR, incoming, remote 127.0.0.1@5300, failed (connection reset)
"""
    assert parse_transfers("knot", knot) == ["AXFR", "IXFR"]
    assert parse_transfers("knot", knot, "z.test.") == ["AXFR", "IXFR"]
    nsd = """
[2026-01-01 00:00:00.000] nsd[10]: info: zone z.test serial 0 is updated to 1
[2026-01-01 00:00:01.000] nsd[10]: info: zone z.test serial 1 is updated to 2
"""
    assert parse_transfers("nsd", nsd) == ["AXFR", "IXFR"]
