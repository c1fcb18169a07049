"""Finding the public address: ask several sources, believe it only when a quorum agrees.

Sources are asked in waves, each wave in parallel. The first wave is the first
``quorum`` sources in configuration order; while no address has a quorum, the next
wave adds as many sources as the leading address still lacks votes (at least one).
So with all sources honest, exactly ``quorum`` are asked; a liar costs one more.

An HTTP source that answers 403 or 429 is put on cooldown (its ``Retry-After``, else an
hour, at most a day) in the ``cooldowns`` mapping the caller keeps between runs; a
source on cooldown is not asked. HTTP look-ups bypass proxies (``trust_env=False``):
a proxy or VPN would answer with its own address.
"""

from __future__ import annotations

import asyncio
import shlex
import sys
import time
from collections import Counter
from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import dataclass
from functools import partial

import httpx

from .addresses import MAX_REPLY, AddressProblem, check_public, parse_reply
from .config import ClientConfig, FamilyConfig
from .interfaces import interface_address
from .retry_after import retry_after
from .runner import CommandResult, Runner, run_command

DEFAULT_COOLDOWN = 3600.0  # after a 403/429 without Retry-After
_COOLING = "cooling down until "


@dataclass(frozen=True)
class Answer:
    """What one source said: an address, or the problem that kept it from counting."""

    source: str  # for display: the URL, "interface eth0", "command ..."
    address: str | None
    problem: str | None
    # The failure means "no network (yet)": refused, unreachable, DNS failure, timeout.
    network_down: bool = False

    @property
    def asked(self) -> bool:
        return self.problem is None or not self.problem.startswith(_COOLING)

    def describe(self) -> str:
        if self.address is not None:
            return f"{self.source} said {self.address}"
        if not self.asked:
            return f"{self.source} is {self.problem}"
        return f"{self.source} failed: {self.problem}"


@dataclass(frozen=True)
class Verdict:
    """The address of one family that a quorum of sources agreed on, or None."""

    family: int
    address: str | None
    answers: tuple[Answer, ...]
    quorum: int = 1

    @property
    def reason(self) -> str:
        if self.address is None:
            said = ", ".join(a.describe() for a in self.answers) or "no sources"
            return f"no quorum ({self.quorum} needed): {said}"
        votes = sum(a.address == self.address for a in self.answers)
        asked = sum(a.asked for a in self.answers)
        others = [a.describe() for a in self.answers if a.address != self.address]
        tail = f" ({', '.join(others)})" if others else ""
        return f"{self.address}: {votes} of {asked} sources agree{tail}"

    @property
    def network_down(self) -> bool:
        """No address, and every source asked failed the way an absent network fails."""
        asked = [a for a in self.answers if a.asked]
        return (
            bool(asked)
            and all(a.address is None for a in self.answers)
            and all(a.network_down for a in asked)
        )


async def detect(
    family: FamilyConfig,
    *,
    myip_url: str,
    cooldowns: MutableMapping[str, float],
    timeout: float,
    user_agent: str,
    runner: Runner = run_command,
    now: Callable[[], float] = time.time,
    ask_all: bool = False,
) -> Verdict:
    """Ask ``family.sources`` in waves until a quorum agrees on one address.

    ``ask_all`` asks every source at once (``nicupdate-client detect`` shows them all).
    """
    answers: dict[int, Answer] = {}
    waiting: list[int] = []
    started = now()
    for index, source in enumerate(family.sources):
        until = cooldowns.get(source)
        if until is not None and until > started:
            display = _display(source, myip_url)
            answers[index] = Answer(display, None, _COOLING + _clock(until))
            continue
        if until is not None:
            del cooldowns[source]  # expired
        waiting.append(index)

    asker = _Asker(family, myip_url, cooldowns, timeout, user_agent, runner, now)
    async with asker:
        wave_size = len(waiting) if ask_all else family.quorum
        while waiting:
            wave, waiting = waiting[:wave_size], waiting[wave_size:]
            said = await asyncio.gather(*(asker.ask(family.sources[i]) for i in wave))
            answers.update(zip(wave, said, strict=True))
            votes = Counter(a.address for a in answers.values() if a.address is not None)
            if _winner(votes, family.quorum) is not None:
                break
            best = max(votes.values(), default=0)
            wave_size = max(1, family.quorum - best)

    votes = Counter(a.address for a in answers.values() if a.address is not None)
    return Verdict(
        family=family.family,
        address=_winner(votes, family.quorum),
        answers=tuple(answers[i] for i in sorted(answers)),
        quorum=family.quorum,
    )


async def detect_all(
    config: ClientConfig,
    *,
    cooldowns: MutableMapping[str, float],
    user_agent: str,
    runner: Runner = run_command,
    now: Callable[[], float] = time.time,
    ask_all: bool = False,
) -> dict[int, Verdict]:
    """The verdicts of all enabled families, found concurrently; keyed by 4 and 6."""
    families = config.families()
    verdicts = await asyncio.gather(
        *(
            detect(
                family,
                myip_url=config.myip_url,
                cooldowns=cooldowns,
                timeout=config.timeout,
                user_agent=user_agent,
                runner=runner,
                now=now,
                ask_all=ask_all,
            )
            for family in families
        )
    )
    return {family.family: verdict for family, verdict in zip(families, verdicts, strict=True)}


