"""Backend ``route53`` against the real moto server, behind a proxy that checks SigV4
signatures and answers with Route 53's error shapes (tests/server/fakes/route53.py)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from nicupdate_server.backends import (
    PermanentBackendError,
    TransientBackendError,
    create_backend,
)
from nicupdate_server.backends.route53 import Route53Backend
from nicupdate_server.config import ZoneSettings
from nicupdate_server.signing.sigv4 import SigV4Auth

from tests.server.backend_contract import (
    ACME,
    HOME,
    TOKENS,
    WILDCARD,
    ZONE_NAME,
    BackendContract,
    apply_with,
    run,
)
from tests.server.conftest import LiveServer
from tests.server.fakes import Served, serving, txt_value
from tests.server.fakes.route53 import (
    ACCESS_KEY_ID,
    API,
    REGION,
    SERVICE,
    Moto,
    Route53Proxy,
    running_moto,
)
from tests.server.relays import changed_table, ddclient, eventually, refusal, relay_server

# AWS's documentation example secret (not a real one).
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
WRONG_SECRET = "je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY"
ZONE = ZoneSettings(name=ZONE_NAME, backend="aws", ttl=60)
LOOKUP = "GET /2013-04-01/hostedzonesbyname"


@pytest.fixture(scope="module")
def moto() -> Iterator[Moto]:
    with running_moto() as running:
        yield running


@contextlib.contextmanager
def proxied(moto: Moto, **options: Any) -> Iterator[Served]:
    """A fresh moto (no zones) behind a Route53Proxy that knows the secret ``SECRET``."""
    moto.reset()
    fake = Route53Proxy(moto_url=moto.url, secret_access_key=SECRET, **options)
    with serving(fake) as served:
        yield served


@pytest.fixture
def proxy(moto: Moto) -> Iterator[Served]:
    with proxied(moto) as served:
        yield served


def table(directory: Path, base_url: str, *, secret: str = SECRET, **extra: Any) -> dict[str, Any]:
    path = directory / "aws-secret-access-key"
    path.write_text(secret + "\n")
    return {
        "type": "route53",
        "access_key_id": ACCESS_KEY_ID,
        "secret_access_key_file": str(path),
        "base_url": base_url,
        "timeout": 5,
    } | extra


@dataclass
class Route53Harness:
    """The contract's view of a Route53Backend in front of the proxy and moto."""

    moto: Moto
    proxy: Served
    directory: Path
    zone: ZoneSettings = ZONE
    secret: str = SECRET
    batches: bool = True
    txt: bool = True
    options: dict[str, Any] = field(default_factory=dict)
    zone_id: str = ""
    _backend: Route53Backend | None = None

    def __post_init__(self) -> None:
        self.zone_id = self.zone_id or self.moto.create_zone(self.zone.name)

    @property
    def fake(self) -> Route53Proxy:
        fake: Route53Proxy = self.proxy.fake
        return fake

    def backend(self) -> Route53Backend:
        if self._backend is None:
            self._backend = self.new_backend(**self.options)
        return self._backend

    def new_backend(self, **extra: Any) -> Route53Backend:
        return Route53Backend.from_table("aws", table(self.directory, self.proxy.url, **extra))

    def records(self, fqdn: str, rtype: str) -> list[str]:
        found = self.moto.record_set(self.zone_id, fqdn, rtype)
        values = found[1] if found else []
        return sorted(txt_value(v) for v in values) if rtype == "TXT" else sorted(values)

    def ttl(self, fqdn: str, rtype: str) -> int | None:
        found = self.moto.record_set(self.zone_id, fqdn, rtype)
        return found[0] if found else None

    def writes(self) -> int:
        return self.fake.writes

    def fail_next(self, kind: str, times: int = 1) -> None:
        self.fake.fail_next(kind, times)

    def forget(self, fqdn: str, rtype: str) -> None:
        self.moto.delete(self.zone_id, fqdn, rtype)

    def paths(self) -> list[str]:
        return self.fake.paths()


