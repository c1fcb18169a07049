"""Backend ``cloudflare`` against a stateful fake of the Cloudflare API v4 on 127.0.0.1."""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from nicupdate_server.backends import (
    BackendUnavailable,
    PermanentBackendError,
    TransientBackendError,
    create_backend,
)
from nicupdate_server.backends.cloudflare import CloudflareBackend, plan_writes
from nicupdate_server.config import ZoneSettings

from tests.server.backend_contract import (
    ACME,
    HOME,
    TOKENS,
    WILDCARD,
    ZONE_NAME,
    BackendContract,
    apply,
)
from tests.server.conftest import LiveServer
from tests.server.fakes import serving, txt_value
from tests.server.fakes.cloudflare import FakeCloudflare
from tests.server.relays import ddclient, eventually, relay_server


def new_token() -> str:
    return secrets.token_urlsafe(30)  # 40 characters of [A-Za-z0-9_-], like Cloudflare's


@dataclass
class CloudflareHarness:
    fake: FakeCloudflare
    url: str
    directory: Path
    zone: ZoneSettings = field(default_factory=lambda: ZoneSettings(ZONE_NAME, "cf", ttl=120))
    secret: str = ""
    batches: bool = False
    txt: bool = True
    extra: dict[str, Any] = field(default_factory=dict)
    _backend: CloudflareBackend | None = None

    def table(self, **overrides: Any) -> dict[str, Any]:
        path = self.directory / "cloudflare.token"
        path.write_text(self.secret + "\n")
        table = {"type": "cloudflare", "api_token_file": str(path), "base_url": self.url}
        return table | self.extra | overrides

    def backend(self) -> CloudflareBackend:
        if self._backend is None:
            self._backend = CloudflareBackend.from_table("cf", self.table())
        return self._backend

    def records(self, fqdn: str, rtype: str) -> list[str]:
        found = self.fake.addresses(fqdn, rtype)
        return sorted(txt_value(c) for c in found) if rtype == "TXT" else found

    def ttl(self, fqdn: str, rtype: str) -> int | None:
        return self.fake.ttl(fqdn, rtype)

    def writes(self) -> int:
        return self.fake.writes

    def fail_next(self, kind: str, times: int = 1) -> None:
        self.fake.fail_next(kind, times)

    def forget(self, fqdn: str, rtype: str) -> None:
        self.fake.forget(fqdn, rtype)


@pytest.fixture
def fake() -> Iterator[FakeCloudflare]:
    cloudflare = FakeCloudflare(token=new_token())
    cloudflare.add_zone(ZONE_NAME)
    cloudflare.add_zone("other.example.test")
    yield cloudflare


@pytest.fixture
def harness(fake: FakeCloudflare, tmp_path: Path) -> Iterator[CloudflareHarness]:
    with serving(fake) as served:
        yield CloudflareHarness(fake, served.url + "/client/v4", tmp_path, secret=fake.token)


class TestCloudflare(BackendContract):
    """The shared contract, against the fake."""


# -- what a user sees ---------------------------------------------------------------------


def test_a_wrong_token_says_what_to_fix(
    harness: CloudflareHarness, caplog: pytest.LogCaptureFixture
) -> None:
    harness.secret = new_token()  # well-formed, but not the account's
    with caplog.at_level(logging.DEBUG), pytest.raises(PermanentBackendError) as raised:
        apply(harness, (HOME, "A", ("203.0.113.7",)))
    message = str(raised.value)
    assert message == (
        f"cf (cloudflare at 127.0.0.1): looking up the zone {ZONE_NAME}: Cloudflare refused "
        "the API token: Invalid access token (9109) (check the API token, and that it has the "
        "permissions Zone Read and DNS Edit on this zone)"
    )
    assert harness.secret not in message and harness.secret not in caplog.text
    assert harness.secret not in repr(harness.backend())
    assert caplog.text.count("Invalid access token") == 1  # logged once
    assert harness.fake.calls("GET", "/zones") == 1  # no retry of a refused token


