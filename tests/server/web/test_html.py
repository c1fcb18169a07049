"""Every kind of page the web UI renders is valid HTML (Debian's tidy 5.x), labels every
input, and keeps to the content security policy (no inline script, style or handler).
The strings come from the catalogue: every message id a template or page names exists."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pyotp
import pytest
from nicupdate_server.web import messages, tokens

from tests.server.conftest import LiveServer, eventually, stop_server

from .conftest import ALICE, HOME, ROOT, Browser, start_web_server

TIDY = "/usr/bin/tidy"
# tidy 5.6 (Debian 12) predates these; each is valid HTML (WHATWG) or WAI-ARIA 1.1+.
ACCEPTED_WARNINGS = (
    re.compile(r'<a> proprietary attribute "aria-current"'),  # WAI-ARIA 1.1
    re.compile(r'<input> proprietary attribute "minlength"'),  # HTML 5.1
    re.compile(r'<input> proprietary attribute "inputmode"'),  # HTML 5.2
)
WEB = Path(__file__).parents[3] / "server" / "nicupdate_server" / "web"


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Every page type, as HTML: {name: page}."""
    server = start_web_server(tmp_path_factory.mktemp("html"))
    try:
        yield render_every_page(server)
    finally:
        stop_server(server)


def render_every_page(server: LiveServer) -> dict[str, str]:
    out: dict[str, str] = {}
    visitor = Browser(server)
    out["signin"] = visitor.get("/signin").text
    out["signin-wrong"] = visitor.sign_in("alice", "wrong-password").text
    out["signin-403"] = visitor.post("/signin", {"name": "x", "password": "y", "csrf": "z"}).text
    for _ in range(server.config.limits.auth_failures_per_user):
        visitor.sign_in("alice", "wrong-password")
    out["signin-429"] = visitor.page
    out["error-404-signed-out"] = visitor.get("/no/such/page").text
    visitor.close()

    alice = Browser(server)
    alice.sign_in(*ALICE)
    token = server.tokens[HOME]
    for address in ("203.0.113.1", "2001:db8::1", "203.0.113.2"):
        server.update(f"hostname={HOME}&myip={address}", auth=(HOME, token))
    assert eventually(lambda: "<code>good 203.0.113.2</code>" in alice.get(f"/hosts/{HOME}").text)
    out["host"] = alice.page
    out["host-error"] = alice.post(f"/hosts/{HOME}/records", {"a": "x", "aaaa": ""}).text
    out["hosts"] = alice.get("/hosts").text
    out["host-new"] = alice.get("/hosts/new").text
    out["host-new-error"] = alice.post("/hosts/new", {"fqdn": "-bad-"}).text
    out["host-remove"] = alice.get(f"/hosts/{HOME}/remove").text
    alice.get(f"/hosts/{HOME}")
    out["token"] = alice.post(f"/hosts/{HOME}/token").text
    out["tokens-empty"] = alice.get("/tokens").text
    out["token-new"] = alice.post("/tokens", {"name": "ci", "scope": "full", "expires": "30"}).text
    out["tokens"] = alice.get("/tokens").text
    out["tokens-error"] = alice.post("/tokens", {"name": "", "scope": "x", "expires": "30"}).text
    out["account"] = alice.get("/account").text
    out["account-error"] = alice.post(
        "/account/password",
        {"current_password": "nope", "new_password": "a", "repeat_password": "b"},
    ).text
    out["totp"] = alice.get("/account/totp").text
    secret = re.search(r'name="secret" value="([A-Z2-7]+)"', out["totp"])
    assert secret is not None
    out["totp-error"] = alice.post(
        "/account/totp", {"secret": secret.group(1), "code": "000000"}
    ).text
    alice.post(
        "/account/totp",
        {"secret": secret.group(1), "code": pyotp.TOTP(secret.group(1)).at(time.time() - 30)},
    )
    out["account-totp-on"] = alice.get("/account").text
    out["error-403"] = alice.get("/admin/users").text
    out["error-404"] = alice.get("/hosts/nothing.dyn.example.test").text
    out["error-405"] = alice.get("/signout").text
    signed_out = Browser(server)
    signed_out.sign_in(*ALICE)
    out["code"] = signed_out.get("/signin/code").text
    out["code-wrong"] = signed_out.post("/signin/code", {"code": "123"}).text
    signed_out.close()
    out["hosts-empty-signed-out"] = alice.follow(alice.post("/signout")).text
    alice.close()

    root = Browser(server)
    root.sign_in(*ROOT)
    out["hosts-empty"] = root.get("/hosts").text
    out["hosts-all"] = root.get("/hosts?all=1").text
    out["users"] = root.get("/admin/users").text
    out["users-error"] = root.post("/admin/users", {"name": "alice", "password": "x" * 9}).text
    out["user-remove"] = root.get("/admin/users/alice/remove").text
    out["user-remove-error"] = root.post("/admin/users/alice/remove").text
    out["status"] = root.get("/admin/status").text
    root.close()
    return out