class TestRoute53(BackendContract):
    @pytest.fixture
    def harness(self, moto: Moto, proxy: Served, tmp_path: Path) -> Route53Harness:
        return Route53Harness(moto, proxy, tmp_path)


@pytest.fixture
def harness(moto: Moto, proxy: Served, tmp_path: Path) -> Route53Harness:
    return Route53Harness(moto, proxy, tmp_path)


def apply(
    backend: Route53Backend, *changes: tuple[str, str, tuple[str, ...]], zone: ZoneSettings = ZONE
) -> None:
    apply_with(backend, zone, *changes)


def read(backend: Route53Backend, names: list[str]) -> dict[tuple[str, str], tuple[str, ...]]:
    async def work() -> dict[tuple[str, str], tuple[str, ...]]:
        try:
            return await backend.read(ZONE, names)
        finally:
            await backend.close()

    return run(work)


def failure(work: Any) -> str:
    with pytest.raises(PermanentBackendError) as raised:
        work()
    return str(raised.value)


# -- credentials ------------------------------------------------------------------------


def test_a_wrong_secret_is_refused_by_the_signature_check_and_says_what_to_fix(
    harness: Route53Harness, caplog: pytest.LogCaptureFixture
) -> None:
    backend = harness.new_backend(secret=WRONG_SECRET)
    with caplog.at_level(logging.DEBUG):
        message = failure(lambda: apply(backend, (HOME, "A", ("203.0.113.7",))))
    assert message.startswith("aws (route53 at 127.0.0.1): looking up the hosted zone")
    assert "Route 53 refused the credentials (SignatureDoesNotMatch: " in message
    assert "check secret_access_key_file/_env and the clock" in message
    for text in (message, caplog.text, repr(backend)):
        assert WRONG_SECRET not in text and SECRET not in text
    assert harness.writes() == 0 and harness.records(HOME, "A") == []


def test_an_unknown_access_key_says_to_check_access_key_id(harness: Route53Harness) -> None:
    backend = harness.new_backend(access_key_id="AKIAI44QH8DHBEXAMPLE")
    message = failure(lambda: apply(backend, (HOME, "A", ("203.0.113.7",))))
    assert "refused the credentials (InvalidClientTokenId: " in message
    assert "check access_key_id" in message


def test_a_policy_without_the_permission_names_the_iam_actions(harness: Route53Harness) -> None:
    harness.fail_next("denied")
    message = failure(lambda: apply(harness.backend(), (HOME, "A", ("203.0.113.7",))))
    assert "AccessDenied: User: arn:aws:iam::123456789012:user/nicupdate" in message
    assert "route53:ListResourceRecordSets and route53:ChangeResourceRecordSets" in message


def test_temporary_credentials_send_their_session_token(moto: Moto, tmp_path: Path) -> None:
    token = "FQoGZXIvYXdzEXAMPLEtokenEXAMPLEtoken"
    (tmp_path / "token").write_text(token)
    with proxied(moto, access_key_id="ASIAIOSFODNN7EXAMPLE", session_token=token) as proxy:
        harness = Route53Harness(moto, proxy, tmp_path)
        backend = harness.new_backend(
            access_key_id="ASIAIOSFODNN7EXAMPLE", session_token_file=str(tmp_path / "token")
        )
        apply(backend, (HOME, "A", ("203.0.113.7",)))
        assert harness.records(HOME, "A") == ["203.0.113.7"]
        assert token not in repr(backend)
        # The same key with a stale token: refused, and the message says where the token is.
        (tmp_path / "token").write_text("an-old-token")
        stale = harness.new_backend(
            access_key_id="ASIAIOSFODNN7EXAMPLE", session_token_file=str(tmp_path / "token")
        )
        message = failure(lambda: apply(stale, (HOME, "A", ("203.0.113.8",))))
        assert "InvalidClientTokenId" in message and "an-old-token" not in message


