"""``/account``, ``/tokens`` and (for admins) ``/users``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.server.conftest import LiveServer, eventually
from tests.server.restapi.conftest import ALICE, ZONE, Api, Clients, error_of

# --- /account ----------------------------------------------------------------------------


def test_the_account_shows_who_and_what_the_token_may(alice: Api, clients: Clients) -> None:
    answer = alice.get("/account")
    assert answer.status_code == 200, answer.text
    account = answer.json()
    assert (account["name"], account["admin"], account["totp"]) == ("alice", False, False)
    assert account["token"]["hosts"] is None
    assert account["token"]["read_only"] is False
    root = clients(user="root", read_only=True).get("/account").json()
    assert (root["admin"], root["token"]["admin"], root["token"]["read_only"]) == (True, True, True)


def test_a_password_change_needs_the_current_one(
    server: LiveServer, root: Api, clients: Clients
) -> None:
    added = root.post("/users", json={"name": "dave", "password": "dave-secret-1"})
    assert added.status_code == 201, added.text
    dave = clients(user="dave")
    server.add_host(f"dave.{ZONE}", "dave")

    def change(current: object, new: object) -> dict[str, object]:
        body = {"current_password": current, "new_password": new}
        answer = dave.post("/account/password", json=body)
        if answer.status_code == 204:
            return {}
        error = answer.json()["error"]
        assert isinstance(error, dict)
        return {"status": answer.status_code, **error}

    wrong = change("not-the-password", "dave-secret-2")
    assert (wrong["status"], wrong["field"]) == (403, "current_password")
    short = change("dave-secret-1", "short")
    assert (short["status"], short["field"]) == (422, "new_password")
    assert "at least 8" in str(short["message"])
    assert change("dave-secret-1", 12345678)["field"] == "new_password"
    missing = dave.post("/account/password", json={"new_password": "dave-secret-2"})
    assert error_of(missing, 422)["field"] == "current_password"
    assert change("dave-secret-1", "dave-secret-2") == {}
    query = f"hostname=dave.{ZONE}&myip=192.0.2.90"
    assert server.update(query, auth=("dave", "dave-secret-1")).status_code == 401
    assert server.update(query, auth=("dave", "dave-secret-2")).text == "good 192.0.2.90\n"
    assert dave.get("/account").status_code == 200  # the token stays


# --- /tokens -----------------------------------------------------------------------------


def test_a_token_made_is_shown_once_and_works(alice: Api, clients: Clients) -> None:
    answer = alice.post("/tokens", json={"name": "backup script", "expires_days": 30})
    assert answer.status_code == 201, answer.text
    made = answer.json()
    secret = made["secret"]
    assert secret.startswith("nu_")
    assert answer.headers["location"] == f"/api/v1/tokens/{made['id']}"
    expires = datetime.fromisoformat(made["expires_at"])
    assert abs(expires - (datetime.now(UTC) + timedelta(days=30))) < timedelta(minutes=5)
    listing = alice.get("/tokens")
    assert secret not in listing.text
    listed = {token["id"]: token for token in listing.json()["tokens"]}
    assert listed[made["id"]]["name"] == "backup script"
    assert "secret" not in listed[made["id"]]
    assert clients(secret).get("/account").json()["token"]["id"] == made["id"]


def test_a_token_lives_no_longer_than_the_token_that_made_it(alice: Api, clients: Clients) -> None:
    short = clients(
        alice.post("/tokens", json={"name": "short", "expires_days": 2}).json()["secret"]
    )
    parent = datetime.fromisoformat(short.get("/account").json()["token"]["expires_at"])
    forever = short.post("/tokens", json={"name": "forever"}).json()
    longer = short.post("/tokens", json={"name": "longer", "expires_days": 30}).json()
    sooner = short.post("/tokens", json={"name": "sooner", "expires_days": 1}).json()
    assert datetime.fromisoformat(forever["expires_at"]) == parent
    assert datetime.fromisoformat(longer["expires_at"]) == parent
    assert datetime.fromisoformat(sooner["expires_at"]) < parent


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": "semi;colon"}, "name"),
        ({"name": "x" * 65}, "name"),
        ({"name": "t", "expires_days": 0}, "expires_days"),
        ({"name": "t", "expires_days": 3651}, "expires_days"),
        ({"name": "t", "expires_days": 1.5}, "expires_days"),
        ({"name": "t", "hosts": []}, "hosts"),
        ({"name": "t", "hosts": "home"}, "hosts"),
        ({"name": "t", "hosts": [f"not-alices.{ZONE}"]}, "hosts"),
        ({"name": "t", "read_only": "yes"}, "read_only"),
        ({"name": "t", "secret": "nu_mine"}, "secret"),
    ],
)
def test_a_token_that_cannot_be_made_names_the_member(
    alice: Api, body: dict[str, object], field: str
) -> None:
    error = error_of(alice.post("/tokens", json=body), 422)
    assert error["field"] == field, error
    assert "--" not in error["message"]


def test_tokens_are_revoked_by_id_and_only_ones_own(alice: Api, bob: Api) -> None:
    made = alice.post("/tokens", json={"name": "short-lived"}).json()
    assert error_of(bob.delete(f"/tokens/{made['id']}"), 404)["code"] == "not_found"
    assert error_of(alice.delete("/tokens/abc"), 422)["field"] == "id"
    assert error_of(alice.delete("/tokens/99999999999999999999"), 422)["field"] == "id"
    assert error_of(alice.delete("/tokens/999999"), 404)["code"] == "not_found"
    assert alice.delete(f"/tokens/{made['id']}").status_code == 204
    assert made["id"] not in [t["id"] for t in alice.get("/tokens").json()["tokens"]]


# --- /users ------------------------------------------------------------------------------


def test_users_are_for_admins(root: Api, alice: Api) -> None:
    answer = root.get("/users")
    assert answer.status_code == 200, answer.text
    users = {user["name"]: user for user in answer.json()["users"]}
    assert users["root"]["admin"] is True
    assert (users["alice"]["admin"], users["alice"]["disabled"]) == (False, False)
    for method, path, body in [
        ("GET", "/users", None),
        ("POST", "/users", {"name": "eve", "password": "eve-secret-1"}),
        ("PATCH", "/users/bob", {"disabled": True}),
        ("DELETE", "/users/bob", None),
    ]:
        assert error_of(alice.request(method, path, json=body), 403)["code"] == "forbidden"


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"name": "alice", "password": "another-secret"}, 409, None),
        ({"name": "frank", "password": "short"}, 422, "password"),
        ({"name": "not valid", "password": "long-enough-1"}, 422, "name"),
        ({"name": "frank"}, 422, "password"),
        ({"name": "frank", "password": "long-enough-1", "admin": 1}, 422, "admin"),
        ({"name": "frank", "password": "long-enough-1", "role": "x"}, 422, "role"),
    ],
)
def test_a_user_that_cannot_be_added_says_why(
    root: Api, body: dict[str, object], status: int, field: str | None
) -> None:
    assert error_of(root.post("/users", json=body), status)["field"] == field


def test_an_admin_adds_changes_and_removes_users(server: LiveServer, root: Api) -> None:
    added = root.post("/users", json={"name": "grace", "password": "grace-secret", "admin": True})
    assert added.status_code == 201, added.text
    assert added.headers["location"] == "/api/v1/users/grace"
    assert (added.json()["name"], added.json()["admin"], added.json()["hosts"]) == (
        "grace",
        True,
        0,
    )
    assert root.patch("/users/grace", json={"admin": False}).json()["admin"] is False
    assert root.patch("/users/grace", json={}).json()["admin"] is False
    assert error_of(root.patch("/users/nobody", json={"admin": True}), 404)["code"] == "not_found"
    fqdn = f"grace.{ZONE}"
    token = server.add_host(fqdn, "grace")
    assert server.update(f"hostname={fqdn}&myip=192.0.2.95", auth=(fqdn, token)).status_code == 200
    assert server.addresses(fqdn) == ["192.0.2.95"]
    refused = error_of(root.delete("/users/grace"), 409)
    assert "with_hosts" in refused["message"] or "host" in refused["message"]
    assert (
        error_of(root.delete("/users/grace", params={"with_hosts": "perhaps"}), 422)["field"]
        == "with_hosts"
    )
    assert root.delete("/users/grace", params={"with_hosts": "true"}).status_code == 204
    assert "grace" not in [user["name"] for user in root.get("/users").json()["users"]]
    assert eventually(lambda: server.addresses(fqdn) == [])
    assert error_of(root.delete("/users/grace"), 404)["code"] == "not_found"


def test_an_admin_cannot_lock_itself_out(root: Api) -> None:
    assert error_of(root.patch("/users/root", json={"disabled": True}), 409)["code"] == "conflict"
    assert error_of(root.patch("/users/root", json={"admin": False}), 409)["code"] == "conflict"
    assert error_of(root.delete("/users/root"), 409)["code"] == "conflict"
    assert root.get("/account").json()["admin"] is True


def test_a_read_only_admin_token_reads_users_but_changes_none(clients: Clients) -> None:
    reader = clients(user="root", read_only=True)
    assert reader.get("/users").status_code == 200
    refused = reader.post("/users", json={"name": "henry", "password": "henry-secret"})
    assert "read-only" in error_of(refused, 403)["message"]
    assert ALICE[0] in [user["name"] for user in reader.get("/users").json()["users"]]
