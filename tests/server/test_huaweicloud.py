"""Backend ``huaweicloud`` against a fake Huawei Cloud DNS that checks every signature."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from nicupdate_server.backends import (
    FACTORIES,
    PermanentBackendError,
    TransientBackendError,
    create_backend,
)
from nicupdate_server.backends.huaweicloud import HuaweiCloudBackend
from nicupdate_server.config import ZoneSettings
from nicupdate_server.signing.huawei import HuaweiSdkAuth

from tests.server.backend_contract import (
    ACME,
    HOME,
    TOKENS,
    WILDCARD,
    ZONE_NAME,
    BackendContract,
    apply_with,
)
from tests.server.conftest import LiveServer
from tests.server.fakes import Served, serving, txt_value
from tests.server.fakes.huaweicloud import FakeHuaweiCloud
from tests.server.relays import changed_table, ddclient, eventually, refusal, relay_server

ZONE = ZoneSettings(name=ZONE_NAME, backend="huawei", ttl=60)
WRONG_SECRET = "wrongSK0bm90LXRoZS1zZWNyZXQtb2YtdGhpcy1ha"


@pytest.fixture
def served() -> Iterator[Served]:
    fake = FakeHuaweiCloud()
    fake.add_zone(ZONE_NAME)
    fake.add_zone("other.example.test")
    with serving(fake) as running:
        yield running


def table(
    served: Served, tmp_path: Path, secret: str | None = None, **extra: Any
) -> dict[str, Any]:
    fake: FakeHuaweiCloud = served.fake
    secret_file = tmp_path / "huawei.sk"
    secret_file.write_text((secret or fake.secret_key) + "\n")
    return {
        "type": "huaweicloud",
        "access_key": fake.access_key,
        "secret_key_file": str(secret_file),
        "base_url": served.url,
        **extra,
    }


def backend_for(served: Served, tmp_path: Path, **extra: Any) -> HuaweiCloudBackend:
    backend = create_backend("huawei", table(served, tmp_path, **extra))
    assert isinstance(backend, HuaweiCloudBackend)
    return backend


def apply(
    backend: HuaweiCloudBackend,
    *changes: tuple[str, str, tuple[str, ...]],
    zone: ZoneSettings = ZONE,
) -> None:
    apply_with(backend, zone, *changes)


def calls(fake: FakeHuaweiCloud) -> list[str]:
    return [f"{seen.method} {seen.path}" for seen in fake.seen]


# -- the shared contract ------------------------------------------------------------------


@dataclass
class HuaweiHarness:
    served: Served
    tmp_path: Path
    zone: ZoneSettings = ZONE
    batches: bool = False
    txt: bool = True
    _backend: HuaweiCloudBackend | None = field(default=None, repr=False)

    @property
    def fake(self) -> FakeHuaweiCloud:
        fake: FakeHuaweiCloud = self.served.fake
        return fake

    @property
    def secret(self) -> str:
        return self.fake.secret_key

    def backend(self) -> HuaweiCloudBackend:
        if self._backend is None:
            self._backend = backend_for(self.served, self.tmp_path)
        return self._backend

    def records(self, fqdn: str, rtype: str) -> list[str]:
        found = self.fake.records(fqdn, rtype)
        return sorted(txt_value(value) for value in found) if rtype == "TXT" else found

    def ttl(self, fqdn: str, rtype: str) -> int | None:
        return self.fake.ttl(fqdn, rtype)

    def writes(self) -> int:
        return self.fake.writes

    def fail_next(self, kind: str, times: int = 1) -> None:
        self.fake.fail_next(kind, times)

    def forget(self, fqdn: str, rtype: str) -> None:
        self.fake.forget(fqdn, rtype)


class TestHuaweiCloud(BackendContract):
    @pytest.fixture
    def harness(self, served: Served, tmp_path: Path) -> HuaweiHarness:
        return HuaweiHarness(served, tmp_path)


# -- credentials and permissions ------------------------------------------------------------


def test_a_wrong_secret_is_permanent_and_says_what_to_fix(
    served: Served, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    backend = create_backend("huawei", table(served, tmp_path, secret=WRONG_SECRET))
    assert isinstance(backend, HuaweiCloudBackend)
    with caplog.at_level(logging.DEBUG), pytest.raises(PermanentBackendError) as raised:
        apply(backend, (HOME, "A", ("203.0.113.7",)))
    message = str(raised.value)
    assert message.startswith("huawei (huaweicloud at 127.0.0.1)")
    assert "APIGW.0301 Incorrect IAM authentication information" in message
    assert "check access_key and the secret key (secret_key_file / secret_key_env)" in message
    assert "clock" in message
    assert WRONG_SECRET not in message and WRONG_SECRET not in caplog.text
    assert WRONG_SECRET not in repr(backend)
    assert message in caplog.text  # logged once, as it is raised
    assert calls(served.fake) == ["GET /v2/zones"]  # refused: nothing else is tried
    assert served.fake.records(HOME, "A") == []


def test_a_signature_from_a_clock_20_minutes_behind_is_refused(
    served: Served, tmp_path: Path
) -> None:
    backend = backend_for(served, tmp_path)
    late = datetime.now(UTC) - timedelta(minutes=20)
    backend.auth = HuaweiSdkAuth(served.fake.access_key, served.fake.secret_key, clock=lambda: late)
    with pytest.raises(PermanentBackendError, match="within 15 minutes of UTC"):
        apply(backend, (HOME, "A", ("203.0.113.7",)))


def test_a_user_without_dns_permissions_is_told_which_policy(
    served: Served, tmp_path: Path
) -> None:
    served.fake.fail_next("forbidden")
    with pytest.raises(PermanentBackendError) as raised:
        apply(backend_for(served, tmp_path), (HOME, "A", ("203.0.113.7",)))
    assert "not allowed: DNS.0013" in str(raised.value)
    assert "DNS FullAccess (or DNS Administrator)" in str(raised.value)


# -- throttling and failures ----------------------------------------------------------------


def test_throttling_honours_retry_after_when_sent(served: Served, tmp_path: Path) -> None:
    served.fake.retry_after = "7"
    served.fake.fail_next("throttle")
    with pytest.raises(TransientBackendError) as raised:
        apply(backend_for(served, tmp_path), (HOME, "A", ("203.0.113.7",)))
    assert raised.value.retry_after == 7
    assert "APIGW.0308 The throttling threshold has been reached" in str(raised.value)
    assert "asked to wait 7 s" in str(raised.value)


@pytest.mark.parametrize(
    ("kind", "said"),
    [
        ("throttle", "HTTP 429"),
        ("flow_control", "DNS.0014 Request forbidden by flow control"),
        ("server", "DNS.0001 Internal error"),
        ("unavailable", "HTTP 503"),
    ],
)
def test_throttling_and_server_errors_are_transient(
    served: Served, tmp_path: Path, kind: str, said: str
) -> None:
    backend = backend_for(served, tmp_path)
    apply(backend, (HOME, "A", ("203.0.113.7",)))  # ids known: the PUT is what fails
    served.fake.fail_next(kind)
    with pytest.raises(TransientBackendError, match=said) as raised:
        apply(backend, (HOME, "A", ("203.0.113.8",)))
    assert raised.value.retry_after is None
    apply(backend, (HOME, "A", ("203.0.113.8",)))  # once the service is back, it lands
    assert served.fake.records(HOME, "A") == ["203.0.113.8"]


def test_an_invalid_address_is_permanent(served: Served, tmp_path: Path) -> None:
    with pytest.raises(PermanentBackendError) as raised:
        apply(backend_for(served, tmp_path), (HOME, "A", ("203.0.113.300",)))
    assert "creating router.home.example.test A: refused: DNS.0308" in str(raised.value)
    assert "refused an address" in str(raised.value)


def test_a_zone_the_account_lacks_is_permanent(served: Served, tmp_path: Path) -> None:
    elsewhere = ZoneSettings(name="nowhere.example.test", backend="huawei", ttl=60)
    with pytest.raises(PermanentBackendError) as raised:
        apply(
            backend_for(served, tmp_path),
            ("a.nowhere.example.test", "A", ("203.0.113.7",)),
            zone=elsewhere,
        )
    assert "zone nowhere.example.test is not among the account's zones" in str(raised.value)
    assert "Public Zones" in str(raised.value)


# -- ids, caching and records ----------------------------------------------------------------


def test_ids_are_cached(served: Served, tmp_path: Path) -> None:
    fake: FakeHuaweiCloud = served.fake
    backend = backend_for(served, tmp_path)
    zone_id = fake.zone_id(ZONE_NAME)
    apply(backend, (HOME, "A", ("203.0.113.7",)))
    assert calls(fake) == [
        "GET /v2/zones",
        f"GET /v2/zones/{zone_id}/recordsets",
        f"POST /v2/zones/{zone_id}/recordsets",
    ]
    recordset = fake.find(HOME, "A")
    assert recordset is not None
    fake.seen.clear()
    apply(backend, (HOME, "A", ("203.0.113.8",)))
    assert calls(fake) == [f"PUT /v2/zones/{zone_id}/recordsets/{recordset['id']}"]
    fake.seen.clear()
    apply(backend, (HOME, "A", ("203.0.113.8",)), (HOME, "AAAA", ("2001:db8::8",)))
    assert calls(fake) == [  # the A record set is known to hold it already
        f"GET /v2/zones/{zone_id}/recordsets",
        f"POST /v2/zones/{zone_id}/recordsets",
    ]


def test_the_zone_ttl_below_the_minimum_is_raised_once_with_a_warning(
    served: Served, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    backend = backend_for(served, tmp_path)
    zero = ZoneSettings(name=ZONE_NAME, backend="huawei", ttl=0)
    with caplog.at_level(logging.WARNING, logger="nicupdate.backend"):
        apply(backend, (HOME, "A", ("203.0.113.7",)), zone=zero)
        apply(backend, (HOME, "A", ("203.0.113.8",)), zone=zero)
    assert served.fake.ttl(HOME, "A") == 1
    warnings = [r.getMessage() for r in caplog.records if "minimum" in r.getMessage()]
    assert warnings == [
        "huawei (huaweicloud at 127.0.0.1): zone home.example.test has ttl 0, below the "
        "provider's minimum; using 1"
    ]


def test_several_addresses_share_one_record_set(served: Served, tmp_path: Path) -> None:
    fake: FakeHuaweiCloud = served.fake
    backend = backend_for(served, tmp_path)
    apply(
        backend,
        (HOME, "A", ("203.0.113.8", "203.0.113.7")),
        (HOME, "AAAA", ("2001:DB8:0::7",)),
    )
    assert fake.records(HOME, "A") == ["203.0.113.7", "203.0.113.8"]
    assert fake.records(HOME, "AAAA") == ["2001:db8::7"]
    assert len([r for r in fake.recordsets.values() if r["name"] == HOME + "."]) == 2
    writes = fake.writes
    fresh = backend_for(served, tmp_path)  # knows nothing: reads, compares, writes nothing
    apply(fresh, (HOME, "A", ("203.0.113.7", "203.0.113.8")), (HOME, "AAAA", ("2001:db8::7",)))
    assert fake.writes == writes


def test_txt_values_go_out_in_quotation_marks_and_a_wildcard_by_its_name(
    served: Served, tmp_path: Path
) -> None:
    fake: FakeHuaweiCloud = served.fake
    backend = backend_for(served, tmp_path)
    apply(backend, (ACME, "TXT", (TOKENS[1], TOKENS[0])), (WILDCARD, "A", ("203.0.113.7",)))
    txt, wildcard = fake.find(ACME, "TXT"), fake.find(WILDCARD, "A")
    assert txt is not None and wildcard is not None
    assert (txt["name"], txt["records"]) == (f"{ACME}.", [f'"{t}"' for t in sorted(TOKENS[:2])])
    assert (wildcard["name"], wildcard["records"]) == (f"{WILDCARD}.", ["203.0.113.7"])
    writes = fake.writes
    fresh = backend_for(served, tmp_path)  # reads the quoted values: the same two, no write
    apply(fresh, (ACME, "TXT", TOKENS[:2]))
    assert fake.writes == writes


def test_a_txt_value_without_quotation_marks_is_refused_by_the_fake(served: Served) -> None:
    fake: FakeHuaweiCloud = served.fake
    zone_id = fake.zone_id(ZONE_NAME)
    auth = HuaweiSdkAuth(fake.access_key, fake.secret_key)
    body = {"name": f"{ACME}.", "type": "TXT", "ttl": 60, "records": [TOKENS[0]]}
    answer = httpx.post(
        f"{served.url}/v2/zones/{zone_id}/recordsets", json=body, auth=auth, trust_env=False
    )
    assert (answer.status_code, answer.json()["code"]) == (400, "DNS.0308")
    assert fake.find(ACME, "TXT") is None


def test_a_record_set_created_behind_our_back_is_taken_over(served: Served, tmp_path: Path) -> None:
    fake: FakeHuaweiCloud = served.fake
    backend = backend_for(served, tmp_path)
    apply(backend, (HOME, "A", ()))  # nothing there: nothing written, "none" remembered
    assert fake.writes == 0
    fake.plant(HOME, "A", ["192.0.2.1"], 300)
    apply(backend, (HOME, "A", ("203.0.113.7",)))  # POST: DNS.0312, then look up and PUT
    assert fake.records(HOME, "A") == ["203.0.113.7"]
    assert fake.ttl(HOME, "A") == 60
    assert [m for m in calls(fake) if m.startswith(("POST", "PUT"))][-2:] == [
        f"POST /v2/zones/{fake.zone_id(ZONE_NAME)}/recordsets",
        f"PUT /v2/zones/{fake.zone_id(ZONE_NAME)}/recordsets/{fake.find(HOME, 'A')['id']}",  # type: ignore[index]
    ]


def test_a_zone_created_again_behind_our_back_is_found_again(
    served: Served, tmp_path: Path
) -> None:
    fake: FakeHuaweiCloud = served.fake
    backend = backend_for(served, tmp_path)
    apply(backend, (HOME, "A", ("203.0.113.7",)))
    new_id = fake.recreate_zone(ZONE_NAME)
    apply(backend, (HOME, "A", ("203.0.113.8",)))  # PUT answers DNS.0302: look up again
    assert fake.records(HOME, "A") == ["203.0.113.8"]
    assert calls(fake)[-1].startswith(f"PUT /v2/zones/{new_id}/recordsets/")


def test_a_configured_zone_id_skips_the_lookup(served: Served, tmp_path: Path) -> None:
    fake: FakeHuaweiCloud = served.fake
    backend = backend_for(served, tmp_path, zone_id=fake.zone_id(ZONE_NAME))
    apply(backend, (HOME, "A", ("203.0.113.7",)))
    assert "GET /v2/zones" not in calls(fake)
    assert fake.records(HOME, "A") == ["203.0.113.7"]

    wrong = backend_for(served, tmp_path, zone_id="0" * 32)
    with pytest.raises(PermanentBackendError) as raised:
        apply(wrong, (HOME, "A", ("203.0.113.8",)))
    assert f"zone_id {'0' * 32} does not exist" in str(raised.value)
    assert "check backends.huawei.zone_id" in str(raised.value)


def test_project_id_is_sent_and_signed(served: Served, tmp_path: Path) -> None:
    fake: FakeHuaweiCloud = served.fake
    apply(backend_for(served, tmp_path, project_id=fake.project_id), (HOME, "A", ("203.0.113.7",)))
    assert fake.records(HOME, "A") == ["203.0.113.7"]
    for seen in fake.seen:
        assert seen.headers["x-project-id"] == fake.project_id
        assert "x-project-id" in seen.headers["authorization"].split("SignedHeaders=")[1]


# -- configuration ----------------------------------------------------------------------------


def test_registration_defaults_and_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUAWEI_SK_FOR_TEST", "env-secret-key-value-123")
    backend = FACTORIES["huaweicloud"](
        "huawei",
        {
            "type": "huaweicloud",
            "access_key": "HPUAEXAMPLE",
            "secret_key_env": "HUAWEI_SK_FOR_TEST",
        },
    )
    assert isinstance(backend, HuaweiCloudBackend)
    assert backend.base_url == "https://dns.myhuaweicloud.com"
    assert backend.min_ttl == 1 and backend.timeout == 10.0
    assert backend.label == "huawei (huaweicloud at dns.myhuaweicloud.com)"
    assert "env-secret-key-value-123" not in repr(backend)
    assert "env-secret-key-value-123" not in repr(backend.auth)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"access_key": None}, "backends.huawei.access_key: missing (the AK of the IAM user's"),
        (
            {"access_key": "HPUA KEY"},
            "backends.huawei.access_key: must be the AK of the IAM user's access key: letters",
        ),
        (
            {"secret_key_file": None, "secret_key": "inline-secret-value"},
            "backends.huawei.secret_key: give ",  # the rest: "as secret_key_file or _env"
        ),
        ({"secret_key_file": None}, "backends.huawei.secret_key_file: missing: give the secret"),
        (
            {"secret_key_file": None, "secret_key_env": "NICUPDATE_TEST_UNSET_VARIABLE"},
            "backends.huawei.secret_key_env: environment variable NICUPDATE_TEST_UNSET_VARIABLE "
            "is not set",
        ),
        (
            {"secret_key_file": "/nonexistent/huawei.sk"},
            "backends.huawei.secret_key_file: cannot read /nonexistent/huawei.sk",
        ),
        (
            {"base_url": "ftp://dns.myhuaweicloud.com"},
            "backends.huawei.base_url: 'ftp://dns.myhuaweicloud.com' is not an http:// or "
            "https:// URL",
        ),
        ({"base_url": "dns.myhuaweicloud.com"}, "backends.huawei.base_url: 'dns.myhuaweicloud"),
        ({"timeout": 0}, "backends.huawei.timeout: must be between 0.1 and 300 (got 0)"),
        ({"project_id": "../x"}, "backends.huawei.project_id: must be a project ID"),
        ({"region": "ap-southeast-1"}, "backends.huawei.region: unknown key for a huaweicloud"),
    ],
)
def test_config_errors_name_the_key(tmp_path: Path, change: dict[str, Any], expected: str) -> None:
    secret_file = tmp_path / "huawei.sk"
    secret_file.write_text("the-secret-key\n")
    base = {
        "type": "huaweicloud",
        "access_key": "HPUAEXAMPLE",
        "secret_key_file": str(secret_file),
    }
    message = refusal("huawei", changed_table(base, change))
    assert message.startswith(expected), message
    if change.get("secret_key"):
        assert "as secret_key_file or secret_key_env, not in the configuration" in message
    assert "inline-secret-value" not in message
    assert "the-secret-key" not in message


# -- end to end: a nicupdate server relaying to the fake -----------------------------------------


@pytest.fixture
def live(served: Served, tmp_path: Path) -> Iterator[LiveServer]:
    fake: FakeHuaweiCloud = served.fake
    secret_file = tmp_path / "huawei.sk"
    secret_file.write_text(fake.secret_key + "\n")
    backend_table = f"""
        type = "huaweicloud"
        access_key = "{fake.access_key}"
        secret_key_file = "{secret_file}"
        base_url = "{served.url}"
    """
    with relay_server(tmp_path, backend_table) as server:
        yield server


def test_a_ddclient_update_lands_in_huawei_cloud(live: LiveServer, served: Served) -> None:
    fake: FakeHuaweiCloud = served.fake
    answer = ddclient(live, f"system=dyndns&hostname={HOME}&myip=203.0.113.7,2001:db8::7")
    assert answer.text == "good 203.0.113.7,2001:db8::7\n"
    # `good` means Huawei Cloud confirmed it: it is there already.
    assert fake.records(HOME, "A") == ["203.0.113.7"]
    assert fake.records(HOME, "AAAA") == ["2001:db8::7"]
    assert fake.ttl(HOME, "A") == 60
    again = ddclient(live, f"hostname={HOME}&myip=203.0.113.7,2001:db8::7")
    assert again.text.startswith("nochg")
    assert ddclient(live, f"hostname={HOME}&offline=yes").text.startswith("good")
    assert fake.records(HOME, "A") == [] and fake.records(HOME, "AAAA") == []


def test_a_throttled_update_answers_911_and_lands_without_a_retry(
    live: LiveServer, served: Served
) -> None:
    fake: FakeHuaweiCloud = served.fake
    fake.fail_next("throttle", times=2)
    assert ddclient(live, f"hostname={HOME}&myip=203.0.113.9").text == "911\n"
    assert eventually(lambda: fake.records(HOME, "A") == ["203.0.113.9"], timeout=15)
    assert fake.ttl(HOME, "A") == 60
    assert ddclient(live, f"hostname={HOME}&myip=203.0.113.9").text == "nochg 203.0.113.9\n"
