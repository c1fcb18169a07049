"""The quorum detector against fake echo services over real HTTP on loopback."""

from __future__ import annotations

import asyncio
import email.utils
import shlex
import socket
import sys
import time
from collections.abc import Callable, MutableMapping
from datetime import UTC, datetime

import pytest
from nicupdate_client.config import ClientConfig, FamilyConfig
from nicupdate_client.detect import Verdict, detect, detect_all
from nicupdate_client.runner import CommandResult, Runner, run_command

from tests.client.echo import EchoSources, echo
from tests.client.test_interfaces import IP_4, FakeRunner

__all__ = ["echo"]

UA = "nicupdate-client/9.9 (test)"
T = 1_700_000_000.0  # a fixed "now" for the cooldown tests


def run(
    sources: list[str],
    *,
    quorum: int = 2,
    family: int = 4,
    accept_private: bool = False,
    cooldowns: MutableMapping[str, float] | None = None,
    myip_url: str = "http://127.0.0.1:9/myip",
    runner: Runner = run_command,
    now: Callable[[], float] = time.time,
) -> Verdict:
    config = FamilyConfig(
        family=family, sources=tuple(sources), quorum=quorum, accept_private=accept_private
    )
    return asyncio.run(
        detect(
            config,
            myip_url=myip_url,
            cooldowns={} if cooldowns is None else cooldowns,
            timeout=5.0,
            user_agent=UA,
            runner=runner,
            now=now,
        )
    )


def paths(echo: EchoSources) -> list[str]:
    return [seen.path for seen in echo.seen()]


def closed_port_url(path: str = "/") -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"


def test_agreeing_sources_give_the_address_and_no_more_are_asked(echo: EchoSources) -> None:
    a, b, c = (echo.url(echo.set(p, "81.2.69.160\n")) for p in ("/a", "/b", "/c"))
    verdict = run([a, b, c])
    assert verdict.family == 4
    assert verdict.address == "81.2.69.160"
    assert verdict.reason == "81.2.69.160: 2 of 2 sources agree"
    assert sorted(paths(echo)) == ["/a", "/b"]
    assert not verdict.network_down


def test_a_liar_is_outvoted_by_a_third_source_asked_after_the_disagreement(
    echo: EchoSources,
) -> None:
    a = echo.url(echo.set("/a", "81.2.69.160"))
    b = echo.url(echo.set("/b", "81.2.69.161"))
    c = echo.url(echo.set("/c", "81.2.69.160"))
    d = echo.url(echo.set("/d", "81.2.69.160"))
    verdict = run([a, b, c, d])
    assert verdict.address == "81.2.69.160"
    assert verdict.reason == f"81.2.69.160: 2 of 3 sources agree ({b} said 81.2.69.161)"
    asked = paths(echo)
    assert sorted(asked[:2]) == ["/a", "/b"]
    assert asked[2:] == ["/c"]  # asked only after /a and /b disagreed; /d never


def test_later_waves_ask_as_many_sources_as_votes_are_missing(echo: EchoSources) -> None:
    a = echo.url(echo.set("/a", "81.2.69.160"))
    b = echo.url(echo.set("/b", "oops", status=500))
    c = echo.url(echo.set("/c", "81.2.69.161"))
    d, e, f = (echo.url(echo.set(p, "81.2.69.160")) for p in ("/d", "/e", "/f"))
    verdict = run([a, b, c, d, e, f], quorum=3)
    assert verdict.address == "81.2.69.160"
    asked = paths(echo)
    assert sorted(asked[:3]) == ["/a", "/b", "/c"]
    assert sorted(asked[3:]) == ["/d", "/e"]  # 1 vote of 3: two more; /f never
    assert verdict.reason == (
        f"81.2.69.160: 3 of 5 sources agree ({b} failed: HTTP 500, {c} said 81.2.69.161)"
    )


def test_all_disagree_no_address_and_the_reason_names_each_source(echo: EchoSources) -> None:
    a = echo.url(echo.set("/a", "81.2.69.160"))
    b = echo.url(echo.set("/b", "81.2.69.161"))
    c = echo.url(echo.set("/c", "81.2.69.162"))
    verdict = run([a, b, c])
    assert verdict.address is None
    assert verdict.reason == (
        f"no quorum (2 needed): {a} said 81.2.69.160, {b} said 81.2.69.161, {c} said 81.2.69.162"
    )
    assert not verdict.network_down


def test_a_failing_source_is_skipped_over_to_the_next(echo: EchoSources) -> None:
    a = echo.url(echo.set("/a", "Internal Server Error", status=500))
    b = echo.url(echo.set("/b", "81.2.69.160"))
    c = echo.url(echo.set("/c", "81.2.69.160"))
    verdict = run([a, b, c])
    assert verdict.address == "81.2.69.160"
    assert verdict.reason == f"81.2.69.160: 2 of 3 sources agree ({a} failed: HTTP 500)"