# -- lookups and what the backend keeps -------------------------------------------------


def test_the_zone_id_and_the_records_are_kept_between_applies(harness: Route53Harness) -> None:
    backend = harness.backend()
    rrsets = f"/2013-04-01/hostedzone/{harness.zone_id}/rrset"
    apply(backend, (HOME, "A", ("203.0.113.7",)))
    assert harness.paths() == [LOOKUP, f"GET {rrsets}", f"POST {rrsets}/"]
    apply(backend, (HOME, "A", ("203.0.113.8",)))
    apply(backend, (HOME, "A", ("203.0.113.8",)))  # the value it has: no call at all
    assert harness.paths()[3:] == [f"POST {rrsets}/"]
    assert harness.records(HOME, "A") == ["203.0.113.8"]


def test_a_record_that_already_has_the_value_is_read_not_written(
    harness: Route53Harness,
) -> None:
    harness.moto.change(harness.zone_id, "UPSERT", HOME, "A", 60, ["203.0.113.7"])
    apply(harness.backend(), (HOME, "A", ("203.0.113.7",)))
    assert harness.writes() == 0
    assert [p.split()[0] for p in harness.paths()] == ["GET", "GET"]


def test_many_unknown_records_are_read_with_one_listing(harness: Route53Harness) -> None:
    hosts = [f"h{i}.{ZONE_NAME}" for i in range(12)]
    apply(harness.backend(), *[(h, "A", (f"198.51.100.{i + 1}",)) for i, h in enumerate(hosts)])
    rrsets = f"/2013-04-01/hostedzone/{harness.zone_id}/rrset"
    assert harness.paths() == [LOOKUP, f"GET {rrsets}", f"POST {rrsets}/"]


def test_a_change_past_route53s_limits_goes_out_in_two_calls(harness: Route53Harness) -> None:
    # 450 UPSERTs of a 39-character address count 450 * 39 * 2 = 35,100 characters: past
    # Route 53's 32,000 per call (the proxy refuses such a call as not_expected).
    hosts = [
        (f"h{i}.{ZONE_NAME}", f"2001:db8:aaaa:bbbb:cccc:dddd:eeee:{i + 0x1000:x}")
        for i in range(450)
    ]
    apply(harness.backend(), *[(h, "AAAA", (a,)) for h, a in hosts])
    assert harness.writes() == 2
    for host, address in (hosts[0], hosts[449]):
        assert harness.records(host, "AAAA") == [address]


def test_several_addresses_make_one_record_set(harness: Route53Harness) -> None:
    apply(harness.backend(), (HOME, "A", ("203.0.113.7", "203.0.113.9")))
    assert harness.records(HOME, "A") == ["203.0.113.7", "203.0.113.9"]
    apply(harness.backend(), (HOME, "A", ()))
    assert harness.records(HOME, "A") == []


def test_a_set_changed_behind_the_backend_is_read_again_when_route53_refuses_the_delete(
    harness: Route53Harness,
) -> None:
    backend = harness.backend()
    apply(backend, (HOME, "A", ("203.0.113.7",)))
    harness.moto.change(harness.zone_id, "UPSERT", HOME, "A", 300, ["192.0.2.66"])
    apply(backend, (HOME, "A", ()))  # the backend believes .7 is there: Route 53 says no
    assert harness.records(HOME, "A") == []
    assert harness.writes() == 3  # the first UPSERT, the refused DELETE, the right one


def test_a_zone_id_route53_no_longer_knows_is_looked_up_again(harness: Route53Harness) -> None:
    backend = harness.backend()
    apply(backend, (HOME, "A", ("203.0.113.7",)))
    harness.moto.reset()  # the zone is deleted and made again: another id
    zone_id = harness.moto.create_zone(ZONE_NAME)
    apply(backend, (HOME, "A", ("203.0.113.8",)))
    assert harness.moto.record_set(zone_id, HOME, "A") == (60, ["203.0.113.8"])
    assert harness.paths().count(LOOKUP) == 2


