"""The web UI's pages over HTTP: hosts (add, token shown once, the addresses, what DNS
serves, history, addresses by hand, wildcard, new token, remove), API tokens, and the
admins' users and status pages. Each checks what the page says and what DNS answers."""

from __future__ import annotations

import re
import time
from html import unescape

import httpx
import pytest

from tests.server.conftest import LiveServer, eventually

from .conftest import ALICE, HOME, Browser, hidden_fields, text_of

TOKEN_RE = re.compile(r'<code id="token-value" class="secret">([A-Za-z0-9_-]+)</code>')


def unique(prefix: str) -> str:
    return f"{prefix}{time.monotonic_ns() % 10**9}.dyn.example.test"


def add_host(browser: Browser, fqdn: str, **extra: str) -> tuple[httpx.Response, str]:
    browser.get("/hosts/new")
    answer = browser.post("/hosts/new", {"fqdn": fqdn, **extra})
    assert answer.status_code == 200, text_of(answer.text)[:300]
    found = TOKEN_RE.search(answer.text)
    assert found is not None
    return answer, found.group(1)


def update(server: LiveServer, fqdn: str, token: str, myip: str) -> str:
    return server.update(f"hostname={fqdn}&myip={myip}", auth=(fqdn, token)).text.strip()


def test_adding_a_host_shows_its_token_once_with_client_settings(
    web_server: LiveServer, alice: Browser
) -> None:
    fqdn = unique("laptop")
    answer, token = add_host(alice, fqdn)
    assert answer.headers["cache-control"] == "no-store"
    text = text_of(answer.text)
    assert f"Host {fqdn} added" in text
    assert "shown only once" in text
    for client in ("curl", "nicupdate-client", "ddclient", "inadyn", "OpenWrt", "FRITZ!Box"):
        assert client in text
    settings = unescape(answer.text)
    assert f"server={web_server.url.removeprefix('http://')}" in settings  # ddclient
    assert f"password='{token}'" in settings
    assert f"nicupdate-client init --server {web_server.url} --hostname {fqdn}" in settings
    # The token works, and no page shows it again.
    assert update(web_server, fqdn, token, "203.0.113.20") == "good 203.0.113.20"
    assert web_server.addresses(fqdn) == ["203.0.113.20"]
    assert token not in alice.get(f"/hosts/{fqdn}").text
    assert token not in alice.get("/hosts").text


def test_a_host_page_shows_addresses_dns_and_history(
    web_server: LiveServer, alice: Browser
) -> None:
    fqdn = unique("office")
    _, token = add_host(alice, fqdn)
    for address in ("203.0.113.30", "2001:db8::30", "203.0.113.31"):
        assert update(web_server, fqdn, token, address).startswith("good")

    def shown() -> str:
        page = text_of(alice.get(f"/hosts/{fqdn}").text)
        return page if "A 203.0.113.30 → A 203.0.113.31" in page else ""

    page = eventually(shown)
    assert page, "the history row did not appear"
    assert "203.0.113.31" in page and "2001:db8::30" in page
    assert "DNS serves these addresses" in page
    assert "good 2001:db8::30" in page
    assert "3 address changes since" in page
    assert '<svg width="100%"' in alice.page and 'role="img"' in alice.page
    assert "IPv4 (A) 203.0.113.30 from" in page  # the chart's text alternative
    listing = text_of(alice.get("/hosts").text)
    assert fqdn in listing and "203.0.113.31" in listing


def test_history_is_paged(web_server: LiveServer, alice: Browser) -> None:
    fqdn = unique("paged")
    _, token = add_host(alice, fqdn)
    for n in range(55):
        assert update(web_server, fqdn, token, f"198.51.100.{n + 1}").startswith("good")

    def newest_row_shown() -> bool:
        return "<code>good 198.51.100.55</code>" in alice.get(f"/hosts/{fqdn}").text

    assert eventually(newest_row_shown)
    assert alice.page.count("<td><code>good") == 50
    older = re.search(r'href="(/hosts/[^"]+\?before=\d+)#history-heading"', alice.page)
    assert older is not None
    second = alice.get(older.group(1))
    assert second.text.count("<td><code>good") == 5
    assert "198.51.100.1" in text_of(second.text) and "Newest" in second.text


