"""Backend ``dyndns2``: relay changes to another dyndns2 service (Dyn, No-IP, dynv6, a
second nicupdate...), so that the routers of a house update through one server that
holds the one account. ::

    [backends.upstream]
    type = "dyndns2"
    base_url = "https://members.dyndns.org"   # the service; /nic/update is appended
    username = "me"
    password_file = "/etc/nicupdate/upstream.password"  # or password_env = "VARIABLE"
    timeout = 10.0

A host keeps its name upstream. Hosts whose new addresses are the same go out in one
request (``hostname=a,b``, up to 20), both families in one ``myip``. What the service
accepted is remembered, so the same addresses are not sent twice. ``offline`` (both
families removed) is sent as ``offline=YES``. dyndns2 cannot remove one family alone:
that change is logged and left to the service.

dyndns2 takes no record names besides the host's. A host's wildcard (the owner
``*.<fqdn>``) is the protocol's ``wildcard`` parameter on the host's own update:
``wildcard=ON`` when the wildcard gets addresses (they are the host's), ``wildcard=OFF``
when it loses them; a change of the host and of its wildcard in one apply is one
request. Switching it off alone sends the host's addresses the service accepted last
(an update without ``myip`` would take this server's address); before any, it is
refused. TXT records (ACME challenges) cannot be relayed: a change that sets them is
refused with a :class:`PermanentBackendError` saying so.

Answers: ``good`` and ``nochg`` succeed. ``badauth``, ``notfqdn``, ``nohost``,
``numhost``, ``abuse``, ``badagent`` and ``!donator`` are permanent: they are not retried
until the host changes again. ``dnserr`` and ``911`` mean "back off": they are retried
after at least 30 minutes, as the protocol asks.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from ..config import ZoneSettings
from ..hostrecords import WILDCARD_LABEL, derived_host
from .base import RecordChange, TransientBackendError, ZoneChange
from .relay import HttpRelay
from .settings import TableReader

log = logging.getLogger("nicupdate.backend")

KNOWN_KEYS = frozenset(
    {"type", "base_url", "username", "password_file", "password_env", "timeout", "path"}
)
MAX_HOSTS = 20  # hostnames per request: what dyndns2 services accept
BACK_OFF = 1800.0  # seconds after dnserr or 911, as the protocol asks
REFUSALS = {
    "badauth": "the service refused the user name or password: check username and password_file",
    "notfqdn": "the service says the host name is not a valid name",
    "nohost": "the service has no such host in this account: create it there first",
    "numhost": "the service refused the number of hosts in one request",
    "abuse": "the service blocked the host for abuse: see its web site",
    "badagent": "the service refused nicupdate's user agent or request",
    "!donator": "the service wants a paid account for this",
}

Wanted = dict[str, tuple[str, ...]]  # "A"/"AAAA" -> addresses, only the families changed


class Dyndns2Backend(HttpRelay):
    kind = "dyndns2"
    max_batch = 200

    def __init__(
        self,
        name: str,
        *,
        base_url: str,
        username: str,
        password: str,
        timeout: float = 10.0,
        path: str = "/nic/update",
    ) -> None:
        super().__init__(name, base_url=base_url, timeout=timeout)
        self.username = username
        self.path = path
        self.auth = httpx.BasicAuth(username, password)
        self._sent: dict[str, Wanted] = {}  # what the service accepted, per host
        self._wildcard: dict[str, Wanted] = {}  # what the service's wildcard of a host holds

    @classmethod
    def from_table(cls, name: str, table: Mapping[str, Any]) -> Dyndns2Backend:
        reader = TableReader(name, table)
        reader.check_keys(KNOWN_KEYS, "dyndns2")
        base_url = reader.required(
            "base_url", "the service's address, e.g. https://members.dyndns.org"
        )
        return cls(
            name,
            base_url=reader.url("base_url", base_url),
            username=reader.required("username", "the account's user name at the service"),
            password=reader.secret("password", "account's password"),
            timeout=reader.number("timeout", 10.0, 0.1, 300),
            path=reader.string("path") or "/nic/update",
        )

    async def apply(self, change: ZoneChange) -> None:
        txt = sorted({c.fqdn for c in change.changes if c.rtype == "TXT" and c.addresses})
        if txt:  # removing what it cannot hold is done already
            raise self.permanent(
                f"{', '.join(txt)}: dyndns2 relays cannot hold TXT records (ACME challenges)",
                "use a backend that holds TXT records for the zone of hosts that get "
                "certificates by DNS-01, see docs/providers.md",
            )
        groups: dict[tuple[tuple[tuple[str, tuple[str, ...]], ...], str | None], list[str]] = {}
        for host, (own, star) in _by_host(change.changes).items():
            wanted, wildcard = self._request_for(host, own, star)
            if all(self._sent.get(host, {}).get(t) == a for t, a in wanted.items()) and (
                wildcard is None
                or (host in self._wildcard and _switch(self._wildcard[host]) == wildcard)
            ):
                continue  # the service has these already
            groups.setdefault((tuple(sorted(wanted.items())), wildcard), []).append(host)
        for (key, wildcard), hosts in groups.items():
            wanted = dict(key)
            for start in range(0, len(hosts), MAX_HOSTS):
                await self._update(hosts[start : start + MAX_HOSTS], wanted, wildcard, change.zone)

    def _request_for(self, host: str, own: Wanted, star: Wanted) -> tuple[Wanted, str | None]:
        """What to send for ``host``: the addresses and ``wildcard`` ON, OFF or None
        (unchanged). The addresses are its own changes; for a change of its wildcard
        alone, the addresses it has. The service's wildcard follows the host's addresses:
        it is on while the wildcard owner ``*.<host>`` has any address."""
        known = {t: a for t, a in self._sent.get(host, {}).items() if a}
        wildcard = None
        wanted = own
        if star:
            wildcard = _switch({**self._wildcard.get(host, {}), **star})
            if own or wildcard == "ON":  # the wildcard's addresses are the host's
                wanted = {**{t: a for t, a in star.items() if a}, **own}
            elif known:
                wanted = known
            else:  # an update without myip would take the address of this server
                raise self.permanent(
                    f"{host}: cannot switch its wildcard off at the service before nicupdate "
                    "has sent the host's addresses there (a dyndns2 update needs them)",
                    "the host's next address update switches it off",
                )
        if not any(wanted.values()):  # offline=YES only when no family is left
            others = {t: a for t, a in known.items() if t not in wanted}
            wanted = {**others, **wanted}
        return wanted, wildcard

    async def _update(
        self, hosts: list[str], wanted: Wanted, wildcard: str | None, zone: ZoneSettings
    ) -> None:
        addresses = [a for rtype in ("A", "AAAA") for a in wanted.get(rtype, ())]
        params: dict[str, str] = {"hostname": ",".join(hosts)}
        if wildcard is not None:
            params["wildcard"] = wildcard
        if addresses:
            params["myip"] = ",".join(addresses)
            for rtype in (t for t, a in wanted.items() if not a):
                log.warning(
                    "%s: dyndns2 cannot remove only the %s records of %s; left to the service",
                    self.label,
                    rtype,
                    ", ".join(hosts),
                )
        else:
            params["offline"] = "YES"
        response = await self.call("GET", self.path, params=params)
        if response.status_code == 401:
            raise self.permanent("badauth", REFUSALS["badauth"], every_name=True)
        if response.status_code == 429 or response.status_code >= 500:
            raise self.transient(response, "the service is busy or failing")
        if response.status_code != 200:
            raise self.permanent(
                f"HTTP {response.status_code} from {self.path}",
                "check base_url: it should be the service's address, without /nic/update",
            )
        self._read_answers(response.text, hosts, wanted, wildcard)

    def _read_answers(
        self, text: str, hosts: list[str], wanted: Wanted, wildcard: str | None
    ) -> None:
        lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
        if len(lines) == 1 and len(hosts) > 1:
            lines *= len(hosts)  # one answer for the whole request
        refused: list[str] = []
        for host, line in zip(hosts, lines, strict=False):
            code = line.split()[0] if line else ""
            if code in ("good", "nochg"):
                self._sent[host] = {**self._sent.get(host, {}), **wanted}
                if wildcard is not None:  # it answers with the host's addresses, or none
                    on = wildcard == "ON"
                    self._wildcard[host] = {t: a if on else () for t, a in self._sent[host].items()}
            elif code in ("dnserr", "911"):
                raise TransientBackendError(
                    f"{self.label} answered {code} for {host}: it asks to wait",
                    retry_after=BACK_OFF,
                )
            elif code in REFUSALS:
                refused.append(f"{host}: {code} ({REFUSALS[code]})")
            else:
                refused.append(f"{host}: unexpected answer {line[:40]!r}")
        if len(lines) < len(hosts):
            refused.append(f"no answer for {', '.join(hosts[len(lines) :])}")
        if refused:
            raise self.permanent("; ".join(refused), "fix it at the service or in nicupdate")


def _switch(wildcard: Wanted) -> str:
    """The ``wildcard`` parameter for a wildcard that holds these addresses."""
    return "ON" if any(wildcard.values()) else "OFF"


def _by_host(changes: Sequence[RecordChange]) -> dict[str, tuple[Wanted, Wanted]]:
    """Per host: the changes of its own addresses, and of its wildcard's (TXT left out)."""
    hosts: dict[str, tuple[Wanted, Wanted]] = {}
    for change in changes:
        if change.rtype == "TXT":
            continue
        derived = derived_host(change.fqdn)
        if derived is not None and derived[0] == WILDCARD_LABEL:
            hosts.setdefault(derived[1], ({}, {}))[1][change.rtype] = tuple(change.addresses)
        else:
            hosts.setdefault(change.fqdn, ({}, {}))[0][change.rtype] = tuple(change.addresses)
    return hosts
