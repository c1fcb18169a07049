"""Backend ``rfc2136`` against real BIND 9 and PowerDNS primaries."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import math
import sqlite3
import tomllib
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import uvloop
from nicupdate_server.backends import (
    FACTORIES,
    BackendUnavailable,
    PermanentBackendError,
    RecordChange,
    TransientBackendError,
    ZoneChange,
    create_backend,
)
from nicupdate_server.backends.base import RType
from nicupdate_server.backends.rfc2136 import Rfc2136Backend
from nicupdate_server.config import ZoneSettings

from tests.server.backend_contract import (
    ACME,
    HOME,
    TOKENS,
    WILDCARD,
    ZONE_NAME,
    check_all_owners_at_once,
    check_txt,
    check_wildcard,
    read_back,
)
from tests.server.primaries import Primary, run, running_bind, running_powerdns

T = TypeVar("T")
Runner = Callable[..., contextlib.AbstractContextManager[Primary]]
RUNNERS: dict[str, Runner] = {"bind": running_bind, "powerdns": running_powerdns}
ZONE = ZoneSettings(name="dyn.example.test", backend="primary", ttl=60)
H1 = "h1.dyn.example.test"
# A secret that no test server has (base64 of 32 bytes).
WRONG_SECRET = base64.b64encode(b"nicupdate-test-not-the-secret-!!").decode()


@pytest.fixture(params=sorted(RUNNERS))
def primary(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Primary]:
    with RUNNERS[request.param](tmp_path / request.param) as running:
        yield running


def table_for(primary: Primary, **overrides: Any) -> dict[str, Any]:
    table: dict[str, Any] = tomllib.loads(primary.config_block())["backends"]["primary"]
    return table | overrides


def backend_for(primary: Primary, **overrides: Any) -> Rfc2136Backend:
    return Rfc2136Backend.from_table("primary", table_for(primary, **overrides))


def run_with(backend: Rfc2136Backend, work: Callable[[], Awaitable[T]], loop: str = "asyncio") -> T:
    """Start the backend, run ``work`` and close the backend, on one event loop (the
    server runs on uvloop, as uvicorn does; ``loop="uvloop"`` uses it too)."""

    async def main() -> T:
        await backend.start()
        try:
            return await work()
        finally:
            await backend.close()

    factory = uvloop.new_event_loop if loop == "uvloop" else None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main())


def change(*records: tuple[str, RType, tuple[str, ...]]) -> ZoneChange:
    return ZoneChange(ZONE, 0, [RecordChange(fqdn, rtype, addrs) for fqdn, rtype, addrs in records])


# -- applying changes ---------------------------------------------------------------------


def test_a_and_aaaa_land_with_the_zone_ttl(primary: Primary) -> None:
    backend = backend_for(primary)
    both = change((H1, "A", ("203.0.113.10",)), (H1, "AAAA", ("2001:db8::10", "2001:db8::11")))
    run_with(backend, lambda: backend.apply(both))
    assert primary.query(H1, "A") == ["203.0.113.10"]
    assert primary.query(H1, "AAAA") == ["2001:db8::10", "2001:db8::11"]
    assert primary.ttl(H1, "A") == primary.ttl(H1, "AAAA") == 60
    assert primary.dig(H1, "A") == "203.0.113.10\n"
    assert backend.messages_sent == 1


def test_a_v4_only_change_leaves_aaaa_and_empty_addresses_delete(primary: Primary) -> None:
    backend = backend_for(primary)

    async def work() -> None:
        await backend.apply(change((H1, "A", ("203.0.113.1",)), (H1, "AAAA", ("2001:db8::1",))))
        await backend.apply(change((H1, "A", ("203.0.113.2",))))
        assert primary.query(H1, "A") == ["203.0.113.2"]
        assert primary.query(H1, "AAAA") == ["2001:db8::1"]
        await backend.apply(change((H1, "AAAA", ())))
        assert primary.query(H1, "AAAA") == []
        assert primary.query(H1, "A") == ["203.0.113.2"]

    run_with(backend, work)
    assert backend.messages_sent == 3


def test_500_hosts_are_split_into_messages_of_max_records(primary: Primary) -> None:
    backend = backend_for(primary, max_records=200)
    hosts = [f"h{i}.dyn.example.test" for i in range(500)]
    records: list[tuple[str, RType, tuple[str, ...]]]
    records = [(h, "A", (f"203.0.113.{i % 250 + 1}",)) for i, h in enumerate(hosts)]
    records += [(h, "AAAA", (f"2001:db8::{i + 1:x}",)) for i, h in enumerate(hosts)]
    run_with(backend, lambda: backend.apply(change(*records)))
    assert backend.messages_sent == math.ceil(500 * 2 / 200)
    for i in range(0, 500, 25):
        assert primary.query(hosts[i], "A") == [f"203.0.113.{i % 250 + 1}"]
        assert primary.query(hosts[i], "AAAA") == [f"2001:db8::{i + 1:x}"]
    found = run_with(backend, lambda: backend.read(ZONE, hosts))
    assert sum(1 for addresses in found.values() if addresses) == 1000


def test_udp_transport_keeps_messages_small(primary: Primary) -> None:
    backend = backend_for(primary, transport="udp")
    assert backend.max_message_bytes == 1232
    hosts = [f"udp{i}.dyn.example.test" for i in range(60)]
    run_with(backend, lambda: backend.apply(change(*[(h, "A", ("203.0.113.5",)) for h in hosts])))
    assert backend.messages_sent > 1
    assert [primary.query(h, "A") for h in hosts] == [["203.0.113.5"]] * len(hosts)


@pytest.mark.parametrize("algorithm", ["hmac-sha512", "hmac-md5"])
def test_other_algorithms_with_a_bind_key_file(algorithm: str, tmp_path: Path) -> None:
    with running_bind(tmp_path, algorithm=algorithm) as bind:
        table = table_for(bind, tsig_key_file=str(bind.key_file))
        for key in ("tsig_secret_file", "tsig_key_name", "tsig_algorithm"):
            del table[key]
        backend = Rfc2136Backend.from_table("primary", table)
        assert backend.algorithm == algorithm
        run_with(backend, lambda: backend.apply(change((H1, "A", ("203.0.113.3",)))))
        assert bind.query(H1, "A") == ["203.0.113.3"]


# -- failures ---------------------------------------------------------------------------


def test_a_wrong_secret_is_permanent_and_names_the_key(
    primary: Primary, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("WRONG_SECRET", WRONG_SECRET)
    table = table_for(primary, tsig_secret_env="WRONG_SECRET")
    del table["tsig_secret_file"]
    backend = Rfc2136Backend.from_table("primary", table)
    with caplog.at_level(logging.WARNING, "nicupdate.backend"):
        with pytest.raises(PermanentBackendError) as raised:
            run_with(backend, lambda: backend.apply(change((H1, "A", ("203.0.113.1",)))))
    message = str(raised.value)
    assert f"primary 127.0.0.1:{primary.port}" in message
    assert "TSIG key ddns-key" in message
    assert "the secret differs from the server's" in message
    assert WRONG_SECRET not in message and primary.secret not in message
    assert [r.getMessage() for r in caplog.records] == [message]
    assert primary.query(H1, "A") == []


@pytest.mark.parametrize("kind", sorted(RUNNERS))
def test_a_zone_that_is_not_dynamic_is_permanent(kind: str, tmp_path: Path) -> None:
    with RUNNERS[kind](tmp_path, dynamic=False) as primary:
        backend = backend_for(primary)
        with pytest.raises(PermanentBackendError) as raised:
            run_with(backend, lambda: backend.apply(change((H1, "A", ("203.0.113.1",)))))
    message = str(raised.value)
    assert message.startswith(
        f"primary 127.0.0.1:{primary.port} refused the update of dyn.example.test: REFUSED"
    )
    assert "the zone is not dynamic" in message


def test_an_unknown_key_name_is_permanent_and_says_so(primary: Primary) -> None:
    backend = backend_for(primary, tsig_key_name="no-such-key")
    with pytest.raises(PermanentBackendError) as raised:
        run_with(backend, lambda: backend.apply(change((H1, "A", ("203.0.113.1",)))))
    message = str(raised.value)
    assert "no-such-key" in message
    # BIND says BADKEY; PowerDNS answers REFUSED without a signature.
    assert "BADKEY" in message or "does not know a key no-such-key" in message
    assert primary.secret not in message


def test_a_clock_off_by_an_hour_is_permanent_badtime(
    primary: Primary, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nicupdate_server.backends import dnsupdate

    real = dnsupdate.time.time
    monkeypatch.setattr(dnsupdate.time, "time", lambda: real() + 3600)
    backend = backend_for(primary)
    with pytest.raises(PermanentBackendError) as raised:
        run_with(backend, lambda: backend.apply(change((H1, "A", ("203.0.113.1",)))))
    message = str(raised.value)
    # BIND answers BADTIME; PowerDNS answers REFUSED without a signature.
    assert "BADTIME" in message or "clocks differ" in message, message
    assert primary.query(H1, "A") == []


def test_a_zone_the_primary_does_not_serve_is_permanent(primary: Primary) -> None:
    other = ZoneSettings(name="elsewhere.example.test", backend="primary", ttl=60)
    backend = backend_for(primary)
    update = ZoneChange(other, 0, [RecordChange("h.elsewhere.example.test", "A", ("192.0.2.1",))])
    with pytest.raises(PermanentBackendError) as raised:
        run_with(backend, lambda: backend.apply(update))
    message = str(raised.value)
    assert "elsewhere.example.test" in message
    assert "NOTAUTH" in message or "REFUSED" in message or "NOTZONE" in message, message


def test_a_primary_that_cannot_write_is_transient(tmp_path: Path) -> None:
    # PowerDNS answers SERVFAIL while its database is locked by another writer.
    with running_powerdns(tmp_path / "powerdns") as primary:
        database = primary.directory / "pdns.sqlite3"
        locker = sqlite3.connect(database, isolation_level=None, timeout=1)
        locker.execute("BEGIN EXCLUSIVE")
        backend = backend_for(primary, timeout=5.0)
        try:
            with pytest.raises(TransientBackendError) as raised:
                run_with(backend, lambda: backend.apply(change((H1, "A", ("203.0.113.1",)))))
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        assert "SERVFAIL" in str(raised.value), str(raised.value)
        run_with(backend, lambda: backend.apply(change((H1, "A", ("203.0.113.2",)))))
        assert primary.query(H1, "A") == ["203.0.113.2"]


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_a_stopped_primary_is_transient_and_a_restarted_one_works(
    primary: Primary, loop: str
) -> None:
    backend = backend_for(primary, timeout=2.0)

    async def work() -> None:
        await backend.apply(change((H1, "A", ("203.0.113.1",))))  # the connection stays open
        primary.stop()
        await asyncio.sleep(0.2)  # the loop sees the connection close (uvloop then refuses writes)
        with pytest.raises(TransientBackendError, match=r"cannot connect to primary .*refused"):
            await backend.apply(change((H1, "A", ("203.0.113.2",))))
        primary.start()
        await backend.apply(change((H1, "A", ("203.0.113.3",))))
        # The kept connection dies with a restart; the next change opens a new one.
        primary.stop()
        primary.start()
        await asyncio.sleep(0.2)
        await backend.apply(change((H1, "A", ("203.0.113.4",))))

    run_with(backend, work, loop)
    assert primary.query(H1, "A") == ["203.0.113.4"]


def test_start_does_not_need_the_primary(tmp_path: Path) -> None:
    with running_bind(tmp_path) as bind:
        backend = backend_for(bind)
    # bind has stopped
    with pytest.raises(TransientBackendError):
        run_with(backend, lambda: backend.apply(change((H1, "A", ("203.0.113.1",)))))


# -- reading back ---------------------------------------------------------------------------


@pytest.mark.parametrize("transfer", [True, False], ids=["axfr", "queries"])
@pytest.mark.parametrize("kind", sorted(RUNNERS))
def test_read_returns_what_the_primary_has(kind: str, transfer: bool, tmp_path: Path) -> None:
    with RUNNERS[kind](tmp_path, transfer=transfer) as primary:
        backend = backend_for(primary)
        h2 = "h2.dyn.example.test"
        both = change((H1, "A", ("203.0.113.7",)), (H1, "AAAA", ("2001:db8::7",)))
        run_with(backend, lambda: backend.apply(both))
        assert run_with(backend, lambda: backend.read(ZONE, [H1, h2])) == {
            (H1, "A"): ("203.0.113.7",),
            (H1, "AAAA"): ("2001:db8::7",),
            (h2, "A"): (),
            (h2, "AAAA"): (),
        }
        primary.edit(H1, "A", ["203.0.113.99", "203.0.113.100"])
        primary.edit(H1, "AAAA", [])
        primary.edit(h2, "AAAA", ["2001:db8:0:0::2"])
        assert run_with(backend, lambda: backend.read(ZONE, [H1, h2])) == {
            (H1, "A"): ("203.0.113.100", "203.0.113.99"),
            (H1, "AAAA"): (),
            (h2, "A"): (),
            (h2, "AAAA"): ("2001:db8::2",),
        }


# -- wildcard names and TXT records (ACME challenges) -------------------------------------


@dataclass
class PrimaryHarness:
    """The backend contract's view of a primary serving home.example.test."""

    primary: Primary
    zone: ZoneSettings = field(default_factory=lambda: ZoneSettings(ZONE_NAME, "primary", ttl=60))
    batches: bool = True
    txt: bool = True
    stateless: bool = True  # every change is sent: the reconciler sends only what changed
    _backend: Rfc2136Backend | None = None

    @property
    def secret(self) -> str:
        return self.primary.secret

    def backend(self) -> Rfc2136Backend:
        if self._backend is None:
            self._backend = backend_for(self.primary)
        return self._backend

    def records(self, fqdn: str, rtype: str) -> list[str]:
        return self.primary.query(fqdn, rtype)

    def ttl(self, fqdn: str, rtype: str) -> int | None:
        return self.primary.ttl(fqdn, rtype)

    def writes(self) -> int:
        return self.backend().messages_sent


