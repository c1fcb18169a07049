"""``/api/v1/hosts``: adding, reading, changing and removing hosts; update tokens;
following a prefix; history pages."""

from __future__ import annotations

import httpx
import pytest

from tests.server.conftest import LiveServer, eventually
from tests.server.restapi.conftest import ALICE, ZONE, Api, Clients, error_of, fqdn_for


def add(api: Api, fqdn: str, **more: object) -> dict[str, object]:
    answer = api.post("/hosts", json={"fqdn": fqdn, **more})
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert isinstance(body, dict)
    return body


def names(api: Api, **params: str) -> list[str]:
    answer = api.get("/hosts", params=params)
    assert answer.status_code == 200, answer.text
    return [host["fqdn"] for host in answer.json()["hosts"]]


def test_a_host_added_is_listed_and_its_token_updates_it(
    server: LiveServer, alice: Api, request: pytest.FixtureRequest
) -> None:
    fqdn = fqdn_for(request)
    answer = alice.post("/hosts", json={"fqdn": fqdn.upper() + "."})
    assert answer.status_code == 201, answer.text
    assert answer.headers["location"] == f"/api/v1/hosts/{fqdn}"
    body = answer.json()
    host, token = body["host"], body["token"]
    assert (host["fqdn"], host["owner"], host["wildcard"]) == (fqdn, "alice", False)
    assert host["records"] == {"A": [], "AAAA": [], "TXT": []}
    assert fqdn in names(alice)
    assert alice.get(f"/hosts/{fqdn}").json() == host
    # The token shown once is the host's dyndns2 password, at once.
    update = server.update(f"hostname={fqdn}&myip=192.0.2.10", auth=(fqdn, token))
    assert update.text == "good 192.0.2.10\n"
    assert alice.get(f"/hosts/{fqdn}").json()["records"]["A"] == ["192.0.2.10"]


def test_a_host_is_added_once(alice: Api, request: pytest.FixtureRequest) -> None:
    fqdn = fqdn_for(request)
    add(alice, fqdn)
    error = error_of(alice.post("/hosts", json={"fqdn": fqdn}), 409)
    assert error["code"] == "conflict"
    assert "already exists" in error["message"]


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"fqdn": "home.elsewhere.example"}, "fqdn", "in no configured zone"),
        ({"fqdn": "not a name"}, "fqdn", ""),
        ({"fqdn": f"_acme-challenge.x.{ZONE}"}, "fqdn", "cannot be a host"),
        ({}, "fqdn", "missing"),
        ({"fqdn": 7}, "fqdn", "must be a string"),
        ({"fqdn": f"w.{ZONE}", "wildcard": "yes"}, "wildcard", "true or false"),
        ({"fqdn": f"w.{ZONE}", "colour": "red"}, "colour", "unknown member"),
        ({"fqdn": f"w.{ZONE}", "follows": {"interface_id": "::1"}}, "follows.host", "missing"),
        ({"fqdn": f"w.{ZONE}", "follows": {"host": f"x.{ZONE}", "tag": 1}}, "follows.tag", ""),
        ({"fqdn": f"w.{ZONE}", "follows": {"host": f"nope.{ZONE}"}}, "follows.host", "no host"),
    ],
)
def test_a_host_that_cannot_be_added_names_the_member_at_fault(
    alice: Api, body: dict[str, object], field: str, words: str
) -> None:
    error = error_of(alice.post("/hosts", json=body), 422)
    assert error["field"] == field
    assert words in error["message"]


def test_only_an_admin_adds_a_host_for_another_user(
    root: Api, alice: Api, bob: Api, request: pytest.FixtureRequest
) -> None:
    fqdn = fqdn_for(request)
    error = error_of(alice.post("/hosts", json={"fqdn": fqdn, "owner": "bob"}), 403)
    assert "admin" in error["message"]
    assert (
        error_of(root.post("/hosts", json={"fqdn": fqdn, "owner": "nobody"}), 422)["field"]
        == "owner"
    )
    host = add(root, fqdn, owner="bob")["host"]
    assert isinstance(host, dict) and host["owner"] == "bob"
    assert fqdn in names(bob)
    assert fqdn not in names(alice)
    assert fqdn not in names(root)  # an admin's own hosts, unless it asks for all
    assert fqdn in names(root, all="true")