def test_a_configured_hosted_zone_id_is_not_looked_up(harness: Route53Harness) -> None:
    backend = harness.new_backend(hosted_zone_id=f"/hostedzone/{harness.zone_id}")
    apply(backend, (HOME, "A", ("203.0.113.7",)))
    assert harness.records(HOME, "A") == ["203.0.113.7"]
    assert LOOKUP not in harness.paths()
    wrong = harness.new_backend(hosted_zone_id="Z0000000000000000000")
    message = failure(lambda: apply(wrong, (HOME, "A", ("203.0.113.8",))))
    assert "Route 53 has no hosted zone Z0000000000000000000" in message
    assert "check hosted_zone_id" in message


def test_a_zone_route53_does_not_have_says_so(harness: Route53Harness) -> None:
    other = ZoneSettings(name="other.example.test", backend="aws", ttl=60)
    message = failure(
        lambda: apply(
            harness.backend(), ("a.other.example.test", "A", ("203.0.113.7",)), zone=other
        )
    )
    assert "Route 53 has no hosted zone named other.example.test" in message
    assert "create it in the Route 53 console, or set hosted_zone_id" in message


def test_two_zones_of_the_same_name_ask_for_hosted_zone_id(harness: Route53Harness) -> None:
    harness.moto.create_zone(ZONE_NAME)
    message = failure(lambda: apply(harness.backend(), (HOME, "A", ("203.0.113.7",))))
    assert f"Route 53 has 2 hosted zones named {ZONE_NAME}" in message
    assert "set hosted_zone_id" in message


def test_a_record_refused_by_route53_is_permanent_with_its_message(
    harness: Route53Harness,
) -> None:
    message = failure(lambda: apply(harness.backend(), ("h.elsewhere.test", "A", ("203.0.113.7",))))
    assert "changing h.elsewhere.test A: Route 53 refused it (InvalidChangeBatch: " in message
    assert "is not permitted in zone" in message


# -- TTL --------------------------------------------------------------------------------


def test_any_zone_ttl_goes_to_route53_as_is(
    harness: Route53Harness, caplog: pytest.LogCaptureFixture
) -> None:
    short = ZoneSettings(name=ZONE_NAME, backend="aws", ttl=1)
    with caplog.at_level(logging.WARNING):
        apply(harness.backend(), (HOME, "A", ("203.0.113.7",)), zone=short)
    assert harness.ttl(HOME, "A") == 1
    assert caplog.text == ""


def test_a_ttl_below_the_minimum_is_raised_with_one_warning(
    harness: Route53Harness, caplog: pytest.LogCaptureFixture
) -> None:
    class Strict(Route53Backend):
        min_ttl = 300

    backend = Strict.from_table("aws", table(harness.directory, harness.proxy.url))
    with caplog.at_level(logging.WARNING):
        apply(backend, (HOME, "A", ("203.0.113.7",)))
        apply(backend, (HOME, "A", ("203.0.113.8",)))
    assert harness.ttl(HOME, "A") == 300
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == [
        "aws (route53 at 127.0.0.1): zone home.example.test has ttl 60, below the provider's "
        "minimum; using 300"
    ]


def test_a_new_ttl_alone_is_written(harness: Route53Harness) -> None:
    backend = harness.backend()
    apply(backend, (HOME, "A", ("203.0.113.7",)))
    longer = ZoneSettings(name=ZONE_NAME, backend="aws", ttl=600)
    apply(backend, (HOME, "A", ("203.0.113.7",)), zone=longer)
    assert harness.ttl(HOME, "A") == 600 and harness.writes() == 2