def test_too_many_failures_leave_no_quorum(echo: EchoSources) -> None:
    a = echo.url(echo.set("/a", "81.2.69.160"))
    b = echo.url(echo.set("/b", "", status=500))
    c = echo.url(echo.set("/c", "", status=404))
    verdict = run([a, b, c])
    assert verdict.address is None
    assert verdict.reason == (
        f"no quorum (2 needed): {a} said 81.2.69.160, {b} failed: HTTP 500, {c} failed: HTTP 404"
    )
    assert not verdict.network_down


def test_429_puts_the_source_on_cooldown_and_it_is_not_asked_again(echo: EchoSources) -> None:
    a = echo.url(echo.set("/a", "slow down", status=429, Retry_After="120"))
    b = echo.url(echo.set("/b", "81.2.69.160"))
    c = echo.url(echo.set("/c", "81.2.69.160"))
    cooldowns: dict[str, float] = {}
    first = run([a, b, c], cooldowns=cooldowns, now=lambda: T)
    assert first.address == "81.2.69.160"
    assert cooldowns == {a: pytest.approx(T + 120, abs=1)}
    clock = time.strftime("%H:%M", time.localtime(T + 120))
    assert f"{a} failed: HTTP 429, not asked again until {clock}" in first.reason

    second = run([a, b, c], cooldowns=cooldowns, now=lambda: T + 60)
    assert second.address == "81.2.69.160"
    assert len(echo.seen("/a")) == 1
    assert second.reason == f"81.2.69.160: 2 of 2 sources agree ({a} is cooling down until {clock})"

    # Once the time is up, the source is asked again and the entry goes.
    echo.set("/a", "81.2.69.160")
    third = run([a, b], quorum=1, cooldowns=cooldowns, now=lambda: T + 121)
    assert len(echo.seen("/a")) == 2
    assert third.reason == "81.2.69.160: 1 of 1 sources agree"
    assert cooldowns == {}


@pytest.mark.parametrize(
    ("status", "retry_after", "seconds"),
    [
        (429, None, 3600),
        (403, None, 3600),
        (429, "999999", 86400),
        (
            429,
            email.utils.format_datetime(datetime.fromtimestamp(T + 600, UTC), usegmt=True),
            600,
        ),
    ],
)
def test_cooldown_length(
    echo: EchoSources, status: int, retry_after: str | None, seconds: int
) -> None:
    headers = {} if retry_after is None else {"Retry_After": retry_after}
    a = echo.url(echo.set("/a", "no", status=status, **headers))
    cooldowns: dict[str, float] = {}
    verdict = run([a], quorum=1, cooldowns=cooldowns, now=lambda: T)
    assert verdict.address is None
    assert cooldowns == {a: pytest.approx(T + seconds, abs=1)}


def test_all_sources_cooling_down_is_not_a_network_failure(echo: EchoSources) -> None:
    a = echo.url(echo.set("/a", "81.2.69.160"))
    verdict = run([a], quorum=1, cooldowns={a: T + 60}, now=lambda: T)
    assert verdict.address is None
    clock = time.strftime("%H:%M", time.localtime(T + 60))
    assert verdict.reason == f"no quorum (1 needed): {a} is cooling down until {clock}"
    assert not verdict.network_down
    assert echo.seen() == []


def test_replies_with_two_addresses_or_garbage_do_not_count(echo: EchoSources) -> None:
    a = echo.url(echo.set("/a", "81.2.69.160, 81.2.69.161"))
    b = echo.url(echo.set("/b", "<html><body>Access denied</body></html>"))
    c = echo.url(echo.set("/c", "81.2.69.160"))
    verdict = run([a, b, c])
    assert verdict.address is None
    assert verdict.reason == (
        f"no quorum (2 needed): {a} failed: 2 addresses in the reply (81.2.69.160, 81.2.69.161), "
        f"{b} failed: no address in the reply, {c} said 81.2.69.160"
    )


def test_an_oversized_reply_does_not_count(echo: EchoSources) -> None:
    a = echo.url(echo.set("/a", "81.2.69.160\n" + "#" * 100_000))
    verdict = run([a], quorum=1)
    assert verdict.address is None
    assert "longer than 4 KiB" in verdict.reason


@pytest.mark.parametrize(
    ("reply", "kind"), [("10.0.0.1", "a private"), ("100.64.1.1", "a carrier-grade NAT")]
)
def test_private_addresses_only_with_accept_private(
    echo: EchoSources, reply: str, kind: str
) -> None:
    a = echo.url(echo.set("/a", reply))
    refused = run([a], quorum=1)
    assert refused.address is None
    assert refused.reason == (
        f"no quorum (1 needed): {a} failed: {reply} is {kind} address, not a public one"
    )
    assert run([a], quorum=1, accept_private=True).address == reply


def test_the_user_agent_is_ours(echo: EchoSources) -> None:
    a, b = (echo.url(echo.set(p, "81.2.69.160")) for p in ("/a", "/b"))
    run([a, b])
    assert [seen.user_agent for seen in echo.seen()] == [UA, UA]