@pytest.fixture(params=[True, False], ids=["axfr", "queries"])
def home(request: pytest.FixtureRequest, primary_kind: str, tmp_path: Path) -> Iterator[Primary]:
    """A primary of home.example.test, read back by AXFR or, refused that, by queries."""
    with RUNNERS[primary_kind](tmp_path, zone=ZONE_NAME, transfer=request.param) as running:
        yield running


@pytest.fixture(params=sorted(RUNNERS))
def primary_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


def test_a_wildcard_owner_is_set_read_back_and_removed(home: Primary) -> None:
    check_wildcard(PrimaryHarness(home))


def test_txt_values_are_set_read_back_replaced_and_removed(home: Primary) -> None:
    check_txt(PrimaryHarness(home))


def test_a_host_its_wildcard_and_its_txt_go_in_one_message(home: Primary) -> None:
    harness = PrimaryHarness(home)
    check_all_owners_at_once(harness)
    assert harness.writes() == 2


def test_what_dig_shows_for_the_wildcard_and_the_acme_challenge(home: Primary) -> None:
    harness = PrimaryHarness(home)
    backend = harness.backend()
    update = ZoneChange(
        harness.zone,
        0,
        [
            RecordChange(HOME, "A", ("203.0.113.7",)),
            RecordChange(WILDCARD, "A", ("203.0.113.7",)),
            RecordChange(ACME, "TXT", (TOKENS[0],)),
        ],
    )
    run_with(backend, lambda: backend.apply(update))
    assert home.dig(f"www.{HOME}", "A") == "203.0.113.7\n"  # any name below the host
    assert home.dig(f"a.b.{HOME}", "A") == "203.0.113.7\n"
    assert home.dig(ACME, "TXT") == f'"{TOKENS[0]}"\n'
    assert home.dig(f"www.{HOME}", "TXT") == ""  # the wildcard holds addresses only


