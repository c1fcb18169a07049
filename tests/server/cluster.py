"""Several nicupdate instances on one PostgreSQL, behind a real HAProxy, for tests.

:func:`running_haproxy` runs Debian's ``haproxy`` in the foreground with a round-robin
HTTP backend of the given ports (health-checked on /healthz) and stops it by PID.
:class:`Relay` is a TCP forwarder on loopback that a test can cut and restore: an
instance whose database connection goes through one loses its database while the
others keep theirs.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

from tests.server.process import free_port, stop_by_pid, wait_for

HAPROXY_CONFIG = """
global
    maxconn 2000

defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    retries 2
    option redispatch

frontend updates
    bind 127.0.0.1:{port}
    default_backend nicupdate

backend nicupdate
    balance roundrobin
    option httpchk GET /healthz
    default-server inter 500ms fall 2 rise 1
{servers}
"""


@contextlib.contextmanager
def running_haproxy(directory: Path, ports: list[int]) -> Iterator[int]:
    """HAProxy on a free port in front of ``ports``; yields its port."""
    port = free_port()
    servers = "\n".join(
        f"    server n{i} 127.0.0.1:{backend} check" for i, backend in enumerate(ports)
    )
    config = directory / "haproxy.cfg"
    config.write_text(HAPROXY_CONFIG.format(port=port, servers=servers))
    log = (directory / "haproxy.log").open("wb")
    proc = subprocess.Popen(
        ["/usr/sbin/haproxy", "-f", str(config), "-db"], stdout=log, stderr=subprocess.STDOUT
    )
    try:
        wait_for(lambda: _accepts(port) or proc.poll() is not None, what="HAProxy to listen")
        assert proc.poll() is None, (directory / "haproxy.log").read_text()
        yield port
    finally:
        stop_by_pid(proc)
        log.close()


def _accepts(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
        return True
    return False


class Relay:
    """Forwards TCP connections from its own loopback port to ``target``; :meth:`cut`
    closes every connection and refuses new ones until :meth:`restore`."""

    def __init__(self, target: int) -> None:
        self.target = target
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port: int = self._listener.getsockname()[1]
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._cut = False
        self._closed = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def cut(self) -> None:
        with self._lock:
            self._cut = True
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._open.clear()

    def restore(self) -> None:
        with self._lock:
            self._cut = False

    def close(self) -> None:
        self._closed = True
        self.cut()
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                if self._cut:
                    client.close()  # refused, as a dead network would
                    continue
                try:
                    upstream = socket.create_connection(("127.0.0.1", self.target), 5)
                except OSError:
                    client.close()
                    continue
                self._open.update((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
