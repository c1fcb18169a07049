"""Signing in and out of the web UI, its cookies, CSRF refusals, lock-outs and the end of
sessions, as a browser meets them (over HTTP, against a live server)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from http.cookies import SimpleCookie

import httpx
import pytest
from nicupdate_server.tables import web_sessions
from nicupdate_server.web.sessions import digest
from sqlalchemy import func, select, update

from tests.server.conftest import LiveServer

from .conftest import ALICE, HOME, ROOT, Browser, hidden_fields, text_of


def cookie_attributes(response: httpx.Response, name: str) -> dict[str, str | bool]:
    for header in response.headers.get_list("set-cookie"):
        jar: SimpleCookie = SimpleCookie()
        jar.load(header)
        if name in jar:
            morsel = jar[name]
            attributes: dict[str, str | bool] = {"value": morsel.value}
            lowered = header.lower()
            attributes["httponly"] = "httponly" in lowered
            attributes["secure"] = "; secure" in lowered
            attributes["samesite"] = morsel["samesite"].lower()
            attributes["path"] = morsel["path"]
            return attributes
    raise AssertionError(f"no Set-Cookie for {name}: {response.headers.get_list('set-cookie')}")


def session_rows(server: LiveServer, user: str | None = None) -> int:
    async def count() -> int:
        from nicupdate_server.tables import users

        query = select(func.count()).select_from(web_sessions)
        if user is not None:
            query = query.join(users, users.c.id == web_sessions.c.user_id).where(
                users.c.name == user
            )
        async with server.runtime.engine.connect() as conn:
            return int((await conn.execute(query)).scalar_one())

    return server.call(count)


def age_session(server: LiveServer, cookie: str, **values: datetime) -> None:
    async def change() -> None:
        async with server.runtime.engine.begin() as conn:
            await conn.execute(
                update(web_sessions).where(web_sessions.c.digest == digest(cookie)).values(**values)
            )

    server.call(change)


def test_signing_in_opens_the_hosts_page(browser: Browser) -> None:
    form = browser.get("/signin")
    assert form.status_code == 200
    assert 'lang="en"' in form.text and "Account name" in form.text
    answer = browser.sign_in(*ALICE)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/hosts"
    page = browser.follow(answer)
    assert page.status_code == 200
    assert HOME in text_of(page.text)
    assert "alice" in text_of(page.text) and "Sign out" in page.text


def test_the_session_cookie_is_http_only_lax_and_not_secure_over_http(browser: Browser) -> None:
    answer = browser.sign_in(*ALICE)
    cookie = cookie_attributes(answer, "nicupdate_session")
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "lax"
    assert cookie["path"] == "/"
    assert cookie["secure"] is False
    assert len(str(cookie["value"])) >= 43  # 256 random bits


def test_the_cookie_is_secure_behind_a_trusted_tls_proxy(web_server: LiveServer) -> None:
    """As the proxy forwards it: the browser spoke TLS to the proxy (a Secure cookie is
    sent back only over TLS, so the cookies are passed on by hand here)."""
    headers = {"x-forwarded-proto": "https", "x-forwarded-for": "198.51.99.7"}
    with httpx.Client(base_url=web_server.url, timeout=20, headers=headers) as client:
        form = client.get("/signin")
        signin_cookie = cookie_attributes(form, "nicupdate_signin")
        assert signin_cookie["secure"] is True
        client.cookies.clear()
        answer = client.post(
            "/signin",
            data={"name": ALICE[0], "password": ALICE[1], "csrf": hidden_fields(form.text)["csrf"]},
            headers={"cookie": f"nicupdate_signin={signin_cookie['value']}"},
        )
        assert answer.status_code == 303
        session_cookie = cookie_attributes(answer, "nicupdate_session")
        assert session_cookie["secure"] is True
        assert session_cookie["httponly"] is True and session_cookie["samesite"] == "lax"


def test_an_untrusted_peer_cannot_claim_tls(web_server: LiveServer) -> None:
    """Only 127.0.0.1 is a trusted proxy: from 127.0.0.2 the header means nothing."""
    transport = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(base_url=web_server.url, transport=transport, timeout=20) as client:
        form = client.get("/signin", headers={"x-forwarded-proto": "https"})
        assert form.status_code == 200
        assert cookie_attributes(form, "nicupdate_signin")["secure"] is False


def test_a_wrong_password_is_refused_without_a_session(browser: Browser) -> None:
    answer = browser.sign_in("alice", "not-her-password")
    assert answer.status_code == 401
    assert "Wrong account name or password" in text_of(answer.text)
    assert browser.session_cookie is None
    assert browser.get("/hosts").status_code == 303


def test_a_host_token_does_not_sign_in(web_server: LiveServer, browser: Browser) -> None:
    answer = browser.sign_in(HOME, web_server.tokens[HOME])
    assert answer.status_code == 401
    assert browser.session_cookie is None


def test_signing_out_ends_the_session(web_server: LiveServer, alice: Browser) -> None:
    cookie = alice.session_cookie
    assert cookie is not None
    alice.get("/hosts")
    before = session_rows(web_server)
    answer = alice.post("/signout")
    assert answer.status_code == 303 and answer.headers["location"].startswith("/signin")
    assert "You are signed out" in text_of(alice.follow(answer).text)
    assert session_rows(web_server) == before - 1
    # The old cookie, replayed, opens nothing.
    replay = httpx.get(
        web_server.url + "/hosts", cookies={"nicupdate_session": cookie}, follow_redirects=False
    )
    assert replay.status_code == 303 and replay.headers["location"].startswith("/signin")


def test_a_signed_out_visit_returns_to_the_page_after_sign_in(browser: Browser) -> None:
    answer = browser.get(f"/hosts/{HOME}")
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/signin?next=/hosts/{HOME}"
    browser.follow(answer)
    fields = hidden_fields(browser.page)
    assert fields["next"] == f"/hosts/{HOME}"
    signed_in = browser.post("/signin", {"name": ALICE[0], "password": ALICE[1], **fields})
    assert signed_in.headers["location"] == f"/hosts/{HOME}"


@pytest.mark.parametrize("target", ["//evil.example/", "https://evil.example/", "/\\evil.example"])
def test_next_never_leaves_the_site(browser: Browser, target: str) -> None:
    browser.get("/signin")
    answer = browser.post("/signin", {"name": ALICE[0], "password": ALICE[1], "next": target})
    assert answer.headers["location"] == "/hosts"


# CSRF ------------------------------------------------------------------------------------


def test_sign_in_without_the_form_token_is_refused(web_server: LiveServer) -> None:
    """Login CSRF: another site can post the form, but not with the browser's cookie."""
    with httpx.Client(base_url=web_server.url, timeout=20) as client:
        answer = client.post(
            "/signin", data={"name": ALICE[0], "password": ALICE[1], "csrf": "guessed"}
        )
        assert answer.status_code == 403
        assert "nicupdate_session" not in answer.headers.get("set-cookie", "")
        assert "sign in again" in text_of(answer.text)


