"""Reading an address out of an echo reply, and deciding whether it may go into DNS.

Echo services answer in many shapes: ``81.2.69.160\\n``, ``{"ip": "81.2.69.160"}``,
``Current IP Address: 81.2.69.160`` in HTML, a line of Chinese with full-width colons.
:func:`parse_reply` accepts any of them as long as the reply holds exactly one IP
address; anything else (no address, two addresses, the wrong family) is an
:class:`AddressProblem`, so a proxy's error page or a captive portal never becomes a
DNS record. :func:`check_public` then refuses addresses nobody else can reach.
"""

from __future__ import annotations

import ipaddress
import re

MAX_REPLY = 4096  # bytes; an echo reply is one address and perhaps a line of text

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Tokens are the runs of characters an address can contain; everything else (spaces,
# HTML, quotes, commas, full-width colons, other scripts) separates them.
_TOKENS = re.compile(r"[0-9A-Za-z.:]+")

_CGNAT = ipaddress.IPv4Network("100.64.0.0/10")
_PRIVATE = tuple(
    ipaddress.IPv4Network(net) for net in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
)
_ULA = ipaddress.IPv6Network("fc00::/7")
_DOCUMENTATION = (
    ipaddress.IPv4Network("192.0.2.0/24"),
    ipaddress.IPv4Network("198.51.100.0/24"),
    ipaddress.IPv4Network("203.0.113.0/24"),
    ipaddress.IPv6Network("2001:db8::/32"),
    ipaddress.IPv6Network("3fff::/20"),  # RFC 9637
)


class AddressProblem(Exception):
    """No usable address: the message says why, in a few words a user can act on."""


def parse_reply(text: str, family: int) -> str:
    """The one address in ``text``, in compressed form; it must be of ``family`` (4 or 6)."""
    if len(text.encode("utf-8", "replace")) > MAX_REPLY:
        raise AddressProblem("the reply is longer than 4 KiB, not an address echo")
    found: dict[IPAddress, None] = {}
    for token in _TOKENS.findall(text):
        address = _address_in(token)
        if address is not None:
            found[address] = None
    if not found:
        raise AddressProblem("no address in the reply")
    if len(found) > 1:
        listed = ", ".join(str(a) for a in list(found)[:3]) + (", ..." if len(found) > 3 else "")
        raise AddressProblem(f"{len(found)} addresses in the reply ({listed})")
    (address,) = found
    if address.version != family:
        raise AddressProblem(f"{address} is IPv{address.version}, not IPv{family}")
    return str(address)


def _address_in(token: str) -> IPAddress | None:
    # "1.2.3.4." ends a sentence, "IP:1.2.3.4" glues a label on: try those readings
    # after the token itself.
    readings = [token, token.strip(".:")]
    if ":" in token and "." in token:
        readings.append(token.rsplit(":", 1)[1].strip("."))
    for reading in readings:
        try:
            return ipaddress.ip_address(reading)
        except ValueError:
            continue
    return None


def check_public(address: str, family: int, accept_private: bool) -> None:
    """Raise :class:`AddressProblem` unless ``address`` may be published for ``family``.

    Unspecified, loopback, multicast, link-local, broadcast and IPv4-mapped addresses are
    always refused. Private (RFC 1918), carrier-grade NAT, unique local, documentation and
    other non-global addresses are refused unless ``accept_private`` (a LAN-only zone).
    """
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        raise AddressProblem(f"{address!r} is not an IP address") from None
    if ip.version != family:
        raise AddressProblem(f"{ip} is IPv{ip.version}, not IPv{family}")
    never = _never_public(ip)
    if never:
        raise AddressProblem(f"{ip} is {never}, not a public one")
    if accept_private:
        return
    kind = _not_global(ip)
    if kind:
        raise AddressProblem(f"{ip} is {kind}, not a public one")


def _never_public(ip: IPAddress) -> str:
    if ip.is_unspecified:
        return "the unspecified address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_link_local:
        return "a link-local address"
    if isinstance(ip, ipaddress.IPv4Address) and ip == ipaddress.IPv4Address("255.255.255.255"):
        return "the broadcast address"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return "an IPv4-mapped IPv6 address"
    return ""


def _not_global(ip: IPAddress) -> str:
    if isinstance(ip, ipaddress.IPv4Address):
        if any(ip in net for net in _PRIVATE):
            return "a private address"
        if ip in _CGNAT:
            return "a carrier-grade NAT address"
    elif ip in _ULA:
        return "a unique local address"
    if any(ip.version == net.version and ip in net for net in _DOCUMENTATION):
        return "a documentation address"
    if not ip.is_global:
        return "a reserved address"
    return ""
