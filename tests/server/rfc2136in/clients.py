"""What the UPDATE tests send, as the clients send it, and how they read the replies."""

from __future__ import annotations

import re
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

import dns.message
import dns.rcode
import dns.tsig
import dns.update

from tests.server.conftest import LiveServer

ZONE = "dyn.example.test"
HOME = f"home.{ZONE}"
WORK = f"work.{ZONE}"  # bob's host
CHALLENGE = f"_acme-challenge.{HOME}"
TOKEN = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA"  # what an ACME client sets
# A TSIG record's error field (16 is BADSIG there, BADVERS in an OPT record).
TSIG_ERRORS = {0: "NOERROR", 16: "BADSIG", 17: "BADKEY", 18: "BADTIME"}


@dataclass(frozen=True)
class Key:
    name: str
    algorithm: str
    clause: str  # as `key add` printed it

    @property
    def secret(self) -> str:
        found = re.search(r'secret "([^"]+)"', self.clause)
        assert found is not None
        return found.group(1)

    def tsig(self, secret: str | None = None, name: str | None = None) -> dns.tsig.Key:
        algorithm = dns.tsig.HMAC_MD5 if self.algorithm == "hmac-md5" else self.algorithm
        return dns.tsig.Key(name or self.name, secret or self.secret, algorithm)


def key_add(server: LiveServer, name: str, *options: str) -> Key:
    done = server.cli("key", "add", name, *options)
    assert done.returncode == 0, done.stderr
    algorithm = re.search(r"algorithm ([a-z0-9-]+);", done.stdout)
    assert algorithm is not None
    return Key(name, algorithm.group(1), done.stdout)


def exchange(server: LiveServer, update: dns.message.Message, tcp: bool = False) -> bytes:
    """Send ``update`` to the DNS port; the raw reply (checked by the caller)."""
    wire = update.to_wire()
    if tcp:
        with socket.create_connection(("127.0.0.1", server.dns_port), timeout=10) as sock:
            sock.sendall(len(wire).to_bytes(2, "big") + wire)
            size = int.from_bytes(_read(sock, 2), "big")
            return _read(sock, size)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(10)
        sock.sendto(wire, ("127.0.0.1", server.dns_port))
        return sock.recv(65535)


def _read(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk, "the connection closed before the reply"
        data += chunk
    return data


def send(
    server: LiveServer, update: dns.update.UpdateMessage, tcp: bool = False
) -> dns.rcode.Rcode:
    """The rcode of the reply to ``update``; a signed update's reply must be signed by
    the same key (dnspython checks it, as nsupdate does)."""
    reply = exchange(server, update, tcp)
    if update.keyring is None:
        return dns.message.from_wire(reply).rcode()
    return dns.message.from_wire(reply, keyring=update.keyring, request_mac=update.mac).rcode()


def refusal(server: LiveServer, update: dns.update.UpdateMessage) -> tuple[str, str | None]:
    """The rcode of an unsigned reply and its TSIG error (None: no TSIG record)."""
    reply = dns.message.from_wire(exchange(server, update), keyring=False)
    error = None if reply.tsig is None else TSIG_ERRORS[reply.tsig[0].error]
    return dns.rcode.to_text(reply.rcode()), error


def signed(key: Key, zone: str = ZONE, **tsig: str) -> dns.update.UpdateMessage:
    tsig_key = key.tsig(**tsig)
    return dns.update.UpdateMessage(zone, keyring=tsig_key, keyalgorithm=tsig_key.algorithm)


def dig(server: LiveServer, name: str, rdtype: str = "A") -> list[str]:
    """What ``dig +short`` prints for ``name``, one value a line, sorted."""
    done = subprocess.run(
        ["dig", "@127.0.0.1", "-p", str(server.dns_port), "+short", "+time=3", name, rdtype],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return sorted(done.stdout.split())


def nsupdate(server: LiveServer, key_file: Path, *commands: str, port: int = 0) -> str:
    """Run ``nsupdate -k KEY_FILE`` with ``commands``; its output (it must succeed)."""
    script = "\n".join(
        [f"server 127.0.0.1 {port or server.dns_port}", f"zone {ZONE}", *commands, "send", ""]
    )
    done = subprocess.run(
        ["nsupdate", "-k", str(key_file)],
        input=script,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr
