"""``PUT /api/v1/hosts/{fqdn}/records``: through the update path to DNS (the built-in
one, and a relay to another dyndns2 service that can refuse or fail), answered once DNS
has the records; and ``GET /status`` showing what a backend still owes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server.conftest import LiveServer, eventually, stop_server
from tests.server.fakes import serving
from tests.server.fakes.dyndns2 import FakeDyndns2
from tests.server.restapi.conftest import (
    UNLOCKED,
    Api,
    Clients,
    error_of,
    fqdn_for,
    start_api_server,
)

# Hosts in the zone relayed to the fake dyndns2 service.
RELAYED = "home.relay.example.test"
REFUSED = "acme.relay.example.test"  # gets TXT records, which the relay refuses

RELAY = """
apply_deadline = 0.5
retry_initial = 0.1
retry_max = 0.3
{limits}
[backends.upstream]
type = "dyndns2"
base_url = "{url}"
username = "{username}"
password_file = "{password_file}"

[[zones]]
name = "relay.example.test"
backend = "upstream"
"""


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[FakeDyndns2, str]]:
    fake = FakeDyndns2(hosts={RELAYED, REFUSED})
    with serving(fake) as served:
        yield fake, served.url


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, upstream: tuple[FakeDyndns2, str]
) -> Iterator[LiveServer]:
    fake, url = upstream
    directory: Path = tmp_path_factory.mktemp("records")
    password_file = directory / "upstream.password"
    password_file.write_text(fake.password + "\n")
    extra = RELAY.format(
        limits=UNLOCKED, url=url, username=fake.username, password_file=password_file
    )
    live = start_api_server(directory, extra)
    yield live
    stop_server(live)


@pytest.fixture
def host(alice: Api, request: pytest.FixtureRequest) -> tuple[str, str]:
    """A host of alice's of this test's own, and its update token."""
    fqdn = fqdn_for(request)
    answer = alice.post("/hosts", json={"fqdn": fqdn})
    assert answer.status_code == 201, answer.text
    return fqdn, answer.json()["token"]


def test_records_set_are_served_recorded_and_then_nochg(
    server: LiveServer, alice: Api, host: tuple[str, str]
) -> None:
    fqdn, token = host
    body = {"A": ["192.0.2.7"], "AAAA": ["2001:db8::7"]}
    answer = alice.put(f"/hosts/{fqdn}/records", json=body, headers={"User-Agent": "script/1"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["result"] == "good"
    assert answer.json()["host"]["records"] == {**body, "TXT": []}
    assert server.addresses(fqdn) == ["192.0.2.7"]
    assert server.addresses(fqdn, "AAAA") == ["2001:db8::7"]
    again = alice.put(f"/hosts/{fqdn}/records", json={"A": ["192.0.2.7"]})
    assert again.json()["result"] == "nochg"

    def first_entry() -> dict[str, object] | None:
        entries = alice.get(f"/hosts/{fqdn}/history").json()["entries"]
        return entries[-1] if entries else None

    entry = eventually(first_entry)
    assert entry is not None
    assert (entry["caller"], entry["user_agent"], entry["answer"]) == (
        "127.0.0.1",
        "script/1",
        "good",
    )
    assert entry["new"] == "A 192.0.2.7; AAAA 2001:db8::7"
    # The router's own update with the same address changes nothing.
    update = server.update(f"hostname={fqdn}&myip=192.0.2.7", auth=(fqdn, token))
    assert update.text == "nochg 192.0.2.7\n"


def test_an_empty_list_clears_one_type_only(
    server: LiveServer, alice: Api, host: tuple[str, str]
) -> None:
    fqdn, _ = host
    both = {"A": ["192.0.2.8", "192.0.2.9"], "AAAA": ["2001:db8::8"]}
    assert alice.put(f"/hosts/{fqdn}/records", json=both).status_code == 200
    assert server.addresses(fqdn) == ["192.0.2.8", "192.0.2.9"]
    cleared = alice.put(f"/hosts/{fqdn}/records", json={"A": []})
    assert cleared.status_code == 200, cleared.text
    assert cleared.json()["host"]["records"]["A"] == []
    assert server.addresses(fqdn) == []
    assert server.addresses(fqdn, "AAAA") == ["2001:db8::8"]


def test_txt_records_are_served_at_the_acme_challenge_name(
    server: LiveServer, alice: Api, host: tuple[str, str]
) -> None:
    fqdn, _ = host
    values = ["token-one_abc", "token-two.def"]
    answer = alice.put(f"/hosts/{fqdn}/records", json={"TXT": values})
    assert answer.status_code == 200, answer.text
    served = server.addresses(f"_acme-challenge.{fqdn}", "TXT")
    assert served == sorted(f'"{value}"' for value in values)
    assert alice.put(f"/hosts/{fqdn}/records", json={"TXT": []}).status_code == 200
    assert server.addresses(f"_acme-challenge.{fqdn}", "TXT") == []


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"A": ["not-an-address"]}, "A", "not an IP address"),
        ({"A": ["2001:db8::1"]}, "A", "not an IPv4 address"),
        ({"AAAA": ["192.0.2.1"]}, "AAAA", "not an IPv6 address"),
        ({"A": ["127.0.0.1"]}, "A", "loopback"),
        ({"AAAA": ["ff02::1"]}, "AAAA", "multicast"),
        ({"A": "192.0.2.1"}, "A", "a list of strings"),
        ({"A": [7]}, "A", "must be a string"),
        ({"A": [f"192.0.2.{n}" for n in range(21)]}, "A", "at most 20"),
        ({"TXT": ["has space"]}, "TXT", "characters of"),
        ({"TXT": ["a", "b", "c"]}, "TXT", "at most 2"),
        ({"MX": ["mail"]}, "MX", "unknown member"),
        ({}, None, "at least one of A, AAAA and TXT"),
    ],
)
def test_records_that_cannot_be_set_name_the_member(
    server: LiveServer,
    alice: Api,
    host: tuple[str, str],
    body: dict[str, object],
    field: str | None,
    words: str,
) -> None:
    fqdn, _ = host
    error = error_of(alice.put(f"/hosts/{fqdn}/records", json=body), 422)
    assert (error["field"], words in error["message"]) == (field, True), error
    assert server.addresses(fqdn) == []


def test_a_public_only_zone_refuses_private_addresses(alice: Api) -> None:
    fqdn = "office.public.example.net"
    assert alice.post("/hosts", json={"fqdn": fqdn}).status_code == 201
    error = error_of(alice.put(f"/hosts/{fqdn}/records", json={"A": ["10.1.2.3"]}), 422)
    assert error["field"] == "A"
    assert "10.1.2.3" in error["message"]


def test_a_backend_that_refuses_is_a_502_naming_why(alice: Api) -> None:
    """A dyndns2 service holds no TXT records: the relay refuses them for good."""
    answer = alice.post("/hosts", json={"fqdn": REFUSED})
    assert answer.status_code == 201, answer.text
    error = error_of(alice.put(f"/hosts/{REFUSED}/records", json={"TXT": ["abc"]}), 502)
    assert error["code"] == "dnserr"
    assert "cannot hold TXT records" in error["message"]


def test_dns_not_confirming_in_time_is_a_503_and_lands_later(
    alice: Api, root: Api, upstream: tuple[FakeDyndns2, str]
) -> None:
    fake, _ = upstream
    assert alice.post("/hosts", json={"fqdn": RELAYED}).status_code == 201
    fake.fail_next("throttle", 1000)  # 429, Retry-After: 1
    try:
        error = error_of(alice.put(f"/hosts/{RELAYED}/records", json={"A": ["192.0.2.77"]}), 503)
        assert error["code"] == "not_confirmed"
        assert "stored" in error["message"]
        host = alice.get(f"/hosts/{RELAYED}").json()
        assert host["records"]["A"] == ["192.0.2.77"]  # stored: desired, not yet in DNS
        assert host["pending"] == {"upstream": ["A"]}
        assert eventually(lambda: alice.get(f"/hosts/{RELAYED}").json()["errors"].get("upstream"))
        status = root.get("/status").json()
        upstream_status = [b for b in status["backends"] if b["name"] == "upstream"]
        assert upstream_status and upstream_status[0]["pending"] >= 1
    finally:
        with fake.lock:
            fake.failures.clear()
    assert eventually(lambda: fake.served(RELAYED, "A") == ["192.0.2.77"])
    assert eventually(lambda: alice.get(f"/hosts/{RELAYED}").json()["pending"] == {})


def test_status_is_for_admins(root: Api, alice: Api, clients: Clients) -> None:
    answer = root.get("/status")
    assert answer.status_code == 200, answer.text
    status = answer.json()
    assert status["users"] == 3  # root, alice, bob
    assert "upstream" in [backend["name"] for backend in status["backends"]]
    assert isinstance(status["healthy"], bool)
    assert error_of(alice.get("/status"), 403)["code"] == "forbidden"
    # An admin's token narrowed to reading still reads; narrowed to hosts it is no admin's.
    assert clients(user="root", read_only=True).get("/status").status_code == 200
    assert root.post("/hosts", json={"fqdn": "rooted.dyn.example.test"}).status_code == 201
    scoped = clients(user="root", hosts=["rooted.dyn.example.test"])
    assert error_of(scoped.get("/status"), 403)["code"] == "forbidden"
