"""Backend ``lexicon`` against a real PowerDNS HTTP API, through dns-lexicon's powerdns
provider.

PowerDNS runs from the shipped deploy/powerdns example with its API on a loopback port.
A small recording proxy sits in front of the API: it counts the write calls, checks
that lexicon asks only for what its powerdns provider is known to ask, and can be told
to fail the next calls the way PowerDNS (or a rate-limiting proxy before it) answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from nicupdate_server.backends import (
    BackendUnavailable,
    PermanentBackendError,
    RecordChange,
    TransientBackendError,
    ZoneChange,
    create_backend,
)
from nicupdate_server.backends.base import RType
from nicupdate_server.backends.lexicon import LexiconBackend
from nicupdate_server.config import ZoneSettings
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from tests.server.backend_contract import (
    ACME,
    HOME,
    TOKENS,
    WILDCARD,
    ZONE_NAME,
    BackendContract,
    apply,
    run,
)
from tests.server.conftest import ALICE
from tests.server.fakes import FakeProvider, serving
from tests.server.primaries import Primary, free_port, running_powerdns
from tests.server.relays import eventually, relay_server

ZONE = ZoneSettings(name=ZONE_NAME, backend="pdns", ttl=60)
ZONE_PATH = "/api/v1/servers/localhost/zones/{zone}"
WRITE_METHODS = ("PATCH", "POST", "PUT", "DELETE")
DROP = object()  # in a table override: remove the key


# -- PowerDNS with its API, and a recording proxy in front --------------------------------


@dataclass
class PowerdnsApi:
    primary: Primary
    api_url: str  # http://127.0.0.1:PORT, PowerDNS's own webserver
    key: str


@contextlib.contextmanager
def powerdns_api(directory: Path) -> Iterator[PowerdnsApi]:
    port, key = free_port(), secrets.token_urlsafe(24)
    extra = (
        f"\napi=yes\napi-key={key}\nwebserver=yes\nwebserver-address=127.0.0.1\n"
        f"webserver-port={port}\nwebserver-allow-from=127.0.0.0/8\n"
    )
    with running_powerdns(directory, zone=ZONE_NAME, extra_config=extra) as primary:
        yield PowerdnsApi(primary, f"http://127.0.0.1:{port}", key)


@dataclass
class ApiProxy(FakeProvider):
    """Forwards the calls lexicon's powerdns provider makes to the real API."""

    upstream: str = ""
    retry_after: str = "7"
    failing_writes: int = 0  # the next PATCHes answer 500 (reads pass)

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route(ZONE_PATH, self.forward, methods=["GET", "PATCH"]),
                Route(ZONE_PATH + "/notify", self.forward, methods=["PUT"]),
            ]
        )

    async def forward(self, request: Request) -> Response:
        seen = await self.record(request)
        if request.method in WRITE_METHODS:
            with self.lock:
                self.writes += 1
        failure = self.take_failure()
        if request.method == "PATCH" and self.failing_writes > 0:
            self.failing_writes -= 1
            failure = "server"
        if failure == "throttle":  # what a rate-limiting proxy before PowerDNS answers
            return JSONResponse(
                {"error": "Too Many Requests"},
                status_code=429,
                headers={"Retry-After": self.retry_after},
            )
        if failure == "server":
            return JSONResponse({"error": "Internal Server Error"}, status_code=500)
        if failure == "credentials":  # PowerDNS's answer to a wrong X-API-Key
            return PlainTextResponse(
                "Unauthorized",
                status_code=401,
                headers={"WWW-Authenticate": 'X-API-Key realm="PowerDNS"'},
            )
        if failure == "echo":  # an error that quotes the request's key back
            key = seen.headers.get("x-api-key", "")
            return JSONResponse({"error": f"key {key} may not do this"}, status_code=422)
        headers = {k: v for k, v in seen.headers.items() if k in ("x-api-key", "content-type")}
        async with httpx.AsyncClient(trust_env=False) as client:
            answer = await client.request(
                request.method,
                self.upstream + request.url.path,
                params=request.query_params,
                content=seen.body,
                headers=headers,
            )
        keep = {k: v for k, v in answer.headers.items() if k in ("content-type", "retry-after")}
        return Response(answer.content, status_code=answer.status_code, headers=keep)


def table(url: str, key_file: Path, **overrides: Any) -> dict[str, Any]:  # a [backends.pdns] table
    return {
        "type": "lexicon",
        "provider": "powerdns",
        "timeout": 10,
        "options": {"pdns_server": url, "pdns_server_id": "localhost"},
        "secret_files": {"auth_token": str(key_file)},
    } | overrides