def test_txt_text_with_quotes_and_spaces_goes_through_as_it_is(home: Primary) -> None:
    harness = PrimaryHarness(home)
    text = 'v=1; a "quoted" word \\ é'
    backend = harness.backend()
    update = ZoneChange(harness.zone, 0, [RecordChange(ACME, "TXT", (text, "x" * 255))])
    run_with(backend, lambda: backend.apply(update))
    assert home.query(ACME, "TXT") == sorted([text, "x" * 255])
    assert read_back(harness, [ACME]) == {(ACME, "TXT"): tuple(sorted([text, "x" * 255]))}


def test_a_txt_value_too_long_for_dns_is_permanent(primary: Primary) -> None:
    backend = backend_for(primary)
    update = change((f"_acme-challenge.{H1}", "TXT", ("x" * 256,)))
    with pytest.raises(PermanentBackendError) as raised:
        run_with(backend, lambda: backend.apply(update))
    assert "is 256 bytes long; DNS takes at most 255 in one string" in str(raised.value)
    assert backend.messages_sent == 0


def test_a_bind_key_allowed_only_addresses_refuses_txt_and_says_to_grant_it(
    tmp_path: Path,
) -> None:
    # deploy/bind/named.conf before TXT: update-policy { grant ddns-key zonesub A AAAA; };
    with running_bind(tmp_path, update_types="A AAAA") as bind:
        backend = backend_for(bind)
        run_with(backend, lambda: backend.apply(change((H1, "A", ("203.0.113.1",)))))
        acme = f"_acme-challenge.{H1}"
        update = change((H1, "A", ("203.0.113.2",)), (acme, "TXT", (TOKENS[0],)))
        with pytest.raises(PermanentBackendError) as raised:
            run_with(backend, lambda: backend.apply(update))
        assert bind.query(H1, "A") == ["203.0.113.1"]  # the message is applied all or nothing
        assert bind.query(acme, "TXT") == []
        # About the TXT records, not the zone: the reconciler finds the hosts that have
        # them, and the other hosts' changes go through.
        assert not raised.value.every_name
        run_with(backend, lambda: backend.apply(change((H1, "A", ("203.0.113.2",)))))
        assert bind.query(H1, "A") == ["203.0.113.2"]
    assert str(raised.value).startswith(
        f"primary 127.0.0.1:{bind.port} refused the update of dyn.example.test: REFUSED "
        "(the key may not update TXT records (ACME challenges), or not this zone at all: "
        "grant it TXT too, in BIND update-policy { grant ddns-key zonesub A AAAA TXT; }"
    )


