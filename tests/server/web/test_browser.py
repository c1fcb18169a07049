"""The web UI end to end in Debian's Chromium (Playwright, headless): a user signs in,
adds a host, copies its token, updates it with curl, sees the change on the host page,
makes a new token, signs out; with JavaScript on and off. Also CSRF from another site,
lock-out, TOTP, and screenshots of the main pages at desktop and phone size
(``tests/artifacts/screenshots/``).

One browser for the module, one server; each test has a context of its own (cookies,
and an address of its own through the trusted-proxy header, for the lock-outs).
"""

from __future__ import annotations

import contextlib
import http.server
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyotp
import pytest
from nicupdate_server.tables import update_log
from playwright.sync_api import Browser as Chromium
from playwright.sync_api import BrowserContext, Page, expect, sync_playwright
from sqlalchemy import select, update

from tests.server.conftest import LiveServer, eventually

from .conftest import ALICE, CHROMIUM, CHROMIUM_ARGS, ROOT, new_source

# expect() waits 5 s by default: too little with both cores busy; it returns as soon as
# the condition holds.
expect.set_options(timeout=30_000)
SCREENSHOTS = Path(__file__).parents[2] / "artifacts" / "screenshots"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 375, "height": 740}


@pytest.fixture(scope="module")
def chromium() -> Iterator[Chromium]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class Visitor:
    """A browser context and its page, with an address of its own."""

    def __init__(
        self, chromium: Chromium, server: LiveServer, *, javascript: bool = True, **options: object
    ) -> None:
        self.server = server
        self.source = new_source()
        self.context: BrowserContext = chromium.new_context(
            java_script_enabled=javascript,
            extra_http_headers={"x-forwarded-for": self.source},
            **options,  # type: ignore[arg-type]
        )
        self.page: Page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))

    def open(self, path: str) -> None:
        self.page.goto(self.server.url + path)

    def text(self) -> str:
        return " ".join(self.page.inner_text("main").split())

    def sign_in(self, name: str, password: str) -> None:
        self.open("/signin")
        self.page.fill("#name", name)
        self.page.fill("#password", password)
        self.page.click("main button[type=submit]")

    def sign_out(self) -> None:
        self.page.click("header button:has-text('Sign out')")
        self.page.wait_for_url("**/signin?done=signed_out")

    def add_host(self, fqdn: str) -> str:
        self.page.click("text=Add a host")
        self.page.fill("#fqdn", fqdn)
        self.page.click("main button[type=submit]")
        self.page.wait_for_selector("#token-value")
        return self.page.inner_text("#token-value").strip()

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def visitor(chromium: Chromium, web_server: LiveServer) -> Iterator[Visitor]:
    client = Visitor(chromium, web_server)
    yield client
    assert client.errors == []  # nothing on the console
    client.close()