def test_a_malformed_token_says_what_to_fix(harness: CloudflareHarness) -> None:
    harness.secret = "not-a-token"
    with pytest.raises(PermanentBackendError) as raised:
        apply(harness, (HOME, "A", ("203.0.113.7",)))
    assert "Cloudflare refused the API token: Invalid request headers (6003); Invalid format " in (
        str(raised.value)
    )
    assert "for Authorization header (6111) (check the API token, and that it has" in (
        str(raised.value)
    )


def test_ids_are_looked_up_once(harness: CloudflareHarness) -> None:
    apply(harness, (HOME, "A", ("203.0.113.7",)), (HOME, "AAAA", ("2001:db8::7",)))
    apply(harness, (HOME, "A", ("203.0.113.8",)))
    apply(harness, (HOME, "A", ("203.0.113.9",)), (HOME, "AAAA", ("2001:db8::9",)))
    fake = harness.fake
    assert fake.calls("GET", "/zones") == 1
    assert fake.calls("GET", "/zones/*/dns_records") == 2  # A and AAAA, once each
    assert fake.calls("POST", "/zones/*/dns_records") == 2
    assert fake.calls("PATCH", "/zones/*/dns_records/*") == 3
    assert harness.records(HOME, "A") == ["203.0.113.9"]
    assert harness.records(HOME, "AAAA") == ["2001:db8::9"]


def test_a_zone_ttl_below_60_is_raised_to_60_with_one_warning(
    harness: CloudflareHarness, caplog: pytest.LogCaptureFixture
) -> None:
    harness.zone = ZoneSettings(ZONE_NAME, "cf", ttl=30)
    with caplog.at_level(logging.WARNING, logger="nicupdate.backend"):
        apply(harness, (HOME, "A", ("203.0.113.7",)))
        apply(harness, (HOME, "A", ("203.0.113.8",)))
    assert harness.ttl(HOME, "A") == 60
    assert caplog.messages == [
        f"cf (cloudflare at 127.0.0.1): zone {ZONE_NAME} has ttl 30, below the provider's "
        "minimum; using 60"
    ]


def test_a_new_zone_ttl_changes_the_record_ttl(harness: CloudflareHarness) -> None:
    apply(harness, (HOME, "A", ("203.0.113.7",)))
    harness.zone = ZoneSettings(ZONE_NAME, "cf", ttl=300)
    before = harness.writes()
    apply(harness, (HOME, "A", ("203.0.113.7",)))
    assert harness.ttl(HOME, "A") == 300
    assert harness.writes() - before == 1


def test_several_addresses_are_one_record_each_with_the_fewest_writes(
    harness: CloudflareHarness,
) -> None:
    apply(harness, (HOME, "A", ("203.0.113.1", "203.0.113.2", "203.0.113.3")))
    assert harness.records(HOME, "A") == ["203.0.113.1", "203.0.113.2", "203.0.113.3"]
    assert harness.writes() == 3
    # Two stay, one changes in place, one is added.
    apply(harness, (HOME, "A", ("203.0.113.2", "203.0.113.3", "203.0.113.4", "203.0.113.5")))
    assert harness.records(HOME, "A") == [
        "203.0.113.2",
        "203.0.113.3",
        "203.0.113.4",
        "203.0.113.5",
    ]
    assert harness.fake.calls("PATCH", "/zones/*/dns_records/*") == 1
    assert harness.writes() == 5
    # Down to one: one stays, three go.
    apply(harness, (HOME, "A", ("203.0.113.4",)))
    assert harness.records(HOME, "A") == ["203.0.113.4"]
    assert harness.fake.calls("DELETE", "/zones/*/dns_records/*") == 3
    assert harness.writes() == 8