def test_all_hosts_are_for_admins(alice: Api, root: Api) -> None:
    assert error_of(alice.get("/hosts", params={"all": "true"}), 403)["field"] == "all"
    assert error_of(root.get("/hosts", params={"all": "maybe"}), 422)["field"] == "all"
    assert error_of(root.get("/hosts", params={"owner": "bob"}), 422)["field"] == "owner"


def test_another_users_host_is_not_found(
    alice: Api, bob: Api, request: pytest.FixtureRequest
) -> None:
    fqdn = fqdn_for(request)
    add(bob, fqdn)
    for method, path, body in [
        ("GET", f"/hosts/{fqdn}", None),
        ("PATCH", f"/hosts/{fqdn}", {"wildcard": True}),
        ("DELETE", f"/hosts/{fqdn}", None),
        ("PUT", f"/hosts/{fqdn}/records", {"A": ["192.0.2.1"]}),
        ("POST", f"/hosts/{fqdn}/token", None),
        ("GET", f"/hosts/{fqdn}/history", None),
    ]:
        error = error_of(alice.request(method, path, json=body), 404)
        assert error["code"] == "not_found", (method, path)
    assert bob.get(f"/hosts/{fqdn}").status_code == 200  # still there, unchanged


def test_wildcard_on_serves_every_name_below(
    server: LiveServer, alice: Api, request: pytest.FixtureRequest
) -> None:
    fqdn = fqdn_for(request)
    add(alice, fqdn)
    assert alice.put(f"/hosts/{fqdn}/records", json={"A": ["192.0.2.20"]}).status_code == 200
    assert server.addresses(f"any.{fqdn}") == []
    answer = alice.patch(f"/hosts/{fqdn}", json={"wildcard": True})
    assert answer.status_code == 200, answer.text
    assert answer.json()["wildcard"] is True
    assert eventually(lambda: server.addresses(f"any.{fqdn}") == ["192.0.2.20"])
    assert alice.patch(f"/hosts/{fqdn}", json={"wildcard": False}).json()["wildcard"] is False
    assert eventually(lambda: server.addresses(f"any.{fqdn}") == [])
    assert alice.patch(f"/hosts/{fqdn}", json={}).json()["wildcard"] is False  # no change


def test_a_host_follows_its_routers_prefix_then_none(
    server: LiveServer, alice: Api, request: pytest.FixtureRequest
) -> None:
    router, machine = fqdn_for(request, "router"), fqdn_for(request, "pc")
    token = add(alice, router)["token"]
    assert isinstance(token, str)
    follows = {"host": router, "interface_id": "::1234:5678:9abc:def0"}
    added = add(alice, machine, follows=follows)["host"]
    assert isinstance(added, dict)
    assert (added["follows"], added["prefix_length"]) == (router, 64)
    update = server.update(
        f"hostname={router}&myip=2001:db8:1:2::1&ip6lanprefix=2001:db8:7:8::/64",
        auth=(router, token),
    )
    assert update.status_code == 200, update.text
    expected = "2001:db8:7:8:1234:5678:9abc:def0"
    assert eventually(lambda: server.addresses(machine, "AAAA") == [expected])
    host = alice.get(f"/hosts/{machine}").json()
    assert host["records"]["AAAA"] == [expected]
    assert alice.get(f"/hosts/{router}").json()["followers"] == [machine]
    unfollowed = alice.patch(f"/hosts/{machine}", json={"follows": None})
    assert unfollowed.status_code == 200, unfollowed.text
    assert (unfollowed.json()["follows"], unfollowed.json()["interface_id"]) == (None, None)
    assert alice.get(f"/hosts/{router}").json()["followers"] == []


def test_following_is_checked(alice: Api, bob: Api, request: pytest.FixtureRequest) -> None:
    router, machine = fqdn_for(request, "router"), fqdn_for(request, "pc")
    other = fqdn_for(request, "other")
    add(alice, router)
    add(alice, machine)
    add(bob, other)
    for follows, field, words in [
        ({"host": other, "interface_id": "::1"}, "follows.host", "no host"),  # bob's
        ({"host": machine, "interface_id": "::1"}, None, "cannot follow itself"),
        ({"host": router, "interface_id": "nope"}, "follows.interface_id", "interface id"),
        (
            {"host": router, "interface_id": "::1", "prefix_length": 200},
            "follows.prefix_length",
            "",
        ),
        (
            {"host": router, "interface_id": "::1", "prefix_length": True},
            "follows.prefix_length",
            "",
        ),
        ({"host": router}, "follows.interface_id", "interface_id is needed"),
        ("router", "follows", "an object"),
    ]:
        error = error_of(alice.patch(f"/hosts/{machine}", json={"follows": follows}), 422)
        assert (error["field"], words in error["message"]) == (field, True), (follows, error)
        assert "--" not in error["message"]  # the API's names, not the CLI's flags
    assert alice.get(f"/hosts/{machine}").json()["follows"] is None


