"""One client run: find the addresses, send what changed, act on the server's answers.

Exit status of a run (also the process's): 0 an update was sent and accepted,
1 nothing to do, 2 a usage or configuration error, 3 a temporary failure (it will be
retried, with back-off, never sooner than the server's ``Retry-After``), 4 a permanent
refusal (updates for that host stop until the configuration or the secret changes, or
``nicupdate-client resume``).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from datetime import datetime

import httpx

from . import __version__
from .answers import Answer, Kind, split_answers
from .config import ClientConfig
from .credentials import Secret
from .detect import Verdict, detect_all
from .retry_after import retry_after
from .state import HostState, Refusal, Sent, State

log = logging.getLogger("nicupdate_client")

OK, NOTHING, USAGE, TEMPORARY, PERMANENT = 0, 1, 2, 3, 4
USER_AGENT = f"nicupdate-client/{__version__}"
DAY = 86400.0

Detector = Callable[..., Awaitable[dict[int, Verdict]]]


def when(timestamp: float | None) -> str:
    if timestamp is None:
        return "never"
    return datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M:%S")


def family_name(family: int | str) -> str:
    return f"IPv{family}"


def server_wait(host: HostState) -> str:
    """What the server's ``Retry-After`` asked of ``host``, for the log and ``status``."""
    if host.asked_until is None:
        return ""
    return f"the server asked to wait until {when(host.asked_until)}"


@dataclass
class RunReport:
    """What one run did, for the exit status and the one-line summary."""

    sent: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    temporary: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        if self.refused:
            return PERMANENT
        if self.temporary:
            return TEMPORARY
        return OK if self.sent else NOTHING

    @property
    def summary(self) -> str:
        parts = []
        if self.sent:
            parts.append("updated " + ", ".join(self.sent))
        if self.refused:
            parts.append("refused " + ", ".join(self.refused))
        if self.temporary:
            parts.append("will retry: " + "; ".join(self.temporary))
        return "; ".join(parts) or "nothing to do: the addresses have not changed"