def test_addresses_set_by_hand_reach_dns(web_server: LiveServer, alice: Browser) -> None:
    fqdn = unique("manual")
    add_host(alice, fqdn)
    alice.get(f"/hosts/{fqdn}")
    answer = alice.post(f"/hosts/{fqdn}/records", {"a": "203.0.113.40, 203.0.113.41", "aaaa": ""})
    assert answer.status_code == 303
    assert "DNS serves the new addresses" in text_of(alice.follow(answer).text)
    assert web_server.addresses(fqdn) == ["203.0.113.40", "203.0.113.41"]
    again = alice.post(f"/hosts/{fqdn}/records", {"a": "203.0.113.41 203.0.113.40", "aaaa": ""})
    assert "Nothing to change" in text_of(alice.follow(again).text)
    bad = alice.post(f"/hosts/{fqdn}/records", {"a": "203.0.113.42", "aaaa": "not-an-address"})
    assert bad.status_code == 422
    assert "'not-an-address' is not an IP address" in text_of(bad.text)
    assert 'value="not-an-address"' in bad.text  # the form keeps what was typed
    loopback = alice.post(f"/hosts/{fqdn}/records", {"a": "127.0.0.1", "aaaa": ""})
    assert loopback.status_code == 422  # as /nic/update and the API refuse it
    assert "127.0.0.1 is a loopback address" in text_of(loopback.text)
    assert web_server.addresses(fqdn) == ["203.0.113.40", "203.0.113.41"]


def test_the_wildcard_is_turned_on_and_off(web_server: LiveServer, alice: Browser) -> None:
    fqdn = unique("wild")
    _, token = add_host(alice, fqdn)
    update(web_server, fqdn, token, "203.0.113.50")
    alice.get(f"/hosts/{fqdn}")
    answer = alice.post(f"/hosts/{fqdn}/wildcard", {"wildcard": "on"})
    assert "Wildcard turned on" in text_of(alice.follow(answer).text)
    assert eventually(lambda: web_server.addresses(f"www.{fqdn}") == ["203.0.113.50"])
    answer = alice.post(f"/hosts/{fqdn}/wildcard", {"wildcard": "off"})
    assert "Wildcard turned off" in text_of(alice.follow(answer).text)
    assert eventually(lambda: web_server.addresses(f"www.{fqdn}") == [])


def test_a_new_token_replaces_the_old_one(web_server: LiveServer, alice: Browser) -> None:
    fqdn = unique("rotate")
    _, old = add_host(alice, fqdn)
    alice.get(f"/hosts/{fqdn}")
    answer = alice.post(f"/hosts/{fqdn}/token")
    assert answer.status_code == 200 and answer.headers["cache-control"] == "no-store"
    assert "the old one no longer works" in text_of(answer.text)
    found = TOKEN_RE.search(answer.text)
    assert found is not None and found.group(1) != old
    assert update(web_server, fqdn, old, "203.0.113.60") == "badauth"
    assert update(web_server, fqdn, found.group(1), "203.0.113.60") == "good 203.0.113.60"


def test_removing_a_host_asks_first(web_server: LiveServer, alice: Browser) -> None:
    fqdn = unique("gone")
    _, token = add_host(alice, fqdn)
    update(web_server, fqdn, token, "203.0.113.70")
    confirm = alice.get(f"/hosts/{fqdn}/remove")
    assert confirm.status_code == 200
    assert f"Remove {fqdn}?" in text_of(confirm.text)
    assert web_server.addresses(fqdn) == ["203.0.113.70"]  # nothing removed yet
    answer = alice.post(f"/hosts/{fqdn}/remove")
    assert answer.status_code == 303
    assert "Host removed" in text_of(alice.follow(answer).text)
    assert fqdn not in alice.page
    assert web_server.addresses(fqdn) == []
    assert alice.get(f"/hosts/{fqdn}").status_code == 404