def test_read_of_a_stopped_primary_is_transient(tmp_path: Path) -> None:
    with running_powerdns(tmp_path) as powerdns:
        backend = backend_for(powerdns)
    with pytest.raises(TransientBackendError, match="cannot connect"):
        run_with(backend, lambda: backend.read(ZONE, [H1]))


# -- configuration ------------------------------------------------------------------------

SECRET = base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "ddns-key.secret"
    path.write_text(SECRET + "\n")
    return path


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "ddns-key.conf"
    path.write_text(run(["tsig-keygen", "-a", "hmac-sha512", "ddns-key"]))
    return path


def base_table(secret_file: Path) -> dict[str, Any]:
    return {
        "type": "rfc2136",
        "server": "127.0.0.1",
        "tsig_key_name": "ddns-key",
        "tsig_secret_file": str(secret_file),
    }


def test_defaults_attributes_and_registration(secret_file: Path) -> None:
    backend = create_backend("primary", base_table(secret_file))
    assert FACTORIES["rfc2136"] == Rfc2136Backend.from_table
    assert isinstance(backend, Rfc2136Backend)
    assert (backend.name, backend.server, backend.port) == ("primary", "127.0.0.1", 53)
    assert (backend.algorithm, backend.transport, backend.timeout) == ("hmac-sha256", "tcp", 5.0)
    assert (backend.max_batch, backend.max_message_bytes) == (500, 60000)
    assert (backend.coalesce_window, backend.drift_check_interval) == (0.002, 3600)
    never = Rfc2136Backend.from_table("p", base_table(secret_file) | {"drift_check_interval": 0})
    assert never.drift_check_interval == 0  # the reconciler reads no drift back
    assert repr(backend) == (
        "Rfc2136Backend(name='primary', server='127.0.0.1:53', key='ddns-key', "
        "algorithm='hmac-sha256', transport='tcp')"
    )