def test_a_removed_host_leaves_dns(
    server: LiveServer, alice: Api, request: pytest.FixtureRequest
) -> None:
    fqdn = fqdn_for(request)
    token = add(alice, fqdn)["token"]
    assert isinstance(token, str)
    assert alice.put(f"/hosts/{fqdn}/records", json={"A": ["192.0.2.30"]}).status_code == 200
    assert server.addresses(fqdn) == ["192.0.2.30"]
    answer = alice.delete(f"/hosts/{fqdn}")
    assert (answer.status_code, answer.content) == (204, b"")
    assert eventually(lambda: server.addresses(fqdn) == [])  # the DNS process hears of it
    assert error_of(alice.get(f"/hosts/{fqdn}"), 404)["code"] == "not_found"
    assert error_of(alice.delete(f"/hosts/{fqdn}"), 404)["code"] == "not_found"
    assert server.update(f"hostname={fqdn}&myip=192.0.2.31", auth=(fqdn, token)).text in (
        "badauth\n",
        "nohost\n",
    )


def test_a_new_host_token_replaces_the_old_one(
    server: LiveServer, alice: Api, request: pytest.FixtureRequest
) -> None:
    fqdn = fqdn_for(request)
    old = add(alice, fqdn)["token"]
    assert isinstance(old, str)
    answer = alice.post(f"/hosts/{fqdn}/token")
    assert answer.status_code == 200, answer.text
    assert answer.json()["fqdn"] == fqdn
    new = answer.json()["token"]
    assert new != old
    refused = server.update(f"hostname={fqdn}&myip=192.0.2.40", auth=(fqdn, old))
    assert (refused.status_code, refused.text) == (401, "badauth\n")
    assert server.update(f"hostname={fqdn}&myip=192.0.2.40", auth=(fqdn, new)).text == (
        "good 192.0.2.40\n"
    )


def test_history_comes_in_pages_newest_first(
    server: LiveServer, alice: Api, request: pytest.FixtureRequest
) -> None:
    fqdn = fqdn_for(request)
    add(alice, fqdn)
    for n in (1, 2, 3):
        answer = alice.put(f"/hosts/{fqdn}/records", json={"A": [f"192.0.2.{n}"]})
        assert answer.json()["result"] == "good"

    def entries(**params: object) -> httpx.Response:
        return alice.get(f"/hosts/{fqdn}/history", params=params)

    assert eventually(lambda: len(entries().json()["entries"]) == 3)
    whole = entries().json()
    assert [entry["new"] for entry in whole["entries"]] == [
        "A 192.0.2.3",
        "A 192.0.2.2",
        "A 192.0.2.1",
    ]
    assert whole["next"] is None
    first = entries(limit=2).json()
    assert [entry["new"] for entry in first["entries"]] == ["A 192.0.2.3", "A 192.0.2.2"]
    assert first["next"] == first["entries"][-1]["id"]
    rest = entries(limit=2, before=first["next"]).json()
    assert ([e["new"] for e in rest["entries"]], rest["next"]) == (["A 192.0.2.1"], None)
    for params, field in [
        ({"limit": 0}, "limit"),
        ({"limit": 501}, "limit"),
        ({"before": "x"}, "before"),
    ]:
        assert error_of(entries(**params), 422)["field"] == field


def test_a_host_may_not_be_added_by_a_password(clients: Clients) -> None:
    answer = clients().post("/hosts", json={"fqdn": f"pw.{ZONE}"}, auth=ALICE)
    assert answer.status_code == 401
    assert "API token" in answer.json()["error"]["message"]


def test_a_token_limited_to_hosts_cannot_add_one(
    clients: Clients, alice: Api, request: pytest.FixtureRequest
) -> None:
    fqdn = fqdn_for(request)
    add(alice, fqdn)
    scoped = clients(user="alice", hosts=[fqdn])
    error = error_of(scoped.post("/hosts", json={"fqdn": fqdn_for(request, "more")}), 403)
    assert "limited to some hosts" in error["message"]