def test_ipv6_sources_over_ipv6(echo: EchoSources) -> None:
    a = echo.url(echo.set("/a", "2a02:1388::7\n"), family=6)
    b = echo.url(echo.set("/b", "2a02:1388:0:0:0:0:0:7"), family=6)
    verdict = run([a, b], family=6)
    assert verdict.family == 6
    assert verdict.address == "2a02:1388::7"
    assert [seen.family for seen in echo.seen()] == [6, 6]


def test_an_ipv4_reply_does_not_count_for_ipv6(echo: EchoSources) -> None:
    a = echo.url(echo.set("/a", "81.2.69.160"), family=6)
    verdict = run([a], family=6, quorum=1)
    assert verdict.reason == f"no quorum (1 needed): {a} failed: 81.2.69.160 is IPv4, not IPv6"


def test_the_server_source_is_the_servers_myip(echo: EchoSources) -> None:
    echo.set("/myip", "81.2.69.160")
    b = echo.url(echo.set("/b", "81.2.69.161"))
    myip = echo.url("/myip")
    verdict = run(["server", b], myip_url=myip)
    assert verdict.address is None
    assert verdict.reason == f"no quorum (2 needed): {myip} said 81.2.69.160, {b} said 81.2.69.161"


def test_proxy_settings_are_ignored(echo: EchoSources, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    monkeypatch.setenv("all_proxy", "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    a, b = (echo.url(echo.set(p, "81.2.69.160")) for p in ("/a", "/b"))
    assert run([a, b]).address == "81.2.69.160"


def test_unreachable_sources_mean_the_network_is_down() -> None:
    a, b = closed_port_url("/a"), closed_port_url("/b")
    verdict = run([a, b])
    assert verdict.address is None
    assert verdict.network_down
    assert verdict.reason == (
        f"no quorum (2 needed): {a} failed: cannot connect: connection refused, "
        f"{b} failed: cannot connect: connection refused"
    )


def test_a_server_error_is_not_a_network_failure(echo: EchoSources) -> None:
    a = closed_port_url("/a")
    b = echo.url(echo.set("/b", "", status=500))
    verdict = run([a, b])
    assert verdict.address is None
    assert not verdict.network_down


def test_command_source(echo: EchoSources) -> None:
    command = f"{shlex.quote(sys.executable)} -c \"print('81.2.69.160')\""
    b = echo.url(echo.set("/b", "81.2.69.160"))
    verdict = run([f"command:{command}", b])
    assert verdict.address == "81.2.69.160"
    assert verdict.answers[0].source == f"command {command}"
    assert verdict.answers[0].address == "81.2.69.160"


def test_a_failing_command_names_its_exit_status() -> None:
    command = f"{shlex.quote(sys.executable)} -c \"import sys; sys.exit('no route')\""
    verdict = run([f"command:{command}"], quorum=1)
    assert verdict.address is None
    assert (
        verdict.reason == f"no quorum (1 needed): command {command} failed: exit status 1: no route"
    )


@pytest.mark.skipif(sys.platform == "win32", reason="the recorded output is Linux's")
def test_interface_source(echo: EchoSources) -> None:
    runner = FakeRunner(CommandResult(0, IP_4, ""))
    b = echo.url(echo.set("/b", "81.2.69.160"))
    verdict = run(["interface:ppp0", b], runner=runner)
    assert verdict.address == "81.2.69.160"
    assert verdict.answers[0].source == "interface ppp0"
    assert runner.calls == [["ip", "-j", "-4", "addr", "show", "dev", "ppp0"]]


def test_detect_all_finds_both_families(echo: EchoSources) -> None:
    echo.set("/myip", "81.2.69.160")
    server = echo.url("/").rstrip("/")
    config = ClientConfig(
        server=server,
        username="alice",
        hostnames=("home.dyn.example.com",),
        ipv4=FamilyConfig(4, sources=("server", echo.url(echo.set("/a", "81.2.69.160")))),
        ipv6=FamilyConfig(
            6, sources=(echo.url(echo.set("/a6", "2a02:1388::7"), family=6),), quorum=1
        ),
        timeout=5.0,
    )
    verdicts = asyncio.run(detect_all(config, cooldowns={}, user_agent=UA))
    assert {family: v.address for family, v in verdicts.items()} == {
        4: "81.2.69.160",
        6: "2a02:1388::7",
    }
    assert verdicts[4].reason == "81.2.69.160: 2 of 2 sources agree"
    assert sorted(paths(echo)) == ["/a", "/a6", "/myip"]


def test_detect_all_skips_a_disabled_family(echo: EchoSources) -> None:
    config = ClientConfig(
        server="http://127.0.0.1:9",
        username="alice",
        hostnames=("home.dyn.example.com",),
        ipv4=FamilyConfig(4, enabled=False, sources=("server",)),
        ipv6=FamilyConfig(
            6, sources=(echo.url(echo.set("/a6", "2a02:1388::7"), family=6),), quorum=1
        ),
    )
    verdicts = asyncio.run(detect_all(config, cooldowns={}, user_agent=UA))
    assert list(verdicts) == [6]
    assert verdicts[6].address == "2a02:1388::7"