def test_records_added_in_the_dashboard_are_reconciled(harness: CloudflareHarness) -> None:
    harness.fake.add_record(HOME, "AAAA", "2001:db8::1", ttl=120)
    harness.fake.add_record(HOME, "AAAA", "2001:db8::2", ttl=120)
    apply(harness, (HOME, "AAAA", ("2001:DB8:0::2",)))  # the same address, spelt otherwise
    assert harness.records(HOME, "AAAA") == ["2001:db8::2"]
    assert harness.writes() == 1  # the other one deleted; 2001:db8::2 kept


def test_a_cname_in_the_way_is_permanent_and_says_what_to_fix(
    harness: CloudflareHarness,
) -> None:
    harness.fake.add_record(HOME, "CNAME", "elsewhere.example.net")
    with pytest.raises(PermanentBackendError) as raised:
        apply(harness, (HOME, "A", ("203.0.113.7",)))
    message = str(raised.value)
    assert f"creating {HOME} A 203.0.113.7: a CNAME record holds this name" in message
    assert message.endswith(
        "(delete the CNAME record in the Cloudflare dashboard, or use another host name)"
    )


def test_a_zone_not_in_the_account_is_permanent(harness: CloudflareHarness) -> None:
    harness.zone = ZoneSettings("missing.example.test", "cf", ttl=120)
    with pytest.raises(PermanentBackendError) as raised:
        apply(harness, ("a.missing.example.test", "A", ("203.0.113.7",)))
    assert str(raised.value) == (
        "cf (cloudflare at 127.0.0.1): the zone missing.example.test is not in this Cloudflare "
        "account, or the token cannot read it (check the zone's name, and give the token Zone "
        "Read and DNS Edit on it)"
    )


def test_throttling_honours_retry_after(harness: CloudflareHarness) -> None:
    harness.fail_next("throttle")
    with pytest.raises(TransientBackendError) as raised:
        apply(harness, (HOME, "A", ("203.0.113.7",)))
    assert raised.value.retry_after == 1.0
    assert "rate limit reached (Please wait and consider throttling your request speed (971))" in (
        str(raised.value)
    )
    apply(harness, (HOME, "A", ("203.0.113.7",)))  # the next attempt goes through
    assert harness.records(HOME, "A") == ["203.0.113.7"]


def test_a_failed_write_is_looked_up_again(harness: CloudflareHarness) -> None:
    apply(harness, (HOME, "A", ("203.0.113.7",)))
    harness.fake.fail_next("server")
    with pytest.raises(TransientBackendError, match="HTTP 502"):
        apply(harness, (HOME, "A", ("203.0.113.8",)))
    harness.fake.add_record(HOME, "A", "203.0.113.8", ttl=120)  # meanwhile, in the dashboard
    apply(harness, (HOME, "A", ("203.0.113.8",)))
    assert harness.records(HOME, "A") == ["203.0.113.8"]


def test_a_record_made_behind_the_cache_is_found_again(harness: CloudflareHarness) -> None:
    apply(harness, (HOME, "A", ()))  # known: no A record
    harness.fake.add_record(HOME, "A", "203.0.113.7", ttl=60)
    apply(harness, (HOME, "A", ("203.0.113.7",)))  # the POST is refused as a duplicate
    assert harness.records(HOME, "A") == ["203.0.113.7"]
    assert harness.ttl(HOME, "A") == 120


def test_a_zone_id_in_the_config_skips_the_lookup(harness: CloudflareHarness) -> None:
    zone_id = next(z for z, name in harness.fake.zones.items() if name == ZONE_NAME)
    harness.extra = {"zone_id": zone_id.upper()}
    apply(harness, (HOME, "A", ("203.0.113.7",)))
    assert harness.records(HOME, "A") == ["203.0.113.7"]
    assert harness.fake.calls("GET", "/zones") == 0


def test_a_wrong_zone_id_says_which_key(harness: CloudflareHarness) -> None:
    harness.extra = {"zone_id": "0" * 32}
    with pytest.raises(PermanentBackendError) as raised:
        apply(harness, (HOME, "A", ("203.0.113.7",)))
    message = str(raised.value)
    assert "Cloudflare does not know the zone id 00000000000000000000000000000000" in message
    assert "(check backends.cf.zone_id (the zone's Overview page shows it), or remove it)" in (
        message
    )


