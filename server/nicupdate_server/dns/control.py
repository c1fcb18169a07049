"""What the server and its DNS process share: the bound sockets and the messages on the
control socket between them (length-prefixed pickles: both ends are this program).

Kept apart so that the server imports neither dnspython nor the listeners."""

from __future__ import annotations

import asyncio
import pickle
import socket
from typing import Any

_LENGTH = 4
UDP_BUFFER = 4 << 20


async def read_message(reader: asyncio.StreamReader) -> dict[str, Any]:
    size = int.from_bytes(await reader.readexactly(_LENGTH), "big")
    message: dict[str, Any] = pickle.loads(await reader.readexactly(size))
    return message


def encode(message: dict[str, Any]) -> bytes:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return len(body).to_bytes(_LENGTH, "big") + body


def bind(host: str, port: int) -> tuple[socket.socket, socket.socket]:
    """A UDP and a TCP socket bound to ``host:port`` (port 0: one free port for both)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    attempts = 5 if port == 0 else 1
    for attempt in range(attempts):
        udp = socket.socket(family, socket.SOCK_DGRAM)
        try:
            # Room for a burst of queries while the process answers (the kernel caps it
            # at net.core.rmem_max).
            udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_BUFFER)
            udp.bind((host, port))
            bound: int = udp.getsockname()[1]
            tcp = socket.socket(family, socket.SOCK_STREAM)
            try:
                tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                tcp.bind((host, bound))
                tcp.listen(1024)
            except OSError:
                tcp.close()
                raise
        except OSError:
            udp.close()
            if attempt == attempts - 1:
                raise
            continue
        return udp, tcp
    raise AssertionError("unreachable")
