"""HTTP connections that cannot be held, fed or abandoned at the other users' expense.

:class:`GuardedProtocol` is uvicorn's httptools protocol with these changes:

* **A deadline for the request head.** A connection must send its request line and
  headers within ``limits.header_timeout`` of connecting (or of the first byte of its
  next request): then it gets 408 and is closed (closed silently if it sent nothing).
* **A cap on the head.** More than ``limits.max_header_bytes`` of request line and
  headers is answered 414 (the request line alone is that long) or 431 and closed, as
  the bytes arrive: the parser never holds more than that. A malformed request gets 400.
* **Half-closed clients get their answer.** A client that shuts down its sending side
  after the request (``nc -N``, busybox ``nc`` in router scripts) still reads the
  answer; uvicorn would close the connection on EOF (Kludex/uvicorn#1264).
* **Caps on open connections**, in all and per source address (trusted proxies are not
  capped per source). At a cap the oldest idle connection (no request in progress:
  never sent one, sending its head, or kept alive between requests) is closed to make
  room; when none is idle, the new connection is closed.

These refusals are counted per source and logged as summaries (:mod:`.logsummary`),
never one line each.
"""

from __future__ import annotations

import asyncio
import http
import ipaddress
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, ClassVar

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .config import IPAddress, IPNetwork, LimitSettings
from .logsummary import LogSummary
from .throttle import source_of

log = logging.getLogger("nicupdate.http")

# The ASGI scope extension through which a request's handler asks about its
# connection: {"gone": client_gone, "hold": hold} (see GuardedProtocol).
CONNECTION = "nicupdate.connection"
# How long after the last refused connection /healthz keeps reporting it.
REFUSED_MEMORY = 30.0
MAX_DESCRIPTORS = 1 << 20  # the most the soft limit is raised to
# After refusing a request: how long, and how many bytes, the close lingers.
LINGER_SECONDS = 2.0
LINGER_BYTES = 256 * 1024
MIN_CONNECTIONS = 16
# Making room looks at this many of the least recently active connections for one that
# is idle; a connection's place in that order is renewed at most this often (seconds).
EVICTION_SCAN = 256
TOUCH_INTERVAL = 1.0
# Reaching the connection limit is logged once, then again only after the connections
# fell below half of it and this many seconds passed.
LIMIT_LOG_INTERVAL = 600.0


class ConnectionGuard:
    """What all HTTP connections share: the caps, and who holds which connections.

    Connections are kept in the order they were last active, in all and per source
    (a connection that sends a request moves to the back, at most once per
    ``TOUCH_INTERVAL``); each says whether it is busy (a request in progress). Making
    room closes the first that is not busy, looking at no more than ``EVICTION_SCAN``:
    the least recently active idle connection. Requests mostly only flip a flag, so
    the bookkeeping costs them next to nothing."""

    def __init__(
        self,
        limits: LimitSettings,
        max_connections: int,
        trusted_proxies: Sequence[IPNetwork],
        summary: LogSummary,
    ) -> None:
        self.limits = limits
        self.max_connections = max_connections
        self.summary = summary
        self._trusted = tuple(trusted_proxies)
        self._open: OrderedDict[GuardedProtocol, None] = OrderedDict()
        self._by_source: dict[str, OrderedDict[GuardedProtocol, None]] = {}
        self.refused_at = -REFUSED_MEMORY
        self._at_limit = False
        self._limit_logged = 0.0

    def configure(
        self, limits: LimitSettings, max_connections: int, trusted_proxies: Sequence[IPNetwork]
    ) -> None:
        """New limits (a reload): the caps at once, the head limits for new connections."""
        self.limits = limits
        self.max_connections = max_connections
        self._trusted = tuple(trusted_proxies)

    @property
    def open(self) -> int:
        return len(self._open)

    def exempt(self, peer: str | None) -> bool:
        """Whether ``peer`` is a trusted proxy (many clients share its address)."""
        if not self._trusted or peer is None:
            return False
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return False
        return any(address in network for network in self._trusted)

    def admit(self, conn: GuardedProtocol) -> bool:
        """Count ``conn`` in, closing an idle connection if a cap is reached."""
        source = conn.source
        mine = self._by_source.get(source)
        if (
            not conn.exempt
            and mine is not None
            and len(mine) >= self.limits.max_connections_per_source
        ):
            if not self._evict(mine):
                self.summary.note("connection refused (per-source limit)", source)
                return False
            self.summary.note("idle connection closed (per-source limit)", source)
        if len(self._open) >= self.max_connections:
            if not self._at_limit:
                self._at_limit = True
                self._limit_logged = time.monotonic()
                log.warning(
                    "%d HTTP connections open, the limit: closing the oldest idle ones to "
                    "make room (limits.max_connections; the file descriptor limit, "
                    "LimitNOFILE, bounds it)",
                    len(self._open),
                )
            if not self._evict(self._open):
                self.refused_at = time.monotonic()
                self.summary.note("connection refused (connection limit)", source)
                return False
        self._open[conn] = None
        self._by_source.setdefault(source, OrderedDict())[conn] = None
        return True

    def touch(self, conn: GuardedProtocol) -> None:
        """``conn`` is active: it goes to the back of the eviction order."""
        if conn in self._open:
            self._open.move_to_end(conn)
            mine = self._by_source.get(conn.source)
            if mine is not None and conn in mine:
                mine.move_to_end(conn)

    def _evict(self, candidates: OrderedDict[GuardedProtocol, None]) -> bool:
        for scanned, conn in enumerate(candidates):
            if scanned >= EVICTION_SCAN:
                break
            if not conn.busy:
                self.release(conn)
                conn.transport.abort()  # frees its descriptor now, not after a handshake
                return True
        return False

    def release(self, conn: GuardedProtocol) -> None:
        if self._open.pop(conn, False) is False:
            return  # evicted before
        mine = self._by_source.get(conn.source)
        if mine is not None:
            mine.pop(conn, None)
            if not mine:
                del self._by_source[conn.source]
        if (
            self._at_limit
            and len(self._open) < self.max_connections // 2
            and time.monotonic() - self._limit_logged > LIMIT_LOG_INTERVAL
        ):
            self._at_limit = False  # the next time the limit is reached is logged again
            log.info("HTTP connections back under the limit (%d open)", len(self._open))

    def problem(self) -> str | None:
        """What /healthz should report about connections, if anything."""
        if time.monotonic() - self.refused_at < REFUSED_MEMORY:
            return (
                f"connections: at the limit of {self.max_connections} with none idle: "
                "new connections are refused"
            )
        return None