def test_adding_a_host_outside_the_zones_says_why(alice: Browser) -> None:
    alice.get("/hosts/new")
    answer = alice.post("/hosts/new", {"fqdn": "home.example.org"})
    assert answer.status_code == 422
    text = text_of(answer.text)
    assert "home.example.org" in text
    assert 'value="home.example.org"' in answer.text
    answer = alice.post("/hosts/new", {"fqdn": HOME})
    assert answer.status_code == 409 and "already exists" in text_of(answer.text)


def test_another_users_host_is_not_found(web_server: LiveServer, browser: Browser) -> None:
    web_server.add_user("bob", "bob-secret-1")
    browser.sign_in("bob", "bob-secret-1")
    refused = browser.get(f"/hosts/{HOME}")
    assert refused.status_code == 404
    assert f"no host {HOME} of yours" in text_of(refused.text)
    assert "/api/v1" not in text_of(refused.text)
    browser.get("/hosts")
    assert browser.post(f"/hosts/{HOME}/token").status_code == 404
    assert browser.post(f"/hosts/{HOME}/remove").status_code == 404
    assert web_server.update(
        f"hostname={HOME}&myip=203.0.113.80", auth=(HOME, web_server.tokens[HOME])
    ).text.startswith(("good", "nochg"))


# API tokens -----------------------------------------------------------------------------


def test_api_tokens_are_made_shown_once_and_revoked(alice: Browser) -> None:
    alice.get("/tokens")
    answer = alice.post(
        "/tokens", {"name": "backup job", "scope": "read_only", "expires": "30", "hosts": HOME}
    )
    assert answer.status_code == 200 and answer.headers["cache-control"] == "no-store"
    secret = re.search(
        r'<code id="api-token" class="secret">(nu_[A-Za-z0-9_-]+)</code>', answer.text
    )
    assert secret is not None
    assert f"Bearer {secret.group(1)}" in unescape(answer.text)
    listing = alice.get("/tokens")
    text = text_of(listing.text)
    assert "backup job" in text and f"read-only; hosts: {HOME}" in text
    assert secret.group(1) not in listing.text
    form = re.search(r'action="(/tokens/\d+/revoke)"', listing.text)
    assert form is not None
    answer = alice.post(form.group(1))
    assert "API token revoked" in text_of(alice.follow(answer).text)
    assert "backup job" not in text_of(alice.page)


def test_a_bad_token_form_says_what_to_fix(alice: Browser) -> None:
    alice.get("/tokens")
    answer = alice.post("/tokens", {"name": "x" * 80, "scope": "full", "expires": "90"})
    assert answer.status_code == 422
    assert "1-64 letters" in text_of(answer.text)
    answer = alice.post("/tokens", {"name": "ok", "scope": "root", "expires": "90"})
    assert answer.status_code == 422 and "choose what the token may do" in text_of(answer.text)


# Admins ----------------------------------------------------------------------------------


def test_admins_manage_users(web_server: LiveServer, root: Browser) -> None:
    name = f"carol{time.monotonic_ns() % 10**6}"
    root.get("/admin/users")
    answer = root.post("/admin/users", {"name": name, "password": "carol-secret-1"})
    assert answer.status_code == 303
    assert "Account added" in text_of(root.follow(answer).text)
    assert name in root.page
    carol = Browser(web_server)
    try:
        assert carol.sign_in(name, "carol-secret-1").status_code == 303
        assert carol.get("/admin/users").status_code == 403
        root.post(f"/admin/users/{name}", {"action": "admin_on"})
        assert "now an administrator" in text_of(root.get("/admin/users?done=user_admin_on").text)
        assert carol.get("/admin/users").status_code == 200
        # Removing: a confirmation page; an account with hosts needs "with hosts".
        add_host(carol, unique("carol"))
        confirm = root.get(f"/admin/users/{name}/remove")
        assert f"Remove {name}?" in text_of(confirm.text) and "It owns 1 hosts" in text_of(
            confirm.text
        )
        refused = root.post(f"/admin/users/{name}/remove")
        assert refused.status_code == 409
        answer = root.post(f"/admin/users/{name}/remove", {"with_hosts": "on"})
        assert answer.status_code == 303
        assert "Account removed" in text_of(root.follow(answer).text)
        assert name not in text_of(root.page)
        assert carol.get("/hosts").status_code == 303
    finally:
        carol.close()


