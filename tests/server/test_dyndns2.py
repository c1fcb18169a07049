"""Backend ``dyndns2``: relaying to another dyndns2 service (a stateful fake on 127.0.0.1)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from nicupdate_server.backends import (
    PermanentBackendError,
    TransientBackendError,
    create_backend,
)
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
from tests.server.conftest import ALICE, LiveServer
from tests.server.fakes import serving
from tests.server.fakes.dyndns2 import FakeDyndns2
from tests.server.relays import changed_table, eventually, refusal, relay_server


class Harness:
    batches = False
    txt = False  # a dyndns2 service holds no TXT records: the relay refuses them

    def __init__(self, fake: FakeDyndns2, url: str, tmp_path: Path, ttl: int = 60) -> None:
        self.fake = fake
        self.zone = ZoneSettings(name=ZONE_NAME, backend="upstream", ttl=ttl)
        self.secret = fake.password
        secret_file = tmp_path / "upstream.password"
        secret_file.write_text(fake.password + "\n")
        self.table = {
            "type": "dyndns2",
            "base_url": url,
            "username": fake.username,
            "password_file": str(secret_file),
        }
        self._backend: Any = None

    def backend(self) -> Any:
        if self._backend is None:
            self._backend = create_backend("upstream", self.table)
        return self._backend

    def records(self, fqdn: str, rtype: str) -> list[str]:
        return self.fake.served(fqdn, rtype)

    def ttl(self, fqdn: str, rtype: str) -> int | None:
        return None  # a dyndns2 service sets its own TTL

    def writes(self) -> int:
        return self.fake.writes

    def fail_next(self, kind: str, times: int = 1) -> None:
        self.fake.fail_next(kind, times)

    def forget(self, fqdn: str, rtype: str) -> None:
        self.fake.records.pop((fqdn, rtype), None)


@pytest.fixture
def upstream() -> Iterator[tuple[FakeDyndns2, str]]:
    fake = FakeDyndns2(hosts={HOME, *(f"h{i}.{ZONE_NAME}" for i in range(12))})
    with serving(fake) as served:
        yield fake, served.url


class TestDyndns2(BackendContract):
    @pytest.fixture
    def harness(self, upstream: tuple[FakeDyndns2, str], tmp_path: Path) -> Harness:
        return Harness(*upstream, tmp_path)


def test_hosts_with_the_same_addresses_share_one_request(
    upstream: tuple[FakeDyndns2, str], tmp_path: Path
) -> None:
    fake, url = upstream
    harness = Harness(fake, url, tmp_path)
    hosts = [f"h{i}.{ZONE_NAME}" for i in range(12)]
    apply(harness, *[(h, "A", ("203.0.113.5",)) for h in hosts], (HOME, "A", ("203.0.113.6",)))
    assert fake.writes == 2
    sent = sorted(len(parse_qs(seen.query)["hostname"][0].split(",")) for seen in fake.seen)
    assert sent == [1, 12]
    assert all(fake.records[(h, "A")] == ["203.0.113.5"] for h in hosts)
    assert all(agent.startswith("nicupdate/") for agent in fake.agents)


def test_both_families_go_in_one_myip(upstream: tuple[FakeDyndns2, str], tmp_path: Path) -> None:
    fake, url = upstream
    apply(
        Harness(fake, url, tmp_path),
        (HOME, "A", ("203.0.113.7",)),
        (HOME, "AAAA", ("2001:db8::7",)),
    )
    assert fake.writes == 1
    assert "myip=203.0.113.7%2C2001%3Adb8%3A%3A7" in fake.seen[-1].query


def test_a_host_the_service_does_not_know_is_permanent(
    upstream: tuple[FakeDyndns2, str], tmp_path: Path
) -> None:
    fake, url = upstream
    with pytest.raises(PermanentBackendError) as raised:
        apply(Harness(fake, url, tmp_path), (f"stranger.{ZONE_NAME}", "A", ("203.0.113.7",)))
    assert f"stranger.{ZONE_NAME}: nohost" in str(raised.value)
    assert "create it there first" in str(raised.value)


def test_911_backs_off_for_half_an_hour(upstream: tuple[FakeDyndns2, str], tmp_path: Path) -> None:
    fake, url = upstream
    fake.fail_next("server")
    with pytest.raises(TransientBackendError) as raised:
        apply(Harness(fake, url, tmp_path), (HOME, "A", ("203.0.113.7",)))
    assert raised.value.retry_after == 1800


# -- wildcards and TXT ------------------------------------------------------------------------


def sent(fake: FakeDyndns2) -> list[dict[str, str]]:
    """The query of each request the service got, as a dict."""
    return [{k: v[0] for k, v in parse_qs(seen.query).items()} for seen in fake.seen]


def test_a_host_and_its_wildcard_are_one_request_with_wildcard_on(
    upstream: tuple[FakeDyndns2, str], tmp_path: Path
) -> None:
    fake, url = upstream
    harness = Harness(fake, url, tmp_path)
    apply(
        harness,
        (HOME, "A", ("203.0.113.7",)),
        (WILDCARD, "A", ("203.0.113.7",)),
        (WILDCARD, "AAAA", ("2001:db8::7",)),  # the host's AAAA did not change
    )
    assert sent(fake) == [{"hostname": HOME, "myip": "203.0.113.7,2001:db8::7", "wildcard": "ON"}]
    assert harness.records(WILDCARD, "AAAA") == ["2001:db8::7"]
    # Host and wildcard removed: one request, offline and wildcard off.
    apply(
        harness,
        (HOME, "A", ()),
        (HOME, "AAAA", ()),
        (WILDCARD, "A", ()),
        (WILDCARD, "AAAA", ()),
    )
    assert sent(fake)[1:] == [{"hostname": HOME, "offline": "YES", "wildcard": "OFF"}]
    assert fake.wildcards == set() and harness.records(HOME, "A") == []


def test_the_wildcard_alone_is_switched_with_the_hosts_addresses(
    upstream: tuple[FakeDyndns2, str], tmp_path: Path
) -> None:
    fake, url = upstream
    harness = Harness(fake, url, tmp_path)
    apply(harness, (HOME, "A", ("203.0.113.7",)))
    apply(harness, (WILDCARD, "A", ("203.0.113.7",)))
    apply(harness, (WILDCARD, "A", ()))
    assert sent(fake) == [
        {"hostname": HOME, "myip": "203.0.113.7"},
        {"hostname": HOME, "myip": "203.0.113.7", "wildcard": "ON"},
        {"hostname": HOME, "myip": "203.0.113.7", "wildcard": "OFF"},
    ]
    assert harness.records(HOME, "A") == ["203.0.113.7"]
    assert harness.records(WILDCARD, "A") == []


def test_the_wildcard_cannot_go_off_before_the_hosts_addresses_were_sent(
    upstream: tuple[FakeDyndns2, str], tmp_path: Path
) -> None:
    fake, url = upstream
    with pytest.raises(PermanentBackendError) as raised:
        apply(Harness(fake, url, tmp_path), (WILDCARD, "A", ()), (WILDCARD, "AAAA", ()))
    assert str(raised.value) == (
        f"upstream (dyndns2 at 127.0.0.1): {HOME}: cannot switch its wildcard off at the "
        "service before nicupdate has sent the host's addresses there (a dyndns2 update "
        "needs them) (the host's next address update switches it off)"
    )
    assert fake.seen == []  # no update without myip: it would take this server's address


def test_txt_records_are_refused_and_nothing_is_sent(
    upstream: tuple[FakeDyndns2, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fake, url = upstream
    with pytest.raises(PermanentBackendError) as raised:
        apply(Harness(fake, url, tmp_path), (HOME, "A", ("203.0.113.7",)), (ACME, "TXT", TOKENS))
    message = str(raised.value)
    assert message.startswith(
        f"upstream (dyndns2 at 127.0.0.1): {ACME}: dyndns2 relays cannot hold TXT records"
    )
    assert not raised.value.every_name  # the reconciler finds the host; others go through
    assert message in caplog.text
    assert fake.seen == []


def test_losing_one_family_does_not_take_the_host_offline(
    upstream: tuple[FakeDyndns2, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fake, url = upstream
    harness = Harness(fake, url, tmp_path)
    apply(harness, (HOME, "A", ("203.0.113.7",)), (HOME, "AAAA", ("2001:db8::7",)))
    apply(harness, (HOME, "AAAA", ()))
    assert sent(fake)[-1] == {"hostname": HOME, "myip": "203.0.113.7"}
    assert harness.records(HOME, "A") == ["203.0.113.7"]
    assert "dyndns2 cannot remove only the AAAA records of" in caplog.text


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"password": "inline"}, "backends.upstream.password: give it as password_file or"),
        ({"password_file": None}, "backends.upstream.password_file: missing"),
        ({"base_url": "ftp://example.test"}, "backends.upstream.base_url: 'ftp://example.test'"),
        ({"username": None}, "backends.upstream.username: missing"),
        ({"hosts": 3}, "backends.upstream.hosts: unknown key for a dyndns2 backend"),
    ],
)
def test_config_errors_name_the_key(tmp_path: Path, change: dict[str, Any], key: str) -> None:
    secret = tmp_path / "pw"
    secret.write_text("s3cret-value\n")
    base = {
        "type": "dyndns2",
        "base_url": "https://members.example.test",
        "username": "me",
        "password_file": str(secret),
    }
    message = refusal("upstream", changed_table(base, change))
    assert message.startswith(key), message
    assert "s3cret-value" not in message


# -- end to end: routers -> nicupdate -> the upstream service ---------------------------------


def relaying(
    tmp_path: Path, url: str, fake: FakeDyndns2, hosts: Iterable[str] = (HOME,)
) -> AbstractContextManager[LiveServer]:
    secret = tmp_path / "upstream.password"
    secret.write_text(fake.password)
    backend_table = f"""
        type = "dyndns2"
        base_url = "{url}"
        username = "{fake.username}"
        password_file = "{secret}"
    """
    return relay_server(tmp_path, backend_table, backend="upstream", hosts=hosts)


def test_a_router_update_ends_up_at_the_service(
    upstream: tuple[FakeDyndns2, str], tmp_path: Path
) -> None:
    fake, url = upstream
    with relaying(tmp_path, url, fake) as server:
        answer = server.update(f"hostname={HOME}&myip=203.0.113.7", auth=ALICE)
        assert answer.text == "good 203.0.113.7\n"
        assert fake.records[(HOME, "A")] == ["203.0.113.7"]


def test_a_throttling_service_gets_the_update_after_backing_off(
    upstream: tuple[FakeDyndns2, str], tmp_path: Path
) -> None:
    fake, url = upstream
    with relaying(tmp_path, url, fake) as server:
        fake.fail_next("throttle", times=2)
        answer = server.update(f"hostname={HOME}&myip=203.0.113.7", auth=ALICE)
        assert answer.text == "911\n"  # stored; the service asked us to wait
        # It arrives, and nobody sent it again.
        assert eventually(lambda: fake.records.get((HOME, "A")) == ["203.0.113.7"], timeout=20)
        again = server.update(f"hostname={HOME}&myip=203.0.113.7", auth=ALICE)
        assert again.text == "nochg 203.0.113.7\n"


def test_refused_credentials_are_one_call_not_one_per_host(
    upstream: tuple[FakeDyndns2, str], tmp_path: Path
) -> None:
    fake, url = upstream
    hosts = [f"h{i}.{ZONE_NAME}" for i in range(12)]
    with relaying(tmp_path, url, fake, hosts=[HOME, *hosts]) as server:
        fake.fail_next("credentials", times=100)
        before = len(fake.seen)
        answer = server.update(f"hostname={','.join(hosts)}&myip=203.0.113.7", auth=ALICE)
        assert answer.text == "dnserr\n" * 12
        # Not about the hosts: no need to try them one by one to find a culprit.
        assert len(fake.seen) - before == 1
