"""Response rate limiting (RRL) of UDP replies, as BIND's ``rate-limit`` does it.

A forged source address turns a DNS server into an amplifier aimed at the address's
owner. RRL counts the replies each source network gets, by what they say: the same
answer (name and type; the names a wildcard answers count as the wildcard, as in
BIND), any NXDOMAIN of one zone, any error. Each such account earns
``rate`` replies a second; one that spends more is in debt (down to ``window`` seconds'
worth) and its replies are dropped, except every ``slip``-th, which is sent truncated
(TC=1, nothing else: no larger than the query) so that a real resolver behind that
address asks again over TCP, which is not limited. A victim gets almost nothing; a real
client loses nothing but a round trip.

Accounts live in one dictionary bounded by ``max_table_size``: the oldest go first.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from dataclasses import dataclass

from ..config import RateLimitSettings
from .wire import ANSWER, ERROR, NODATA, NXDOMAIN

log = logging.getLogger("nicupdate.dns")

SEND, DROP, SLIP = 0, 1, 2


@dataclass(slots=True)
class _Account:
    balance: float
    at: float  # when the balance was last brought up to date
    limited: int = 0  # replies withheld since the account fell into debt


class ResponseRateLimit:
    def __init__(self, settings: RateLimitSettings) -> None:
        self.settings = settings
        self._rates = {kind: settings.rate(kind) for kind in (ANSWER, NODATA, NXDOMAIN, ERROR)}
        self._all = settings.all_per_second
        self.enabled = self._all > 0 or any(self._rates.values())
        self._v4_mask = (0xFFFFFFFF << (32 - settings.ipv4_prefix_length)) & 0xFFFFFFFF
        self._v6_mask = ((1 << 128) - 1) ^ ((1 << (128 - settings.ipv6_prefix_length)) - 1)
        self._exempt = settings.exempt_clients
        self._accounts: dict[tuple[int, str, bytes], _Account] = {}
        self._sources: dict[str, int | None] = {}  # address -> its network (None: exempt)
        # Counted for /metrics: replies dropped and sent truncated.
        self.dropped = 0
        self.slipped = 0

    def _network(self, address: str) -> int | None:
        network = self._sources.get(address, -1)
        if network != -1:
            return network
        if len(self._sources) > self.settings.max_table_size:
            self._sources.clear()
        try:
            if ":" in address:
                value = int.from_bytes(socket.inet_pton(socket.AF_INET6, address), "big")
                network = (value & self._v6_mask) | (1 << 128)  # apart from IPv4 networks
            else:
                network = int.from_bytes(socket.inet_pton(socket.AF_INET, address), "big")
                network &= self._v4_mask
        except OSError:
            network = None
        if network is not None and self._exempt:
            parsed = ipaddress.ip_address(address)
            if any(parsed in exempt for exempt in self._exempt):
                network = None
        self._sources[address] = network
        return network

    def check(self, address: str, kind: str, subject: bytes, now: float) -> int:
        """Whether to send a reply of ``kind`` about ``subject`` to ``address`` now:
        :data:`SEND`, :data:`DROP` or :data:`SLIP` (send it truncated)."""
        network = self._network(address)
        if network is None:
            return SEND
        verdict = SEND
        rate = self._rates[kind]
        if rate:
            verdict = self._spend((network, kind, subject if kind != ERROR else b""), rate, now)
        if self._all and verdict == SEND:
            verdict = self._spend((network, "all", b""), self._all, now)
        if verdict == SEND or self.settings.log_only:
            return SEND
        if verdict == SLIP:
            self.slipped += 1
        else:
            self.dropped += 1
        return verdict

    def _spend(self, key: tuple[int, str, bytes], rate: int, now: float) -> int:
        account = self._accounts.get(key)
        if account is None:
            if len(self._accounts) >= self.settings.max_table_size:
                self._evict(now)
            self._accounts[key] = _Account(rate - 1.0, now)
            return SEND
        balance = min(float(rate), account.balance + (now - account.at) * rate) - 1.0
        account.balance = max(balance, -float(rate * self.settings.window))
        account.at = now
        if balance >= 0:
            account.limited = 0
            return SEND
        account.limited += 1
        slip = self.settings.slip
        if slip and account.limited % slip == 0:
            return SLIP
        return DROP

    def _evict(self, now: float) -> None:
        """Make room: forget accounts that are even again, else the oldest half."""
        window = self.settings.window
        stale = [key for key, account in self._accounts.items() if now - account.at > window]
        for key in stale:
            del self._accounts[key]
        if len(self._accounts) >= self.settings.max_table_size:
            for key in list(self._accounts)[: len(self._accounts) // 2]:
                del self._accounts[key]


def truncated(wire: bytes) -> bytes:
    """The slipped reply to the query ``wire``: header and question, TC set, no records."""
    end = 12
    while wire[end]:
        end += 1 + wire[end]
    end += 5
    flags = 0x8200 | ((wire[2] << 8 | wire[3]) & 0x0110)
    return wire[:2] + flags.to_bytes(2, "big") + b"\x00\x01\x00\x00\x00\x00\x00\x00" + wire[12:end]