def test_an_admin_cannot_lock_themselves_out(root: Browser) -> None:
    root.get("/admin/users")
    answer = root.post("/admin/users/root", {"action": "disable"})
    assert answer.status_code == 409
    assert "cannot disable yourself" in text_of(answer.text)
    assert root.get("/admin/users").status_code == 200


def test_a_duplicate_user_is_refused(root: Browser) -> None:
    root.get("/admin/users")
    answer = root.post("/admin/users", {"name": ALICE[0], "password": "whatever-1"})
    assert answer.status_code == 409
    assert "already exists" in text_of(answer.text)


def test_the_status_page(web_server: LiveServer, root: Browser) -> None:
    web_server.update(f"hostname={HOME}&myip=203.0.113.90", auth=(HOME, web_server.tokens[HOME]))
    page = root.get("/admin/status")
    assert page.status_code == 200
    text = text_of(page.text)
    assert "healthy" in text
    assert "DNS backends" in text and "builtin" in text
    assert re.search(r"Accounts \d+ Hosts \d+", text)
    assert "nicupdate_updates_total" in text  # a figure of /metrics


@pytest.mark.parametrize("path", ["/signout", "/hosts/new/x/y"])
def test_unknown_pages_and_methods_answer_in_html(browser: Browser, path: str) -> None:
    answer = browser.get(path)
    assert answer.status_code in (404, 405)
    assert answer.headers["content-type"].startswith("text/html")
    assert "<h1>Not " in answer.text


def test_an_oversized_form_is_refused_unread(web_server: LiveServer, alice: Browser) -> None:
    alice.get("/hosts/new")
    answer = alice.post("/hosts/new", {"fqdn": "big.dyn.example.test", "pad": "x" * 100_000})
    assert answer.status_code == 413
    assert "Too large" in text_of(answer.text)
    assert alice.get("/hosts/big.dyn.example.test").status_code == 404


def test_scripts_get_plain_errors(web_server: LiveServer) -> None:
    answer = httpx.get(web_server.url + "/no/such/page", headers={"accept": "*/*"})
    assert answer.status_code == 404
    assert answer.headers["content-type"].startswith("text/plain")


def test_every_answer_carries_the_security_headers(web_server: LiveServer) -> None:
    for path in ("/signin", "/nope", "/static/app.css", "/hosts"):
        answer = httpx.get(web_server.url + path, headers={"accept": "text/html"})
        headers = answer.headers
        assert "'unsafe-inline'" not in headers["content-security-policy"]
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert headers["x-frame-options"] == "DENY"
        assert headers["referrer-policy"] == "same-origin"
        assert headers["x-content-type-options"] == "nosniff"


def test_static_files_are_small_and_cached(web_server: LiveServer, browser: Browser) -> None:
    page = browser.get("/signin").text
    for name in ("app.css", "app.js"):
        link = re.search(rf'"(/static/{name}\?v=[0-9a-f]+)"', page)
        assert link is not None
        answer = httpx.get(web_server.url + link.group(1))
        assert answer.status_code == 200
        assert "immutable" in answer.headers["cache-control"]
        assert len(answer.content) < 16_000


def test_notices_come_from_the_catalogue_only(alice: Browser) -> None:
    page = alice.get("/hosts?done=<script>alert(1)</script>")
    assert "<script>alert" not in page.text
    assert 'class="notice"' not in page.text
    assert 'class="notice"' in alice.get("/hosts?done=host_removed").text
    fields = hidden_fields(page.text)
    assert set(fields) == {"csrf"}