def curl_update(server: LiveServer, fqdn: str, token: str, myip: str) -> str:
    result = subprocess.run(
        [
            "curl",
            "-sS",
            "--max-time",
            "20",
            "-u",
            f"{fqdn}:{token}",
            f"{server.url}/nic/update?hostname={fqdn}&myip={myip}",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


def wait_for_text(visitor: Visitor, wanted: str) -> bool:
    def shown() -> bool:
        visitor.page.reload()
        return wanted in visitor.text()

    return bool(eventually(shown))


def test_main_flow_with_javascript(web_server: LiveServer, visitor: Visitor) -> None:
    page = visitor.page
    visitor.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=web_server.url)
    visitor.sign_in(*ALICE)
    page.wait_for_url("**/hosts")
    fqdn = "router.dyn.example.test"
    token = visitor.add_host(fqdn)
    assert f"Host {fqdn} added" in visitor.text()
    # The copy button puts the token on the clipboard.
    button = page.locator("button[data-copy=token-value]")
    assert button.is_visible()
    button.click()
    expect(button).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == token
    expect(page.locator("#copy-status")).to_have_text("Copied to the clipboard")
    # The router (curl here) updates with it; the host page shows it.
    assert curl_update(web_server, fqdn, token, "203.0.113.77") == "good 203.0.113.77"
    page.click("text=Done")
    page.wait_for_url(f"**/hosts/{fqdn}")
    assert wait_for_text(visitor, "good 203.0.113.77")
    text = visitor.text()
    assert "203.0.113.77" in text and "DNS serves these addresses" in text
    assert page.locator("table.history tbody tr").count() == 1
    assert page.locator("figure.chart svg[role=img]").count() == 1
    # A new token: the old one is refused, the new one works.
    page.click("text=Make a new token")
    page.wait_for_selector("#token-value")
    new_token = page.inner_text("#token-value").strip()
    assert new_token != token
    assert curl_update(web_server, fqdn, token, "203.0.113.78") == "badauth"
    assert curl_update(web_server, fqdn, new_token, "203.0.113.78") == "good 203.0.113.78"
    page.click("text=Done")
    assert wait_for_text(visitor, "good 203.0.113.78")
    visitor.sign_out()
    assert "You are signed out" in visitor.text()
    visitor.open("/hosts")
    assert page.url.startswith(web_server.url + "/signin")


def test_main_flow_without_javascript(chromium: Chromium, web_server: LiveServer) -> None:
    visitor = Visitor(chromium, web_server, javascript=False)
    try:
        page = visitor.page
        visitor.sign_in(*ALICE)
        page.wait_for_url("**/hosts")
        fqdn = "nojs.dyn.example.test"
        token = visitor.add_host(fqdn)
        assert not page.locator("button[data-copy=token-value]").is_visible()  # no script
        assert token in page.inner_text("#snippet-ddclient")
        assert curl_update(web_server, fqdn, token, "203.0.113.88") == "good 203.0.113.88"
        visitor.open(f"/hosts/{fqdn}")
        assert wait_for_text(visitor, "good 203.0.113.88")
        page.fill("#a", "203.0.113.89")
        page.click("text=Save addresses")
        assert "Saved: DNS serves the new addresses" in visitor.text()
        assert web_server.addresses(fqdn) == ["203.0.113.89"]
        page.click("text=Make a new token")
        new_token = page.inner_text("#token-value").strip()
        assert curl_update(web_server, fqdn, token, "203.0.113.90") == "badauth"
        assert curl_update(web_server, fqdn, new_token, "203.0.113.90") == "good 203.0.113.90"
        visitor.open(f"/hosts/{fqdn}")
        page.click("text=Remove this host…")
        page.click("main button:has-text('Remove the host')")
        assert "Host removed" in visitor.text()
        visitor.sign_out()
    finally:
        visitor.close()


class _AttackerPage(http.server.BaseHTTPRequestHandler):
    """Another site, whose page posts a form to the nicupdate server."""

    target = ""

    def do_GET(self) -> None:
        body = (
            "<!DOCTYPE html><html lang=en><title>win a prize</title>"
            f'<form method=post action="{self.target}/hosts/new">'
            '<input name=fqdn value="evil.dyn.example.test">'
            "<button>Claim</button></form></html>"
        ).encode()
        self.send_response(200)
        self.send_header("content-type", "text/html")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def attacker_site(target: str) -> Iterator[str]:
    handler = type("Attacker", (_AttackerPage,), {"target": target})
    server = http.server.ThreadingHTTPServer(("127.0.0.2", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.2:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def test_forged_forms_change_nothing(web_server: LiveServer, visitor: Visitor) -> None:
    page = visitor.page
    visitor.sign_in(*ALICE)
    page.wait_for_url("**/hosts")
    # From another site: the session cookie (SameSite=Lax) is not even sent.
    with attacker_site(web_server.url) as url:
        page.goto(url)
        with page.expect_response(lambda r: r.request.method == "POST") as posted:
            page.click("text=Claim")
        assert posted.value.status == 303
        assert posted.value.headers["location"] == "/signin?done=session_ended"
        page.wait_for_url("**/hosts")  # still signed in: the sign-in page sends it on
    # On the site, with a forged token: refused.
    visitor.open("/hosts/new")
    page.evaluate("document.querySelector('main input[name=csrf]').value = 'forged'")
    page.fill("#fqdn", "evil.dyn.example.test")
    with page.expect_response("**/hosts/new") as response:
        page.click("main button[type=submit]")
    assert response.value.status == 403
    assert "nothing was changed" in visitor.text()
    visitor.open("/hosts")
    assert "evil.dyn.example.test" not in visitor.text()
    visitor.errors.clear()  # the 403 page is reported on the console


def test_wrong_passwords_lock_out(web_server: LiveServer, visitor: Visitor) -> None:
    for _ in range(web_server.config.limits.auth_failures_per_user):
        visitor.sign_in("alice", "not-the-password")
        assert "Wrong account name or password" in visitor.text()
    with visitor.page.expect_response(lambda r: r.request.method == "POST") as response:
        visitor.sign_in("alice", "not-the-password")
    assert response.value.status == 429
    assert "Too many failed sign-ins from your address" in visitor.text()
    visitor.errors.clear()  # 401 and 429 answers are reported on the console


def test_totp_sign_in(web_server: LiveServer, visitor: Visitor) -> None:
    web_server.add_user("tom", "tom-secret-1")
    page = visitor.page
    visitor.sign_in("tom", "tom-secret-1")
    page.wait_for_url("**/hosts")
    page.click("header >> text=Account")
    page.click("text=Set up two-factor sign-in")
    assert page.locator(".qr svg").count() == 1
    secret = page.inner_text("#totp-secret").strip()
    page.fill("#code", pyotp.TOTP(secret).at(time.time() - 30))
    page.click("text=Turn on")
    assert "Two-factor sign-in is on" in visitor.text()
    visitor.sign_out()
    visitor.sign_in("tom", "tom-secret-1")
    page.wait_for_url("**/signin/code")
    page.fill("#code", pyotp.TOTP(secret).now())
    page.click("text=Continue")
    page.wait_for_url("**/hosts")
    assert "Your hosts" in visitor.text()


# Screenshots -------------------------------------------------------------------------------


def back_date_history(server: LiveServer, fqdn: str, days: list[float]) -> None:
    """Move the first rows of ``fqdn``'s history back in time, ``days`` ago each (for a
    timeline worth a picture; the rows are real answers)."""

    async def move() -> None:
        async with server.runtime.engine.begin() as conn:
            ids = list(
                (
                    await conn.execute(
                        select(update_log.c.id)
                        .where(update_log.c.fqdn == fqdn)
                        .order_by(update_log.c.id)
                    )
                ).scalars()
            )
            now = datetime.now(UTC)
            for row_id, ago in zip(ids, days, strict=False):
                at = now - timedelta(days=ago)
                await conn.execute(
                    update(update_log)
                    .where(update_log.c.id == row_id)
                    .values(at=at, confirmed_at=at + timedelta(seconds=1))
                )

    server.call(move)


@pytest.fixture(scope="module")
def pictured_host(web_server: LiveServer) -> str:
    fqdn = "nas.dyn.example.test"
    token = web_server.add_host(fqdn, ALICE[0])
    for myip in (
        "203.0.113.10,2001:db8:1::10",
        "203.0.113.23",
        "203.0.113.42",
        "2001:db8:2::10",
        "203.0.113.57",
    ):
        assert curl_update(web_server, fqdn, token, myip).startswith("good")

    def recorded() -> int:
        async def count() -> int:
            async with web_server.runtime.engine.connect() as conn:
                rows = await conn.execute(select(update_log.c.id).where(update_log.c.fqdn == fqdn))
                return len(rows.all())

        return web_server.call(count)

    assert eventually(lambda: recorded() == 5)
    back_date_history(web_server, fqdn, [6.2, 4.5, 2.1, 0.9])
    return fqdn


@pytest.mark.parametrize("size", ["desktop", "phone"])
def test_screenshots(
    chromium: Chromium, web_server: LiveServer, pictured_host: str, size: str
) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    viewport = DESKTOP if size == "desktop" else PHONE
    visitor = Visitor(chromium, web_server, viewport=viewport)
    page = visitor.page

    def shot(name: str) -> None:
        path = SCREENSHOTS / f"{size}-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        assert path.stat().st_size > 5000
        # Nothing wider than the screen (a phone scrolls only down).
        assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]

    try:
        visitor.open("/signin")
        shot("signin")
        visitor.sign_in(*ALICE)
        page.wait_for_url("**/hosts")
        shot("hosts")
        visitor.open(f"/hosts/{pictured_host}")
        assert page.locator("table.history tbody tr").count() == 5
        shot("host")
        page.click("text=Make a new token")
        page.wait_for_selector("#token-value")
        shot("token")
        visitor.open("/tokens")
        shot("tokens")
        visitor.open("/account")
        shot("account")
        visitor.open("/account/totp")
        shot("totp")
        visitor.sign_out()
        visitor.sign_in(*ROOT)
        page.wait_for_url("**/hosts")
        visitor.open("/admin/users")
        shot("users")
        visitor.open("/admin/status")
        shot("status")
        assert visitor.errors == []
    finally:
        visitor.close()
