"""Backend ``dnspod``: Tencent Cloud DNSPod, against a stateful fake on 127.0.0.1 that
checks each request's TC3-HMAC-SHA256 signature as DNSPod does."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nicupdate_server.backends import (
    PermanentBackendError,
    TransientBackendError,
    create_backend,
)
from nicupdate_server.backends.dnspod import DnspodBackend
from nicupdate_server.config import ZoneSettings

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
from tests.server.conftest import LiveServer
from tests.server.fakes import serving
from tests.server.fakes.dnspod import DnspodFake, Record
from tests.server.relays import changed_table, ddclient, eventually, refusal, relay_server

SECRET_KEY = "nicupdate-test-SecretKey-4e1f0c9a"


class Harness:
    batches = False
    txt = True

    def __init__(self, fake: DnspodFake, url: str, tmp_path: Path, ttl: int = 600) -> None:
        self.fake = fake
        self.zone = ZoneSettings(name=ZONE_NAME, backend="tencent", ttl=ttl)
        self.secret = fake.secret_key
        key_file = tmp_path / "dnspod.secret"
        key_file.write_text(fake.secret_key + "\n")
        self.table: dict[str, Any] = {
            "type": "dnspod",
            "secret_id": fake.secret_id,
            "secret_key_file": str(key_file),
            "base_url": url,
        }
        self._backend: DnspodBackend | None = None

    def backend(self) -> DnspodBackend:
        if self._backend is None:
            built = create_backend("tencent", self.table)
            assert isinstance(built, DnspodBackend)
            self._backend = built
        return self._backend

    def records(self, fqdn: str, rtype: str) -> list[str]:
        return sorted(r.value for r in self.fake.find(ZONE_NAME, _name(fqdn), rtype))

    def ttl(self, fqdn: str, rtype: str) -> int | None:
        ttls = {r.ttl for r in self.fake.find(ZONE_NAME, _name(fqdn), rtype)}
        assert len(ttls) <= 1, ttls
        return ttls.pop() if ttls else None

    def writes(self) -> int:
        return self.fake.writes

    def fail_next(self, kind: str, times: int = 1) -> None:
        self.fake.fail_next(kind, times)

    def forget(self, fqdn: str, rtype: str) -> None:
        self.fake.drop(ZONE_NAME, _name(fqdn), rtype)


def _name(fqdn: str) -> str:
    return "@" if fqdn == ZONE_NAME else fqdn.removesuffix("." + ZONE_NAME)


@pytest.fixture
def fake() -> Iterator[tuple[DnspodFake, str]]:
    provider = DnspodFake(secret_key=SECRET_KEY, domains={ZONE_NAME})
    with serving(provider) as served:
        yield provider, served.url


@pytest.fixture
def harness(fake: tuple[DnspodFake, str], tmp_path: Path) -> Harness:
    return Harness(*fake, tmp_path)


class TestDnspod(BackendContract):
    pass  # the contract, with the harness fixture above


# -- what DNSPod gets ------------------------------------------------------------------


def test_the_calls_are_dnspods_with_the_default_line(harness: Harness) -> None:
    apply(harness, (HOME, "A", ("203.0.113.7",)))
    assert harness.fake.actions()[-2:] == ["DescribeRecordList", "CreateRecord"]
    [record] = harness.fake.find(ZONE_NAME, "router", "A")
    assert (record.value, record.ttl, record.line) == ("203.0.113.7", 600, "默认")


def test_the_apex_is_at(harness: Harness) -> None:
    apply(harness, (ZONE_NAME, "AAAA", ("2001:db8::1",)))
    assert harness.records(ZONE_NAME, "AAAA") == ["2001:db8::1"]
    # The NS records DNSPod keeps at the apex are not touched.
    assert [r.type for r in harness.fake.find(ZONE_NAME, "@", "NS")] == ["NS", "NS"]


def test_several_addresses_are_one_record_each(harness: Harness) -> None:
    apply(harness, (HOME, "A", ("203.0.113.7", "203.0.113.8", "203.0.113.9")))
    assert harness.records(HOME, "A") == ["203.0.113.7", "203.0.113.8", "203.0.113.9"]
    before = harness.writes()
    apply(harness, (HOME, "A", ("203.0.113.8", "203.0.113.10")))
    assert harness.records(HOME, "A") == ["203.0.113.10", "203.0.113.8"]
    assert harness.writes() - before == 2  # one ModifyRecord, one DeleteRecord


def test_ids_are_cached(harness: Harness) -> None:
    apply(harness, (HOME, "A", ("203.0.113.7",)))
    assert harness.fake.actions().count("DescribeRecordList") == 1
    apply(harness, (HOME, "A", ("203.0.113.8",)))
    apply(harness, (HOME, "A", ()))
    assert harness.fake.actions().count("DescribeRecordList") == 1
    assert harness.fake.actions()[-2:] == ["ModifyRecord", "DeleteRecord"]
    assert harness.records(HOME, "A") == []


def test_a_record_added_elsewhere_with_the_value_is_found_again(harness: Harness) -> None:
    apply(harness, (HOME, "A", ("203.0.113.7",)))
    harness.fake.put(Record(ZONE_NAME, "router", "A", "203.0.113.8", 600))
    apply(harness, (HOME, "A", ("203.0.113.8",)))  # ModifyRecord: the value exists already
    assert harness.records(HOME, "A") == ["203.0.113.8"]


# -- the TTL ---------------------------------------------------------------------------


def test_a_zone_ttl_below_the_plans_minimum_is_raised_with_one_warning(
    fake: tuple[DnspodFake, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    harness = Harness(*fake, tmp_path, ttl=60)
    with caplog.at_level(logging.WARNING):
        apply(harness, (HOME, "A", ("203.0.113.7",)))
        apply(harness, (HOME, "A", ("203.0.113.8",)))
    assert harness.ttl(HOME, "A") == 600
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert f"zone {ZONE_NAME} has ttl 60" in warnings[0] and "using 600" in warnings[0]


def test_a_ttl_below_what_the_plan_allows_is_permanent_and_names_min_ttl(
    fake: tuple[DnspodFake, str], tmp_path: Path
) -> None:
    harness = Harness(*fake, tmp_path, ttl=60)
    harness.table["min_ttl"] = 60  # as for a paid plan; the fake's is the free one
    with pytest.raises(PermanentBackendError) as raised:
        apply(harness, (HOME, "A", ("203.0.113.7",)))
    message = str(raised.value)
    assert "LimitExceeded.RecordTtlLimit" in message
    assert "set backends.tencent.min_ttl to the plan's minimum" in message
    assert harness.records(HOME, "A") == []


def test_a_paid_plans_lower_minimum_is_used(fake: tuple[DnspodFake, str], tmp_path: Path) -> None:
    provider, url = fake
    provider.min_ttl = 60
    harness = Harness(provider, url, tmp_path, ttl=60)
    harness.table["min_ttl"] = 60
    apply(harness, (HOME, "A", ("203.0.113.7",)))
    assert harness.ttl(HOME, "A") == 60


# -- errors ----------------------------------------------------------------------------


def test_a_wrong_secret_key_is_permanent_and_says_what_to_fix(
    harness: Harness, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "nicupdate-test-WrongKey-77aa01"
    Path(harness.table["secret_key_file"]).write_text(wrong)
    with caplog.at_level(logging.DEBUG), pytest.raises(PermanentBackendError) as raised:
        apply(harness, (HOME, "A", ("203.0.113.7",)))
    message = str(raised.value)
    assert message.startswith("tencent (dnspod at 127.0.0.1)")
    assert "AuthFailure.SignatureFailure" in message
    assert "check secret_id and the SecretKey in secret_key_file/secret_key_env" in message
    assert "QcloudDNSPodFullAccess" in message
    assert wrong not in message and wrong not in caplog.text
    assert wrong not in repr(harness.backend())
    assert harness.fake.writes == 0


def test_clocks_five_minutes_apart_are_permanent_and_say_so(harness: Harness) -> None:
    harness.fake.clock = lambda: time.time() + 400
    with pytest.raises(PermanentBackendError) as raised:
        apply(harness, (HOME, "A", ("203.0.113.7",)))
    assert "AuthFailure.SignatureExpire" in str(raised.value)
    assert "the clocks differ by more than 5 minutes" in str(raised.value)


def test_a_gateway_500_is_transient(harness: Harness) -> None:
    harness.fail_next("http500")
    with pytest.raises(TransientBackendError) as raised:
        apply(harness, (HOME, "A", ("203.0.113.7",)))
    assert "HTTP 500" in str(raised.value)
    apply(harness, (HOME, "A", ("203.0.113.7",)))
    assert harness.records(HOME, "A") == ["203.0.113.7"]


def test_throttling_says_so(harness: Harness) -> None:
    harness.fail_next("throttle")
    with pytest.raises(TransientBackendError) as raised:
        apply(harness, (HOME, "A", ("203.0.113.7",)))
    assert "DescribeRecordList: RequestLimitExceeded" in str(raised.value)


def test_a_domain_not_in_the_account_is_permanent(
    fake: tuple[DnspodFake, str], tmp_path: Path
) -> None:
    provider, url = fake
    provider.domains = {"other.example.test"}
    with pytest.raises(PermanentBackendError) as raised:
        apply(Harness(provider, url, tmp_path), (HOME, "A", ("203.0.113.7",)))
    assert f"the domain {ZONE_NAME} is not in this account" in str(raised.value)
    assert "add it in the DNSPod console" in str(raised.value)


def test_a_base_url_that_is_not_the_api_is_permanent(harness: Harness) -> None:
    harness.table["base_url"] = harness.table["base_url"] + "/elsewhere"
    with pytest.raises(PermanentBackendError) as raised:
        apply(harness, (HOME, "A", ("203.0.113.7",)))
    assert "not a Tencent Cloud API answer" in str(raised.value)
    assert "check backends.tencent.base_url" in str(raised.value)
    harness.fake.unexpected.clear()  # the fake has no such path, as intended


def test_wildcard_and_acme_records_are_subdomains_of_the_zone(harness: Harness) -> None:
    apply(harness, (WILDCARD, "AAAA", ("2001:db8::7",)), (ACME, "TXT", TOKENS[:2]))
    [wildcard] = harness.fake.find(ZONE_NAME, "*.router", "AAAA")
    assert (wildcard.value, wildcard.line) == ("2001:db8::7", "默认")
    challenges = harness.fake.find(ZONE_NAME, "_acme-challenge.router", "TXT")
    assert sorted(r.value for r in challenges) == sorted(TOKENS[:2])  # unquoted
    looked_up = [json.loads(seen.body) for seen in harness.fake.seen]
    assert {(b["Subdomain"], b["RecordType"]) for b in looked_up if "Subdomain" in b} == {
        ("*.router", "AAAA"),
        ("_acme-challenge.router", "TXT"),
    }


# -- reading back ----------------------------------------------------------------------


def test_read_returns_what_dnspod_holds_and_refreshes_the_ids(harness: Harness) -> None:
    apply(harness, (HOME, "A", ("203.0.113.7",)), (HOME, "AAAA", ("2001:db8::7",)))
    harness.forget(HOME, "A")
    harness.fake.put(Record(ZONE_NAME, "router", "A", "192.0.2.66", 600))
    backend = harness.backend()

    async def read() -> Any:
        try:
            return await backend.read(harness.zone, [HOME, f"h1.{ZONE_NAME}"])
        finally:
            await backend.close()

    assert run(read) == {
        (HOME, "A"): ("192.0.2.66",),
        (HOME, "AAAA"): ("2001:db8::7",),
        (f"h1.{ZONE_NAME}", "A"): (),
        (f"h1.{ZONE_NAME}", "AAAA"): (),
    }
    writes = harness.writes()
    apply(harness, (HOME, "A", ("203.0.113.7",)))  # the id read back: one ModifyRecord
    assert harness.writes() - writes == 1
    assert harness.fake.actions()[-1] == "ModifyRecord"
    assert harness.records(HOME, "A") == ["203.0.113.7"]


# -- configuration ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "key", "problem"),
    [
        ({"secret_id": None}, "secret_id", "missing (the SecretId of a Tencent Cloud"),
        (
            {"secret_key_file": None},
            "secret_key_file",
            "missing: give the SecretKey as secret_key_file or secret_key_env",
        ),
        (
            {"secret_key": "inline"},
            "secret_key",
            "as secret_key_file or secret_key_env, not in the configuration",
        ),
        (
            {"secret_key_env": "NICUPDATE_TEST_UNSET_VARIABLE"},
            "secret_key_env",
            "give only one of secret_key_file and secret_key_env",
        ),
        (
            {"base_url": "dnspod.tencentcloudapi.com"},
            "base_url",
            "'dnspod.tencentcloudapi.com' is not an http:// or https:// URL",
        ),
        ({"min_ttl": 0}, "min_ttl", "must be between 1 and 604800 (got 0)"),
        ({"region": "ap-guangzhou"}, "region", "unknown key for a dnspod backend"),
    ],
)
def test_configuration_errors_name_the_key(
    harness: Harness, change: dict[str, Any], key: str, problem: str
) -> None:
    message = refusal("tencent", changed_table(harness.table, change))
    assert message.startswith(f"backends.tencent.{key}: ") and problem in message, message
    assert "\n" not in message and "inline" not in message


def test_the_secret_key_may_come_from_the_environment(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NICUPDATE_TEST_DNSPOD_KEY", SECRET_KEY)
    harness.table.pop("secret_key_file")
    harness.table["secret_key_env"] = "NICUPDATE_TEST_DNSPOD_KEY"
    apply(harness, (HOME, "A", ("203.0.113.7",)))
    assert harness.records(HOME, "A") == ["203.0.113.7"]
    assert SECRET_KEY not in repr(harness.backend())


# -- end to end: a nicupdate server relaying to the fake -------------------------------


@pytest.fixture
def live(fake: tuple[DnspodFake, str], tmp_path: Path) -> Iterator[LiveServer]:
    provider, url = fake
    key_file = tmp_path / "dnspod.secret"
    key_file.write_text(SECRET_KEY + "\n")
    backend_table = f"""
        type = "dnspod"
        secret_id = "{provider.secret_id}"
        secret_key_file = "{key_file}"
        base_url = "{url}"
    """
    with relay_server(tmp_path, backend_table) as server:
        yield server


def test_an_update_lands_at_dnspod(live: LiveServer, fake: tuple[DnspodFake, str]) -> None:
    provider, _ = fake
    answer = ddclient(live, f"hostname={HOME}&myip=203.0.113.7,2001:db8::7")
    assert answer.text == "good 203.0.113.7,2001:db8::7\n"
    [a] = provider.find(ZONE_NAME, "router", "A")
    [aaaa] = provider.find(ZONE_NAME, "router", "AAAA")
    assert (a.value, a.ttl) == ("203.0.113.7", 600)  # the zone's 60, raised to the plan's
    assert (aaaa.value, aaaa.ttl) == ("2001:db8::7", 600)
    again = ddclient(live, f"hostname={HOME}&myip=203.0.113.7,2001:db8::7")
    assert again.text == "nochg 203.0.113.7,2001:db8::7\n"


def test_a_throttled_update_lands_without_the_client_retrying(
    live: LiveServer, fake: tuple[DnspodFake, str]
) -> None:
    provider, _ = fake
    provider.fail_next("throttle", times=2)
    answer = ddclient(live, f"hostname={HOME}&myip=203.0.113.7")
    assert answer.text == "911\n"  # stored; DNSPod does not have it yet
    assert eventually(
        lambda: [r.value for r in provider.find(ZONE_NAME, "router", "A")] == ["203.0.113.7"],
        timeout=10,
    )
    assert provider.actions().count("DescribeRecordList") >= 3  # two refused, then served