class GuardedProtocol(HttpToolsProtocol):
    """One HTTP connection (see the module docstring). ``guard`` is set by
    :func:`protocol_class`."""

    guard: ClassVar[ConnectionGuard]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        limits = self.guard.limits
        self._limit = limits.max_header_bytes
        self._step = max(1, self._limit // 2)
        self._admitted = False
        self._eof = False
        self._in_head = False  # between the first byte of a request and its last header
        self._began = False
        self._line_done = False
        self._head_bytes = 0
        self._deadline: asyncio.TimerHandle | None = None
        self._lingering: int | None = None  # bytes still dropped before closing
        self._extensions: dict[str, dict[object, object]] = {
            CONNECTION: {"gone": self.client_gone, "hold": self.hold}
        }
        self._held: asyncio.Future[None] | None = None  # a held-back answer's wait
        self.source = ""
        self.exempt = False
        self.busy = False  # a whole request is being answered (else it may be closed)
        self._touched = 0.0  # loop time of the last move to the back of the guard's order

    # -- connection -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        peer = self.client[0] if self.client else None
        self.exempt = self.guard.exempt(peer)
        self.source = source_of(_address(peer))
        if not self.guard.admit(self):
            transport.abort()
            return
        self._admitted = True
        self._start_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_deadline()
        # Break the cycle through the bound methods, so that a closed connection is freed
        # at once, not by the cyclic garbage collector (a connection flood would make
        # its runs long).
        self._extensions[CONNECTION].clear()
        if self._held is not None:
            _wake(self._held)  # the answer it held back has no one to go to
        if self._admitted:
            self._admitted = False
            self.guard.release(self)
        super().connection_lost(exc)

    def eof_received(self) -> bool:  # type: ignore[override]
        """The client will send nothing more: keep the connection open for its answer."""
        self._eof = True
        if self._held is not None:
            _wake(self._held)  # it can send no more on this connection: answer now
        if self._lingering is not None:
            self._stop_deadline()
            return False  # it has read our answer: close
        return self._answering()

    def _answering(self) -> bool:
        return bool(self.pipeline) or (self.cycle is not None and not self.cycle.response_complete)

    def shutdown(self) -> None:
        """The server stops (SIGTERM): a held-back answer goes now, not after its delay,
        so that it is not cut off when the grace period ends."""
        if self._held is not None:
            _wake(self._held)
        super().shutdown()

    def client_gone(self) -> bool:
        """Whether the client has closed its side (or all) of the connection."""
        return self._eof or self.transport.is_closing()

    async def hold(self, seconds: float) -> None:
        """Wait ``seconds`` before answering (a 429 held back), or until the client
        closes its side. Meanwhile the connection may be closed to make room, as an idle
        one would. A client gone ends the wait at once, so that what the request holds is
        freed at once (a reconnecting flood would otherwise keep a second's worth of them
        alive)."""
        self.busy = False
        if self.client_gone():
            return
        held = self._held = self.loop.create_future()
        timer = self.loop.call_later(seconds, _wake, held)
        try:
            await held
        finally:
            timer.cancel()
            self._held = None

    # -- the request head -------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._lingering is not None:  # answered and closing: drop what still comes
            self._lingering -= len(data)
            if self._lingering < 0:
                self.transport.abort()
            return
        self._unset_keepalive_if_required()
        step = self._step
        if len(data) <= step and not self._in_head and self.parser is not None:
            # The common case: a whole request (or its start) in one piece.
            self._feed(data)
            return
        for start in range(0, len(data), step):
            if self.parser is None or self.transport.is_closing():
                return
            if not self._feed(data[start : start + step]):
                return

    def _feed(self, piece: bytes) -> bool:
        """Parse ``piece``, keeping count of the request head; false once refused."""
        cycle = self.cycle
        after_another = cycle is not None and cycle.more_body  # inside a request's body
        self._began = False
        try:
            self.parser.feed_data(piece)
        except httptools.HttpParserUpgrade:
            pass  # no WebSockets here: the request was passed on as plain HTTP
        except httptools.HttpParserError:
            self._refuse(http.HTTPStatus.BAD_REQUEST, "malformed request")
            return False
        if not self._in_head:
            return True
        if self._deadline is None:
            self._start_deadline()  # the head did not come whole: from now on it has a limit
        if not self._line_done and b"\n" in piece:
            self._line_done = True  # the request line is complete
        if self._began and after_another:
            # A pipelined request began in the middle of this piece: its share of the
            # piece is unknown, so count from the next piece on.
            self._head_bytes = 0
        else:
            self._head_bytes += len(piece)
        if self._head_bytes > self._limit:
            if self._line_done:
                self._refuse(http.HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "headers")
            else:
                self._refuse(http.HTTPStatus.REQUEST_URI_TOO_LONG, "request line")
            return False
        return True

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = self._began = True
        self._line_done = False
        self._head_bytes = 0
        self.scope["extensions"] = self._extensions

    def on_headers_complete(self) -> None:
        self._in_head = False
        self.busy = True
        now = self.loop.time()
        if now - self._touched > TOUCH_INTERVAL:
            self._touched = now
            self.guard.touch(self)
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.transport.is_closing() or self._answering():
            return  # closed, or a pipelined request is on its way
        if self._eof:
            self.transport.close()  # everything asked for is answered
        elif self.cycle is not None and self.cycle.more_body and not self._in_head:
            self._linger()  # a body nobody read: do not read the rest for nothing
        else:
            self.busy = False

    def _start_deadline(self) -> None:
        timeout = self.guard.limits.header_timeout
        self._deadline = self.loop.call_later(timeout, self._head_too_slow)

    def _stop_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _head_too_slow(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self._in_head:
            self._refuse(http.HTTPStatus.REQUEST_TIMEOUT, "head not sent in time")
        elif not self._answering():
            self.guard.summary.note("idle connection closed (sent no request)", self.source)
            self.transport.close()

    def _refuse(self, status: http.HTTPStatus, why: str) -> None:
        """Answer ``status`` and close: the request is not passed on.

        The close lingers (as nginx's does): our side is shut down after the answer and
        what the client still sends is read and dropped for a moment, so that the
        client reads the answer instead of a reset (closing with unread data sends RST,
        which can destroy an answer not yet read)."""
        self.guard.summary.note(f"HTTP {status.value} {status.phrase} ({why})", self.source)
        body = f"{status.value} {status.phrase}\n".encode("ascii")
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n%s"
            % (status.value, status.phrase.encode("ascii"), len(body), body)
        )
        self._linger()

    def _linger(self) -> None:
        """Close after what was written, reading and dropping what the client still
        sends for a moment (closing with unread data would reset the connection)."""
        self._stop_deadline()
        self.parser = None  # type: ignore[assignment]
        if not self.transport.can_write_eof():
            self.transport.close()
            return
        self.transport.write_eof()
        self._lingering = LINGER_BYTES
        self._deadline = self.loop.call_later(LINGER_SECONDS, self.transport.abort)


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _address(peer: str | None) -> IPAddress | None:
    if peer is None:
        return None
    try:
        return ipaddress.ip_address(peer)
    except ValueError:
        return None


def descriptor_limit() -> int | None:
    """The process's file descriptor limit, raised to the hard limit when it is lower
    (as Go and nginx do); ``None`` where there is no such limit (Windows)."""
    try:
        import resource
    except ImportError:
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = MAX_DESCRIPTORS if hard == resource.RLIM_INFINITY else min(hard, MAX_DESCRIPTORS)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (ValueError, OSError):
            return soft
        log.debug("file descriptor limit raised from %d to %d", soft, wanted)
        return wanted
    return soft if soft != resource.RLIM_INFINITY else MAX_DESCRIPTORS


def descriptors_in_use() -> int | None:
    """How many file descriptors the process has open (Linux), else ``None``."""
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return None


def connection_cap(configured: int, descriptors: int | None, reserved: int) -> int:
    """The HTTP connection cap: ``configured``, but below what the descriptor limit
    leaves once ``reserved`` descriptors (DNS over TCP, the database, backends) are set
    aside, so that accepting a connection never fails for want of one."""
    if descriptors is None:
        return configured
    return max(MIN_CONNECTIONS, min(configured, descriptors - reserved))


def protocol_class(guard: ConnectionGuard) -> type[GuardedProtocol]:
    """A :class:`GuardedProtocol` bound to ``guard``, for ``uvicorn.Config(http=...)``."""
    return type("GuardedProtocol", (GuardedProtocol,), {"guard": guard})
