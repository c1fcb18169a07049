"""The web UI's main pages pass axe-core's accessibility rules in a real browser.

Debian's Chromium (through Playwright; never ``playwright install``) opens each page as
a person reaches it: signed in through the sign-in form, a token page by adding a host,
the sign-in code page by an account that turned TOTP on in its account page. axe-core
(``tests/browser``: ``npm ci --prefix tests/browser``, as tests/run.sh does) checks it
at a desktop's width and at a phone's (375 px), with WCAG 2.2's target size besides
axe's default rules. A violation of impact ``serious`` or ``critical`` fails the test;
the others (``moderate``, ``minor``) are printed, as are the page's console errors.

Nothing a page holds secret (host and API tokens, the TOTP secret, CSRF tokens) is
printed: long token-like strings in the HTML axe quotes are masked.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyotp
import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Response,
    sync_playwright,
)

from tests.server.conftest import LiveServer
from tests.server.web.conftest import ALICE, CHROMIUM, CHROMIUM_ARGS, HOME, ROOT, new_source

AXE = Path(__file__).resolve().parents[2] / "browser" / "node_modules" / "axe-core" / "axe.min.js"
BLOCKING = ("serious", "critical")
# axe's default rules (WCAG 2.0-2.2 A and AA, and its best practices), and the WCAG 2.2
# AA target size (2.5.8, 24 px), which axe leaves off by default: fingers on a phone.
RUN_AXE = """async () => await axe.run(document, {
    resultTypes: ['violations'],
    rules: {'target-size': {enabled: true}},
})"""
VIEWPORTS = {"desktop": (1280, 800), "phone": (375, 667)}
TESS = ("tess", "tess-secret-1")  # signs in with a TOTP code
HISTORY = 60  # changes of HOME: more than one page of history (50 rows)
# Token-like runs (host and API tokens, CSRF tokens, TOTP secrets) masked in any output.
_SECRET = re.compile(r"(nu_)?[A-Za-z0-9_-]{24,}")


def masked(text: str) -> str:
    return _SECRET.sub("…", text)


@pytest.fixture(scope="module")
def axe_source() -> str:
    if not AXE.exists():
        pytest.fail(
            f"axe-core is not installed ({AXE} is missing): run `npm ci --prefix tests/browser` "
            "(tests/run.sh does; it needs Node.js and npm)",
            pytrace=False,
        )
    return AXE.read_text()


@pytest.fixture(scope="module")
def site(web_server: LiveServer) -> LiveServer:
    """The web tests' server (root, an admin; alice with HOME), with a history for HOME,
    a few more hosts for alice, and tess."""
    for name in ("office", "cabin", "nas"):
        web_server.add_host(f"{name}.dyn.example.test", ALICE[0])
    web_server.add_user(*TESS)
    for n in range(HISTORY):
        query = f"myipv6=2001:db8:{n:x}::1" if n % 3 == 2 else f"myip=203.0.113.{n % 200 + 1}"
        answer = web_server.update(f"hostname={HOME}&{query}", auth=ALICE)
        assert answer.text.split()[0] in ("good", "nochg"), answer.text
    answer = web_server.update("hostname=office.dyn.example.test&myip=198.51.100.20", auth=ALICE)
    assert answer.text.startswith("good"), answer.text
    return web_server


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def new_context(browser: Browser) -> BrowserContext:
    """A browser profile of its own, coming from an address of its own (the server
    trusts 127.0.0.1 as a proxy): a lock-out elsewhere in the suite cannot reach it."""
    width, height = VIEWPORTS["desktop"]
    return browser.new_context(
        viewport={"width": width, "height": height},
        extra_http_headers={"x-forwarded-for": new_source()},
    )


def sign_in(page: Page, base: str, account: tuple[str, str]) -> None:
    page.goto(f"{base}/signin")
    page.fill("#name", account[0])
    page.fill("#password", account[1])
    with page.expect_navigation():
        page.click("main form button[type=submit]")


@pytest.fixture(scope="module")
def anonymous(chromium: Browser) -> Iterator[BrowserContext]:
    context = new_context(chromium)
    yield context
    context.close()


def signed_in(chromium: Browser, site: LiveServer, account: tuple[str, str]) -> BrowserContext:
    context = new_context(chromium)
    page = context.new_page()
    sign_in(page, site.url, account)
    assert page.url == f"{site.url}/hosts", page.url
    page.close()
    return context


@pytest.fixture(scope="module")
def as_alice(chromium: Browser, site: LiveServer) -> Iterator[BrowserContext]:
    context = signed_in(chromium, site, ALICE)
    yield context
    context.close()


@pytest.fixture(scope="module")
def as_root(chromium: Browser, site: LiveServer) -> Iterator[BrowserContext]:
    context = signed_in(chromium, site, ROOT)
    yield context
    context.close()


@pytest.fixture(scope="module")
def as_tess(chromium: Browser, site: LiveServer) -> Iterator[BrowserContext]:
    """tess turns TOTP on in her account page, then signs in again: the code page."""
    context = signed_in(chromium, site, TESS)
    page = context.new_page()
    page.goto(f"{site.url}/account/totp")
    secret = page.locator("input[name=secret]").get_attribute("value")
    assert secret
    page.fill("#code", pyotp.TOTP(secret).now())
    with page.expect_navigation():
        page.click("main form button[type=submit]")
    assert page.url.startswith(f"{site.url}/account"), page.url
    context.clear_cookies()
    sign_in(page, site.url, TESS)
    assert page.url.startswith(f"{site.url}/signin/code"), page.url
    page.close()
    yield context
    context.close()


# How a person reaches each page: who, the path opened, what they do there (the answer
# to it), and where the browser then is (the path, or its start).


def _submit(page: Page, selector: str = "main form button[type=submit]") -> Response | None:
    with page.expect_navigation() as navigation:
        page.click(selector)
    return navigation.value


def _add_host(page: Page) -> Response | None:
    page.fill("#fqdn", "axe.dyn.example.test")
    return _submit(page)


def _add_host_refused(page: Page) -> Response | None:
    page.fill("#fqdn", "not a host name!")
    return _submit(page)


def _add_api_token(page: Page) -> Response | None:
    page.fill("#token-name", "axe backup")
    return _submit(page, "main form[action='/tokens'] button[type=submit]")


def _wrong_password(page: Page) -> Response | None:
    page.fill("#name", ALICE[0])
    page.fill("#password", "not-her-password")
    return _submit(page)


def _wrong_current_password(page: Page) -> Response | None:
    page.fill("#current_password", "not-her-password")
    page.fill("#new_password", "a-new-secret-2")
    page.fill("#repeat_password", "a-new-secret-2")
    return _submit(page, "main form[action='/account/password'] button[type=submit]")


def _older(page: Page) -> Response | None:
    return _submit(page, "nav.pager a")


@dataclass(frozen=True)
class Visit:
    who: str  # the browser context: a fixture (anonymous, as_alice, as_root, as_tess)
    path: str
    action: Callable[[Page], Response | None] | None = None
    status: int = 200
    lands: str | None = None


PAGES = {
    "sign-in": Visit("anonymous", "/signin"),
    "sign-in, refused": Visit("anonymous", "/signin", _wrong_password, 401),
    "sign-in code (TOTP)": Visit("as_tess", "/signin/code"),
    "hosts": Visit("as_alice", "/hosts"),
    "host and history": Visit("as_alice", f"/hosts/{HOME}"),
    "host history, older": Visit("as_alice", f"/hosts/{HOME}", _older, lands=f"/hosts/{HOME}?"),
    "add host": Visit("as_alice", "/hosts/new"),
    "add host, refused": Visit("as_alice", "/hosts/new", _add_host_refused, 422),
    "host token shown": Visit("as_alice", "/hosts/new", _add_host),
    "remove host": Visit("as_alice", "/hosts/office.dyn.example.test/remove"),
    "api tokens": Visit("as_alice", "/tokens"),
    "api token shown": Visit("as_alice", "/tokens", _add_api_token),
    "account": Visit("as_alice", "/account"),
    "account, password refused": Visit(
        "as_alice", "/account", _wrong_current_password, 403, lands="/account/password"
    ),
    "totp set-up": Visit("as_alice", "/account/totp"),
    "admin users": Visit("as_root", "/admin/users"),
    "admin remove user": Visit("as_root", "/admin/users/alice/remove"),
    "all hosts (admin)": Visit("as_root", "/hosts?all=1"),
    "status": Visit("as_root", "/admin/status"),
    "not found": Visit("as_alice", "/no/such/page", status=404),
}


def describe(violation: dict[str, Any]) -> str:
    nodes = violation["nodes"]
    lines = [
        f"{violation['impact']}: {violation['id']}: {violation['help']} "
        f"({len(nodes)} element(s)) {violation['helpUrl']}"
    ]
    for node in nodes[:5]:
        summary = " ".join(str(node.get("failureSummary", "")).split())
        lines.append(f"    {json.dumps(node['target'])} {node['html'][:160]}")
        if summary:
            lines.append(f"      {summary[:300]}")
    return masked("\n".join(lines))


def console_errors(page: Page) -> list[str]:
    """The page's console errors and uncaught exceptions, as they come."""
    errors: list[str] = []

    def logged(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(message.text)

    page.on("console", logged)
    page.on("pageerror", lambda error: errors.append(f"uncaught: {error}"))
    return errors


@pytest.mark.parametrize("name", list(PAGES))
def test_no_serious_accessibility_violation(
    name: str, axe_source: str, request: pytest.FixtureRequest, site: LiveServer
) -> None:
    visit = PAGES[name]
    context: BrowserContext = request.getfixturevalue(visit.who)
    page = context.new_page()
    console = console_errors(page)
    try:
        answer = page.goto(site.url + visit.path)
        if visit.action is not None:
            assert answer is not None and answer.status == 200, f"{name}: {visit.path}"
            answer = visit.action(page)
        assert answer is not None, f"{name}: no answer at {page.url}"
        assert answer.status == visit.status, f"{name}: {answer.status} at {page.url}"
        if visit.lands is not None:
            assert page.url.startswith(site.url + visit.lands), page.url
        else:
            assert page.url == site.url + visit.path, page.url
        assert page.locator("h1").count() == 1, f"{name}: no single <h1> at {page.url}"
        blocking: list[str] = []
        for viewport, (width, height) in VIEWPORTS.items():
            page.set_viewport_size({"width": width, "height": height})
            if not page.evaluate("typeof window.axe !== 'undefined'"):
                # Through the DevTools protocol: the page's CSP (no inline scripts)
                # stays as it is.
                page.evaluate(axe_source)
            results = page.evaluate(RUN_AXE)
            for violation in results["violations"]:
                text = f"{name} ({viewport}, {page.url}): {describe(violation)}"
                if violation["impact"] in BLOCKING:
                    blocking.append(text)
                else:
                    print(text)
        expected = f"status of {visit.status} "  # the page's own answer, when not 200
        for line in console:
            if visit.status == 200 or expected not in line:
                print(masked(f"{name}: console {line}"))
        assert not blocking, "serious or critical accessibility violations:\n" + "\n".join(blocking)
    finally:
        page.close()