class Updater:
    def __init__(
        self,
        config: ClientConfig,
        secret: Secret,
        *,
        detector: Detector = detect_all,
        now: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.config = config
        self.secret = secret
        self.detector = detector
        self.now = now
        self.sleep = sleep
        self.jitter = jitter

    async def run_once(self, state: State) -> RunReport:
        report = RunReport()
        free = [name for name in self.config.hostnames if not self._held(name, state, report)]
        addresses: dict[int, str] = {}
        if free:  # no source is asked while every host is refused or backing off
            verdicts = await self.addresses(state.cooldowns)
            for family, verdict in sorted(verdicts.items()):
                if verdict.address is None:
                    log.warning(
                        "%s: %s; not sending IPv%s", family_name(family), verdict.reason, family
                    )
                    report.temporary.append(f"no {family_name(family)} address")
                else:
                    log.info("%s: %s", family_name(family), verdict.reason)
                    addresses[family] = verdict.address
        due = [name for name in free if self._changed(name, state.host(name), addresses)]
        if due and addresses:
            await self._send(due, addresses, state, report)
        state.last_run = self.now()
        state.last_result = report.summary
        log.info("%s", report.summary)
        return report

    async def addresses(self, cooldowns: MutableMapping[str, float]) -> dict[int, Verdict]:
        """Ask the sources; right after boot there may be no network yet: wait for it."""
        deadline = self.now() + self.config.network_wait
        pause = 2.0
        while True:
            verdicts = await self.detector(
                self.config, cooldowns=cooldowns, user_agent=USER_AGENT, now=self.now
            )
            waiting = verdicts and all(v.network_down for v in verdicts.values())
            left = deadline - self.now()
            if not waiting or left <= 0:
                return verdicts
            log.info(
                "no network yet (no source reachable); trying again in %.0f s", min(pause, left)
            )
            await self.sleep(min(pause, left))
            pause = min(pause * 2, 30.0)

    def _held(self, name: str, state: State, report: RunReport) -> bool:
        """True while ``name`` is refused (same configuration) or backing off."""
        host = state.host(name)
        if host.refused is not None:
            if host.refused.fingerprint == self.config.fingerprint(name):
                log.error(
                    "%s: not updating: the server answered %s on %s: %s",
                    name,
                    host.refused.code,
                    when(host.refused.at),
                    host.refused.reason,
                )
                report.refused.append(f"{name} ({host.refused.code})")
                return True
            log.info(
                "%s: the configuration changed since the server refused it: trying again", name
            )
            host.refused = None
        if host.retry_at is not None and host.retry_at > self.now():
            asked = server_wait(host)
            log.info(
                "%s: waiting after %d failed attempt(s)%s; next try at %s",
                name,
                host.failures,
                f" ({asked})" if asked else "",
                when(host.retry_at),
            )
            report.temporary.append(f"{name} waiting until {when(host.retry_at)}")
            return True
        return False

    def _changed(self, name: str, host: HostState, addresses: Mapping[int, str]) -> bool:
        """True when an address differs from what the server accepted, or is due a refresh."""
        now = self.now()
        reasons = []
        for family, address in sorted(addresses.items()):
            sent = host.sent.get(str(family))
            if sent is None:
                reasons.append(f"{address} (first update)")
            elif sent.address != address:
                reasons.append(f"{address} (was {sent.address})")
            elif now - sent.at >= self.config.refresh_days * DAY:
                reasons.append(f"{address} (unchanged since {when(sent.at)}: refreshing)")
        if not reasons:
            return False
        log.info("%s: sending %s", name, ", ".join(reasons))
        return True

    async def _send(
        self, names: list[str], addresses: Mapping[int, str], state: State, report: RunReport
    ) -> None:
        params = {"hostname": ",".join(names), "myip": ",".join(addresses.values())}
        try:
            async with httpx.AsyncClient(timeout=self.config.timeout) as client:
                response = await client.get(
                    self.config.update_url,
                    params=params,
                    auth=(self.config.username, self.secret.value),
                    headers={"User-Agent": USER_AGENT},
                )
        except httpx.HTTPError as exc:
            problem = f"cannot reach {self.config.server}: {type(exc).__name__}: {exc}"
            answers = [Answer("network", problem, Kind.TEMPORARY, problem)] * len(names)
            now = self.now()
        else:
            now = self.now()
            wait = retry_after(response.headers.get("Retry-After"), now)
            answers = split_answers(response.status_code, response.text, len(names), wait=wait)
        for name, answer in zip(names, answers, strict=True):
            self._act(name, state.host(name), answer, addresses, now, report)

    def _act(
        self,
        name: str,
        host: HostState,
        answer: Answer,
        addresses: Mapping[int, str],
        now: float,
        report: RunReport,
    ) -> None:
        host.last_answer = answer.line
        host.last_attempt = now
        if answer.kind is Kind.ACCEPTED:
            for family, address in addresses.items():
                host.sent[str(family)] = Sent(address, now)
            host.failures, host.retry_at, host.asked_until = 0, None, None
            log.info("%s: the server answered %s", name, answer.line)
            report.sent.append(f"{name} ({answer.line})")
        elif answer.kind is Kind.PERMANENT:
            hint = answer.hint_for(name)
            host.refused = Refusal(answer.code, hint, self.config.fingerprint(name), now)
            host.failures, host.retry_at, host.asked_until = 0, None, None
            log.error(
                "%s: the server answered %s: %s. Updates for this host are stopped until "
                "the configuration or the secret changes, or until 'nicupdate-client resume'.",
                name,
                answer.code,
                hint,
            )
            report.refused.append(f"{name} ({answer.code})")
        else:
            # Never sooner than the server asked; later if our own back-off is longer.
            host.failures += 1
            host.asked_until = None if answer.wait is None else now + answer.wait
            host.retry_at = now + max(self.backoff(host.failures), answer.wait or 0.0)
            asked = server_wait(host)
            log.warning(
                "%s: %s (%s)%s; attempt %d failed, next try at %s",
                name,
                answer.line,
                answer.hint,
                f"; {asked}" if asked else "",
                host.failures,
                when(host.retry_at),
            )
            report.temporary.append(f"{name} ({answer.code})")

    def backoff(self, failures: int) -> float:
        """Exponential, capped, with jitter: between half and all of the step."""
        step = min(self.config.backoff_max, self.config.backoff_initial * 2.0 ** (failures - 1))
        return step * (0.5 + 0.5 * self.jitter())


def next_due(config: ClientConfig, state: State, now: float) -> float:
    """When the foreground loop runs next: after ``interval``, or sooner for a retry."""
    due = now + config.interval
    retries = [h.retry_at for h in state.hosts.values() if h.retry_at and h.retry_at > now]
    return min([due, *retries], default=due)