def _winner(votes: Counter[str], quorum: int) -> str | None:
    ranked = votes.most_common(2)
    if not ranked or ranked[0][1] < quorum:
        return None
    if len(ranked) > 1 and ranked[1][1] == ranked[0][1]:
        return None  # two addresses tie: ask on
    return ranked[0][0]


def _display(source: str, myip_url: str) -> str:
    if source == "server":
        return myip_url
    kind, _, rest = source.partition(":")
    if kind in ("interface", "command"):
        return f"{kind} {rest.strip()}"
    return source


def _clock(until: float) -> str:
    return time.strftime("%H:%M", time.localtime(until))


class _Asker:
    """Asks single sources of one family; holds the HTTP client bound to the family."""

    def __init__(
        self,
        family: FamilyConfig,
        myip_url: str,
        cooldowns: MutableMapping[str, float],
        timeout: float,
        user_agent: str,
        runner: Runner,
        now: Callable[[], float],
    ) -> None:
        self.family = family
        self.myip_url = myip_url
        self.cooldowns = cooldowns
        self.timeout = timeout
        self.runner = runner
        self.now = now
        # Binding the local end to the family makes a dual-stack service (our /myip)
        # answer with the address of that family.
        local = "0.0.0.0" if family.family == 4 else "::"
        self.client = httpx.AsyncClient(
            transport=httpx.AsyncHTTPTransport(local_address=local),
            trust_env=False,
            follow_redirects=True,
            headers={"User-Agent": user_agent},
            timeout=timeout,
        )

    async def __aenter__(self) -> _Asker:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.aclose()

    async def ask(self, source: str) -> Answer:
        display = _display(source, self.myip_url)
        try:
            if source.startswith("interface:"):
                address = await asyncio.to_thread(
                    interface_address,
                    source.removeprefix("interface:").strip(),
                    self.family.family,
                    runner=self.runner,
                    accept_private=self.family.accept_private,
                )
                return Answer(display, address, None)
            if source.startswith("command:"):
                text = await self._command(source.removeprefix("command:").strip())
            else:
                url = self.myip_url if source == "server" else source
                text = await self._http(source, url)
            address = parse_reply(text, self.family.family)
            check_public(address, self.family.family, self.family.accept_private)
        except AddressProblem as problem:
            return Answer(display, None, str(problem))
        except _NetworkDown as down:
            return Answer(display, None, str(down), network_down=True)
        except OSError as exc:  # a runner that could not start the program
            return Answer(display, None, _said(exc))
        return Answer(display, address, None)

    async def _http(self, source: str, url: str) -> str:
        try:
            async with self.client.stream("GET", url) as response:
                if response.status_code in (403, 429):
                    now = self.now()
                    wait = retry_after(response.headers.get("Retry-After"), now)
                    until = now + (DEFAULT_COOLDOWN if wait is None else wait)
                    self.cooldowns[source] = until
                    raise AddressProblem(
                        f"HTTP {response.status_code}, not asked again until {_clock(until)}"
                    )
                if not response.is_success:
                    raise AddressProblem(f"HTTP {response.status_code}")
                body = b""
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_REPLY:
                        break
        except httpx.TimeoutException:
            raise _NetworkDown(f"no answer within {self.timeout:g} s") from None
        except httpx.ConnectError as exc:
            raise _NetworkDown(f"cannot connect: {_connect_failure(exc)}") from None
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise AddressProblem(_said(exc)) from None
        return body.decode(response.encoding or "utf-8", errors="replace")

    async def _command(self, command: str) -> str:
        try:
            args = _split(command)
        except ValueError as exc:
            raise AddressProblem(f"cannot split the command: {exc}") from None
        if not args:
            raise AddressProblem("empty command")
        run: Callable[[Sequence[str]], CommandResult] = self.runner
        if run is run_command:
            run = partial(run_command, timeout=self.timeout)
        result = await asyncio.to_thread(run, args)
        if not result.ok:
            said = [line.strip() for line in result.stderr.splitlines() if line.strip()]
            detail = f": {said[-1]}" if said else ""
            raise AddressProblem(f"exit status {result.returncode}{detail}")
        return result.stdout


class _NetworkDown(Exception):
    pass


def _said(exc: Exception) -> str:
    return str(exc) or type(exc).__name__


def _connect_failure(exc: httpx.ConnectError) -> str:
    # httpx says "All connection attempts failed"; the socket error underneath says why.
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, OSError) and cause.errno is not None and cause.strerror:
            return cause.strerror.lower() if cause.errno > 0 else str(cause)
        cause = cause.__cause__ or cause.__context__
    return _said(exc)


def _split(command: str) -> list[str]:
    if sys.platform != "win32":
        return shlex.split(command)
    # Windows: keep backslashes in paths; drop the quotes around a token, because
    # subprocess quotes the arguments again for CreateProcess.
    return [
        token[1:-1] if len(token) > 1 and token[0] == token[-1] == '"' else token
        for token in shlex.split(command, posix=False)
    ]