def test_key_file_env_and_ipv6(key_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from_file = Rfc2136Backend.from_table(
        "edge", {"type": "rfc2136", "server": "::1", "port": 5300, "tsig_key_file": str(key_file)}
    )
    assert (from_file.key_name, from_file.algorithm) == ("ddns-key", "hmac-sha512")
    assert from_file.label == "edge [::1]:5300"
    monkeypatch.setenv("NICUPDATE_TSIG_SECRET", SECRET)
    table = {
        "server": "192.0.2.1",
        "tsig_key_name": "k",
        "tsig_secret_env": "NICUPDATE_TSIG_SECRET",
    }
    assert Rfc2136Backend.from_table("edge", table).key_name == "k"


def test_repr_never_shows_the_secret(key_file: Path) -> None:
    backend = Rfc2136Backend.from_table(
        "p", {"server": "127.0.0.1", "tsig_key_file": str(key_file)}
    )
    secret = key_file.read_text().split('secret "')[1].split('"')[0]
    assert secret not in repr(backend)
    assert secret not in str(vars(backend))  # nor in the TSIG key's own repr


BAD_BASE64 = "not a secret!!"
# problem: (changes to a valid table, None removing the key; what the error says)
CONFIG_ERRORS: dict[str, tuple[dict[str, Any], str]] = {
    "missing server": ({"server": None}, "server: missing"),
    "host name": ({"server": "ns1.example.com"}, "server: 'ns1.example.com' is not an IP"),
    "no secret": ({"tsig_secret_file": None}, "tsig_secret_file: missing"),
    "two secrets": ({"tsig_key_file": "{key_file}"}, "tsig_key_file: give only one of"),
    "env and file": ({"tsig_secret_env": "X"}, "tsig_secret_env: give only one of"),
    "bad base64": ({"tsig_secret_file": "{bad_file}"}, "does not hold a base64 secret"),
    "key clause as secret": ({"tsig_secret_file": "{key_file}"}, "is a tsig_key_file"),
    "unreadable": (
        {"tsig_secret_file": "/nonexistent/key"},
        "tsig_secret_file: cannot read /nonexistent/key: No such file or directory",
    ),
    "algorithm": ({"tsig_algorithm": "hmac-sha3"}, "tsig_algorithm: unknown TSIG algorithm"),
    "missing key name": ({"tsig_key_name": None}, "tsig_key_name: missing"),
    "unknown key": ({"colour": "red"}, "colour: unknown key"),
    "port": ({"port": 0}, "port: must be between 1 and 65535"),
    "transport": ({"transport": "tls"}, "transport: must be one of tcp, udp"),
    "udp size": (
        {"transport": "udp", "max_message_bytes": 4096},
        "max_message_bytes: must be between 512 and 1232",
    ),
    "timeout": ({"timeout": "5s"}, "timeout: must be a number"),
    "drift interval": ({"drift_check_interval": -1}, "drift_check_interval: must be at least 0"),
    "env unset": (
        {"tsig_secret_file": None, "tsig_secret_env": "NICUPDATE_UNSET_VARIABLE"},
        "tsig_secret_env: environment variable NICUPDATE_UNSET_VARIABLE is not set",
    ),
}


@pytest.mark.parametrize("problem", CONFIG_ERRORS)
def test_config_errors_name_the_key(
    problem: str, secret_file: Path, key_file: Path, tmp_path: Path
) -> None:
    bad_file = tmp_path / "bad.secret"
    bad_file.write_text(BAD_BASE64)
    changes, expected = CONFIG_ERRORS[problem]
    table = base_table(secret_file)
    for key, value in changes.items():
        if value is None:
            del table[key]
        else:
            table[key] = (
                value.format(key_file=key_file, bad_file=bad_file)
                if isinstance(value, str)
                else value
            )
    with pytest.raises(BackendUnavailable) as raised:
        Rfc2136Backend.from_table("primary", table)
    message = str(raised.value)
    assert message.startswith("backends.primary.")
    assert expected in message
    assert "\n" not in message
    key_secret = key_file.read_text().split('secret "')[1].split('"')[0]
    for secret in (SECRET, BAD_BASE64, key_secret):
        assert secret not in message


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"tsig_key_name": "other-key"}, "tsig_key_name: 'other-key' does not match the key in"),
        ({"tsig_algorithm": "hmac-sha256"}, "tsig_algorithm: 'hmac-sha256' does not match"),
    ],
)
def test_key_file_must_match_the_given_name_and_algorithm(
    extra: dict[str, str], expected: str, key_file: Path
) -> None:
    table = {"server": "127.0.0.1", "tsig_key_file": str(key_file), **extra}
    with pytest.raises(BackendUnavailable, match=expected):
        Rfc2136Backend.from_table("primary", table)


def test_key_file_without_a_key_clause(tmp_path: Path) -> None:
    path = tmp_path / "empty.conf"
    path.write_text("// nothing here\n")
    with pytest.raises(BackendUnavailable, match=r"tsig_key_file: .* holds no key clause"):
        Rfc2136Backend.from_table("primary", {"server": "127.0.0.1", "tsig_key_file": str(path)})
