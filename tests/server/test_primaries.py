"""The BIND 9 and PowerDNS fixtures start the shipped examples and behave like primaries."""

from __future__ import annotations

import contextlib
import os
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path

import dns.exception
import dns.query
import dns.rcode
import dns.tsig
import dns.update
import pytest

from tests.server.primaries import DEPLOY, Primary, running_bind, running_powerdns

Runner = Callable[..., contextlib.AbstractContextManager[Primary]]
RUNNERS: dict[str, Runner] = {"bind": running_bind, "powerdns": running_powerdns}
HOST = "probe.dyn.example.test"


@pytest.fixture(params=sorted(RUNNERS))
def primary(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Primary]:
    with RUNNERS[request.param](tmp_path / request.param) as running:
        yield running


def signed_update(primary: Primary, name: str, address: str) -> int:
    """Replace ``name``'s A record with dnspython; the answer's rcode."""
    key = dns.tsig.Key(primary.key_name, primary.secret, primary.algorithm)
    message = dns.update.UpdateMessage(primary.zone, keyring=key)
    message.replace(f"{name}.", 60, "A", address)
    return dns.query.tcp(message, primary.host, port=primary.port, timeout=5).rcode()


def test_starts_from_the_shipped_example_and_answers_soa(primary: Primary) -> None:
    soa = primary.query(primary.zone, "SOA")
    assert soa == ["ns1.example.com. hostmaster.example.com. 1 3600 600 1209600 60"]
    assert primary.dig(primary.zone, "NS") == "ns1.example.com.\n"
    if primary.kind == "bind":
        example, running = DEPLOY / "bind" / "named.conf", primary.directory / "named.conf"
    else:
        example, running = DEPLOY / "powerdns" / "pdns.conf", primary.directory / "pdns.conf"
    rewritten = (
        "dyn.example.com",
        "ddns-key",
        "/",
        "53",
        "local-address",
    )  # what the fixture changes
    kept = [
        line for line in example.read_text().splitlines() if not any(s in line for s in rewritten)
    ]
    assert len(kept) > 10
    assert set(kept) <= set(running.read_text().splitlines())


def test_takes_a_signed_update_from_dnspython(primary: Primary) -> None:
    assert signed_update(primary, HOST, "203.0.113.8") == dns.rcode.NOERROR
    assert primary.query(HOST, "A") == ["203.0.113.8"]
    assert primary.ttl(HOST, "A") == 60
    assert primary.dig(HOST, "A") == "203.0.113.8\n"


def test_bind_takes_an_update_from_nsupdate_with_the_key_file(tmp_path: Path) -> None:
    with running_bind(tmp_path, algorithm="hmac-sha512") as bind:
        assert "algorithm hmac-sha512;" in bind.key_file.read_text()
        bind.edit(HOST, "AAAA", ["2001:db8::8"])  # nsupdate -k KEYFILE
        assert bind.query(HOST, "AAAA") == ["2001:db8::8"]


def test_edit_replaces_and_deletes_behind_the_back(primary: Primary) -> None:
    primary.edit(HOST, "A", ["203.0.113.1", "203.0.113.2"])
    assert primary.query(HOST, "A") == ["203.0.113.1", "203.0.113.2"]
    primary.edit(HOST, "A", ["203.0.113.3"], ttl=300)
    assert primary.query(HOST, "A") == ["203.0.113.3"]
    assert primary.ttl(HOST, "A") == 300
    primary.edit(HOST, "A", [])
    assert primary.query(HOST, "A") == []


def test_the_key_may_update_wildcard_names_and_txt_records(primary: Primary) -> None:
    key = dns.tsig.Key(primary.key_name, primary.secret, primary.algorithm)
    message = dns.update.UpdateMessage(primary.zone, keyring=key)
    message.replace(f"*.{HOST}.", 60, "A", "203.0.113.8")
    message.replace(f"_acme-challenge.{HOST}.", 60, "TXT", '"token-1"', '"token 2"')
    answer = dns.query.tcp(message, primary.host, port=primary.port, timeout=5)
    assert answer.rcode() == dns.rcode.NOERROR
    assert primary.query(f"*.{HOST}", "A") == ["203.0.113.8"]
    assert primary.dig(f"www.{HOST}", "A") == "203.0.113.8\n"
    assert primary.query(f"_acme-challenge.{HOST}", "TXT") == ["token 2", "token-1"]


def test_edit_takes_txt_values_unquoted(primary: Primary) -> None:
    primary.edit(f"_acme-challenge.{HOST}", "TXT", ["a token", "another"])
    assert primary.query(f"_acme-challenge.{HOST}", "TXT") == ["a token", "another"]
    assert sorted(primary.dig(f"_acme-challenge.{HOST}", "TXT").splitlines()) == [
        '"a token"',
        '"another"',
    ]
    primary.edit(f"_acme-challenge.{HOST}", "TXT", [])
    assert primary.query(f"_acme-challenge.{HOST}", "TXT") == []


def test_a_bind_key_granted_fewer_types_is_refused_the_others(tmp_path: Path) -> None:
    with running_bind(tmp_path, update_types="A AAAA") as bind:
        assert "update-policy { grant ddns-key zonesub A AAAA; };" in (
            (bind.directory / "named.conf").read_text()
        )
        key = dns.tsig.Key(bind.key_name, bind.secret, bind.algorithm)
        message = dns.update.UpdateMessage(bind.zone, keyring=key)
        message.replace(f"_acme-challenge.{HOST}.", 60, "TXT", '"token"')
        answer = dns.query.tcp(message, bind.host, port=bind.port, timeout=5)
        assert answer.rcode() == dns.rcode.REFUSED
        assert signed_update(bind, HOST, "203.0.113.9") == dns.rcode.NOERROR


def test_stop_and_start_keep_port_and_data(primary: Primary) -> None:
    assert signed_update(primary, HOST, "203.0.113.9") == dns.rcode.NOERROR
    pid, port = primary.pid, primary.port
    assert pid is not None
    primary.stop()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises((ConnectionRefusedError, dns.exception.Timeout)):
        primary.query(HOST, "A")
    primary.start()
    assert primary.pid != pid
    assert primary.port == port
    assert primary.query(HOST, "A") == ["203.0.113.9"]


@pytest.mark.parametrize("kind", sorted(RUNNERS))
def test_a_zone_that_is_not_dynamic_refuses_updates(kind: str, tmp_path: Path) -> None:
    with RUNNERS[kind](tmp_path, dynamic=False) as primary:
        assert signed_update(primary, HOST, "203.0.113.9") == dns.rcode.REFUSED
        assert primary.query(HOST, "A") == []


def test_config_block_points_at_the_server(primary: Primary) -> None:
    table = tomllib.loads(primary.config_block("edge"))["backends"]["edge"]
    assert table == {
        "type": "rfc2136",
        "server": "127.0.0.1",
        "port": primary.port,
        "tsig_key_name": "ddns-key",
        "tsig_algorithm": "hmac-sha256",
        "tsig_secret_file": str(primary.secret_file),
    }
    assert primary.secret_file.read_text().strip() == primary.secret
    assert f'secret "{primary.secret}";' in primary.key_file.read_text()
