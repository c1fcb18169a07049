"""Backend ``alidns``: Alibaba Cloud DNS, against a strict stateful fake on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from nicupdate_server.backends import (
    PermanentBackendError,
    TransientBackendError,
    create_backend,
)
from nicupdate_server.config import ZoneSettings
from nicupdate_server.signing.alidns import AliyunRpcAuth

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
from tests.server.fakes import serving
from tests.server.fakes.alidns import FakeAlidns
from tests.server.relays import changed_table, ddclient, eventually, refusal, relay_server

WRITES = ("AddDomainRecord", "UpdateDomainRecord", "DeleteDomainRecord")


class Harness:
    batches = False
    txt = True

    def __init__(
        self,
        fake: FakeAlidns,
        url: str,
        tmp_path: Path,
        *,
        ttl: int = 600,
        secret: str | None = None,
        zone: str = ZONE_NAME,
        **table: Any,
    ) -> None:
        self.fake = fake
        self.zone = ZoneSettings(name=zone, backend="aliyun", ttl=ttl)
        self.secret = secret or fake.access_key_secret
        secret_file = tmp_path / "alidns.secret"
        secret_file.write_text(self.secret + "\n")
        self.table = {
            "type": "alidns",
            "access_key_id": fake.access_key_id,
            "access_key_secret_file": str(secret_file),
            "base_url": url,
            **table,
        }
        self._backend: Any = None

    def backend(self) -> Any:
        if self._backend is None:
            self._backend = create_backend("aliyun", self.table)
        return self._backend

    def records(self, fqdn: str, rtype: str) -> list[str]:
        return sorted(r["Value"] for r in self.fake.find(fqdn, rtype))

    def ttl(self, fqdn: str, rtype: str) -> int | None:
        ttls = {r["TTL"] for r in self.fake.find(fqdn, rtype)}
        assert len(ttls) <= 1, f"records of one set with different TTLs: {ttls}"
        return ttls.pop() if ttls else None

    def writes(self) -> int:
        return self.fake.writes

    def fail_next(self, kind: str, times: int = 1) -> None:
        self.fake.fail_next(kind, times)

    def forget(self, fqdn: str, rtype: str) -> None:
        self.fake.forget(fqdn, rtype)


@pytest.fixture
def account() -> Iterator[tuple[FakeAlidns, str]]:
    fake = FakeAlidns(domains={ZONE_NAME})
    with serving(fake) as served:
        yield fake, served.url


class TestAlidns(BackendContract):
    @pytest.fixture
    def harness(self, account: tuple[FakeAlidns, str], tmp_path: Path) -> Harness:
        return Harness(*account, tmp_path)


# -- provider specifics --------------------------------------------------------------------


def test_a_wrong_secret_is_permanent_and_names_the_keys_to_check(
    account: tuple[FakeAlidns, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fake, url = account
    harness = Harness(fake, url, tmp_path, secret="not-the-secret-0123456789")
    with caplog.at_level(logging.DEBUG), pytest.raises(PermanentBackendError) as raised:
        apply(harness, (HOME, "A", ("203.0.113.7",)))
    message = str(raised.value)
    assert message.startswith("aliyun (alidns at 127.0.0.1)"), message
    assert "SignatureDoesNotMatch" in message
    assert "access_key_id" in message and "access_key_secret_file" in message
    for secret in (harness.secret, fake.access_key_secret):
        assert secret not in message and secret not in caplog.text
        assert secret not in repr(harness.backend())
    assert fake.records == {}


def test_record_ids_are_read_once_then_kept(
    account: tuple[FakeAlidns, str], tmp_path: Path
) -> None:
    fake, url = account
    harness = Harness(fake, url, tmp_path)
    apply(harness, (HOME, "A", ("203.0.113.7",)))
    assert fake.actions() == ["DescribeSubDomainRecords", "AddDomainRecord"]

    seen = len(fake.seen)
    apply(harness, (HOME, "A", ("203.0.113.8",)))  # another value: no lookup
    assert fake.actions()[seen:] == ["UpdateDomainRecord"]
    seen = len(fake.seen)
    apply(harness, (HOME, "A", ("203.0.113.8",)))  # the same value: no call at all
    assert fake.actions()[seen:] == []
    apply(harness, (HOME, "A", ()))  # offline
    assert fake.actions()[seen:] == ["DeleteDomainRecord"]
    assert harness.records(HOME, "A") == []


def test_a_zone_ttl_below_the_minimum_uses_it_and_says_so_once(
    account: tuple[FakeAlidns, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fake, url = account
    harness = Harness(fake, url, tmp_path, ttl=60)
    with caplog.at_level(logging.WARNING, logger="nicupdate.backend"):
        apply(harness, (HOME, "A", ("203.0.113.7",)))
        apply(harness, (HOME, "A", ("203.0.113.8",)), (HOME, "AAAA", ("2001:db8::8",)))
    assert harness.records(HOME, "A") == ["203.0.113.8"]
    assert harness.ttl(HOME, "A") == 600
    assert harness.ttl(HOME, "AAAA") == 600
    warnings = [r.getMessage() for r in caplog.records if "ttl" in r.getMessage()]
    assert warnings == [
        f"aliyun (alidns at 127.0.0.1): zone {ZONE_NAME} has ttl 60, below the provider's "
        "minimum; using 600"
    ]


def test_a_min_ttl_below_the_edition_minimum_is_permanent_and_names_min_ttl(
    account: tuple[FakeAlidns, str], tmp_path: Path
) -> None:
    fake, url = account
    harness = Harness(fake, url, tmp_path, ttl=60, min_ttl=60)  # enterprise setting, free plan
    with pytest.raises(PermanentBackendError) as raised:
        apply(harness, (HOME, "A", ("203.0.113.7",)))
    message = str(raised.value)
    assert "QuotaExceeded.TTL" in message and "range of 600 to 86400" in message
    assert "set backends.aliyun.min_ttl to your edition's minimum TTL" in message

    fake.edition_min_ttl = 60  # an enterprise edition takes it
    apply(harness, (HOME, "A", ("203.0.113.7",)))
    assert harness.ttl(HOME, "A") == 60


def test_several_addresses_are_one_record_each_with_few_writes(
    account: tuple[FakeAlidns, str], tmp_path: Path
) -> None:
    fake, url = account
    harness = Harness(fake, url, tmp_path)
    apply(harness, (HOME, "A", ("203.0.113.1", "203.0.113.2")))
    assert harness.records(HOME, "A") == ["203.0.113.1", "203.0.113.2"]
    assert fake.writes == 2

    seen = len(fake.seen)
    apply(harness, (HOME, "A", ("203.0.113.2", "203.0.113.3")))  # .2 stays, .1 becomes .3
    assert fake.actions()[seen:] == ["UpdateDomainRecord"]
    assert harness.records(HOME, "A") == ["203.0.113.2", "203.0.113.3"]
    seen = len(fake.seen)
    apply(harness, (HOME, "A", ("203.0.113.3",)))
    assert fake.actions()[seen:] == ["DeleteDomainRecord"]
    assert harness.records(HOME, "A") == ["203.0.113.3"]


def test_the_apex_is_rr_at(account: tuple[FakeAlidns, str], tmp_path: Path) -> None:
    fake, url = account
    harness = Harness(fake, url, tmp_path)
    apply(harness, (ZONE_NAME, "AAAA", ("2001:DB8:0:0::1",)))
    [record] = fake.find(ZONE_NAME, "AAAA")
    assert (record["RR"], record["Value"]) == ("@", "2001:db8::1")
    seen = len(fake.seen)
    apply(harness, (ZONE_NAME, "AAAA", ("2001:db8::1",)))
    assert fake.actions()[seen:] == []


def test_a_record_the_provider_has_already_is_success(
    account: tuple[FakeAlidns, str], tmp_path: Path
) -> None:
    fake, url = account
    harness = Harness(fake, url, tmp_path)
    apply(harness, (HOME, "A", ()))  # read once: nothing there
    fake.put(HOME, "A", "203.0.113.7")  # someone adds it in the console
    seen = len(fake.seen)
    apply(harness, (HOME, "A", ("203.0.113.7",)))  # AddDomainRecord: DomainRecordDuplicate
    assert fake.actions()[seen:] == ["AddDomainRecord"]
    assert harness.records(HOME, "A") == ["203.0.113.7"]
    seen = len(fake.seen)
    apply(harness, (HOME, "A", ("203.0.113.8",)))  # its id was unknown: read, then update
    assert fake.actions()[seen:] == ["DescribeSubDomainRecords", "UpdateDomainRecord"]
    assert harness.records(HOME, "A") == ["203.0.113.8"]


def test_a_stale_id_is_looked_up_once_more(account: tuple[FakeAlidns, str], tmp_path: Path) -> None:
    fake, url = account
    harness = Harness(fake, url, tmp_path)
    apply(harness, (HOME, "A", ("203.0.113.7",)))
    harness.forget(HOME, "A")
    seen = len(fake.seen)
    apply(harness, (HOME, "A", ("203.0.113.8",)))
    assert fake.actions()[seen:] == [
        "UpdateDomainRecord",  # DomainRecordNotBelongToUser
        "DescribeSubDomainRecords",
        "AddDomainRecord",
    ]
    assert harness.records(HOME, "A") == ["203.0.113.8"]


def test_a_ram_user_without_permission_is_told_which_policy(
    account: tuple[FakeAlidns, str], tmp_path: Path
) -> None:
    fake, url = account
    fake.fail_next("forbidden")
    with pytest.raises(PermanentBackendError) as raised:
        apply(Harness(fake, url, tmp_path), (HOME, "A", ("203.0.113.7",)))
    assert "Forbidden.RAM" in str(raised.value)
    assert "attach the policy AliyunDNSFullAccess to the RAM user" in str(raised.value)


def test_a_zone_not_in_the_account_is_permanent(
    account: tuple[FakeAlidns, str], tmp_path: Path
) -> None:
    fake, url = account
    harness = Harness(fake, url, tmp_path, zone="elsewhere.example.test")
    with pytest.raises(PermanentBackendError) as raised:
        apply(harness, ("router.elsewhere.example.test", "A", ("203.0.113.7",)))
    assert "is not in this Alibaba Cloud account (InvalidDomainName.NoExist" in str(raised.value)
    assert "add the domain in the Alibaba Cloud DNS console" in str(raised.value)


def test_throttling_is_transient_and_names_the_code(
    account: tuple[FakeAlidns, str], tmp_path: Path
) -> None:
    fake, url = account
    fake.fail_next("throttle")
    with pytest.raises(TransientBackendError) as raised:
        apply(Harness(fake, url, tmp_path), (HOME, "A", ("203.0.113.7",)))
    assert "Throttling.User: Request was denied due to user flow control." in str(raised.value)
    assert raised.value.retry_after is None  # Alidns sends no Retry-After


def test_read_gives_what_alidns_holds(account: tuple[FakeAlidns, str], tmp_path: Path) -> None:
    fake, url = account
    harness = Harness(fake, url, tmp_path)
    apply(harness, (HOME, "A", ("203.0.113.7",)), (HOME, "AAAA", ("2001:db8::7",)))
    fake.put(HOME, "A", "192.0.2.66")
    backend = harness.backend()

    async def read() -> Any:
        try:
            return await backend.read(harness.zone, [HOME, f"h1.{ZONE_NAME}"])
        finally:
            await backend.close()

    assert asyncio.run(read()) == {
        (HOME, "A"): ("192.0.2.66", "203.0.113.7"),
        (HOME, "AAAA"): ("2001:db8::7",),
        (f"h1.{ZONE_NAME}", "A"): (),
        (f"h1.{ZONE_NAME}", "AAAA"): (),
    }


def test_wildcard_and_acme_records_have_the_rr_alidns_shows(
    account: tuple[FakeAlidns, str], tmp_path: Path
) -> None:
    fake, url = account
    harness = Harness(fake, url, tmp_path)
    apply(harness, (WILDCARD, "A", ("203.0.113.7",)), (ACME, "TXT", TOKENS[:2]))
    with fake.lock:
        rows = sorted((r["RR"], r["Type"], r["Value"]) for r in fake.records.values())
    assert rows == [
        ("*.router", "A", "203.0.113.7"),
        *sorted(("_acme-challenge.router", "TXT", token) for token in TOKENS[:2]),
    ]
    described = [dict(parse_qsl(seen.query)) for seen in fake.seen]
    assert {(d["SubDomain"], d["Type"]) for d in described if "SubDomain" in d} == {
        (WILDCARD, "A"),
        (ACME, "TXT"),
    }


def test_a_txt_value_added_in_the_console_is_read_back_as_it_is(
    account: tuple[FakeAlidns, str], tmp_path: Path
) -> None:
    fake, url = account
    fake.put(ACME, "TXT", "Some Text, Case Kept")
    harness = Harness(fake, url, tmp_path)
    backend = harness.backend()

    async def read() -> Any:
        try:
            return await backend.read(harness.zone, [ACME])
        finally:
            await backend.close()

    assert asyncio.run(read()) == {(ACME, "TXT"): ("Some Text, Case Kept",)}
    apply(harness, (ACME, "TXT", ("Some Text, Case Kept", TOKENS[0])))
    assert fake.actions()[-1] == "AddDomainRecord"  # the kept one stays
    assert harness.records(ACME, "TXT") == sorted(["Some Text, Case Kept", TOKENS[0]])


# -- the fake is as strict as Alidns ---------------------------------------------------------


def _signed(fake: FakeAlidns, url: str, clock: datetime, nonce: str, **params: str) -> Any:
    auth = AliyunRpcAuth(
        fake.access_key_id, fake.access_key_secret, clock=lambda: clock, nonce=lambda: nonce
    )
    request = httpx.Request("GET", url + "/", params={"Version": "2015-01-09", **params})
    return next(auth.auth_flow(request))


def test_the_fake_checks_signature_time_and_nonce(account: tuple[FakeAlidns, str]) -> None:
    fake, url = account
    now = datetime.now(UTC)
    describe = {"Action": "DescribeSubDomainRecords", "SubDomain": HOME, "DomainName": ZONE_NAME}
    with httpx.Client(trust_env=False) as client:
        ok = client.send(_signed(fake, url, now, "nonce-1", **describe))
        assert ok.status_code == 200 and ok.json()["TotalCount"] == 0

        again = client.send(_signed(fake, url, now, "nonce-1", **describe))
        assert (again.status_code, again.json()["Code"]) == (400, "SignatureNonceUsed")

        late = client.send(_signed(fake, url, now - timedelta(minutes=16), "nonce-2", **describe))
        assert (late.status_code, late.json()["Code"]) == (400, "InvalidTimeStamp.Expired")

        tampered = _signed(fake, url, now, "nonce-3", **describe)
        tampered.url = tampered.url.copy_set_param("SubDomain", f"other.{ZONE_NAME}")
        refused = client.send(tampered)
        assert (refused.status_code, refused.json()["Code"]) == (400, "SignatureDoesNotMatch")
        assert "server string to sign is:GET&%2F&AccessKeyId%3D" in refused.json()["Message"]
        assert set(refused.json()) == {"RequestId", "HostId", "Code", "Message", "Recommend"}

        stranger = _signed(fake, url, now, "nonce-4", **describe)
        stranger.url = stranger.url.copy_set_param("AccessKeyId", "LTAI5tSomeoneElse")
        unknown = client.send(stranger)
        assert (unknown.status_code, unknown.json()["Code"]) == (404, "InvalidAccessKeyId.NotFound")

        fake.fail_next("throttle")
        throttled = client.send(_signed(fake, url, now, "nonce-5", **describe))
        assert (throttled.status_code, throttled.json()["Code"]) == (400, "Throttling.User")
        assert "retry-after" not in throttled.headers


def test_the_fake_refuses_an_update_to_the_same_value(account: tuple[FakeAlidns, str]) -> None:
    fake, url = account
    record_id = fake.put(HOME, "A", "203.0.113.7")
    update = {
        "Action": "UpdateDomainRecord",
        "RecordId": record_id,
        "RR": "router",
        "Type": "A",
        "Value": "203.0.113.7",
        "TTL": "600",
    }
    with httpx.Client(trust_env=False) as client:
        same = client.send(_signed(fake, url, datetime.now(UTC), "n-1", **update))
        assert (same.status_code, same.json()["Code"]) == (400, "DomainRecordDuplicate")
        update["RecordId"] = "1"
        gone = client.send(_signed(fake, url, datetime.now(UTC), "n-2", **update))
        assert (gone.status_code, gone.json()["Code"]) == (400, "DomainRecordNotBelongToUser")


# -- configuration -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"access_key_id": None}, "backends.aliyun.access_key_id: missing (the AccessKey ID"),
        ({"access_key_secret_file": None}, "backends.aliyun.access_key_secret_file: missing"),
        (
            {"access_key_secret": "inline-secret"},
            "backends.aliyun.access_key_secret: give ",
        ),
        ({"base_url": "alidns.aliyuncs.com"}, "backends.aliyun.base_url: 'alidns.aliyuncs.com'"),
        ({"min_ttl": 0}, "backends.aliyun.min_ttl: must be between 1 and 86400 (got 0)"),
        ({"line": ""}, "backends.aliyun.line: must be a non-empty string"),
        ({"region": "cn-hangzhou"}, "backends.aliyun.region: unknown key for a alidns backend"),
    ],
)
def test_config_errors_name_the_key(tmp_path: Path, change: dict[str, Any], expected: str) -> None:
    secret = tmp_path / "alidns.secret"
    secret.write_text("s3cret-value-123\n")
    base = {
        "type": "alidns",
        "access_key_id": "LTAI5tExample",
        "access_key_secret_file": str(secret),
    }
    message = refusal("aliyun", changed_table(base, change))
    assert message.startswith(expected), message
    if "access_key_secret" in change:
        assert "access_key_secret_file or access_key_secret_env" in message
    assert "s3cret-value-123" not in message
    assert "inline-secret" not in message


def test_the_secret_may_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, account: tuple[FakeAlidns, str], tmp_path: Path
) -> None:
    fake, url = account
    monkeypatch.setenv("NICUPDATE_TEST_ALIDNS", fake.access_key_secret)
    harness = Harness(fake, url, tmp_path)
    del harness.table["access_key_secret_file"]
    harness.table["access_key_secret_env"] = "NICUPDATE_TEST_ALIDNS"
    apply(harness, (HOME, "A", ("203.0.113.7",)))
    assert harness.records(HOME, "A") == ["203.0.113.7"]
    assert fake.access_key_secret not in repr(harness.backend())


# -- end to end: routers -> nicupdate -> Alibaba Cloud DNS ------------------------------------


@pytest.fixture
def live(account: tuple[FakeAlidns, str], tmp_path: Path) -> Iterator[LiveServer]:
    fake, url = account
    secret = tmp_path / "alidns.secret"
    secret.write_text(fake.access_key_secret + "\n")
    backend_table = f"""
        type = "alidns"
        access_key_id = "{fake.access_key_id}"
        access_key_secret_file = "{secret}"
        base_url = "{url}"
    """
    with relay_server(tmp_path, backend_table) as server:
        yield server


def records(fake: FakeAlidns, rtype: str) -> list[str]:
    return sorted(r["Value"] for r in fake.find(HOME, rtype))


def test_a_router_update_lands_in_alidns(live: LiveServer, account: tuple[FakeAlidns, str]) -> None:
    fake, _ = account
    answer = ddclient(live, f"hostname={HOME}&myip=203.0.113.7,2001:db8::7")
    assert answer.text == "good 203.0.113.7,2001:db8::7\n"
    assert records(fake, "A") == ["203.0.113.7"]  # `good`: there already
    assert records(fake, "AAAA") == ["2001:db8::7"]
    assert {r["TTL"] for r in fake.find(HOME, "A")} == {600}  # ttl 60 raised to 600
    again = ddclient(live, f"hostname={HOME}&myip=203.0.113.7,2001:db8::7")
    assert again.text == "nochg 203.0.113.7,2001:db8::7\n"


def test_a_throttled_provider_gets_the_update_without_the_router_retrying(
    live: LiveServer, account: tuple[FakeAlidns, str]
) -> None:
    fake, _ = account
    fake.fail_next("throttle", times=2)
    answer = ddclient(live, f"hostname={HOME}&myip=203.0.113.7")
    assert answer.text == "911\n"  # stored; Alidns asked to slow down
    # It arrives, and nobody sent it again.
    assert eventually(lambda: records(fake, "A") == ["203.0.113.7"], timeout=20)
    assert ddclient(live, f"hostname={HOME}&myip=203.0.113.7").text == "nochg 203.0.113.7\n"
