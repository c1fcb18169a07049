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
        groups: dict[tuple[tuple[str, tuple[str, ...]], ...], list[str]] = {}
        for fqdn, wanted in _by_host(change.changes).items():
            if all(self._sent.get(fqdn, {}).get(t) == a for t, a in wanted.items()):
                continue  # the service has these already
            groups.setdefault(tuple(sorted(wanted.items())), []).append(fqdn)
        for key, hosts in groups.items():
            wanted = dict(key)
            for start in range(0, len(hosts), MAX_HOSTS):
                await self._update(hosts[start : start + MAX_HOSTS], wanted, change.zone)

    async def _update(self, hosts: list[str], wanted: Wanted, zone: ZoneSettings) -> None:
        addresses = [a for rtype in ("A", "AAAA") for a in wanted.get(rtype, ())]
        params: dict[str, str] = {"hostname": ",".join(hosts)}
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
        self._read_answers(response.text, hosts, wanted)

    def _read_answers(self, text: str, hosts: list[str], wanted: Wanted) -> None:
        lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
        if len(lines) == 1 and len(hosts) > 1:
            lines *= len(hosts)  # one answer for the whole request
        refused: list[str] = []
        for host, line in zip(hosts, lines, strict=False):
            code = line.split()[0] if line else ""
            if code in ("good", "nochg"):
                self._sent[host] = {**self._sent.get(host, {}), **wanted}
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


def _by_host(changes: Sequence[RecordChange]) -> dict[str, Wanted]:
    hosts: dict[str, Wanted] = {}
    for change in changes:
        hosts.setdefault(change.fqdn, {})[change.rtype] = tuple(change.addresses)
    return hosts
