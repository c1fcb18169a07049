"""IP addresses a host may be given, and why others are refused."""

from __future__ import annotations

import functools
import ipaddress
from typing import Literal

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
RType = Literal["A", "AAAA"]


class UnusableAddress(ValueError):
    """An address that must not be published for a host; the message says why."""


def rtype_of(address: IPAddress) -> RType:
    return "A" if address.version == 4 else "AAAA"


def check_usable(address: IPAddress, *, public_only: bool) -> None:
    """Raise :class:`UnusableAddress` for an address no host should point at."""
    problem = _problem(address, public_only)
    if problem is not None:
        raise UnusableAddress(problem)


@functools.lru_cache(maxsize=4096)
def _problem(address: IPAddress, public_only: bool) -> str | None:
    try:
        _check(address, public_only=public_only)
    except UnusableAddress as exc:
        return str(exc)
    return None


def _check(address: IPAddress, *, public_only: bool) -> None:
    if address.is_unspecified:
        raise UnusableAddress(f"{address} is the unspecified address")
    if address.is_loopback:
        raise UnusableAddress(f"{address} is a loopback address")
    if address.is_multicast:
        raise UnusableAddress(f"{address} is a multicast address")
    if address.is_link_local:
        raise UnusableAddress(f"{address} is a link-local address")
    if isinstance(address, ipaddress.IPv4Address) and address.is_reserved:
        raise UnusableAddress(f"{address} is a reserved address")
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        raise UnusableAddress(f"{address} is an IPv4-mapped address: send it as IPv4")
    if public_only and not address.is_global:
        raise UnusableAddress(f"{address} is not a public address and the zone is public_only")


def parse_host_address(text: str) -> IPAddress | None:
    """Parse one address item as clients send it.

    Returns ``None`` for an item that carries no host address: an empty item, or a
    prefix such as FRITZ!Box's ``<ip6lanprefix>`` (``2001:db8:1:2::/64``). An address
    with a length suffix (``2001:db8::7/64``) is that address. Raises ``ValueError``
    for anything that is not an address.
    """
    text = text.strip()
    if not text:
        return None
    if "/" in text:
        interface = ipaddress.ip_interface(text)
        network = interface.network
        if network.prefixlen < network.max_prefixlen and interface.ip == network.network_address:
            return None
        return interface.ip
    if "%" in text:  # a zone index (fe80::1%eth0) is never a DNS address
        raise ValueError(f"{text!r} has a zone index")
    return ipaddress.ip_address(text)


def parse_prefix(text: str) -> ipaddress.IPv6Network | None:
    """The IPv6 prefix an address item delegates (FRITZ!Box's ``<ip6lanprefix>``,
    ``2001:db8:1:2::/64``); ``None`` for an item that is not one."""
    text = text.strip()
    if "/" not in text:
        return None
    try:
        interface = ipaddress.ip_interface(text)
    except ValueError:
        return None
    network = interface.network
    if (
        isinstance(network, ipaddress.IPv6Network)
        and network.prefixlen < network.max_prefixlen
        and interface.ip == network.network_address
    ):
        return network
    return None


def in_prefix(prefix: str, interface_id: str, length: int) -> ipaddress.IPv6Address:
    """The address of a machine behind a router: the first ``length`` bits of ``prefix``
    (at most its own length), the rest from ``interface_id`` (``::1234:5678:9abc:def0``).
    A /56 delegated with ``length`` 64 leaves the subnet's bits to the interface id."""
    network = ipaddress.IPv6Network(prefix)
    iid = int(ipaddress.IPv6Address(interface_id))
    host_bits = (1 << (128 - min(length, network.prefixlen))) - 1
    return ipaddress.IPv6Address((int(network.network_address) & ~host_bits) | (iid & host_bits))
