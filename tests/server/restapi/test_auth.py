"""Who may call the API: API tokens only (never account passwords), until they expire,
are revoked or their account is disabled; what each scope allows; the lock-out after
wrong tokens; and no token in any log line."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from nicupdate_server.dyndns import Credentials
from nicupdate_server.tables import api_tokens
from sqlalchemy import update

from tests.server.conftest import LiveServer, stop_server
from tests.server.restapi.conftest import (
    ALICE,
    UNLOCKED,
    Api,
    Clients,
    OpenApi,
    error_of,
    fqdn_for,
    new_token,
    start_api_server,
)

WRONG = "nu_" + "x" * 43  # the shape of a token, but none


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """With the access log on: what it writes is checked for secrets."""
    extra = "access_log = true\n" + UNLOCKED
    live = start_api_server(tmp_path_factory.mktemp("auth"), extra)
    yield live
    stop_server(live)


def challenge(response: httpx.Response) -> str:
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "unauthorized"
    return response.headers["www-authenticate"]


def token_id(api: Api) -> int:
    answer = api.get("/account")
    assert answer.status_code == 200, answer.text
    return int(answer.json()["token"]["id"])


def test_without_a_token_the_answer_is_401_saying_how_to_get_one(clients: Clients) -> None:
    anonymous = clients()
    answer = anonymous.get("/hosts")
    assert challenge(answer) == 'Bearer realm="nicupdate"'
    assert "nicupdate-server token add" in answer.json()["error"]["message"]


def test_an_account_password_never_works(clients: Clients) -> None:
    answer = clients().get("/account", auth=ALICE)
    assert challenge(answer).startswith("Bearer ")
    message = answer.json()["error"]["message"]
    assert "account passwords do not work" in message and "API token" in message


@pytest.mark.parametrize(
    ("header", "error"),
    [
        (f"Bearer {WRONG}", "invalid_token"),
        ("Bearer not-even-a-token", "invalid_token"),
        ("Bearer", "invalid_request"),
        (f"Token {WRONG}", "invalid_request"),
    ],
)
def test_a_wrong_token_is_401_invalid_token(clients: Clients, header: str, error: str) -> None:
    api = clients()
    answer = api.get("/hosts", headers={"Authorization": header})
    assert challenge(answer) == f'Bearer realm="nicupdate", error="{error}"'


def test_an_expired_token_stops_working(server: LiveServer, clients: Clients) -> None:
    api = clients(user="alice", expires_days=1)
    expires = api.get("/tokens").json()["tokens"][-1]["expires_at"]
    assert expires is not None
    ident = token_id(api)

    async def expire() -> None:
        past = datetime.now(UTC) - timedelta(seconds=1)
        async with server.runtime.engine.begin() as conn:
            await conn.execute(
                update(api_tokens).where(api_tokens.c.id == ident).values(expires_at=past)
            )

    server.call(expire)
    assert "invalid_token" in challenge(api.get("/account"))
    listed = [t for t in clients(user="alice").get("/tokens").json()["tokens"] if t["id"] == ident]
    assert listed[0]["expired"] is True


@pytest.mark.usefixtures("clean_environment")
def test_a_token_made_with_the_cli_works_until_revoked_with_it(
    server: LiveServer, clients: Clients
) -> None:
    made = server.cli("token", "add", "alice", "--name", "from-cli", "--read-only")
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip().rpartition(": ")[2]
    api = clients(secret)
    account = api.get("/account")
    assert account.status_code == 200, account.text
    assert account.json()["token"]["read_only"] is True
    revoked = server.cli("token", "revoke", str(account.json()["token"]["id"]))
    assert revoked.returncode == 0, revoked.stderr
    assert "invalid_token" in challenge(api.get("/account"))


def test_a_revoked_token_stops_working(clients: Clients) -> None:
    api = clients(user="alice")
    ident = token_id(api)
    other = clients(user="alice")
    revoked = other.delete(f"/tokens/{ident}")
    assert (revoked.status_code, revoked.content) == (204, b"")
    assert "invalid_token" in challenge(api.get("/account"))
    assert error_of(other.delete(f"/tokens/{ident}"), 404)["code"] == "not_found"


def test_a_disabled_accounts_tokens_all_stop_working(
    server: LiveServer, root: Api, clients: Clients, request: pytest.FixtureRequest
) -> None:
    added = root.post("/users", json={"name": "carol", "password": "carol-secret-1"})
    assert added.status_code == 201, added.text
    carol = clients(user="carol")
    fqdn = fqdn_for(request)
    host_token = carol.post("/hosts", json={"fqdn": fqdn}).json()["token"]
    assert server.update(f"hostname={fqdn}&myip=192.0.2.50", auth=(fqdn, host_token)).text == (
        "good 192.0.2.50\n"
    )
    disabled = root.patch("/users/carol", json={"disabled": True})
    assert disabled.status_code == 200, disabled.text
    assert disabled.json()["disabled"] is True
    assert "invalid_token" in challenge(carol.get("/account"))
    refused = server.update(f"hostname={fqdn}&myip=192.0.2.51", auth=(fqdn, host_token))
    assert (refused.status_code, refused.text) == (401, "badauth\n")
    assert root.patch("/users/carol", json={"disabled": False}).json()["disabled"] is False
    assert carol.get("/account").status_code == 200
    assert server.update(f"hostname={fqdn}&myip=192.0.2.51", auth=(fqdn, host_token)).text == (
        "good 192.0.2.51\n"
    )


def test_a_token_for_some_hosts_sees_and_changes_only_those(
    alice: Api, clients: Clients, request: pytest.FixtureRequest
) -> None:
    mine, other = fqdn_for(request, "mine"), fqdn_for(request, "other")
    for fqdn in (mine, other):
        assert alice.post("/hosts", json={"fqdn": fqdn}).status_code == 201
    scoped = clients(user="alice", hosts=[mine])
    assert [host["fqdn"] for host in scoped.get("/hosts").json()["hosts"]] == [mine]
    assert scoped.get(f"/hosts/{mine}").status_code == 200
    assert scoped.put(f"/hosts/{mine}/records", json={"A": ["192.0.2.60"]}).status_code == 200
    for method, path, body in [
        ("GET", f"/hosts/{other}", None),
        ("PUT", f"/hosts/{other}/records", {"A": ["192.0.2.61"]}),
        ("PATCH", f"/hosts/{other}", {"wildcard": True}),
        ("DELETE", f"/hosts/{other}", None),
        ("POST", f"/hosts/{other}/token", None),
        ("GET", f"/hosts/{other}/history", None),
    ]:
        assert error_of(scoped.request(method, path, json=body), 404)["code"] == "not_found"
    # Nor may it make a token for more than its hosts.
    wider = scoped.post("/tokens", json={"name": "wider", "hosts": [mine, other]})
    assert error_of(wider, 403)["code"] == "forbidden"
    narrower = scoped.post("/tokens", json={"name": "same"})
    assert narrower.status_code == 201, narrower.text
    assert narrower.json()["hosts"] == [mine]
    assert alice.get(f"/hosts/{other}").json()["records"]["A"] == []


def test_a_read_only_token_reads_and_writes_nothing(
    alice: Api, clients: Clients, request: pytest.FixtureRequest
) -> None:
    fqdn = fqdn_for(request)
    assert alice.post("/hosts", json={"fqdn": fqdn}).status_code == 201
    reader = clients(user="alice", read_only=True)
    assert reader.get("/hosts").status_code == 200
    assert reader.get(f"/hosts/{fqdn}/history").status_code == 200
    assert reader.get("/tokens").status_code == 200
    assert reader.get("/account").json()["token"]["read_only"] is True
    for method, path, body in [
        ("POST", "/hosts", {"fqdn": fqdn_for(request, "more")}),
        ("PUT", f"/hosts/{fqdn}/records", {"A": ["192.0.2.70"]}),
        ("PATCH", f"/hosts/{fqdn}", {"wildcard": True}),
        ("DELETE", f"/hosts/{fqdn}", None),
        ("POST", f"/hosts/{fqdn}/token", None),
        ("POST", "/tokens", {"name": "another"}),
        ("DELETE", f"/tokens/{token_id(alice)}", None),
        ("POST", "/account/password", {"current_password": ALICE[1], "new_password": "x" * 12}),
    ]:
        error = error_of(reader.request(method, path, json=body), 403)
        assert "read-only" in error["message"], (method, path)
    assert alice.get(f"/hosts/{fqdn}").json()["records"]["A"] == []


def test_an_acme_token_sets_txt_records_only(
    server: LiveServer, alice: Api, clients: Clients, request: pytest.FixtureRequest
) -> None:
    fqdn = fqdn_for(request)
    assert alice.post("/hosts", json={"fqdn": fqdn}).status_code == 201
    acme = clients(user="alice", acme_only=True, hosts=[fqdn])
    answer = acme.put(f"/hosts/{fqdn}/records", json={"TXT": ["challenge-1"]})
    assert answer.status_code == 200, answer.text
    assert server.addresses(f"_acme-challenge.{fqdn}", "TXT") == ['"challenge-1"']
    for method, path, body in [
        ("PUT", f"/hosts/{fqdn}/records", {"A": ["192.0.2.80"]}),
        ("PUT", f"/hosts/{fqdn}/records", {"A": ["192.0.2.80"], "TXT": ["x"]}),
        ("PATCH", f"/hosts/{fqdn}", {"wildcard": True}),
        ("DELETE", f"/hosts/{fqdn}", None),
        ("POST", f"/hosts/{fqdn}/token", None),
    ]:
        error = error_of(acme.request(method, path, json=body), 403)
        assert "TXT" in error["message"], (method, path)
    assert acme.get(f"/hosts/{fqdn}").json()["records"]["TXT"] == ["challenge-1"]
    # Every token it makes is as narrow.
    made = acme.post("/tokens", json={"name": "child"})
    assert made.status_code == 201 and made.json()["acme_only"] is True


def test_no_token_reaches_a_log_line(
    server: LiveServer, clients: Clients, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = new_token(server, "alice")
    api = clients(secret)
    assert api.get("/account").status_code == 200
    made = api.post("/tokens", json={"name": "logged"}).json()["secret"]
    fqdn = "logs.dyn.example.test"
    host_token = api.post("/hosts", json={"fqdn": fqdn}).json()["token"]
    rotated = api.post(f"/hosts/{fqdn}/token").json()["token"]
    api.get("/hosts", headers={"Authorization": f"Bearer {WRONG}"})
    api.post(
        "/account/password", json={"current_password": "wrong-pass-1", "new_password": "y" * 12}
    )
    assert any("/api/v1/" in record.getMessage() for record in caplog.records)  # logged
    text = "\n".join(record.getMessage() for record in caplog.records)
    for value in (secret, made, host_token, rotated, WRONG, "wrong-pass-1", "y" * 12):
        assert value not in text


def test_wrong_tokens_lock_the_source_out(tmp_path_factory: pytest.TempPathFactory) -> None:
    """With the default limits: the fifth wrong token locks 127.0.0.1 out, and then even
    a right one is answered 429 with Retry-After, unchecked."""
    live = start_api_server(tmp_path_factory.mktemp("lockout"), extra="")
    try:
        right = new_token(live, "alice")
        spec = OpenApi(httpx.get(live.url + "/api/v1/openapi.json", timeout=10).json())
        api = Api(live, spec, right)
        try:
            assert api.get("/account").status_code == 200
            for _ in range(5):
                wrong = api.get("/account", headers={"Authorization": f"Bearer {WRONG}"})
                assert wrong.status_code == 401
            for header in (f"Bearer {WRONG}", f"Bearer {right}"):
                locked = api.get("/account", headers={"Authorization": header})
                error = error_of(locked, 429)
                assert error["code"] == "too_many_requests"
                assert 1 <= int(locked.headers["retry-after"]) <= 60
                assert "try again in" in error["message"]
            # The lock-out is of API tokens from there: alice's password on /nic/update
            # from the same address is still checked.
            update = live.update("hostname=x.dyn.example.test&myip=192.0.2.1", auth=ALICE)
            assert (update.status_code, update.text) == (200, "nohost\n")
        finally:
            api.close()
    finally:
        stop_server(live)


def test_wrong_current_passwords_lock_the_source_out(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """A stolen token cannot guess its account's password through /account/password:
    each wrong one counts as a failed login of that account from the caller's source."""
    live = start_api_server(tmp_path_factory.mktemp("guess"), extra="")
    try:
        spec = OpenApi(httpx.get(live.url + "/api/v1/openapi.json", timeout=10).json())
        api = Api(live, spec, new_token(live, "alice"))
        try:
            body = {"current_password": "wrong-pass-1", "new_password": "y" * 12}
            for _ in range(5):
                assert error_of(api.post("/account/password", json=body), 403)["field"] == (
                    "current_password"
                )
            right = {"current_password": ALICE[1], "new_password": "y" * 12}
            locked = api.post("/account/password", json=right)
            assert error_of(locked, 429)["code"] == "locked_out"
            assert 1 <= int(locked.headers["retry-after"]) <= 60
            # Nothing changed: the old password still works on /nic/update (from
            # elsewhere: the lock-out is of alice from 127.0.0.1).
            assert (
                live.call(
                    lambda: live.runtime.authenticator.authenticate(
                        Credentials(*ALICE), lambda: "192.0.2.1"
                    )
                )
                is not None
            )
        finally:
            api.close()
    finally:
        stop_server(live)