# -- transient failures -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "said"),
    [
        ("throttle", "Throttling: Rate exceeded (HTTP 400)"),
        ("busy", "PriorRequestNotComplete: The request was rejected"),
        ("internal", "InternalFailure: An internal error occurred. (HTTP 500)"),
        ("server", "ServiceUnavailable: Service Unavailable (HTTP 503)"),
    ],
)
def test_throttling_and_server_errors_are_retried_later(
    harness: Route53Harness, kind: str, said: str
) -> None:
    backend = harness.backend()
    apply(backend, (HOME, "A", ("203.0.113.7",)))
    harness.fail_next(kind)
    with pytest.raises(TransientBackendError) as raised:
        apply(backend, (HOME, "A", ("203.0.113.8",)))
    assert said in str(raised.value)
    assert raised.value.retry_after is None  # Route 53 sends no Retry-After
    apply(backend, (HOME, "A", ("203.0.113.8",)))
    assert harness.records(HOME, "A") == ["203.0.113.8"]


def test_an_unreachable_api_is_transient(harness: Route53Harness) -> None:
    backend = Route53Backend.from_table(
        "aws", table(harness.directory, "http://127.0.0.1:9", timeout=1)
    )
    with pytest.raises(TransientBackendError, match="cannot reach aws"):
        apply(backend, (HOME, "A", ("203.0.113.7",)))


# -- reading back (drift check) ---------------------------------------------------------


def test_read_returns_what_route53_holds(harness: Route53Harness) -> None:
    backend = harness.backend()
    apply(backend, (HOME, "A", ("203.0.113.7",)), (HOME, "AAAA", ("2001:db8::7",)))
    harness.moto.change(harness.zone_id, "UPSERT", HOME, "A", 60, ["192.0.2.66"])
    assert read(backend, [HOME, f"gone.{ZONE_NAME}"]) == {
        (HOME, "A"): ("192.0.2.66",),
        (HOME, "AAAA"): ("2001:db8::7",),
        (f"gone.{ZONE_NAME}", "A"): (),
        (f"gone.{ZONE_NAME}", "AAAA"): (),
    }
    # What it read replaces what it kept: the old value is written again.
    apply(backend, (HOME, "A", ("203.0.113.7",)))
    assert harness.records(HOME, "A") == ["203.0.113.7"]


def test_txt_values_go_out_in_quotation_marks(harness: Route53Harness) -> None:
    backend = harness.backend()
    apply(backend, (ACME, "TXT", (TOKENS[0], 'a "quoted" word')))
    assert harness.moto.record_set(harness.zone_id, ACME, "TXT") == (
        60,
        [f'"{TOKENS[0]}"', '"a \\"quoted\\" word"'],
    )
    assert read(backend, [ACME]) == {(ACME, "TXT"): tuple(sorted((TOKENS[0], 'a "quoted" word')))}
    apply(backend, (ACME, "TXT", ()))  # a DELETE restating the quoted values exactly
    assert harness.records(ACME, "TXT") == []


def test_txt_values_written_otherwise_in_the_console_read_back_as_their_text(
    harness: Route53Harness,
) -> None:
    # Several strings in one value, Route 53's octal escapes (\\101 is "A"), a bare token.
    values = ['"two " "strings"', '"\\101 \\"b\\" \\\\"', f'"{TOKENS[0]}"']
    harness.moto.change(harness.zone_id, "UPSERT", ACME, "TXT", 60, values)
    texts = tuple(sorted(["two strings", 'A "b" \\', TOKENS[0]]))
    assert read(harness.backend(), [ACME]) == {(ACME, "TXT"): texts}
    apply(harness.backend(), (ACME, "TXT", texts))  # the same values: nothing to write
    assert harness.writes() == 0
    apply(harness.backend(), (ACME, "TXT", (TOKENS[0],)))  # the others go
    assert harness.records(ACME, "TXT") == [TOKENS[0]]


def test_txt_text_beyond_ascii_goes_out_in_octal_escapes(harness: Route53Harness) -> None:
    backend = harness.backend()
    apply(backend, (ACME, "TXT", ("café",)))
    assert harness.moto.record_set(harness.zone_id, ACME, "TXT") == (60, ['"caf\\303\\251"'])
    assert read(backend, [ACME]) == {(ACME, "TXT"): ("café",)}