def write_key(directory: Path, key: str) -> Path:
    path = directory / "pdns-api.key"
    path.write_text(key + "\n")
    return path


@dataclass
class PdnsHarness:
    zone: ZoneSettings
    secret: str
    api: PowerdnsApi
    proxy: ApiProxy
    url: str
    key_file: Path
    batches: bool = False
    txt: bool = True
    _backend: LexiconBackend | None = None

    def backend(self) -> LexiconBackend:
        if self._backend is None:
            self._backend = LexiconBackend.from_table("pdns", table(self.url, self.key_file))
        return self._backend

    def records(self, fqdn: str, rtype: str) -> list[str]:
        return self.api.primary.query(fqdn, rtype)

    def ttl(self, fqdn: str, rtype: str) -> int | None:
        return self.api.primary.ttl(fqdn, rtype)

    def writes(self) -> int:
        return self.proxy.writes

    def fail_next(self, kind: str, times: int = 1) -> None:
        self.proxy.fail_next(kind, times)

    def forget(self, fqdn: str, rtype: str) -> None:
        self.api.primary.edit(fqdn, rtype, [])


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[PdnsHarness]:
    with powerdns_api(tmp_path / "powerdns") as api:
        proxy = ApiProxy(upstream=api.api_url)
        with serving(proxy) as served:
            key_file = write_key(tmp_path, api.key)
            yield PdnsHarness(ZONE, api.key, api, proxy, served.url, key_file)


class TestLexiconPowerdns(BackendContract):
    """The shared contract. PowerDNS's API has no batch call in lexicon's provider:
    each record set is its own write (``batches = False``)."""


# -- more against PowerDNS ------------------------------------------------------------------


def change(*records: tuple[str, RType, tuple[str, ...]], zone: ZoneSettings = ZONE) -> ZoneChange:
    return ZoneChange(zone, 0, [RecordChange(f, t, a) for f, t, a in records])


def apply_now(backend: LexiconBackend, update: ZoneChange) -> None:
    run(lambda: backend.apply(update))


def test_several_addresses_are_one_set_and_shrink_to_one(harness: PdnsHarness) -> None:
    apply(harness, (HOME, "AAAA", ("2001:db8::1", "2001:db8::2")))
    assert harness.records(HOME, "AAAA") == ["2001:db8::1", "2001:db8::2"]
    before = harness.writes()
    apply(harness, (HOME, "AAAA", ("2001:db8:0:0::2", "2001:db8::1")))  # same set, other forms
    assert harness.writes() == before
    apply(harness, (HOME, "AAAA", ("2001:db8::2",)))
    assert harness.records(HOME, "AAAA") == ["2001:db8::2"]


def test_acme_tokens_and_a_wildcard_are_served_by_powerdns(harness: PdnsHarness) -> None:
    apply(harness, (ACME, "TXT", TOKENS[:2]), (WILDCARD, "A", ("203.0.113.7",)))
    primary = harness.api.primary
    assert sorted(primary.dig(ACME, "TXT").splitlines()) == [f'"{t}"' for t in sorted(TOKENS[:2])]
    assert primary.dig(f"www.{HOME}", "A") == "203.0.113.7\n"  # the wildcard answers
    before = harness.writes()
    apply(harness, (ACME, "TXT", (TOKENS[1], TOKENS[0])))  # listed unquoted: the same two
    assert harness.writes() == before


def test_the_zone_apex_can_be_set(harness: PdnsHarness) -> None:
    apply(harness, (ZONE_NAME, "A", ("192.0.2.1",)))
    assert harness.records(ZONE_NAME, "A") == ["192.0.2.1"]
    apply(harness, (ZONE_NAME, "A", ()))
    assert harness.records(ZONE_NAME, "A") == []


def test_a_new_address_is_created_before_the_old_is_deleted(harness: PdnsHarness) -> None:
    apply(harness, (HOME, "A", ("203.0.113.7",)))
    harness.proxy.seen.clear()
    apply(harness, (HOME, "A", ("203.0.113.8",)))
    patches = [s.body.decode() for s in harness.proxy.seen if s.method == "PATCH"]
    assert len(patches) == 2
    assert '"203.0.113.8"' in patches[0] and '"203.0.113.7"' in patches[0]  # both, briefly
    assert '"203.0.113.8"' in patches[1] and '"203.0.113.7"' not in patches[1]