def test_a_zone_id_serves_one_zone_only(harness: CloudflareHarness) -> None:
    zone_id = next(z for z, name in harness.fake.zones.items() if name == ZONE_NAME)
    harness.extra = {"zone_id": zone_id}
    apply(harness, (HOME, "A", ("203.0.113.7",)))
    harness.zone = ZoneSettings("other.example.test", "cf", ttl=120)
    with pytest.raises(
        PermanentBackendError, match=r"give other\.example\.test a backend of its own"
    ):
        apply(harness, ("a.other.example.test", "A", ("203.0.113.7",)))
    assert harness.records("a.other.example.test", "A") == []


def test_a_zone_deleted_and_added_again_is_looked_up_again(harness: CloudflareHarness) -> None:
    apply(harness, (HOME, "A", ("203.0.113.7",)))
    fake = harness.fake
    with fake.lock:
        fake.zones = {z: n for z, n in fake.zones.items() if n != ZONE_NAME}
        fake.records.clear()
    fake.add_zone(ZONE_NAME)
    apply(harness, (HOME, "A", ("203.0.113.8",)))
    assert harness.records(HOME, "A") == ["203.0.113.8"]
    assert fake.calls("GET", "/zones") == 2


def test_proxied_records_have_the_automatic_ttl(harness: CloudflareHarness) -> None:
    harness.fake.add_record(HOME, "A", "203.0.113.7", ttl=120)
    harness.extra = {"proxied": True}
    apply(harness, (HOME, "A", ("203.0.113.7",)))
    (record,) = harness.fake.find(HOME, "A")
    assert record["proxied"] is True and record["ttl"] == 1
    before = harness.writes()
    apply(harness, (HOME, "A", ("203.0.113.7",)))
    assert harness.writes() == before


def test_an_answer_that_is_not_cloudflare_says_check_base_url(
    harness: CloudflareHarness,
) -> None:
    harness.url = harness.url.removesuffix("/client/v4") + "/elsewhere"
    with pytest.raises(PermanentBackendError) as raised:
        apply(harness, (HOME, "A", ("203.0.113.7",)))
    assert "is not from the Cloudflare API v4" in str(raised.value)
    assert "(check backends.cf.base_url (http://127.0.0.1:" in str(raised.value)
    harness.fake.unexpected.clear()  # the fake has no such route, as expected


def test_txt_content_goes_out_quoted_as_cloudflare_documents_it(
    harness: CloudflareHarness,
) -> None:
    apply(harness, (ACME, "TXT", (TOKENS[0],)))
    (record,) = harness.fake.find(ACME, "TXT")
    assert record["content"] == f'"{TOKENS[0]}"'
    assert (record["ttl"], record["proxied"]) == (120, False)


def test_a_txt_value_made_bare_in_the_dashboard_is_the_same_value(
    harness: CloudflareHarness,
) -> None:
    harness.fake.add_record(ACME, "TXT", TOKENS[0], ttl=120)  # unquoted, as people type it
    apply(harness, (ACME, "TXT", (TOKENS[0],)))
    assert harness.writes() == 0
    apply(harness, (ACME, "TXT", (TOKENS[1],)))  # changed in place, now quoted
    assert [r["content"] for r in harness.fake.find(ACME, "TXT")] == [f'"{TOKENS[1]}"']
    assert harness.fake.calls("PATCH", "/zones/*/dns_records/*") == 1