def test_a_post_without_the_session_token_changes_nothing(
    web_server: LiveServer, alice: Browser
) -> None:
    alice.get("/hosts/new")
    fqdn = "csrf-victim.dyn.example.test"
    for token in ("", "x" * 43, None):
        data = {"fqdn": fqdn} if token is None else {"fqdn": fqdn, "csrf": token}
        answer = alice.post("/hosts/new", data, csrf=False)
        assert answer.status_code == 403
        assert "nothing was changed" in text_of(answer.text)
    assert fqdn not in alice.get("/hosts").text
    assert alice.get(f"/hosts/{fqdn}").status_code == 404


def test_another_sessions_token_is_refused(web_server: LiveServer, alice: Browser) -> None:
    other = Browser(web_server)
    try:
        other.sign_in(*ALICE)
        other.get("/hosts")
        foreign = hidden_fields(other.page)["csrf"]
        alice.get("/hosts")
        answer = alice.post("/signout", {"csrf": foreign})
        assert answer.status_code == 403
        assert alice.get("/hosts").status_code == 200  # still signed in
    finally:
        other.close()


# Lock-out --------------------------------------------------------------------------------


def test_wrong_passwords_lock_the_source_out(web_server: LiveServer, browser: Browser) -> None:
    limit = web_server.config.limits.auth_failures_per_user
    for _ in range(limit):
        assert browser.sign_in("alice", "wrong-password").status_code == 401
    answer = browser.sign_in("alice", "wrong-password")
    assert answer.status_code == 429
    assert int(answer.headers["retry-after"]) >= 1
    assert "Too many failed sign-ins" in text_of(answer.text)
    # Another address is not locked out.
    elsewhere = Browser(web_server)
    try:
        assert elsewhere.sign_in("alice", "wrong-password").status_code == 401
    finally:
        elsewhere.close()


# The end of a session --------------------------------------------------------------------


def test_an_idle_session_ends(web_server: LiveServer, alice: Browser) -> None:
    cookie = alice.session_cookie
    assert cookie is not None and alice.get("/hosts").status_code == 200
    age_session(web_server, cookie, seen_at=datetime.now(UTC) - timedelta(hours=13))
    answer = alice.get("/hosts")
    assert answer.status_code == 303 and answer.headers["location"].startswith("/signin")
    assert alice.sign_in(*ALICE).status_code == 303  # and a new one starts


