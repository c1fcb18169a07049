"""What a restarted server reads back from the database (``State.load``) and serves in
its built-in DNS: records of both families, several addresses, tokens, names below names."""

from __future__ import annotations

from pathlib import Path

import dns.rcode

from tests.server.conftest import ALICE, start_server, stop_server, write_config

ZONE = "dyn.example.test"
HOME = f"home.{ZONE}"
DEEP = f"a.b.{ZONE}"  # b.ZONE has no records: it exists only as the parent of a.b.ZONE
BARE = f"bare.{ZONE}"  # a host without records


def test_a_restarted_server_answers_and_serves_what_was_stored(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    server = start_server(config)
    try:
        server.add_user("alice", ALICE[1])
        token = server.add_host(HOME, "alice")
        server.add_host(DEEP, "alice")
        server.add_host(BARE, "alice")
        both = "203.0.113.7,203.0.113.8,2001:db8::7"
        assert server.update(f"hostname={HOME}&myip={both}", auth=ALICE).text == f"good {both}\n"
        assert server.update(f"hostname={DEEP}&myip=192.0.2.9", auth=ALICE).text == (
            "good 192.0.2.9\n"
        )
    finally:
        stop_server(server)

    again = start_server(config)
    try:
        assert again.addresses(HOME) == ["203.0.113.7", "203.0.113.8"]
        assert again.addresses(HOME, "AAAA") == ["2001:db8::7"]
        assert again.addresses(DEEP) == ["192.0.2.9"]
        empty = again.dns_query(f"b.{ZONE}")
        assert (empty.rcode(), empty.answer) == (dns.rcode.NOERROR, [])
        assert again.dns_query(BARE).rcode() == dns.rcode.NXDOMAIN
        # The token still updates its host; the records read back are the ones stored.
        answer = again.update(f"hostname={HOME}&myip={both}", auth=(HOME, token))
        assert answer.text == f"nochg {both}\n"
        assert again.update(f"hostname={HOME}&myip={both}", auth=(HOME, "wrong")).status_code == (
            401
        )
        assert again.update(f"hostname={BARE}&myip=192.0.2.10", auth=ALICE).text == (
            "good 192.0.2.10\n"
        )
        assert again.addresses(BARE) == ["192.0.2.10"]
    finally:
        stop_server(again)
