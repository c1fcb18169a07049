"""The server's listening sockets, bound before anything else starts.

A port that cannot be bound stops start-up with one line that names the key and the
address and says what to do (:class:`StartupError`, exit status 3), not a traceback
after the database was opened.
"""

from __future__ import annotations

import errno
import socket

# The HTTP listener's accept queue (uvicorn's default).
BACKLOG = 2048


class StartupError(Exception):
    """The server cannot start: one line naming the key, for the user to act on."""


def shown(host: str, port: int) -> str:
    """``host:port``, with an IPv6 literal in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def bind_error(key: str, host: str, port: int, exc: OSError) -> StartupError:
    """What binding ``key``'s ``host:port`` failing with ``exc`` means for the user."""
    where = f"{key} {shown(host, port)}"
    cause = exc.__cause__ or exc.__context__  # uvloop wraps the OSError that has the errno
    code = exc.errno if exc.errno is not None or not isinstance(cause, OSError) else cause.errno
    if code == errno.EADDRINUSE:
        return StartupError(
            f"{where} is in use: another program listens there (see `ss -lntup`); "
            f"stop it or choose another port for {key}"
        )
    if code == errno.EACCES:
        return StartupError(
            f"{where}: permission denied: a port below 1024 needs root or the "
            "CAP_NET_BIND_SERVICE capability (the systemd unit grants it)"
        )
    if code == errno.EADDRNOTAVAIL:
        return StartupError(f"{where}: {host} is not an address of this machine")
    return StartupError(f"{where} cannot be bound: {exc.strerror or exc}")


def bind_tcp(key: str, host: str, port: int, *, shared: bool = False) -> socket.socket:
    """A listening TCP socket on ``host:port`` (IPv6 only for an IPv6 literal, as
    asyncio binds it), or :class:`StartupError`. ``shared``: with ``SO_REUSEPORT``, so
    that the workers of one ``serve --workers`` each listen on it and the kernel
    spreads the connections between them."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if shared:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        raise bind_error(key, host, port, exc) from None
    sock.setblocking(False)
    return sock