def test_route53_lists_a_wildcard_as_052_and_the_backend_maps_it_back(
    harness: Route53Harness,
) -> None:
    harness.moto.change(harness.zone_id, "UPSERT", WILDCARD, "A", 60, ["192.0.2.66"])
    auth = SigV4Auth(ACCESS_KEY_ID, SECRET, REGION, SERVICE)
    listing = httpx.get(
        f"{harness.proxy.url}{API}/hostedzone/{harness.zone_id}/rrset", auth=auth, trust_env=False
    )
    assert f"<Name>\\052.{HOME}.</Name>" in listing.text  # as Route 53 spells it
    backend = harness.backend()
    assert read(backend, [WILDCARD]) == {(WILDCARD, "A"): ("192.0.2.66",), (WILDCARD, "AAAA"): ()}
    apply(backend, (WILDCARD, "A", ()))  # known from the listing: a DELETE, no lookup
    assert harness.records(WILDCARD, "A") == []
    assert harness.paths()[-1] == f"POST {API}/hostedzone/{harness.zone_id}/rrset/"


def test_a_wildcard_set_unknown_to_the_backend_is_read_with_its_escaped_name(
    harness: Route53Harness,
) -> None:
    harness.moto.change(harness.zone_id, "UPSERT", WILDCARD, "AAAA", 60, ["2001:db8::66"])
    apply(harness.backend(), (WILDCARD, "AAAA", ("2001:db8::66",)))
    rrsets = f"{API}/hostedzone/{harness.zone_id}/rrset"
    assert harness.paths() == [LOOKUP, f"GET {rrsets}"]  # read, found right: no write
    read_one = harness.fake.seen[-1]
    assert "name=%5C052.router.home.example.test." in read_one.query


def test_the_proxy_refuses_a_txt_value_without_quotation_marks(harness: Route53Harness) -> None:
    class Bare(Route53Backend):  # a backend that forgets Route 53's quoting
        def _changes(self, *args: Any, **kwargs: Any) -> Any:
            changes = super()._changes(*args, **kwargs)
            return [
                replace(c, records=replace(c.records, values=tuple(TOKENS[:1]))) for c in changes
            ]

    bare = Bare.from_table("aws", table(harness.directory, harness.proxy.url))
    message = failure(lambda: apply(bare, (ACME, "TXT", TOKENS[:1])))
    assert "InvalidChangeBatch" in message
    assert "InvalidCharacterString (Value should be enclosed in quotation marks)" in message
    assert harness.records(ACME, "TXT") == []


def test_an_alias_at_the_name_is_left_alone_with_a_message(harness: Route53Harness) -> None:
    harness.moto.change(harness.zone_id, "UPSERT", HOME, "A", 60, ["192.0.2.1"])
    harness.moto.alias(harness.zone_id, f"www.{ZONE_NAME}", "A", f"{HOME}.", harness.zone_id)
    message = failure(lambda: apply(harness.backend(), (f"www.{ZONE_NAME}", "A", ("203.0.113.7",))))
    assert "is an alias or has a routing policy" in message
    assert harness.writes() == 0


# -- configuration ----------------------------------------------------------------------


def config_error(directory: Path, **changes: Any) -> str:
    return refusal("aws", changed_table(table(directory, "https://route53.amazonaws.com"), changes))


