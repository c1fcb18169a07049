"""A dyndns2 service as the big ones behave: Basic auth, per-host answer lines,
``offline=YES`` and ``wildcard=ON|OFF|NOCHG``; it keeps each host's A and AAAA records,
and whether its wildcard (``*.<host>``, which answers with the host's addresses) is on.
It has no record names besides its hosts', and no TXT records."""

from __future__ import annotations

import base64
import ipaddress
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from tests.server.fakes import FakeProvider

WILDCARD = {"ON": True, "OFF": False}  # and NOCHG (or none): left as it is


@dataclass
class FakeDyndns2(FakeProvider):
    username: str = "relay-user"
    password: str = "relay-password-123"
    hosts: set[str] = field(default_factory=set)
    records: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    wildcards: set[str] = field(default_factory=set)  # hosts whose wildcard is on
    agents: list[str] = field(default_factory=list)

    def served(self, name: str, rtype: str) -> list[str]:
        """What the service's DNS holds at ``name``: a host's records, or at ``*.<host>``
        the host's records while its wildcard is on."""
        label, _, host = name.partition(".")
        if label == "*" and host in self.hosts:
            return sorted(self.records.get((host, rtype), [])) if host in self.wildcards else []
        return sorted(self.records.get((name, rtype), []))

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/nic/update", self.update, methods=["GET"])])

    async def update(self, request: Request) -> Response:
        await self.record(request)
        self.agents.append(request.headers.get("user-agent", ""))
        failure = self.take_failure()
        if failure == "throttle":
            return PlainTextResponse("", status_code=429, headers={"Retry-After": "1"})
        if failure == "server":
            return PlainTextResponse("911\n")
        if failure == "credentials" or not self._authorized(request):
            return PlainTextResponse(
                "badauth\n", status_code=401, headers={"WWW-Authenticate": 'Basic realm="fake"'}
            )
        names = [n for n in request.query_params.get("hostname", "").split(",") if n]
        if not names:
            return PlainTextResponse("notfqdn\n")
        wildcard = request.query_params.get("wildcard", "NOCHG").upper()
        if wildcard not in (*WILDCARD, "NOCHG"):
            return self.not_expected(request, f"wildcard={wildcard}")
        with self.lock:
            self.writes += 1
        return PlainTextResponse("".join(self._one(name, request) + "\n" for name in names))

    def _authorized(self, request: Request) -> bool:
        expected = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        return request.headers.get("authorization", "") == f"Basic {expected}"

    def _one(self, name: str, request: Request) -> str:
        if name not in self.hosts:
            return "nohost"
        switched = self._wildcard(name, request.query_params.get("wildcard", "NOCHG").upper())
        if request.query_params.get("offline", "").upper() == "YES":
            gone = [self.records.pop((name, t), None) for t in ("A", "AAAA")]
            return "good" if any(gone) or switched else "nochg"
        sent = [a for a in request.query_params.get("myip", "").split(",") if a]
        wanted: dict[str, list[str]] = {}
        for text in sent:
            try:
                address = ipaddress.ip_address(text)
            except ValueError:
                return "dnserr"
            wanted.setdefault("A" if address.version == 4 else "AAAA", []).append(str(address))
        if not wanted:
            return "dnserr"
        changed = any(self.records.get((name, t)) != sorted(a) for t, a in wanted.items())
        for rtype, addresses in wanted.items():
            self.records[(name, rtype)] = sorted(addresses)
        return f"{'good' if changed or switched else 'nochg'} {','.join(sent)}"

    def _wildcard(self, name: str, value: str) -> bool:
        """Switch the host's wildcard as ``value`` asks; whether it changed."""
        if value not in WILDCARD or WILDCARD[value] == (name in self.wildcards):
            return False
        if WILDCARD[value]:
            self.wildcards.add(name)
        else:
            self.wildcards.discard(name)
        return True
