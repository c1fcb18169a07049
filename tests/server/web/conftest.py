"""A live server for the web UI's tests, and a browser-like HTTP client for it.

One server per test module (``web_server``), with accounts ``root`` (an admin) and
``alice`` (who owns ``home.dyn.example.test``); hosts may update as often as the
tests like. The server trusts 127.0.0.1 as a proxy, so a client may come "from" an
address of its own (``X-Forwarded-For``): the lock-out tests then lock out only that
address, and the other tests go on.

:class:`Browser` is an HTTP client that keeps cookies and posts forms with the CSRF
token of the page it saw last; ``alice`` and ``root`` are browsers signed in.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from html import unescape
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.server.conftest import LiveServer, start_server, stop_server, write_config

ROOT = ("root", "root-secret-1")
ALICE = ("alice", "alice-secret-1")
HOME = "home.dyn.example.test"
# 127.0.0.1 is a trusted proxy; hosts may update as often as the tests like.
SERVER_EXTRA = 'trusted_proxies = ["127.0.0.1/32"]\n\n[limits]\nhost_update_burst = 1000'

# Debian's Chromium, headless, with nothing reaching out to the network: Playwright
# drives it (executable_path; no browser download), as Lighthouse does (bench_web.py).
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

_sources = itertools.count(1)


def new_source() -> str:
    """An address of its own for a client (documentation range 198.51.100.0/24 and on)."""
    n = next(_sources)
    return f"198.51.{100 + n // 250}.{n % 250 + 1}"


def start_web_server(directory: Path) -> LiveServer:
    server = start_server(write_config(directory, SERVER_EXTRA))
    server.admin(lambda a: a.add_user(ROOT[0], ROOT[1], admin=True))
    server.add_user(*ALICE)
    server.add_host(HOME, ALICE[0])
    return server


@pytest.fixture(scope="module")
def web_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = start_web_server(tmp_path_factory.mktemp("web"))
    yield server
    stop_server(server)


_FIELD = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')


def hidden_fields(html: str) -> dict[str, str]:
    """The hidden fields of a page's forms (the last value of each name)."""
    return {name: unescape(value) for name, value in _FIELD.findall(html)}


def text_of(html: str) -> str:
    """A page's text as a reader sees it: tags dropped, entities decoded, spaces squeezed."""
    without_head = re.sub(r"(?s)<head>.*?</head>", " ", html)
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", without_head)).split())


class Browser:
    """An HTTP client that keeps cookies, as a browser does, coming from ``source``."""

    def __init__(self, server: LiveServer, source: str | None = None) -> None:
        self.server = server
        self.source = source or new_source()
        self.http = httpx.Client(
            base_url=server.url,
            timeout=20,
            follow_redirects=False,
            headers={"accept": "text/html", "x-forwarded-for": self.source},
        )
        self.page = ""

    def close(self) -> None:
        self.http.close()

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        response = self.http.get(path, **kwargs)
        if response.headers.get("content-type", "").startswith("text/html"):
            self.page = response.text
        return response

    def post(
        self, path: str, data: dict[str, Any] | None = None, *, csrf: bool = True, **kwargs: Any
    ) -> httpx.Response:
        """POST a form, with the CSRF token of the last page seen (``csrf``)."""
        form = dict(data or {})
        if csrf and "csrf" not in form:
            form["csrf"] = hidden_fields(self.page).get("csrf", "")
        response = self.http.post(path, data=form, **kwargs)
        if response.headers.get("content-type", "").startswith("text/html"):
            self.page = response.text
        return response

    def follow(self, response: httpx.Response) -> httpx.Response:
        """The page a redirect leads to."""
        assert response.status_code in (302, 303), (response.status_code, response.text[:300])
        return self.get(response.headers["location"])

    def sign_in(self, name: str, password: str) -> httpx.Response:
        """Sign in; the answer to the form (a redirect on success)."""
        self.get("/signin")
        return self.post("/signin", {"name": name, "password": password})

    @property
    def session_cookie(self) -> str | None:
        return self.http.cookies.get("nicupdate_session")


@pytest.fixture
def browser(web_server: LiveServer) -> Iterator[Browser]:
    client = Browser(web_server)
    yield client
    client.close()


@pytest.fixture
def alice(browser: Browser) -> Browser:
    """A browser signed in as alice."""
    answer = browser.sign_in(*ALICE)
    assert answer.status_code == 303, answer.text[:500]
    return browser


@pytest.fixture
def root(web_server: LiveServer) -> Iterator[Browser]:
    """A browser signed in as root, the admin."""
    client = Browser(web_server)
    answer = client.sign_in(*ROOT)
    assert answer.status_code == 303, answer.text[:500]
    yield client
    client.close()