def test_a_wrong_key_is_permanent_and_says_what_to_fix(
    harness: PdnsHarness, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = secrets.token_urlsafe(24)
    backend = LexiconBackend.from_table("pdns", table(harness.url, write_key(tmp_path, wrong)))
    with caplog.at_level(logging.DEBUG), pytest.raises(PermanentBackendError) as raised:
        apply_now(backend, change((HOME, "A", ("203.0.113.7",))))
    message = str(raised.value)
    assert message == (
        "pdns (lexicon powerdns): opening zone home.example.test: the provider refused the "
        "credentials (HTTP 401: Unauthorized): check the credentials (auth_token) in "
        "[backends.pdns.secret_files] or [backends.pdns.secret_env] and that they may edit "
        "the zone"
    )
    assert raised.value.every_name  # not about this name: the reconciler need not bisect
    assert message in [r.getMessage() for r in caplog.records if r.name == "nicupdate.backend"]
    for text in (message, caplog.text, repr(backend)):
        assert wrong not in text and harness.secret not in text
    assert harness.writes() == 0


def test_throttling_passes_retry_after_on(harness: PdnsHarness) -> None:
    harness.fail_next("throttle")
    with pytest.raises(TransientBackendError) as raised:
        apply(harness, (HOME, "A", ("203.0.113.7",)))
    assert raised.value.retry_after == 7
    assert "throttled (HTTP 429" in str(raised.value)
    assert "asked to wait 7 s" in str(raised.value)
    apply(harness, (HOME, "A", ("203.0.113.7",)))  # the next attempt goes through
    assert harness.records(HOME, "A") == ["203.0.113.7"]


def test_a_failed_write_is_transient_and_the_retry_completes(harness: PdnsHarness) -> None:
    apply(harness, (HOME, "A", ("203.0.113.7",)))
    harness.proxy.failing_writes = 1  # the zone read and the listing pass; the write fails
    with pytest.raises(TransientBackendError, match=r"the provider failed \(HTTP 500"):
        apply(harness, (HOME, "A", ("203.0.113.8",)))
    assert harness.records(HOME, "A") == ["203.0.113.7"]
    apply(harness, (HOME, "A", ("203.0.113.8",)))
    assert harness.records(HOME, "A") == ["203.0.113.8"]


def test_a_zone_the_provider_does_not_have_is_permanent(harness: PdnsHarness) -> None:
    other = ZoneSettings(name="elsewhere.example.test", backend="pdns", ttl=60)
    with pytest.raises(PermanentBackendError) as raised:
        apply_now(
            harness.backend(),
            change(("h.elsewhere.example.test", "A", ("192.0.2.1",)), zone=other),
        )
    message = str(raised.value)
    assert "opening zone elsewhere.example.test: not found (HTTP 404" in message
    assert "check that the zone exists at the provider" in message
    assert raised.value.every_name


def test_a_record_powerdns_refuses_is_permanent_for_that_name_only(
    harness: PdnsHarness,
) -> None:
    alias = f"alias.{ZONE_NAME}"
    harness.api.primary.pdnsutil("replace-rrset", ZONE_NAME, "alias", "CNAME", "60", f"{HOME}.")
    with pytest.raises(PermanentBackendError) as raised:
        apply(harness, (HOME, "A", ("203.0.113.7",)), (alias, "A", ("203.0.113.8",)))
    message = str(raised.value)
    assert message.startswith(
        f"pdns (lexicon powerdns): setting {alias} A: the provider refused it (HTTP 422: "
    )
    assert "Conflicts with pre-existing RRset" in message, message
    assert not raised.value.every_name  # the reconciler finds the name and applies the others
    assert harness.records(HOME, "A") == ["203.0.113.7"]


def test_an_error_that_quotes_the_secret_is_scrubbed_from_message_and_logs(
    harness: PdnsHarness, caplog: pytest.LogCaptureFixture
) -> None:
    harness.fail_next("echo")
    with caplog.at_level(logging.DEBUG), pytest.raises(PermanentBackendError) as raised:
        apply(harness, (HOME, "A", ("203.0.113.7",)))
    message = str(raised.value)
    assert "HTTP 422" in message and "key [secret] may not do this" in message
    assert harness.secret not in message
    # lexicon's powerdns provider logs the response body at DEBUG: masked too.
    assert "key [secret] may not do this" in caplog.text
    assert harness.secret not in caplog.text


def test_an_unreachable_provider_is_transient(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    backend = LexiconBackend.from_table("pdns", table(url, write_key(tmp_path, "k" * 20)))
    with pytest.raises(TransientBackendError, match="cannot reach the provider"):
        apply_now(backend, change((HOME, "A", ("203.0.113.7",))))


def test_a_provider_that_never_answers_times_out_and_frees_the_thread(tmp_path: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)  # accepts connections, never answers
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        backend = LexiconBackend.from_table(
            "pdns", table(url, write_key(tmp_path, "k" * 20), timeout=1)
        )
        before = threading.active_count()
        started = time.monotonic()
        with pytest.raises(TransientBackendError) as raised:
            apply_now(backend, change((HOME, "A", ("203.0.113.7",))))
        assert time.monotonic() - started < 5
        assert "within 1 s" in str(raised.value)
        # requests got the timeout too: the worker thread does not hang on.
        assert eventually(lambda: threading.active_count() <= before, timeout=5)


# -- configuration ----------------------------------------------------------------------


def problem(tab: dict[str, Any]) -> str:
    with pytest.raises(BackendUnavailable) as raised:
        create_backend("pdns", tab)
    return str(raised.value)


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    return write_key(tmp_path, "the-api-key-0123456789")


def test_a_valid_table_builds_and_repr_hides_the_secret(key_file: Path) -> None:
    backend = create_backend("pdns", table("http://127.0.0.1:8081", key_file))
    assert isinstance(backend, LexiconBackend)
    assert backend.provider == "powerdns" and backend.timeout == 10
    assert repr(backend) == (
        "LexiconBackend(name='pdns', provider='powerdns', options={'pdns_server': "
        "'http://127.0.0.1:8081', 'pdns_server_id': 'localhost'}, "
        "secret_options=['auth_token'])"
    )


def test_a_secret_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PDNS_API_KEY", "from-the-environment-42")
    tab = table("http://127.0.0.1:8081", Path("/unused"), secret_files={})
    backend = create_backend("pdns", tab | {"secret_env": {"auth_token": "PDNS_API_KEY"}})
    assert "from-the-environment-42" not in repr(backend)
    monkeypatch.delenv("PDNS_API_KEY")
    assert problem(tab | {"secret_env": {"auth_token": "PDNS_API_KEY"}}) == (
        "backends.pdns.secret_env.auth_token: environment variable PDNS_API_KEY is not set"
    )


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"provider": DROP}, "backends.pdns.provider: missing (the dns-lexicon provider name; "),
        (
            {"provider": "nosuchdns"},
            "backends.pdns.provider: 'nosuchdns' is not a dns-lexicon provider "
            "(`lexicon --help` lists them)",
        ),
        ({"provider": "auto"}, "backends.pdns.provider: 'auto' is not a dns-lexicon provider"),
        (
            {"auth_token": "abc"},
            "backends.pdns.auth_token: give secrets in [backends.pdns.secret_files] (option = "
            "file path) or [backends.pdns.secret_env] (option = environment variable), not in "
            "the configuration",
        ),
        (
            {"pdns_server": "http://x"},
            "backends.pdns.pdns_server: unknown key for a lexicon backend (provider options go "
            "in [backends.pdns.options])",
        ),
        ({"timeout": 0}, "backends.pdns.timeout: must be between 1 and 600 (got 0)"),
        ({"options": "pdns_server=x"}, "backends.pdns.options: must be a table"),
        (
            {"options": {"pdns_server": ""}},
            "backends.pdns.options.pdns_server: must be a non-empty string",
        ),
    ],
)
def test_config_errors_name_the_key(
    key_file: Path, overrides: dict[str, Any], expected: str
) -> None:
    tab = table("http://127.0.0.1:8081", key_file) | overrides
    assert problem({k: v for k, v in tab.items() if v is not DROP}).startswith(expected)