def test_config_errors_name_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert config_error(tmp_path, access_key_id=None) == (
        "backends.aws.access_key_id: missing (the AWS access key id, AKIA...)"
    )
    assert config_error(tmp_path, secret_access_key_file=None) == (
        "backends.aws.secret_access_key_file: missing: give the AWS secret access key as "
        "secret_access_key_file or secret_access_key_env"
    )
    inline = config_error(tmp_path, secret_access_key=SECRET)
    assert inline == (
        "backends.aws.secret_access_key: give the AWS secret access key as "
        "secret_access_key_file or secret_access_key_env, not in the configuration"
    )
    mistaken = config_error(tmp_path, access_key_id=SECRET)  # the secret in the wrong key
    assert mistaken.startswith("backends.aws.access_key_id: does not look like an AWS access")
    assert SECRET not in mistaken
    assert config_error(tmp_path, base_url="route53.amazonaws.com") == (
        "backends.aws.base_url: 'route53.amazonaws.com' is not an http:// or https:// URL"
    )
    assert config_error(tmp_path, access_key_id="ASIAIOSFODNN7EXAMPLE").startswith(
        "backends.aws.session_token_file: missing: an ASIA... access key is temporary"
    )
    assert config_error(tmp_path, hosted_zone_id="Z12 34") == (
        "backends.aws.hosted_zone_id: 'Z12 34' is not a hosted zone id "
        "(letters and digits, as Z0123456789ABC)"
    )
    assert config_error(tmp_path, region="eu-west-1") == (
        "backends.aws.region: unknown key for a route53 backend"
    )
    assert config_error(tmp_path, timeout=0) == (
        "backends.aws.timeout: must be between 0.1 and 300 (got 0)"
    )
    monkeypatch.delenv("NICUPDATE_TEST_AWS_SECRET", raising=False)
    assert config_error(
        tmp_path, secret_access_key_file=None, secret_access_key_env="NICUPDATE_TEST_AWS_SECRET"
    ) == (
        "backends.aws.secret_access_key_env: environment variable NICUPDATE_TEST_AWS_SECRET "
        "is not set"
    )


def test_the_secret_from_the_environment_works(
    harness: Route53Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NICUPDATE_TEST_AWS_SECRET", SECRET)
    settings = table(harness.directory, harness.proxy.url)
    del settings["secret_access_key_file"]
    backend = create_backend(
        "aws", settings | {"secret_access_key_env": "NICUPDATE_TEST_AWS_SECRET"}
    )
    assert isinstance(backend, Route53Backend)
    apply(backend, (HOME, "A", ("203.0.113.7",)))
    assert harness.records(HOME, "A") == ["203.0.113.7"]
    assert SECRET not in repr(backend)


# -- end to end -------------------------------------------------------------------------


@pytest.fixture
def live(harness: Route53Harness, tmp_path: Path) -> Iterator[LiveServer]:
    secret = tmp_path / "aws-secret"
    secret.write_text(SECRET)
    backend_table = f"""
        type = "route53"
        access_key_id = "{ACCESS_KEY_ID}"
        secret_access_key_file = "{secret}"
        base_url = "{harness.proxy.url}"
    """
    with relay_server(tmp_path, backend_table, backend="aws") as server:
        yield server


def test_a_ddclient_update_lands_in_route53(live: LiveServer, harness: Route53Harness) -> None:
    answer = ddclient(live, f"hostname={HOME}&myip=203.0.113.7,2001:db8::7")
    assert answer.text == "good 203.0.113.7,2001:db8::7\n"
    # `good` means Route 53 took it: it is there already.
    assert harness.records(HOME, "A") == ["203.0.113.7"]
    assert harness.records(HOME, "AAAA") == ["2001:db8::7"]
    assert harness.ttl(HOME, "A") == 60
    assert ddclient(live, f"hostname={HOME}&offline=yes").text.startswith("good")
    assert harness.records(HOME, "A") == [] and harness.records(HOME, "AAAA") == []


def test_a_throttled_route53_gets_the_update_later(
    live: LiveServer, harness: Route53Harness
) -> None:
    harness.fail_next("throttle", times=2)
    answer = ddclient(live, f"hostname={HOME}&myip=203.0.113.7")
    assert answer.text == "911\n"
    # No retry from the client: the server tries again, and the record arrives.
    assert eventually(lambda: harness.records(HOME, "A") == ["203.0.113.7"], timeout=10)
    assert harness.fake.failures == []