def test_with_proxied_the_wildcard_is_proxied_and_txt_is_not(
    harness: CloudflareHarness, caplog: pytest.LogCaptureFixture
) -> None:
    harness.extra = {"proxied": True}
    harness.zone = ZoneSettings(ZONE_NAME, "cf", ttl=30)
    with caplog.at_level(logging.WARNING, logger="nicupdate.backend"):
        apply(
            harness,
            (HOME, "A", ("203.0.113.7",)),
            (WILDCARD, "A", ("203.0.113.7",)),
            (ACME, "TXT", TOKENS[:2]),
        )
    (wildcard,) = harness.fake.find(WILDCARD, "A")
    assert (wildcard["proxied"], wildcard["ttl"]) == (True, 1)
    assert [(r["proxied"], r["ttl"]) for r in harness.fake.find(ACME, "TXT")] == [(False, 60)] * 2
    assert harness.records(ACME, "TXT") == sorted(TOKENS[:2])
    assert "has ttl 30, below the provider's minimum; using 60" in caplog.text  # for TXT
    before = harness.writes()
    apply(harness, (ACME, "TXT", TOKENS[:2]), (WILDCARD, "A", ("203.0.113.7",)))
    assert harness.writes() == before


def test_repr_hides_the_token(harness: CloudflareHarness) -> None:
    backend = harness.backend()
    assert harness.secret not in repr(backend)
    assert harness.secret not in repr(backend.auth)
    assert repr(backend.auth) == "BearerToken(<hidden>)"


R1 = ("r1", "192.0.2.1", 60, False)


@pytest.mark.parametrize(
    ("have", "wanted", "keep", "change", "create", "delete"),
    [
        ([], ("192.0.2.1",), 0, 0, 1, 0),
        ([R1], ("192.0.2.1",), 1, 0, 0, 0),
        ([("r1", "192.0.2.1", 300, False)], ("192.0.2.1",), 0, 1, 0, 0),
        ([R1], (), 0, 0, 0, 1),
        ([R1, ("r2", "192.0.2.2", 60, False)], ("192.0.2.3",), 0, 1, 0, 1),
        ([R1, ("r2", "192.0.2.1", 60, False)], ("192.0.2.1",), 1, 0, 0, 1),
        ([("r9", "192.0.2.9", 60, False)], ("192.0.2.1", "192.0.2.2", "192.0.2.1"), 0, 1, 1, 0),
    ],
)  # fmt: skip
def test_plan_writes(
    have: list[tuple[str, str, int, bool]],
    wanted: tuple[str, ...],
    keep: int,
    change: int,
    create: int,
    delete: int,
) -> None:
    plan = plan_writes(have, wanted, 60, False)
    assert (len(plan.keep), len(plan.change), len(plan.create), len(plan.delete)) == (
        keep,
        change,
        create,
        delete,
    )
    after = [r[1] for r in plan.keep] + [a for _, a in plan.change] + plan.create
    assert sorted(after) == sorted(set(wanted))


# -- configuration ------------------------------------------------------------------------


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(new_token() + "\n")
    return path


def build(**table: Any) -> CloudflareBackend:
    backend = create_backend("cf", {"type": "cloudflare", **table})
    assert isinstance(backend, CloudflareBackend)
    return backend


def test_the_factory_builds_it_with_defaults(token_file: Path) -> None:
    backend = build(api_token_file=str(token_file))
    assert backend.base_url == "https://api.cloudflare.com/client/v4"
    assert backend.timeout == 10.0 and backend.proxied is False and backend.zone_id is None
    assert backend.min_ttl == 60


def test_the_token_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    token = new_token()
    monkeypatch.setenv("NICUPDATE_TEST_CF_TOKEN", token)
    backend = build(api_token_env="NICUPDATE_TEST_CF_TOKEN")
    request = httpx.Request("GET", "https://api.cloudflare.com/client/v4/zones")
    assert backend.auth is not None
    signed = next(backend.auth.auth_flow(request))
    assert signed.headers["authorization"] == f"Bearer {token}"


