"""The update use case: from a parsed request and its caller to the answer lines.

Order of checks: agent, credentials (HTTP 429 while the source is locked out for
guessing), per host name and ownership, the hosts' update rates (HTTP 429 when one is
exhausted), then per host: blocked for abuse, address, change. A host the caller may
not update answers ``nohost`` whether or not it exists; so does a name that cannot be
a host (a zone apex, a nameserver). An unchanged host whose records DNS has confirmed
answers ``nochg`` from memory, with no database or backend call. A change is committed by the
:class:`~.store.Writer` (durable from then on) and answers ``good`` once every
backend of its zone confirmed it, ``dnserr`` when one refused it, and ``911`` when
DNS is unavailable or slow: it is applied later without the client doing anything.
Each answer about a host is handed to the :class:`~.history.Recorder`: counted
(``nochg``) or written to the update history as sent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping

from .addresses import IPAddress, UnusableAddress, check_usable, in_prefix
from .auth import Authenticator, LoginThrottled, Principal
from .config import Config, ZoneSettings
from .dyndns import (
    SUCCESS_CODES,
    Code,
    Credentials,
    RequestRejected,
    UpdateRequest,
    answer_line,
    families_of,
)
from .history import Recorder
from .hostrecords import MAX_TXT, valid_txt
from .logsummary import LogSummary
from .names import InvalidName, normalize_fqdn
from .ratelimit import HostLimits
from .reconciler import Reconciler
from .state import HostEntry, State
from .store import HostUpdate, Outcome, Writer, block_host
from .throttle import source_of

log = logging.getLogger("nicupdate.update")

OFFLINE: Mapping[str, tuple[str, ...]] = {"A": (), "AAAA": ()}
DEFAULT_PREFIX_LENGTH = 64


def _never() -> bool:
    return False


class Caller:
    """Who sent the request. The address is worked out only when it is needed.

    ``gone()`` tells whether the client has closed its side of the connection."""

    __slots__ = ("_address", "_find_address", "gone", "user_agent")

    def __init__(
        self,
        find_address: Callable[[], IPAddress | None],
        user_agent: str,
        gone: Callable[[], bool] = _never,
    ) -> None:
        self._find_address: Callable[[], IPAddress | None] | None = find_address
        self._address: IPAddress | None = None
        self.user_agent = user_agent
        self.gone = gone

    @property
    def address(self) -> IPAddress | None:
        if self._find_address is not None:
            self._address = self._find_address()
            self._find_address = None
        return self._address


class Unauthorized(RequestRejected):
    """No or wrong credentials: HTTP 401 with a Basic challenge."""

    def __init__(self, reason: str) -> None:
        super().__init__(Code.BADAUTH, reason)


class TooManyRequests(RequestRejected):
    """HTTP 429 with ``Retry-After``; the body is ``911`` (try again later)."""

    def __init__(self, retry_after: float, reason: str) -> None:
        super().__init__(Code.SERVER_ERROR, reason)
        self.retry_after = retry_after


class UpdateService:
    def __init__(
        self,
        config: Config,
        state: State,
        authenticator: Authenticator,
        writer: Writer,
        reconciler: Reconciler,
        *,
        recorder: Recorder,
        summary: LogSummary | None = None,
    ) -> None:
        self._config = config
        self._state = state
        self._authenticator = authenticator
        self._writer = writer
        self._reconciler = reconciler
        self._recorder = recorder  # the update history, and what `host list` shows
        self.host_limits = HostLimits(config.limits)
        self._summary = summary or LogSummary(log, config.limits.log_interval)
        self._background: set[asyncio.Future[object]] = set()
        # True while the change log cannot be read (feed.py): `nochg` is not answered.
        self.stale: Callable[[], bool] = _never
        self.configure(config)

    def configure(self, config: Config) -> None:
        """A new configuration (a reload): zones, deadlines, blocked agents, limits."""
        self._config = config
        self._deadline = config.server.apply_deadline
        self._blocked_agents = tuple(a.lower() for a in config.server.blocked_agents)
        self.host_limits.configure(config.limits)

    async def handle(
        self, request: UpdateRequest, credentials: Credentials | None, caller: Caller
    ) -> list[str]:
        """The answer lines, one per hostname. Raises :class:`RequestRejected`."""
        agent = caller.user_agent.lower()
        if any(blocked in agent for blocked in self._blocked_agents):
            raise RequestRejected(Code.BADAGENT, f"user agent {caller.user_agent!r} is blocked")
        credentials = credentials or request.query_credentials
        if credentials is None:
            raise Unauthorized("no credentials")
        try:
            principal = await self._authenticator.authenticate(
                credentials, lambda: source_of(caller.address), caller.gone
            )
        except LoginThrottled as exc:
            raise TooManyRequests(exc.retry_after, str(exc)) from None
        if principal is None:
            raise Unauthorized("wrong user name or password")

        unique = list(dict.fromkeys(request.hostnames))  # in order, each name once
        targets = [self._target(item, principal) for item in unique]
        wait = self.host_limits.wait(
            t[0].id for t in targets if not isinstance(t, str) and not t[0].blocked
        )
        if wait > 0:
            names = ", ".join(t[0].fqdn for t in targets if not isinstance(t, str))
            self._summary.note(
                "update refused (host update rate, 429)", source_of(caller.address), names
            )
            raise TooManyRequests(wait, f"update rate of {names} exceeded")

        addresses = request.addresses
        address_error = request.address_error
        families = request.families
        if request.offline:  # both families go; addresses sent along are not set
            addresses, families = (), OFFLINE
        elif not addresses and address_error is None and request.prefix is None:
            # (A request that only delegates a prefix changes no address of the host.)
            if caller.address is None:
                address_error = "no myip given and the caller's address is unknown"
            else:
                addresses = (caller.address,)
                families = families_of(addresses)

        answers = [
            target
            if isinstance(target, str)
            else self._answer_host(*target, addresses, families, address_error, caller, request)
            for target in targets
        ]
        pending = [a for a in answers if not isinstance(a, str)]
        if pending:
            await asyncio.gather(*pending)
        lines = [a if isinstance(a, str) else a.result() for a in answers]
        if len(unique) == len(request.hostnames):
            return lines
        by_name = dict(zip(unique, lines, strict=True))
        return [by_name[item] for item in request.hostnames]

    def _target(self, item: str, principal: Principal) -> tuple[HostEntry, ZoneSettings] | str:
        """The host ``item`` names and its zone, or the answer when there is none."""
        try:
            fqdn = normalize_fqdn(item)
        except InvalidName:
            return Code.NOTFQDN.value
        host = self._state.hosts.get(fqdn)
        zone = self._config.zone_for(fqdn)
        if host is None or zone is None or not principal.may_update(host):
            return Code.NOHOST.value
        if fqdn in self._config.reserved:
            self._summary.note(
                "update refused (not a host name, nohost)",
                fqdn,
                self._config.reserved[fqdn],
                logging.WARNING,
            )
            return Code.NOHOST.value
        if host.blocked:
            return Code.ABUSE.value
        return host, zone

    def _answer_host(
        self,
        host: HostEntry,
        zone: ZoneSettings,
        addresses: tuple[IPAddress, ...],
        families: Mapping[str, tuple[str, ...]],
        address_error: str | None,
        caller: Caller,
        request: UpdateRequest,
    ) -> asyncio.Future[str] | str:
        fqdn = host.fqdn
        if address_error is None:
            try:
                for address in addresses:
                    check_usable(address, public_only=zone.public_only)
            except UnusableAddress as exc:
                address_error = str(exc)
        if address_error is not None:
            refusal = HostUpdate(
                host,
                zone,
                {},
                str(caller.address or ""),
                caller.user_agent,
                refusal=f"dnserr: {address_error}"[:255],
            )
            log.info(
                "%s: dnserr: %s",
                fqdn,
                address_error,
                extra={"host": fqdn, "caller": refusal.caller, "answer": Code.DNSERR.value},
            )
            return asyncio.ensure_future(self._refuse(refusal))
        wildcard = request.wildcard if request.wildcard != host.wildcard else None
        prefix = request.prefix if request.prefix != host.prefix else None
        unchanged = wildcard is None and prefix is None
        if unchanged and all(host.addresses(rtype) == value for rtype, value in families.items()):
            if fqdn in self._reconciler.behind:  # stored, but DNS has not confirmed it yet
                return asyncio.ensure_future(self._confirm(host, families, addresses, caller))
            if self.stale():  # others may have changed it: this copy cannot vouch for it
                return Code.SERVER_ERROR.value
            if self.host_limits.nochg(host.id):
                self._block(host, families, caller)
                return Code.ABUSE.value
            self._recorder.nochg(host)
            self.host_limits.spend(host.id)
            line = answer_line(Code.NOCHG, addresses)
            if log.isEnabledFor(logging.DEBUG):  # the common answer: a line at debug only
                where = str(caller.address or "")
                log.debug(
                    "%s: %s (from %s)",
                    fqdn,
                    line,
                    where or "?",
                    extra={"host": fqdn, "caller": where, "answer": line},
                )
            return line
        where = str(caller.address or "")
        followers = self._followers(host, request.prefix, where, caller.user_agent)
        change = HostUpdate(
            host,
            zone,
            families,
            where,
            caller.user_agent,
            wildcard=wildcard,
            prefix=request.prefix,
            followers=followers,
        )
        return asyncio.ensure_future(self._submit(change, addresses))

    def _followers(
        self, host: HostEntry, prefix: str | None, caller: str, user_agent: str
    ) -> tuple[HostUpdate, ...]:
        """The changes of the hosts that follow ``host``'s IPv6 prefix, when it sends one:
        each gets the prefix + its interface id as its AAAA record."""
        if prefix is None:
            return ()
        changes = []
        for follower in self._state.followers_of(host):
            extra = follower.extra
            zone = self._config.zone_for(follower.fqdn)
            if extra is None or extra.interface_id is None or zone is None or follower.blocked:
                continue
            if follower.fqdn in self._config.reserved:
                continue
            length = extra.prefix_length or DEFAULT_PREFIX_LENGTH
            address = in_prefix(prefix, extra.interface_id, length)
            try:
                check_usable(address, public_only=zone.public_only)
            except UnusableAddress as exc:
                log.info("%s: follows %s: %s", follower.fqdn, host.fqdn, exc)
                continue
            if follower.aaaa != (str(address),):
                changes.append(
                    HostUpdate(follower, zone, {"AAAA": (str(address),)}, caller, user_agent)
                )
        return tuple(changes)

    async def set_txt(self, host: HostEntry, txt: str, *, caller: str, user_agent: str) -> Outcome:
        """Add ``txt`` to the TXT records of ``host``'s ``_acme-challenge`` name, keeping
        the newest :data:`~.hostrecords.MAX_TXT` (acme-dns's way: a wildcard and its
        apex certificate at once); answered once DNS has it."""
        values = host.txt if txt in host.txt else (*host.txt, txt)[-MAX_TXT:]
        return await self.change(host, {"TXT": values}, caller=caller, user_agent=user_agent)

    async def change(
        self,
        host: HostEntry,
        families: Mapping[str, tuple[str, ...]],
        *,
        caller: str,
        user_agent: str,
        wildcard: bool | None = None,
    ) -> Outcome:
        """Replace the record sets ``families`` of ``host`` (types A, AAAA, TXT) and
        answer once DNS has them: the path of every change other than dyndns2's."""
        zone = self._config.zone_for(host.fqdn)
        if zone is None or host.fqdn in self._config.reserved:
            return Outcome(Code.NOHOST, f"{host.fqdn} is in no zone of this server")
        bad = [v for v in families.get("TXT", ()) if not valid_txt(v)]
        if bad or len(families.get("TXT", ())) > MAX_TXT:
            return Outcome(
                Code.DNSERR,
                f"TXT: at most {MAX_TXT} values of 1-255 characters of A-Z a-z 0-9 _-=+/.:@",
            )
        change = HostUpdate(host, zone, families, caller, user_agent, wildcard=wildcard)
        outcome = await self._commit(change)
        self._answered(change, outcome, outcome.code.value)
        return outcome

    def _block(
        self, host: HostEntry, families: Mapping[str, tuple[str, ...]], caller: Caller
    ) -> None:
        """Answer ``abuse`` for ``host`` from now on, and store that."""
        limits = self._config.limits
        self._state.set_blocked(host, True)
        host.last_result = "abuse"
        reason = (
            f"blocked: more than {limits.abuse_nochg_threshold} nochg answers "
            f"within {limits.abuse_window:g} s (host unblock)"
        )
        self._record(host, families, caller, Code.ABUSE, Code.ABUSE.value, reason)
        log.warning(
            "%s: blocked for abuse: more than %d nochg answers within %g s; it answers "
            "abuse until its owner runs `nicupdate-server host unblock %s`",
            host.fqdn,
            limits.abuse_nochg_threshold,
            limits.abuse_window,
            host.fqdn,
            extra={"host": host.fqdn, "caller": str(caller.address or ""), "answer": "abuse"},
        )
        task = asyncio.ensure_future(self._writer.exclusive(block_host(host, self._writer.origin)))
        self._background.add(task)
        task.add_done_callback(self._stored_block)

    def _stored_block(self, task: asyncio.Future[object]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("could not store a host's abuse block: %s", task.exception())

    async def _refuse(self, refusal: HostUpdate) -> str:
        await self._writer.submit(refusal)  # with its history row
        self._recorder.seen(refusal.host)
        return Code.DNSERR.value

    async def _confirm(
        self,
        host: HostEntry,
        families: Mapping[str, tuple[str, ...]],
        addresses: tuple[IPAddress, ...],
        caller: Caller,
    ) -> str:
        outcome = await self._reconciler.confirm(host.fqdn, self._deadline)
        if outcome.code is Code.GOOD:
            self.host_limits.spend(host.id)
        line = answer_line(outcome.code, addresses)
        self._record(host, families, caller, outcome.code, line, outcome.reason)
        return line

    def _record(
        self,
        host: HostEntry,
        families: Mapping[str, tuple[str, ...]],
        caller: Caller,
        code: Code,
        line: str,
        reason: str,
    ) -> None:
        """An answer about ``host`` that stored no change: a row of the history."""
        self._recorder.record(
            host,
            caller=str(caller.address or ""),
            user_agent=caller.user_agent,
            families=families,
            code=code,
            line=line,
            reason=reason,
        )

    async def _submit(self, change: HostUpdate, addresses: tuple[IPAddress, ...]) -> str:
        outcome = await self._commit(change)
        if outcome.code in SUCCESS_CODES:  # 911 and dnserr are not the client's doing
            self.host_limits.spend(change.host.id)
        line = answer_line(outcome.code, addresses)
        self._answered(change, outcome, line)
        return line

    async def _commit(self, change: HostUpdate) -> Outcome:
        """Store ``change`` (with its followers'), then wait for DNS to have it all: the
        outcome of ``change``'s host (with ``stored`` as the writer gave it)."""
        outcome: Outcome = await self._writer.submit(change)
        stored = outcome.stored
        if outcome.code is not Code.GOOD:
            return outcome
        names = [change.host.fqdn, *(f.host.fqdn for f in change.followers)]
        confirmed = await asyncio.gather(
            *(self._reconciler.confirm(name, self._deadline) for name in names)
        )
        for follower, stored_follower, result in zip(
            change.followers, outcome.followers, confirmed[1:], strict=True
        ):
            self._answered(
                follower,
                Outcome(result.code, result.reason, stored_follower.stored),
                result.code.value,
            )
        return Outcome(confirmed[0].code, confirmed[0].reason, stored)

    def _answered(self, change: HostUpdate, outcome: Outcome, line: str) -> None:
        """The history row of an answered change, and its log line."""
        host = change.host
        if outcome.stored is not None:  # its history row, with the answer as sent
            self._recorder.answered(change, outcome.stored, outcome.code, line, outcome.reason)
        elif outcome.code is Code.NOCHG:  # the same change came just before, in one batch
            self._recorder.nochg(host)
        else:  # not stored: the writer keeps its row until the database takes writes
            self._recorder.seen(host)
        log.info(
            "%s: %s (from %s, %s)",
            change.host.fqdn,
            line,
            change.caller or "?",
            change.user_agent or "no user agent",
            extra={"host": host.fqdn, "caller": change.caller, "answer": line},
        )