def tidy_findings(html: str) -> list[str]:
    result = subprocess.run(
        [TIDY, "-q", "-e", "--show-warnings", "yes", "--gnu-emacs", "no"],
        input=html,
        capture_output=True,
        text=True,
        check=False,
    )
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    return [line for line in lines if not any(ok.search(line) for ok in ACCEPTED_WARNINGS)]


def test_tidy_is_there() -> None:
    assert shutil.which(TIDY), "install Debian's tidy (apt-get install tidy)"
    version = subprocess.run([TIDY, "-v"], capture_output=True, text=True, check=True).stdout
    assert "version 5." in version


def test_every_page_is_valid_html(pages: dict[str, str]) -> None:
    assert len(pages) >= 30
    problems = {name: tidy_findings(html) for name, html in pages.items()}
    assert {name: found for name, found in problems.items() if found} == {}


def test_every_page_keeps_to_the_content_security_policy(pages: dict[str, str]) -> None:
    for name, html in pages.items():
        assert not re.search(r"\sstyle=", html), name
        assert not re.search(r"\son[a-z]+=", html), name
        assert not re.search(r"<script(?![^>]*\ssrc=)", html), name
        assert "<style" not in html, name


def test_every_page_is_labelled_and_navigable(pages: dict[str, str]) -> None:
    for name, html in pages.items():
        assert '<html lang="en">' in html, name
        assert re.search(r"<title>[^<]+ · nicupdate</title>", html), name
        assert '<meta name="viewport"' in html and '<meta name="description"' in html, name
        assert '<a class="skip" href="#main">' in html and 'id="main"' in html, name
        assert html.count("<h1") == 1, name
        labels = set(re.findall(r'<label for="([^"]+)"', html))
        for tag in re.findall(r"<(?:input|select|textarea)\b[^>]*>", html):
            if 'type="hidden"' in tag or " hidden" in tag:
                continue
            found = re.search(r'\sid="([^"]+)"', tag)
            assert found is not None and found.group(1) in labels, (name, tag)


def test_every_message_id_exists() -> None:
    used: set[str] = set()
    for path in [*(WEB / "templates").glob("*.html"), *WEB.glob("*.py")]:
        text = path.read_text()
        used.update(re.findall(r"""\bt\(\s*['"]([a-z_]+\.[a-z_.0-9]+)['"]""", text))
        used.update(
            "notice." + key for key in re.findall(r"""redirect\([^)]*,\s*['"]([a-z_]+)['"]""", text)
        )
    dynamic = {key for key in used if key.endswith((".", "_"))}  # t('error.title.' ~ status)
    missing = sorted(key for key in used - dynamic if key not in messages.MESSAGES)
    assert missing == []
    assert len(used) > 150
    for prefix in dynamic:
        assert any(key.startswith(prefix) for key in messages.MESSAGES), prefix
    for scope in tokens.SCOPES:
        assert messages.has(f"tokens.scope_{scope}")


def test_messages_fill_in_their_fields() -> None:
    assert messages.t("signin.locked", seconds=60).endswith("Try again in 60 s.")
    with pytest.raises(KeyError):
        messages.t("no.such.message")
