from __future__ import annotations

from tests.server.conftest import ALICE, LiveServer


def test_issue_walkthrough(alice: LiveServer) -> None:
    query = "hostname=home.dyn.example.test&myip=203.0.113.7"
    first = alice.update(query, auth=ALICE)
    assert (first.status_code, first.text) == (200, "good 203.0.113.7\n")
    assert alice.addresses("home.dyn.example.test") == ["203.0.113.7"]
    assert alice.ttl("home.dyn.example.test") == 60
    again = alice.update(query, auth=ALICE)
    assert again.text == "nochg 203.0.113.7\n"
