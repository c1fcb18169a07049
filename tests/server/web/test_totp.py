"""Two-factor sign-in (TOTP): turning it on and off from the account page, and signing in
with a code, which works once. Codes are made with pyotp, as an authenticator app
makes them; a code of the step before or after now is taken as the app's clock being a
little off, which lets a test use three fresh codes without waiting."""

from __future__ import annotations

import re
import time
from html import unescape

import pyotp
import pytest

from tests.server.conftest import LiveServer

from .conftest import Browser, text_of


def code(secret: str, steps_from_now: int = 0) -> str:
    return pyotp.TOTP(secret).at(time.time() + 30 * steps_from_now)


def turn_on(browser: Browser, steps_from_now: int = 0) -> tuple[str, str]:
    """Turn TOTP on from the account page: the secret, and the code that confirmed it."""
    page = browser.get("/account/totp")
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-store"
    secret = re.search(r'<code id="totp-secret" class="secret">([A-Z2-7]+)</code>', page.text)
    assert secret is not None
    uri = re.search(r'<code id="totp-uri" class="secret">([^<]+)</code>', page.text)
    assert uri is not None and unescape(uri.group(1)).startswith("otpauth://totp/")
    assert "<svg" in page.text  # the QR code
    confirming = code(secret.group(1), steps_from_now)
    answer = browser.post("/account/totp", {"secret": secret.group(1), "code": confirming})
    assert answer.status_code == 303
    assert "Two-factor sign-in is on" in text_of(browser.follow(answer).text)
    return secret.group(1), confirming


@pytest.fixture
def tina(web_server: LiveServer) -> str:
    """A new account (its name) for a test that changes its TOTP."""
    name = f"tina{time.monotonic_ns()}"
    web_server.add_user(name, "tina-secret-1")
    return name


def test_a_wrong_code_does_not_turn_it_on(browser: Browser, tina: str) -> None:
    browser.sign_in(tina, "tina-secret-1")
    page = browser.get("/account/totp")
    secret = re.search(r'name="secret" value="([A-Z2-7]+)"', page.text)
    assert secret is not None
    wrong = f"{(int(code(secret.group(1))) + 1) % 1_000_000:06d}"
    answer = browser.post("/account/totp", {"secret": secret.group(1), "code": wrong})
    assert answer.status_code == 422
    assert "code is wrong" in text_of(answer.text)
    assert "Signing in needs only your password" in text_of(browser.get("/account").text)


def test_sign_in_asks_for_the_code_and_takes_it_once(web_server: LiveServer, tina: str) -> None:
    setup = Browser(web_server)
    setup.sign_in(tina, "tina-secret-1")
    secret, used = turn_on(setup, steps_from_now=-1)
    setup.close()

    browser = Browser(web_server)
    try:
        answer = browser.sign_in(tina, "tina-secret-1")
        assert answer.status_code == 303 and answer.headers["location"] == "/signin/code"
        # Nothing else opens until the code comes.
        for path in ("/hosts", "/account", "/tokens"):
            assert browser.get(path).headers["location"] == "/signin/code"
        page = browser.get("/signin/code")
        assert "6-digit code" in text_of(page.text)
        # The code that turned it on was used: it is refused.
        refused = browser.post("/signin/code", {"code": used})
        assert refused.status_code == 401
        assert "wrong or was already used" in text_of(refused.text)
        answer = browser.post("/signin/code", {"code": code(secret)})
        assert answer.status_code == 303 and answer.headers["location"] == "/hosts"
        assert browser.get("/hosts").status_code == 200
        # Turning it off takes a fresh code.
        browser.get("/account")
        answer = browser.post("/account/totp/disable", {"code": code(secret, 1)})
        assert answer.status_code == 303
        assert "Two-factor sign-in is off" in text_of(browser.follow(answer).text)
        again = Browser(web_server)
        try:
            assert again.sign_in(tina, "tina-secret-1").headers["location"] == "/hosts"
        finally:
            again.close()
    finally:
        browser.close()


def test_wrong_codes_lock_the_source_out(web_server: LiveServer, tina: str) -> None:
    setup = Browser(web_server)
    setup.sign_in(tina, "tina-secret-1")
    secret, _ = turn_on(setup, steps_from_now=-1)
    setup.close()
    browser = Browser(web_server)
    try:
        browser.sign_in(tina, "tina-secret-1")
        browser.get("/signin/code")
        wrong = f"{(int(code(secret)) + 500_000) % 1_000_000:06d}"
        limit = web_server.config.limits.auth_failures_per_user
        for _ in range(limit):
            assert browser.post("/signin/code", {"code": wrong}).status_code == 401
        locked = browser.post("/signin/code", {"code": code(secret)})
        assert locked.status_code == 429
        assert int(locked.headers["retry-after"]) >= 1
        assert "Too many failed sign-ins" in text_of(locked.text)
        assert browser.get("/hosts").headers["location"] == "/signin/code"
    finally:
        browser.close()


def test_the_code_page_needs_its_csrf_token(web_server: LiveServer, tina: str) -> None:
    setup = Browser(web_server)
    setup.sign_in(tina, "tina-secret-1")
    secret, _ = turn_on(setup, steps_from_now=-1)
    setup.close()
    browser = Browser(web_server)
    try:
        browser.sign_in(tina, "tina-secret-1")
        browser.get("/signin/code")
        answer = browser.post("/signin/code", {"code": code(secret), "csrf": "forged"})
        assert answer.status_code == 403
        assert browser.get("/hosts").headers["location"] == "/signin/code"
    finally:
        browser.close()
