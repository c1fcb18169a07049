"""One UPDATE message, from its bytes to the reply's: checks, then the service's path.

In order, each step answering the whole message when it refuses (RFC 2136 §3, RFC 8945):

1. a source locked out for guessing (the same lock-outs as HTTP logins) is REFUSED
   before anything else is done; so is a key locked out at that source;
2. a malformed message: FORMERR;
3. a bad TSIG: NOTAUTH with BADKEY (key unknown, removed, of another algorithm), BADSIG
   or BADTIME, the latter signed. BADKEY and BADSIG count as failed logins;
4. a zone that is not one of ours: NOTAUTH; an unsigned message: REFUSED (as BIND
   answers for a zone with an ``update-policy``);
5. a prerequisite or update record that is malformed (FORMERR) or outside the zone
   (NOTZONE), in any section (:mod:`.message`; BIND too finds these first);
6. the prerequisites, against the stored records (:mod:`.prereqs`);
7. what the key may not change: REFUSED (:mod:`.policy`).

Only then is anything changed: one :meth:`~..updates.UpdateService.change` per host
whose records change, all at once (several hosts cannot change in one transaction,
so everything is checked first). NOERROR comes once DNS has every change (the backends
of the zone confirmed it); SERVFAIL when one did not in time or refused it: the change
stays stored and is applied without the client doing anything. Replies to a signed
message are signed.

Messages about the same hosts are handled one after the other, so two clients adding a
TXT value each both keep theirs.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable

import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.tsig
import dns.update

from ..addresses import IPAddress
from ..auth import Authenticator
from ..config import Config, ZoneSettings
from ..dns.answer import header_reply
from ..dns.records import tsig_error_reply
from ..dyndns import SUCCESS_CODES, Code
from ..hostrecords import host_of
from ..logsummary import LogSummary
from ..reconciler import Reconciler
from ..state import HostEntry, State
from ..store import Outcome
from ..throttle import source_of
from ..updates import UpdateService
from . import message as parsed
from .keys import KeyRing, UpdateKey
from .message import Rejected
from .policy import apply, changed_types, target
from .prereqs import Stored, check

log = logging.getLogger("nicupdate.rfc2136in")

UDP_MIN = 512
EDNS_PAYLOAD = 1232
TCP_MAX = 65535
MAX_SHOWN = 64  # characters of a refused key name in the log


def _address(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text.partition("%")[0])
    except ValueError:
        return None


class UpdateHandler:
    """Answers UPDATE messages; :meth:`handle` takes one message's bytes."""

    def __init__(
        self,
        config: Callable[[], Config],
        state: State,
        service: UpdateService,
        reconciler: Reconciler,
        keys: KeyRing,
        authenticator: Authenticator,
        summary: LogSummary,
    ) -> None:
        self._config = config
        self._state = state
        self._service = service
        self._reconciler = reconciler
        self._keys = keys
        self._authenticator = authenticator
        self._summary = summary
        self._busy: dict[str, asyncio.Lock] = {}
        self._waiting: Counter[str] = Counter()

    async def handle(self, wire: bytes, source: str, tcp: bool) -> bytes:
        """The reply to the UPDATE message ``wire`` from the address ``source``."""
        try:
            reply = await self._handle(wire, source, tcp)
        except Exception:
            log.exception("an UPDATE message from %s failed; answered SERVFAIL", source)
            reply = header_reply(wire, dns.rcode.SERVFAIL)
        return reply

    async def _handle(self, wire: bytes, source: str, tcp: bool) -> bytes:
        where = source_of(_address(source))
        limiter = self._authenticator.limiter
        if limiter.locked(where, ""):
            self._summary.note("rfc2136 update refused (locked out)", where)
            return header_reply(wire, dns.rcode.REFUSED)
        try:
            unchecked = dns.message.from_wire(wire, keyring=False)
        except Exception as exc:  # dnspython raises many kinds on malformed input
            log.debug("malformed UPDATE message from %s: %r", source, exc)
            return header_reply(wire, dns.rcode.FORMERR)
        if not isinstance(unchecked, dns.update.UpdateMessage):
            return header_reply(wire, dns.rcode.NOTIMP)
        key: UpdateKey | None = None
        name = unchecked.keyname
        if name is not None:
            user = parsed.text(name)[:MAX_SHOWN]  # what lock-outs count failures of
            if limiter.locked(where, user):
                self._summary.note("rfc2136 update refused (locked out)", where, repr(user))
                return header_reply(wire, dns.rcode.REFUSED)
            key = await self._keys.find(name)
            if key is None:
                return self._bad_tsig(unchecked, dns.rcode.BADKEY, where, user)
            try:
                query = dns.message.from_wire(wire, keyring={name: key.key})
            except (dns.tsig.BadKey, dns.tsig.BadAlgorithm):
                return self._bad_tsig(unchecked, dns.rcode.BADKEY, where, user)
            except dns.tsig.BadTime:  # signed right: the clocks differ (not a guess)
                self._summary.note("rfc2136 update refused (TSIG BADTIME)", where, repr(user))
                return tsig_error_reply(unchecked, dns.rcode.BADTIME, key.key)
            except (dns.exception.DNSException, ValueError):
                return self._bad_tsig(unchecked, dns.rcode.BADSIG, where, user)
            if not await self._keys.current(key):  # removed or replaced meanwhile
                return self._bad_tsig(unchecked, dns.rcode.BADKEY, where, user)
            limiter.succeeded(where, user)
        else:
            query = unchecked
        assert isinstance(query, dns.update.UpdateMessage)
        response = dns.message.make_response(query, our_payload=EDNS_PAYLOAD, pad=0)
        try:
            await self._answer(query, key, source, response)
        except Rejected as exc:
            response.set_rcode(exc.rcode)
            who = f"key {key.name}" if key is not None else "unsigned"
            self._summary.note(f"rfc2136 update {exc.rcode.name}", where, f"{who}: {exc.reason}")
        return _render(response, query, tcp)

    def _bad_tsig(
        self, query: dns.message.Message, error: dns.rcode.Rcode, where: str, user: str
    ) -> bytes:
        """NOTAUTH with ``error`` (unsigned: the client's key is not ours to sign with),
        counted as a failed login of the key's name from ``where``."""
        shown = "BADKEY" if error == dns.rcode.BADKEY else "BADSIG"  # 16 is BADVERS too
        self._summary.note(f"rfc2136 update refused (TSIG {shown})", where, repr(user))
        self._authenticator.failed(where, user)  # the lock-outs of every login
        return tsig_error_reply(query, error, None)

    async def _answer(
        self,
        query: dns.update.UpdateMessage,
        key: UpdateKey | None,
        source: str,
        response: dns.message.Message,
    ) -> None:
        """Check and apply ``query``; its rcode is set on ``response`` (or raised)."""
        config = self._config()
        origin, rdclass = parsed.zone_of(query)
        zone_name = parsed.text(origin)
        zone = next((z for z in config.zones if z.name == zone_name), None)
        if zone is None or rdclass != dns.rdataclass.IN:
            raise Rejected(dns.rcode.NOTAUTH, f"zone {zone_name} is not served here")
        if key is None:
            raise Rejected(dns.rcode.REFUSED, "unsigned: sign it with a key of `key add`")
        update = parsed.parse(query, origin, lambda name: config.zone_for(name) is zone)
        async with self._holding(host_of(name) for name in update.names()):
            stored = Stored(config, zone, self._state)
            check(update.prerequisites, stored)
            targets = [(change, target(key, change, stored)) for change in update.changes]
            after = apply(targets, zone)
            outcomes = await asyncio.gather(
                *(
                    self._change(host, records, zone, key, source)
                    for host, records in after.values()
                )
            )
        failed = [outcome for outcome in outcomes if outcome.code not in SUCCESS_CODES]
        if failed:
            raise Rejected(dns.rcode.SERVFAIL, "; ".join(o.reason or o.code.value for o in failed))
        response.set_rcode(dns.rcode.NOERROR)

    async def _change(
        self,
        host: HostEntry,
        records: dict[str, tuple[str, ...]],
        zone: ZoneSettings,
        key: UpdateKey,
        source: str,
    ) -> Outcome:
        """Make ``host``'s records ``records``, and wait until DNS has them."""
        families = changed_types(host, records)
        if families:
            return await self._service.change(
                host, families, caller=source, user_agent=f"rfc2136 key {key.name}"
            )
        if host.fqdn in self._reconciler.behind:  # stored, but DNS has not confirmed it yet
            return await self._reconciler.confirm(host.fqdn, self._config().server.apply_deadline)
        return Outcome(Code.NOCHG)

    @contextlib.asynccontextmanager
    async def _holding(self, names: Iterable[str]) -> AsyncIterator[None]:
        """The hosts ``names``, to this message alone until the block ends."""
        ordered = sorted(set(names))  # always in one order: no two messages wait on each other
        for name in ordered:
            self._waiting[name] += 1
        taken: list[asyncio.Lock] = []
        try:
            for name in ordered:
                lock = self._busy.setdefault(name, asyncio.Lock())
                await lock.acquire()
                taken.append(lock)
            yield
        finally:
            for lock in taken:
                lock.release()
            for name in ordered:
                self._waiting[name] -= 1
                if not self._waiting[name]:
                    del self._waiting[name]
                    self._busy.pop(name, None)


def _render(response: dns.message.Message, query: dns.message.Message, tcp: bool) -> bytes:
    """The reply, within the client's size (UDP: 512 bytes, or its EDNS payload up to
    1232); one that does not fit is sent truncated (TC), signed all the same."""
    if tcp:
        limit = TCP_MAX
    else:
        limit = UDP_MIN if query.edns < 0 else max(UDP_MIN, min(query.payload, EDNS_PAYLOAD))
    try:
        wire: bytes = response.to_wire(max_size=limit)
    except dns.exception.TooBig:
        response.flags |= dns.flags.TC
        for section in (response.question, response.answer, response.authority):
            section.clear()
        wire = response.to_wire(max_size=limit)
    return wire
