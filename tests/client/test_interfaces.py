"""The address of a local interface, from recorded `ip -j addr` and Get-NetIPAddress output."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import pytest
from nicupdate_client.addresses import AddressProblem
from nicupdate_client.interfaces import interface_address, parse_ip_json, parse_powershell_json
from nicupdate_client.runner import CommandResult, run_command

# `ip -j -6 addr` on a SLAAC host with privacy extensions, just after the ISP renumbered
# the prefix 2a02:1388:0:1::/64 to 2a02:1388::/64 (the old addresses are deprecated).
IP_6_SLAAC = """[{"ifindex":1,"ifname":"lo","flags":["LOOPBACK","UP","LOWER_UP"],"mtu":65536,\
"qdisc":"noqueue","operstate":"UNKNOWN","group":"default","txqlen":1000,"addr_info":[\
{"family":"inet6","local":"::1","prefixlen":128,"scope":"host","noprefixroute":true,\
"valid_life_time":4294967295,"preferred_life_time":4294967295}]},\
{"ifindex":2,"ifname":"eth0","flags":["BROADCAST","MULTICAST","UP","LOWER_UP"],"mtu":1500,\
"qdisc":"fq_codel","operstate":"UP","group":"default","txqlen":1000,"addr_info":[\
{"family":"inet6","local":"2a02:1388::e1a3:5c0b:9f2:41d7","prefixlen":64,"scope":"global",\
"temporary":true,"dynamic":true,"valid_life_time":86111,"preferred_life_time":14111},\
{"family":"inet6","local":"2a02:1388:0:1:4c21:8f0e:a3d2:1b77","prefixlen":64,"scope":"global",\
"temporary":true,"deprecated":true,"dynamic":true,"valid_life_time":3011,"preferred_life_time":0},\
{"family":"inet6","local":"2a02:1388:0:1:5054:ff:fe12:3456","prefixlen":64,"scope":"global",\
"deprecated":true,"dynamic":true,"mngtmpaddr":true,"noprefixroute":true,\
"valid_life_time":3011,"preferred_life_time":0},\
{"family":"inet6","local":"fd12:3456:789a:0:5054:ff:fe12:3456","prefixlen":64,"scope":"global",\
"dynamic":true,"mngtmpaddr":true,"noprefixroute":true,\
"valid_life_time":1791,"preferred_life_time":1791},\
{"family":"inet6","local":"2a02:1388::5054:ff:fe12:3456","prefixlen":64,"scope":"global",\
"dynamic":true,"mngtmpaddr":true,"noprefixroute":true,\
"valid_life_time":86111,"preferred_life_time":14111},\
{"family":"inet6","local":"fe80::5054:ff:fe12:3456","prefixlen":64,"scope":"link",\
"noprefixroute":true,"valid_life_time":4294967295,"preferred_life_time":4294967295}]}]"""

# A server: a DHCPv6 /128 (dynamic), a static address (forever), and one still in DAD.
IP_6_SERVER = """[{"ifindex":2,"ifname":"ens3","flags":["BROADCAST","MULTICAST","UP","LOWER_UP"],\
"mtu":1500,"operstate":"UP","addr_info":[\
{"family":"inet6","local":"2a02:1388::8","prefixlen":128,"scope":"global","dynamic":true,\
"noprefixroute":true,"valid_life_time":7187,"preferred_life_time":3587},\
{"family":"inet6","local":"2a02:1388::7","prefixlen":64,"scope":"global",\
"valid_life_time":4294967295,"preferred_life_time":4294967295},\
{"family":"inet6","local":"2a02:1388::9","prefixlen":64,"scope":"global","tentative":true,\
"valid_life_time":4294967295,"preferred_life_time":4294967295},\
{"family":"inet6","local":"fe80::1","prefixlen":64,"scope":"link",\
"valid_life_time":4294967295,"preferred_life_time":4294967295}]}]"""

# Only a unique local and a link-local address: IPv6 inside the LAN, none outside.
IP_6_ULA_ONLY = """[{"ifindex":2,"ifname":"eth0","addr_info":[\
{"family":"inet6","local":"fd12:3456:789a:0:5054:ff:fe12:3456","prefixlen":64,"scope":"global",\
"dynamic":true,"mngtmpaddr":true,"valid_life_time":1791,"preferred_life_time":1791},\
{"family":"inet6","local":"fe80::5054:ff:fe12:3456","prefixlen":64,"scope":"link",\
"valid_life_time":4294967295,"preferred_life_time":4294967295}]}]"""

# `ip -j -4 addr`: a LAN address from DHCP, the PPPoE link with the public address.
IP_4 = """[{"ifindex":1,"ifname":"lo","addr_info":[{"family":"inet","local":"127.0.0.1",\
"prefixlen":8,"scope":"host","label":"lo","valid_life_time":4294967295,\
"preferred_life_time":4294967295}]},\
{"ifindex":2,"ifname":"eth0","addr_info":[{"family":"inet","local":"192.168.1.23",\
"prefixlen":24,"broadcast":"192.168.1.255","scope":"global","dynamic":true,"label":"eth0",\
"valid_life_time":85923,"preferred_life_time":85923}]},\
{"ifindex":3,"ifname":"ppp0","flags":["POINTOPOINT","MULTICAST","NOARP","UP","LOWER_UP"],\
"addr_info":[{"family":"inet","local":"81.2.69.160","address":"81.2.69.1","prefixlen":32,\
"scope":"global","label":"ppp0","valid_life_time":4294967295,\
"preferred_life_time":4294967295}]},{}]"""


def _timespan(seconds: int) -> str:
    ticks = seconds * 10_000_000
    return (
        f'{{"Ticks":{ticks},"Days":{seconds // 86400},"Hours":{seconds // 3600 % 24},'
        f'"Milliseconds":0,"Minutes":{seconds // 60 % 60},"Seconds":{seconds % 60},'
        f'"TotalDays":{seconds / 86400},"TotalHours":{seconds / 3600},'
        f'"TotalMilliseconds":{seconds * 1000},"TotalMinutes":{seconds / 60},'
        f'"TotalSeconds":{seconds}}}'
    )


INFINITE = (
    '{"Ticks":9223372036854775807,"Days":10675199,"Hours":2,"Milliseconds":477,"Minutes":48,'
    '"Seconds":5,"TotalDays":10675199.116730064,"TotalHours":256204778.80152154,'
    '"TotalMilliseconds":922337203685477.6,"TotalMinutes":15372286728.091293,'
    '"TotalSeconds":922337203685.4775}'
)

# Windows PowerShell 5.1 (enums as numbers), default settings: randomizeidentifiers makes
# the stable address random too; it outlives the temporary one (7 days at most).
# PrefixOrigin 2 WellKnown, 4 RouterAdvertisement; SuffixOrigin 2 WellKnown, 4 Link,
# 5 Random; AddressState 3 Deprecated, 4 Preferred.
PS_DEFAULT = f"""[
    {{
        "IPAddress":  "fe80::1c4d:2b9a:7e3f:8a21%12",
        "InterfaceAlias":  "Ethernet",
        "PrefixOrigin":  2,
        "SuffixOrigin":  4,
        "AddressState":  4,
        "ValidLifetime":  {INFINITE}
    }},
    {{
        "IPAddress":  "2a02:1388::a4f1:93c2:1b7e:55d0",
        "InterfaceAlias":  "Ethernet",
        "PrefixOrigin":  4,
        "SuffixOrigin":  5,
        "AddressState":  4,
        "ValidLifetime":  {_timespan(604079)}
    }},
    {{
        "IPAddress":  "2a02:1388::51c3:e8f0:2d4b:7a96",
        "InterfaceAlias":  "Ethernet",
        "PrefixOrigin":  4,
        "SuffixOrigin":  5,
        "AddressState":  3,
        "ValidLifetime":  {_timespan(2591979)}
    }},
    {{
        "IPAddress":  "2a02:1388::9d2e:6b14:c0a7:3f81",
        "InterfaceAlias":  "Ethernet",
        "PrefixOrigin":  4,
        "SuffixOrigin":  5,
        "AddressState":  4,
        "ValidLifetime":  {_timespan(2591979)}
    }},
    {{
        "IPAddress":  "::1",
        "InterfaceAlias":  "Loopback Pseudo-Interface 1",
        "PrefixOrigin":  2,
        "SuffixOrigin":  2,
        "AddressState":  4,
        "ValidLifetime":  {INFINITE}
    }}
]"""

# randomizeidentifiers disabled: an EUI-64 (Link) address next to a temporary one.
PS_EUI64 = f"""[
    {{
        "IPAddress":  "2a02:1388::c5e1:7a02:4b9d:e6f3",
        "InterfaceAlias":  "Wi-Fi",
        "PrefixOrigin":  4,
        "SuffixOrigin":  5,
        "AddressState":  4,
        "ValidLifetime":  {_timespan(604079)}
    }},
    {{
        "IPAddress":  "2a02:1388::5054:ff:fe12:3456",
        "InterfaceAlias":  "Wi-Fi",
        "PrefixOrigin":  4,
        "SuffixOrigin":  4,
        "AddressState":  4,
        "ValidLifetime":  {_timespan(86279)}
    }}
]"""

# PowerShell 7 prints one address as an object, not a list; enums as names here.
PS_ONE_MANUAL = f"""{{
    "IPAddress":  "2a02:1388::8",
    "InterfaceAlias":  "Ethernet 2",
    "PrefixOrigin":  "Manual",
    "SuffixOrigin":  "Manual",
    "AddressState":  "Preferred",
    "ValidLifetime":  {INFINITE}
}}"""


class FakeRunner:
    def __init__(self, result: CommandResult) -> None:
        self.result = result
        self.calls: list[list[str]] = []

    def __call__(self, args: Sequence[str]) -> CommandResult:
        self.calls.append(list(args))
        return self.result


def test_linux_slaac_keeps_the_stable_address_not_temporary_or_deprecated() -> None:
    assert parse_ip_json(IP_6_SLAAC, 6) == [
        "fd12:3456:789a:0:5054:ff:fe12:3456",
        "2a02:1388::5054:ff:fe12:3456",
    ]
    runner = FakeRunner(CommandResult(0, IP_6_SLAAC, ""))
    address = interface_address("eth0", 6, runner=runner, platform="linux", accept_private=False)
    assert address == "2a02:1388::5054:ff:fe12:3456"
    assert runner.calls == [["ip", "-j", "-6", "addr", "show", "dev", "eth0"]]


def test_linux_static_address_beats_dynamic_and_tentative_is_skipped() -> None:
    assert parse_ip_json(IP_6_SERVER, 6) == ["2a02:1388::7", "2a02:1388::8"]


def test_linux_any_interface_finds_the_public_ipv4() -> None:
    runner = FakeRunner(CommandResult(0, IP_4, ""))
    address = interface_address("*", 4, runner=runner, platform="linux", accept_private=False)
    assert address == "81.2.69.160"
    assert runner.calls == [["ip", "-j", "-4", "addr", "show"]]
    assert parse_ip_json(IP_4, 6) == []


def test_linux_private_address_only_with_accept_private() -> None:
    runner = FakeRunner(CommandResult(0, IP_6_ULA_ONLY, ""))
    with pytest.raises(AddressProblem) as caught:
        interface_address("eth0", 6, runner=runner, platform="linux", accept_private=False)
    assert str(caught.value) == (
        "interface eth0 has no public IPv6 address "
        "(fd12:3456:789a:0:5054:ff:fe12:3456 is a unique local address, not a public one)"
    )
    address = interface_address("eth0", 6, runner=runner, platform="linux", accept_private=True)
    assert address == "fd12:3456:789a:0:5054:ff:fe12:3456"


@pytest.mark.parametrize(
    ("result", "message"),
    [
        (CommandResult(127, "", "ip: command not found"), "ip: command not found"),
        (
            CommandResult(1, "", 'Device "eth9" does not exist.\n'),
            'ip: Device "eth9" does not exist.',
        ),
        (CommandResult(0, "Usage: ip address ...", ""), "ip printed something that is not JSON"),
    ],
)
def test_linux_failures_are_reported(result: CommandResult, message: str) -> None:
    with pytest.raises(AddressProblem) as caught:
        interface_address(
            "eth9", 6, runner=FakeRunner(result), platform="linux", accept_private=False
        )
    assert str(caught.value) == message


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux's ip command")
def test_linux_real_loopback_has_no_public_address() -> None:
    with pytest.raises(AddressProblem) as caught:
        interface_address("lo", 6, runner=run_command, accept_private=False)
    assert str(caught.value) == "interface lo has no public IPv6 address"


def test_windows_default_prefers_the_long_lived_random_address() -> None:
    assert parse_powershell_json(PS_DEFAULT, 6) == [
        "fe80::1c4d:2b9a:7e3f:8a21",
        "::1",
        "2a02:1388::9d2e:6b14:c0a7:3f81",
        "2a02:1388::a4f1:93c2:1b7e:55d0",
    ]
    runner = FakeRunner(CommandResult(0, PS_DEFAULT, ""))
    address = interface_address(
        "Ethernet", 6, runner=runner, platform="win32", accept_private=False
    )
    assert address == "2a02:1388::9d2e:6b14:c0a7:3f81"
    (args,) = runner.calls
    assert args[:4] == ["powershell", "-NoProfile", "-NonInteractive", "-Command"]
    assert "Get-NetIPAddress -AddressFamily IPv6 -InterfaceAlias 'Ethernet' |" in args[4]
    assert "ConvertTo-Json" in args[4]


def test_windows_link_suffix_beats_random() -> None:
    runner = FakeRunner(CommandResult(0, PS_EUI64, ""))
    address = interface_address("Wi-Fi", 6, runner=runner, platform="win32", accept_private=False)
    assert address == "2a02:1388::5054:ff:fe12:3456"


def test_windows_single_object_with_enum_names() -> None:
    assert parse_powershell_json(PS_ONE_MANUAL, 6) == ["2a02:1388::8"]
    assert parse_powershell_json(PS_ONE_MANUAL, 4) == []


def test_windows_interface_name_is_quoted_for_powershell() -> None:
    runner = FakeRunner(CommandResult(0, "", ""))
    with pytest.raises(AddressProblem) as caught:
        interface_address("Bob's LAN", 6, runner=runner, platform="win32", accept_private=False)
    assert str(caught.value) == "interface Bob's LAN has no public IPv6 address"
    assert "-InterfaceAlias 'Bob''s LAN' |" in runner.calls[0][4]


def test_windows_any_interface_has_no_alias_filter() -> None:
    runner = FakeRunner(CommandResult(0, PS_ONE_MANUAL, ""))
    assert interface_address("*", 6, runner=runner, platform="win32", accept_private=False) == (
        "2a02:1388::8"
    )
    assert "-InterfaceAlias" not in runner.calls[0][4]


def test_windows_powershell_error_names_the_problem() -> None:
    error = (
        "Get-NetIPAddress : No MSFT_NetIPAddress objects found with property 'InterfaceAlias' "
        "equal to 'eth9'.  Verify the value of the property and retry.\n"
        "At line:1 char:1\n"
        "+ Get-NetIPAddress -AddressFamily IPv6 -InterfaceAlias 'eth9' | Select-Object ...\n"
    )
    runner = FakeRunner(CommandResult(1, "", error))
    with pytest.raises(AddressProblem) as caught:
        interface_address("eth9", 6, runner=runner, platform="win32", accept_private=False)
    assert str(caught.value).startswith(
        "powershell: Get-NetIPAddress : No MSFT_NetIPAddress objects found"
    )
