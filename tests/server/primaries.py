"""Real BIND 9 and PowerDNS primaries for tests, built from the shipped examples.

``running_bind`` and ``running_powerdns`` read ``deploy/bind`` and ``deploy/powerdns``
(the configurations users copy), rewrite exactly the strings that tie them to a real
machine (paths, port 53, the zone and key names), start the server on a free loopback
port in a temporary directory and yield a :class:`Primary`. A test can stop and start it
again, change records behind nicupdate's back, and look at what it serves.

BIND's ``update-policy`` grant is set to the types nicupdate writes (A, AAAA, and TXT
for ACME challenges), or to the ``update_types`` a test gives.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from tests.server.process import stop_by_pid

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
READY_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
UPDATE_TYPES = "A AAAA TXT"  # what nicupdate's key updates: addresses, ACME challenges

# Lines the fixture adds to the example named.conf: no rndc channel (several test
# servers run at once), and the log on stderr without a line per changed record.
BIND_TEST_SETTINGS = """
controls { };
logging {
    channel to_stderr { stderr; severity info; print-time yes; };
    category default { to_stderr; };
    category update { null; };
};
"""


@dataclass
class Primary:
    """One running primary server and what nicupdate needs to talk to it."""

    kind: Literal["bind", "powerdns"]
    directory: Path
    port: int
    zone: str
    key_name: str
    algorithm: str
    secret: str  # base64
    key_file: Path  # BIND key clause, as tsig-keygen writes it
    secret_file: Path  # the base64 secret alone
    command: list[str]
    host: str = "127.0.0.1"
    more_zones: tuple[str, ...] = ()  # zones served besides ``zone``, same key
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    @property
    def stderr_path(self) -> Path:
        return self.directory / f"{self.kind}.stderr"

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Start the server (again) on the same port and directory, and wait until it answers."""
        if self.process is not None:
            raise RuntimeError(f"{self.kind} is already running (pid {self.pid})")
        with self.stderr_path.open("ab") as stderr:
            self.process = subprocess.Popen(
                self.command, stdout=subprocess.DEVNULL, stderr=stderr, cwd=self.directory
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """SIGTERM by PID and wait for the process to end (SIGKILL after 10 s)."""
        process, self.process = self.process, None
        if process is not None:
            stop_by_pid(process, STOP_TIMEOUT)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        query = dns.message.make_query(self.zone, dns.rdatatype.SOA)
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                break
            with contextlib.suppress(dns.exception.DNSException, OSError):
                answer = dns.query.udp(query, self.host, port=self.port, timeout=0.2)
                if answer.rcode() == dns.rcode.NOERROR and answer.answer:
                    return
            time.sleep(0.02)
        stderr = self.stderr_path.read_text(errors="replace")[-4000:]
        raise RuntimeError(
            f"{self.kind} did not answer an SOA query for {self.zone} on port {self.port} "
            f"within {READY_TIMEOUT:g} s; its stderr:\n{stderr}"
        )

    # -- looking at the zone -----------------------------------------------------------

    def _ask(self, name: str, rdtype: str) -> dns.message.Message:
        query = dns.message.make_query(name, rdtype)
        return dns.query.tcp(query, self.host, port=self.port, timeout=5)

    def query(self, name: str, rdtype: str) -> list[str]:
        """The records the primary serves for ``name``, sorted: addresses (or other
        records) as text, TXT records as their value (the strings joined, unquoted)."""
        answer = self._ask(name, rdtype).answer
        if rdtype == "TXT":
            return sorted(b"".join(rdata.strings).decode() for rrset in answer for rdata in rrset)
        return sorted(rdata.to_text() for rrset in answer for rdata in rrset)

    def ttl(self, name: str, rdtype: str) -> int | None:
        answer = self._ask(name, rdtype).answer
        return int(answer[0].ttl) if answer else None

    def dig(self, name: str, rdtype: str) -> str:
        """What ``dig @127.0.0.1 -p PORT +short`` prints."""
        done = subprocess.run(
            ["dig", f"@{self.host}", "-p", str(self.port), "+short", "+tcp", name, rdtype],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return done.stdout

    # -- changing it -------------------------------------------------------------------

    def edit(self, name: str, rdtype: str, addresses: list[str], ttl: int = 60) -> None:
        """Change a record set behind nicupdate's back (empty ``addresses``: delete it).
        TXT values are given unquoted."""
        if rdtype == "TXT":
            addresses = [f'"{value}"' for value in addresses]
        if self.kind == "bind":
            self._nsupdate(name, rdtype, addresses, ttl)
        else:
            self._pdnsutil_edit(name, rdtype, addresses, ttl)

    def zone_of(self, name: str) -> str:
        """The zone of this server that ``name`` lies in."""
        zones = [z for z in (self.zone, *self.more_zones) if name == z or name.endswith("." + z)]
        if not zones:
            raise ValueError(f"{name} is in none of the zones of this {self.kind}")
        return max(zones, key=len)

    def _nsupdate(self, name: str, rdtype: str, addresses: list[str], ttl: int) -> None:
        lines = [f"server {self.host} {self.port}", f"zone {self.zone_of(name)}"]
        lines.append(f"update delete {name}. {rdtype}")
        lines += [f"update add {name}. {ttl} {rdtype} {address}" for address in addresses]
        lines.append("send")
        run(["nsupdate", "-v", "-k", str(self.key_file)], stdin="\n".join(lines) + "\n")

    def _pdnsutil_edit(self, name: str, rdtype: str, addresses: list[str], ttl: int) -> None:
        zone = self.zone_of(name)
        relative = name.removesuffix(f".{zone}") if name != zone else "@"
        if addresses:
            self.pdnsutil("replace-rrset", zone, relative, rdtype, str(ttl), *addresses)
        else:
            self.pdnsutil("delete-rrset", zone, relative, rdtype)
        # The running server caches answers: drop those for the name, as an admin would.
        run(["pdns_control", *self._pdns_dirs(), "purge", f"{name}$"])

    def pdnsutil(self, *args: str) -> str:
        return run(["pdnsutil", f"--config-dir={self.directory}", *args])

    def _pdns_dirs(self) -> list[str]:
        return [f"--config-dir={self.directory}", f"--socket-dir={self.directory}"]

    def config_block(self, backend_name: str = "primary") -> str:
        """The ``[backends.NAME]`` table that points nicupdate at this server."""
        return (
            f"[backends.{backend_name}]\n"
            'type = "rfc2136"\n'
            f'server = "{self.host}"\n'
            f"port = {self.port}\n"
            f'tsig_key_name = "{self.key_name}"\n'
            f'tsig_algorithm = "{self.algorithm}"\n'
            f'tsig_secret_file = "{self.secret_file}"\n'
        )


# -- helpers ---------------------------------------------------------------------------


def run(command: list[str], stdin: str | None = None, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        command,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env=None if env is None else {**os.environ, **env},
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr}")
    return done.stdout


def free_port() -> int:
    """A loopback port free for both TCP and UDP."""
    for _ in range(100):
        with (
            socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp,
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp,
        ):
            tcp.bind(("127.0.0.1", 0))
            port = int(tcp.getsockname()[1])
            try:
                udp.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no loopback port is free for both TCP and UDP")


def rewrite(text: str, replacements: list[tuple[str, str]], source: Path) -> str:
    """Replace each example string, failing loudly when the example no longer has it."""
    for old, new in replacements:
        if old not in text:
            raise RuntimeError(
                f"{source} no longer contains {old!r}: update tests/server/primaries.py"
            )
        text = text.replace(old, new)
    return text


def make_key(directory: Path, key_name: str, algorithm: str) -> tuple[str, Path, Path]:
    """A TSIG key from tsig-keygen: (secret, key clause file, secret file)."""
    clause = run(["tsig-keygen", "-a", algorithm, key_name])
    found = re.search(r'secret "([^"]+)";', clause)
    assert found, clause
    key_file = directory / f"{key_name}.conf"
    key_file.write_text(clause)
    secret_file = directory / f"{key_name}.secret"
    secret_file.write_text(found.group(1) + "\n")
    return found.group(1), key_file, secret_file


@contextlib.contextmanager
def _running(primary: Primary) -> Iterator[Primary]:
    try:
        primary.start()
        yield primary
    finally:
        primary.stop()


# -- BIND 9 ----------------------------------------------------------------------------


def bind_config(
    directory: Path,
    port: int,
    zone: str,
    key_name: str,
    *,
    dynamic: bool,
    transfer: bool,
    more_zones: tuple[str, ...] = (),
    update_types: str = UPDATE_TYPES,
) -> str:
    """deploy/bind/named.conf, rewritten to run in ``directory`` on ``port``; each of
    ``more_zones`` gets a copy of the example's zone clause. The key may update the
    ``update_types`` (a dynamic zone) or nothing."""
    source = DEPLOY / "bind" / "named.conf"
    text = source.read_text()
    clause = re.search(r'^zone "dyn\.example\.com" \{.*?^\};\n', text, re.M | re.S)
    if clause is None:
        raise RuntimeError(f"{source} has no zone clause: update tests/server/primaries.py")
    for extra in more_zones:
        text += "\n" + clause.group(0).replace("dyn.example.com", extra)
    policy = re.compile(r"update-policy \{ grant ddns-key zonesub [A-Z ]+; \};")
    if policy.search(text) is None:
        raise RuntimeError(f"{source} has no update-policy grant: update tests/server/primaries.py")
    grant = f"update-policy {{ grant ddns-key zonesub {update_types}; }};" if dynamic else ""
    text = policy.sub(grant, text)
    if not transfer:
        text = rewrite(
            text, [("allow-transfer { key ddns-key; };", "allow-transfer { none; };")], source
        )
    text = rewrite(text, [("dyn.example.com", zone), ("ddns-key", key_name)], source)
    text = rewrite(
        text,
        [
            ('"/etc/bind/', f'"{directory}/'),
            ('"/var/cache/bind"', f'"{directory}"'),
            ('"/var/lib/bind/', f'"{directory}/'),
            ('"/run/named/', f'"{directory}/'),
            ("listen-on port 53 { any; };", f"listen-on port {port} {{ 127.0.0.1; }};"),
            ("listen-on-v6 port 53 { any; };", "listen-on-v6 { none; };"),
        ],
        source,
    )
    return text + BIND_TEST_SETTINGS


@contextlib.contextmanager
def running_bind(
    directory: Path,
    *,
    zone: str = "dyn.example.test",
    key_name: str = "ddns-key",
    algorithm: str = "hmac-sha256",
    dynamic: bool = True,
    transfer: bool = True,
    more_zones: tuple[str, ...] = (),
    update_types: str = UPDATE_TYPES,
) -> Iterator[Primary]:
    """Run named with the shipped example configuration; stop it by PID afterwards."""
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    secret, key_file, secret_file = make_key(directory, key_name, algorithm)
    zone_source = DEPLOY / "bind" / "dyn.example.com.zone"
    for name in (zone, *more_zones):
        zone_text = rewrite(zone_source.read_text(), [("dyn.example.com", name)], zone_source)
        (directory / f"{name}.zone").write_text(zone_text)
    config = directory / "named.conf"
    config.write_text(
        bind_config(
            directory,
            port,
            zone,
            key_name,
            dynamic=dynamic,
            transfer=transfer,
            more_zones=more_zones,
            update_types=update_types,
        )
    )
    command = ["named", "-f", "-n", "2", "-c", str(config)]
    primary = Primary(
        "bind",
        directory,
        port,
        zone,
        key_name,
        algorithm,
        secret,
        key_file,
        secret_file,
        command,
        more_zones=more_zones,
    )
    with _running(primary):
        yield primary


# -- PowerDNS --------------------------------------------------------------------------


def powerdns_config(directory: Path, port: int, *, dynamic: bool) -> str:
    """deploy/powerdns/pdns.conf, rewritten to run in ``directory`` on ``port``."""
    source = DEPLOY / "powerdns" / "pdns.conf"
    replacements = [
        ("gsqlite3-database=/var/lib/powerdns/", f"gsqlite3-database={directory}/"),
        ("local-address=0.0.0.0, ::", "local-address=127.0.0.1"),
        ("\nlocal-port=53\n", f"\nlocal-port={port}\n"),
    ]
    if not dynamic:
        # A zone without TSIG-ALLOW-DNSUPDATE takes updates from these networks without
        # any key: no network may update for the zone to refuse them.
        replacements.append(("allow-dnsupdate-from=127.0.0.0/8,::1", "allow-dnsupdate-from="))
    return rewrite(source.read_text(), replacements, source)


@contextlib.contextmanager
def running_powerdns(
    directory: Path,
    *,
    zone: str = "dyn.example.test",
    key_name: str = "ddns-key",
    algorithm: str = "hmac-sha256",
    dynamic: bool = True,
    transfer: bool = True,
    more_zones: tuple[str, ...] = (),
    extra_config: str = "",
) -> Iterator[Primary]:
    """Run pdns_server with the shipped pdns.conf and setup.sh; stop it by PID afterwards.
    ``extra_config``: lines added to pdns.conf (e.g. its HTTP API for dns-lexicon)."""
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    secret, key_file, secret_file = make_key(directory, key_name, algorithm)
    config = powerdns_config(directory, port, dynamic=dynamic) + extra_config
    (directory / "pdns.conf").write_text(config)
    setup_env = {
        "CONFIG_DIR": str(directory),
        "ZONE": zone,
        "KEY_NAME": key_name,
        "ALGORITHM": algorithm,
        "SECRET_FILE": str(secret_file),
    }
    for name in (zone, *more_zones):
        run(["sh", str(DEPLOY / "powerdns" / "setup.sh")], env={**setup_env, "ZONE": name})
    command = [
        "pdns_server",
        f"--config-dir={directory}",
        f"--socket-dir={directory}",
        # Debian's systemd unit passes these; no status lookup off the machine either.
        "--daemon=no",
        "--guardian=no",
        "--disable-syslog",
        "--security-poll-suffix=",
    ]
    primary = Primary(
        "powerdns",
        directory,
        port,
        zone,
        key_name,
        algorithm,
        secret,
        key_file,
        secret_file,
        command,
        more_zones=more_zones,
    )
    if not dynamic:
        primary.pdnsutil("set-meta", zone, "TSIG-ALLOW-DNSUPDATE")
    if not transfer:
        primary.pdnsutil("set-meta", zone, "TSIG-ALLOW-AXFR")
    with _running(primary):
        yield primary


# -- pytest fixtures -------------------------------------------------------------------


@pytest.fixture
def bind(tmp_path: Path) -> Iterator[Primary]:
    with running_bind(tmp_path / "bind") as primary:
        yield primary


@pytest.fixture
def powerdns(tmp_path: Path) -> Iterator[Primary]:
    with running_powerdns(tmp_path / "powerdns") as primary:
        yield primary