@pytest.mark.parametrize(
    ("table", "error"),
    [
        ({}, "backends.cf.api_token_file: missing: give the Cloudflare API token as "
         "api_token_file or api_token_env"),
        ({"api_token": "x" * 40}, "backends.cf.api_token: give it as api_token_file or "
         "api_token_env, not in the configuration"),
        ({"api_token_env": "NICUPDATE_TEST_UNSET"}, "backends.cf.api_token_env: environment "
         "variable NICUPDATE_TEST_UNSET is not set"),
        ({"base_url": "ftp://example.test"}, "backends.cf.base_url: 'ftp://example.test' is "
         "not an http:// or https:// URL"),
        ({"timeout": 0}, "backends.cf.timeout: must be between 0.1 and 300 (got 0)"),
        ({"proxied": "yes"}, "backends.cf.proxied: must be true or false (got 'yes')"),
        ({"zone_id": "home.example.test"}, "backends.cf.zone_id: 'home.example.test' is not a "
         "zone id (32 hex digits, on the zone's Overview page)"),
        ({"ttl": 60}, "backends.cf.ttl: unknown key for a cloudflare backend"),
    ],
)  # fmt: skip
def test_config_errors_name_the_key(table: dict[str, Any], error: str, token_file: Path) -> None:
    if not {"api_token", "api_token_env"} & set(table) and table:
        table = {"api_token_file": str(token_file), **table}
    with pytest.raises(BackendUnavailable) as raised:
        build(**table)
    assert str(raised.value) == error


def test_a_global_api_key_is_refused_with_a_hint(tmp_path: Path) -> None:
    key = secrets.token_hex(19)[:37]
    path = tmp_path / "key"
    path.write_text(key)
    with pytest.raises(BackendUnavailable) as raised:
        build(api_token_file=str(path))
    assert str(raised.value).startswith("backends.cf.api_token_file: this looks like the Global")
    assert key not in str(raised.value)


def test_a_token_with_spaces_is_refused_without_showing_it(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("Bearer abc def")
    with pytest.raises(BackendUnavailable) as raised:
        build(api_token_file=str(path))
    assert str(raised.value) == (
        "backends.cf.api_token_file: the API token holds spaces or characters a token does not have"
    )


# -- end to end ---------------------------------------------------------------------------


@pytest.fixture
def live(harness: CloudflareHarness, tmp_path: Path) -> Iterator[LiveServer]:
    token = tmp_path / "cloudflare.token"
    token.write_text(harness.secret + "\n")
    backend_table = f"""
        type = "cloudflare"
        base_url = "{harness.url}"
        api_token_file = "{token}"
    """
    with relay_server(tmp_path, backend_table) as server:
        yield server


def test_a_ddclient_update_lands_at_cloudflare(
    live: LiveServer, harness: CloudflareHarness
) -> None:
    answer = ddclient(live, f"system=dyndns&hostname={HOME}&myip=203.0.113.7,2001:db8::7")
    assert answer.text == "good 203.0.113.7,2001:db8::7\n"
    assert harness.records(HOME, "A") == ["203.0.113.7"]
    assert harness.records(HOME, "AAAA") == ["2001:db8::7"]
    assert harness.ttl(HOME, "A") == 60
    again = ddclient(live, f"hostname={HOME}&myip=203.0.113.8")
    assert again.text == "good 203.0.113.8\n"
    assert harness.records(HOME, "A") == ["203.0.113.8"]
    assert harness.records(HOME, "AAAA") == ["2001:db8::7"]
    offline = ddclient(live, f"hostname={HOME}&offline=yes")
    assert offline.text.startswith("good")
    assert harness.records(HOME, "A") == [] and harness.records(HOME, "AAAA") == []


def test_a_throttled_cloudflare_gets_the_update_later(
    live: LiveServer, harness: CloudflareHarness
) -> None:
    harness.fail_next("throttle", times=2)
    answer = ddclient(live, f"hostname={HOME}&myip=203.0.113.7")
    assert answer.text == "911\n"
    started = time.monotonic()
    assert eventually(lambda: harness.records(HOME, "A") == ["203.0.113.7"], timeout=15)
    assert time.monotonic() - started >= 1.0  # Retry-After: 1, twice