def test_a_secret_among_the_options_is_refused(key_file: Path) -> None:
    tab = table("http://127.0.0.1:8081", key_file, secret_files={})
    tab["options"] = tab["options"] | {"auth_token": "inline-secret-value"}
    message = problem(tab)
    assert message == (
        "backends.pdns.options.auth_token: looks like a secret: give secrets in "
        "[backends.pdns.secret_files] (option = file path) or [backends.pdns.secret_env] "
        "(option = environment variable), not in the configuration"
    )
    assert "inline-secret-value" not in message
    for name in ("password", "auth_secret", "api_key", "auth_application_key", "token"):
        tab["options"] = {name: "x"}
        assert problem(tab).startswith(f"backends.pdns.options.{name}: looks like a secret")


def test_an_option_the_provider_does_not_have_is_named(key_file: Path) -> None:
    tab = table("http://127.0.0.1:8081", key_file)
    tab["options"] = {"pdns_sever": "http://127.0.0.1:8081"}
    assert problem(tab) == (
        "backends.pdns.options.pdns_sever: not an option of the lexicon powerdns provider "
        "(its options: auth_token, pdns_disable_notify, pdns_server, pdns_server_id; "
        "`lexicon powerdns --help` describes them)"
    )


def test_secret_files_problems(key_file: Path, tmp_path: Path) -> None:
    tab = table("http://127.0.0.1:8081", key_file)
    missing = tmp_path / "missing.key"
    assert problem(tab | {"secret_files": {"auth_token": str(missing)}}) == (
        f"backends.pdns.secret_files.auth_token: cannot read {missing}: No such file or directory"
    )
    empty = tmp_path / "empty.key"
    empty.write_text("\n")
    assert problem(tab | {"secret_files": {"auth_token": str(empty)}}) == (
        "backends.pdns.secret_files.auth_token: the file is empty"
    )
    both = tab | {"secret_env": {"auth_token": "PDNS_API_KEY"}}
    assert problem(both) == (
        "backends.pdns.secret_env.auth_token: given twice (also in secret_files)"
    )


