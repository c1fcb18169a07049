"""An UPDATE message's prerequisites (RFC 2136 §3.2), against what the server stores.

The records a name has are read from the server's memory (:class:`~..state.State`),
whatever backend serves the zone: a host's A and AAAA at its name, the same at
``*.<host>`` while its wildcard is on, its TXT values at ``_acme-challenge.<host>``
(:mod:`~..hostrecords`); the apex has its SOA (with the serial the server keeps) and
NS records, a nameserver name inside the zone its glue. Any other name has nothing,
and a nameserver name counts as in use even without glue.

A failed prerequisite is a :class:`~.message.Rejected` with the RFC's rcode: NXDOMAIN
(name not in use), YXDOMAIN (name in use), NXRRSET (RRset missing, or not with these
values), YXRRSET (RRset exists).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
from dns.rdtypes.ANY.NS import NS
from dns.rdtypes.ANY.SOA import SOA
from dns.rdtypes.ANY.TXT import TXT
from dns.rdtypes.IN.A import A
from dns.rdtypes.IN.AAAA import AAAA

from ..config import Config, ZoneSettings
from ..hostrecords import ACME_LABEL, WILDCARD_LABEL, derived_host
from ..state import HostEntry, State
from .message import Condition, Prerequisite, Rejected

_IN = dns.rdataclass.IN
RRsets = dict[dns.rdatatype.RdataType, frozenset[dns.rdata.Rdata]]
# dnspython's rdata constructors are untyped; this table gives them a result type.
_RDATA: dict[dns.rdatatype.RdataType, Callable[..., dns.rdata.Rdata]] = {
    dns.rdatatype.A: A,
    dns.rdatatype.AAAA: AAAA,
    dns.rdatatype.NS: NS,
    dns.rdatatype.SOA: SOA,
    dns.rdatatype.TXT: TXT,
}


def rdata(rdtype: dns.rdatatype.RdataType, *fields: object) -> dns.rdata.Rdata:
    return _RDATA[rdtype](_IN, rdtype, *fields)


def txt_rdata(value: str) -> dns.rdata.Rdata:
    """A TXT record of one character-string, as the server serves a stored value."""
    return rdata(dns.rdatatype.TXT, [value.encode()])


def _addresses(v4: Iterable[str], v6: Iterable[str]) -> RRsets:
    found: RRsets = {}
    if a := frozenset(rdata(dns.rdatatype.A, address) for address in v4):
        found[dns.rdatatype.A] = a
    if aaaa := frozenset(rdata(dns.rdatatype.AAAA, address) for address in v6):
        found[dns.rdatatype.AAAA] = aaaa
    return found


class Stored:
    """The records the server stores for the names of one zone."""

    def __init__(self, config: Config, zone: ZoneSettings, state: State) -> None:
        self._config = config
        self._zone = zone
        self._state = state

    def host(self, fqdn: str) -> HostEntry | None:
        """The host named ``fqdn`` in this zone (a name reserved for the zone is none)."""
        host = self._state.hosts.get(fqdn)
        if host is None or fqdn in self._config.reserved:
            return None
        return host

    def rrsets(self, name: str) -> RRsets:
        """Every RRset at ``name``, by type."""
        zone = self._zone
        if name == zone.name:
            return {dns.rdatatype.SOA: frozenset({self._soa()}), dns.rdatatype.NS: self._ns()}
        if name in zone.nameservers:
            glue = zone.nameserver_addresses
            return _addresses(
                (str(a) for a in glue if a.version == 4), (str(a) for a in glue if a.version == 6)
            )
        host = self.host(name)
        if host is not None:
            return _addresses(host.a, host.aaaa)
        derived = derived_host(name)
        host = self.host(derived[1]) if derived is not None else None
        if derived is None or host is None:
            return {}
        if derived[0] == WILDCARD_LABEL:
            return _addresses(host.a, host.aaaa) if host.wildcard else {}
        assert derived[0] == ACME_LABEL
        txt = frozenset(txt_rdata(value) for value in host.txt)
        return {dns.rdatatype.TXT: txt} if txt else {}

    def in_use(self, name: str) -> bool:
        return name in self._config.reserved or bool(self.rrsets(name))

    def _soa(self) -> dns.rdata.Rdata:
        zone = self._zone
        return rdata(
            dns.rdatatype.SOA,
            dns.name.from_text(zone.nameservers[0]),
            dns.name.from_text(zone.soa_rname),
            self._state.zone_serials.get(zone.name, 1) & 0xFFFFFFFF,
            zone.soa_refresh,
            zone.soa_retry,
            zone.soa_expire,
            zone.ttl,
        )

    def _ns(self) -> frozenset[dns.rdata.Rdata]:
        return frozenset(
            rdata(dns.rdatatype.NS, dns.name.from_text(ns)) for ns in self._zone.nameservers
        )


def check(prerequisites: Iterable[Prerequisite], stored: Stored) -> None:
    """Raise :class:`~.message.Rejected` for the first prerequisite that fails."""
    for prerequisite in prerequisites:
        name, rdtype = prerequisite.name, prerequisite.rdtype
        condition = prerequisite.condition
        if condition is Condition.NAME_IN_USE:
            if not stored.in_use(name):
                raise Rejected(dns.rcode.NXDOMAIN, f"prerequisite: {name} is not in use")
        elif condition is Condition.NAME_NOT_IN_USE:
            if stored.in_use(name):
                raise Rejected(dns.rcode.YXDOMAIN, f"prerequisite: {name} is in use")
        elif condition is Condition.RRSET_EXISTS:
            if rdtype not in stored.rrsets(name):
                raise Rejected(dns.rcode.NXRRSET, f"prerequisite: {name} has no {rdtype.name}")
        elif condition is Condition.RRSET_ABSENT:
            if rdtype in stored.rrsets(name):
                raise Rejected(dns.rcode.YXRRSET, f"prerequisite: {name} has {rdtype.name}")
        elif stored.rrsets(name).get(rdtype, frozenset()) != prerequisite.values:
            raise Rejected(dns.rcode.NXRRSET, f"prerequisite: {name} {rdtype.name} is not as given")