def test_a_session_ends_after_its_lifetime(web_server: LiveServer, alice: Browser) -> None:
    cookie = alice.session_cookie
    assert cookie is not None
    age_session(web_server, cookie, expires_at=datetime.now(UTC) - timedelta(seconds=1))
    assert alice.get("/account").status_code == 303


def test_a_disabled_accounts_sessions_end(web_server: LiveServer, root: Browser) -> None:
    web_server.add_user("dora", "dora-secret-1")
    dora = Browser(web_server)
    try:
        assert dora.sign_in("dora", "dora-secret-1").status_code == 303
        assert dora.get("/hosts").status_code == 200
        root.get("/admin/users")
        answer = root.post("/admin/users/dora", {"action": "disable"})
        assert answer.status_code == 303
        assert "Account disabled" in text_of(root.follow(answer).text)
        assert dora.get("/hosts").status_code == 303
        assert session_rows(web_server, "dora") == 0
        assert dora.sign_in("dora", "dora-secret-1").status_code == 401
        root.get("/admin/users")
        root.post("/admin/users/dora", {"action": "enable"})
        assert dora.sign_in("dora", "dora-secret-1").status_code == 303
    finally:
        dora.close()


def test_changing_the_password_ends_the_other_sessions(web_server: LiveServer) -> None:
    web_server.add_user("pat", "pat-secret-1")
    here, there = Browser(web_server), Browser(web_server)
    try:
        assert here.sign_in("pat", "pat-secret-1").status_code == 303
        assert there.sign_in("pat", "pat-secret-1").status_code == 303
        here.get("/account")
        wrong = here.post(
            "/account/password",
            {"current_password": "nope", "new_password": "x" * 10, "repeat_password": "x" * 10},
        )
        assert wrong.status_code == 403
        assert "current password is wrong" in text_of(wrong.text)
        answer = here.post(
            "/account/password",
            {
                "current_password": "pat-secret-1",
                "new_password": "pat-secret-2",
                "repeat_password": "pat-secret-2",
            },
        )
        assert answer.status_code == 303
        assert "Password changed" in text_of(here.follow(answer).text)
        assert here.get("/hosts").status_code == 200
        assert there.get("/hosts").status_code == 303
        assert there.sign_in("pat", "pat-secret-1").status_code == 401
        assert there.sign_in("pat", "pat-secret-2").status_code == 303
    finally:
        here.close()
        there.close()


# Admins only -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/admin/users", "/admin/status", "/admin/users/root/remove"])
def test_admin_pages_are_refused_to_users(alice: Browser, path: str) -> None:
    answer = alice.get(path)
    assert answer.status_code == 403
    assert "Only an administrator" in text_of(answer.text)


def test_admin_changes_are_refused_to_users(web_server: LiveServer, alice: Browser) -> None:
    alice.get("/hosts")
    answer = alice.post("/admin/users", {"name": "mallory", "password": "mallory-secret-1"})
    assert answer.status_code == 403
    answer = alice.post("/admin/users/root", {"action": "disable"})
    assert answer.status_code == 403
    root = Browser(web_server)
    try:
        assert root.sign_in(*ROOT).status_code == 303
        assert "mallory" not in root.get("/admin/users").text
    finally:
        root.close()


def test_every_users_hosts_only_for_admins(root: Browser, alice: Browser) -> None:
    assert "All hosts" in root.get("/hosts?all=1").text
    assert HOME in root.page
    mine = alice.get("/hosts?all=1")
    assert "All hosts" not in mine.text and "Your hosts" in mine.text


def test_guessing_the_current_password_locks_out(web_server: LiveServer) -> None:
    web_server.add_user("gus", "gus-secret-1")
    browser = Browser(web_server)
    try:
        browser.sign_in("gus", "gus-secret-1")
        browser.get("/account")
        guess = {"new_password": "y" * 10, "repeat_password": "y" * 10}
        for n in range(web_server.config.limits.auth_failures_per_user):
            answer = browser.post("/account/password", {"current_password": f"guess-{n}", **guess})
            assert answer.status_code == 403
        answer = browser.post("/account/password", {"current_password": "gus-secret-1", **guess})
        assert answer.status_code == 429
        assert "Too many failed sign-ins" in text_of(answer.text)
    finally:
        browser.close()
    elsewhere = Browser(web_server)
    try:
        assert elsewhere.sign_in("gus", "gus-secret-1").status_code == 303
    finally:
        elsewhere.close()