def test_without_dns_lexicon_the_type_says_how_to_install(
    key_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for module in [m for m in sys.modules if m == "lexicon" or m.startswith("lexicon.")]:
        monkeypatch.setitem(sys.modules, module, None)
    monkeypatch.setitem(sys.modules, "lexicon", None)
    assert problem(table("http://127.0.0.1:8081", key_file)) == (
        "backends.pdns.type: the lexicon backend needs dns-lexicon: "
        "pip install 'nicupdate[lexicon]'"
    )


# -- end to end: a nicupdate server with a lexicon backend ---------------------------------


def nicupdate(harness: PdnsHarness, directory: Path) -> contextlib.AbstractContextManager[Any]:
    """A live nicupdate server whose zone goes to PowerDNS through lexicon."""
    table = f"""type = "lexicon"
provider = "powerdns"
timeout = 10

[backends.pdns.options]
pdns_server = "{harness.url}"
pdns_server_id = "localhost"

[backends.pdns.secret_files]
auth_token = "{harness.key_file}"
"""
    return relay_server(directory, table, backend="pdns")


def test_a_ddclient_update_lands_in_powerdns(harness: PdnsHarness, tmp_path: Path) -> None:
    with nicupdate(harness, tmp_path) as server:
        answer = server.update(f"hostname={HOME}&myip=203.0.113.7,2001:db8::7", auth=ALICE)
        assert answer.text == "good 203.0.113.7,2001:db8::7\n"
        assert harness.records(HOME, "A") == ["203.0.113.7"]
        assert harness.records(HOME, "AAAA") == ["2001:db8::7"]
        assert harness.ttl(HOME, "A") == 60


def test_a_throttled_provider_answers_911_then_the_record_lands(
    harness: PdnsHarness, tmp_path: Path
) -> None:
    harness.proxy.retry_after = "1"
    with nicupdate(harness, tmp_path) as server:
        harness.fail_next("throttle", times=2)
        answer = server.update(f"hostname={HOME}&myip=203.0.113.9", auth=ALICE)
        assert answer.text == "911\n"
        assert eventually(lambda: harness.records(HOME, "A") == ["203.0.113.9"], timeout=20)


def test_concurrent_applies_to_one_zone_take_turns(harness: PdnsHarness) -> None:
    backend = harness.backend()

    async def both() -> None:
        await asyncio.gather(
            backend.apply(change((HOME, "A", ("203.0.113.1",)))),
            backend.apply(change((f"b.{ZONE_NAME}", "A", ("203.0.113.2",)))),
        )

    run(both)
    assert harness.records(HOME, "A") == ["203.0.113.1"]
    assert harness.records(f"b.{ZONE_NAME}", "A") == ["203.0.113.2"]


def test_the_documented_gandi_example_builds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GANDI_TOKEN", "a-personal-access-token")
    backend = create_backend(
        "gandi",
        {
            "type": "lexicon",
            "provider": "gandi",
            "options": {"api_protocol": "rest"},
            "secret_env": {"auth_token": "GANDI_TOKEN"},
        },
    )
    assert repr(backend) == (
        "LexiconBackend(name='gandi', provider='gandi', options={'api_protocol': 'rest'}, "
        "secret_options=['auth_token'])"
    )
