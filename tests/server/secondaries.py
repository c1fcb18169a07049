"""Real BIND 9, Knot DNS and NSD secondaries for tests, built from the shipped examples.

``running_secondary`` reads ``deploy/secondaries/{bind,knot,nsd}`` (the configurations
users copy), rewrites exactly the strings that tie them to a real machine (the primary's
address and port, the listening port, paths, the zone and key names, the key's secret),
starts the server on a free loopback port in a temporary directory and yields a
:class:`Secondary`. A test can ask it what it serves, wait for a serial to arrive, stop
and start it again (it keeps its zone files and journal, so it catches up by IXFR), and
read from its log which transfers it took.
"""

from __future__ import annotations

import base64
import contextlib
import re
import subprocess
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.tsig

from tests.server.primaries import free_port, rewrite
from tests.server.process import stop_by_pid

Kind = Literal["bind", "knot", "nsd"]
KINDS: tuple[Kind, ...] = ("bind", "knot", "nsd")
EXAMPLES = Path(__file__).resolve().parents[2] / "deploy" / "secondaries"
READY_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0

# What the examples say for the things the fixture replaces.
EXAMPLE_ZONE = "dyn.example.com"
EXAMPLE_CATALOG = "catalog.invalid"
EXAMPLE_KEY = "xfr-key"
EXAMPLE_ALGORITHM = "hmac-sha256"
EXAMPLE_SECRET = "UExBQ0VIT0xERVItcmVwbGFjZS13aXRoLXRzaWcta2V5Z2Vu"

# Lines the fixture adds to the example named.conf: no rndc channel (several test
# servers run at once), and the log on stderr with times; incoming transfers at debug
# level 3 (named -d 3), the only level at which named says whether it got an IXFR.
BIND_TEST_SETTINGS = """
controls { };
logging {
    channel to_stderr { stderr; severity info; print-time yes; };
    channel xfer_debug { stderr; severity debug 3; print-time yes; };
    category default { to_stderr; };
    category xfer-in { xfer_debug; };
};
"""
# NSD spools each transfer to a folder under /tmp: keep it in the test's directory.
NSD_TEST_SETTINGS = """
server:
    xfrdir: "{directory}"
"""


@dataclass
class Secondary:
    """One running secondary server."""

    kind: Kind
    directory: Path
    port: int
    zones: tuple[str, ...]
    config: Path
    command: list[str]
    host: str = "127.0.0.1"
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    @property
    def log_path(self) -> Path:
        return self.directory / f"{self.kind}.log"

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Start the server (again) on the same port and directory and wait until it
        answers queries (it need not have the zones yet: see :meth:`wait_serial`)."""
        if self.process is not None:
            raise RuntimeError(f"{self.kind} is already running (pid {self.pid})")
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """SIGTERM by PID and wait for the process to end (SIGKILL after 10 s). The
        zones it has stay on disk for the next :meth:`start`."""
        process, self.process = self.process, None
        if process is None:
            return
        if self.kind == "nsd" and process.poll() is None:
            # With no database NSD keeps transferred zones in memory and writes them
            # every zonefiles-write seconds, not when it stops: have it write them now,
            # as an admin would before a restart.
            with contextlib.suppress(subprocess.TimeoutExpired, OSError):
                subprocess.run(
                    ["nsd-control", "-c", str(self.config), "write"],
                    capture_output=True,
                    timeout=STOP_TIMEOUT,
                    check=False,
                )
        stop_by_pid(process, STOP_TIMEOUT)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        query = dns.message.make_query(self.zones[0], dns.rdatatype.SOA)
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                break
            with contextlib.suppress(dns.exception.DNSException, OSError):
                dns.query.udp(query, self.host, port=self.port, timeout=0.2)
                return  # any answer will do: SERVFAIL until the first transfer
            time.sleep(0.02)
        raise RuntimeError(
            f"{self.kind} did not answer on port {self.port} within {READY_TIMEOUT:g} s; "
            f"its log:\n{self.log_text()[-4000:]}"
        )

    # -- looking at what it serves -----------------------------------------------------

    def query(self, name: str, rdtype: str) -> dns.message.Message:
        """The secondary's answer to ``name``/``rdtype`` over UDP."""
        message = dns.message.make_query(name, rdtype)
        return dns.query.udp(message, self.host, port=self.port, timeout=2)

    def serial(self, zone: str) -> int | None:
        """The serial of ``zone`` this server answers with authority, or None while it
        does not serve the zone (not transferred yet, refused, expired)."""
        try:
            answer = self.query(zone, "SOA")
        except (dns.exception.DNSException, OSError):
            return None
        if answer.rcode() != dns.rcode.NOERROR or not answer.flags & dns.flags.AA:
            return None
        for rrset in answer.answer:
            if rrset.rdtype == dns.rdatatype.SOA:
                return int(rrset[0].serial)
        return None

    def wait_serial(self, zone: str, serial: int, timeout: float = 10.0) -> int:
        """Wait until the server serves ``zone`` with ``serial`` or a later one; the
        serial it serves. Fails with the server's log after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            current = self.serial(zone)
            if current is not None and current >= serial:
                return current
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{self.kind} on port {self.port} serves {zone} with serial {current}, "
                    f"not {serial}, after {timeout:g} s; its log:\n{self.log_text()[-4000:]}"
                )
            time.sleep(0.05)

    # -- its log -----------------------------------------------------------------------

    def log_text(self) -> str:
        """Everything the server has logged (stdout and stderr, across restarts)."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def transfers(self, zone: str | None = None) -> list[str]:
        """Each completed incoming transfer, oldest first, as "AXFR" or "IXFR" (those of
        ``zone`` only, when given). See :data:`NSD_LINE` for what NSD's log allows."""
        return parse_transfers(self.kind, self.log_text(), zone)


# -- reading the logs ------------------------------------------------------------------

# BIND (xfer-in at debug level 3, which the fixture turns on) says which kind of answer
# it got, then whether the transfer succeeded:
#   transfer of 'dyn.example.test/IN' from 127.0.0.1#5300: got incremental response
#   transfer of 'dyn.example.test/IN' from 127.0.0.1#5300: Transfer status: success
#   transfer of 'dyn.example.test/IN' from 127.0.0.1#5300: Transfer completed: 1 messages, ...
BIND_LINE = re.compile(
    r"transfer of '(?P<zone>[^/']+)/IN' from \S+: "
    r"(?:got (?P<kind>non)?incremental response|Transfer status: (?P<status>.+)"
    r"|(?P<done>Transfer completed))"
)
# Knot names the transfer in the line that ends it (an IXFR answered with the whole
# zone is logged as AXFR):
#   [dyn.example.test.] IXFR, incoming, remote 127.0.0.1@5300, finished, 0.00 seconds, ...
KNOT_LINE = re.compile(r"\[(?P<zone>[^\]]+)\] (?P<type>[AI]XFR), incoming, .*\bfinished\b")
# NSD 4.6 logs no transfer type at any verbosity (only its debug builds do), but the
# serial it had before: it asks for AXFR when it has no copy of the zone (serial 0 here)
# and for IXFR otherwise. So this is what NSD asked for, not what it got: a whole zone
# sent in answer to its IXFR counts as IXFR, and so does the AXFR it makes when it
# restarts without its zone file but with its xfrd.state (stopped without
# `nsd-control write`). A test that must know checks the primary's log as well.
#   zone dyn.example.test serial 1 is updated to 2
NSD_LINE = re.compile(
    r"\] nsd\[\d+\]: info: zone (?P<zone>\S+) serial (?P<old>\d+) is updated to \d+$"
)


def parse_transfers(kind: Kind, log: str, zone: str | None = None) -> list[str]:
    """The completed incoming transfers in a server's log, as "IXFR" / "AXFR"."""
    wanted = None if zone is None else zone.rstrip(".")
    found: list[str] = []
    pending: dict[str, tuple[str | None, str | None]] = {}  # BIND: zone -> (type, status)
    for line in log.splitlines():
        if kind == "bind" and (match := BIND_LINE.search(line)):
            name = match["zone"]
            what, status = pending.get(name, (None, None))
            if match["done"]:
                pending.pop(name, None)
                if status == "success" and what is not None and name == (wanted or name):
                    found.append(what)
            elif match["status"]:
                pending[name] = (what, match["status"].strip())
            else:
                pending[name] = ("AXFR" if match["kind"] else "IXFR", status)
        elif kind == "knot" and (match := KNOT_LINE.search(line)):
            if match["zone"].rstrip(".") == (wanted or match["zone"].rstrip(".")):
                found.append(match["type"])
        elif kind == "nsd" and (match := NSD_LINE.search(line)):
            if match["zone"].rstrip(".") == (wanted or match["zone"].rstrip(".")):
                found.append("AXFR" if match["old"] == "0" else "IXFR")
    return found


# -- building the configurations -------------------------------------------------------


def _secret(key: dns.tsig.Key) -> str:
    return base64.b64encode(key.secret).decode()


def _key_names(key: dns.tsig.Key) -> list[tuple[str, str]]:
    return [
        (EXAMPLE_KEY, key.name.to_text(omit_final_dot=True)),
        (EXAMPLE_ALGORITHM, key.algorithm.to_text(omit_final_dot=True)),
        (EXAMPLE_SECRET, _secret(key)),
    ]


def _copies(text: str, pattern: str, source: Path, zones: Iterable[str]) -> str:
    """``text`` with the zone block that ``pattern`` matches once for each of ``zones``."""
    found = re.search(pattern, text, re.M | re.S)
    if found is None:
        raise RuntimeError(f"{source} has no zone block: update tests/server/secondaries.py")
    block = found.group(0)
    blocks = "".join(block.replace(EXAMPLE_ZONE, zone) for zone in zones)
    return text.replace(block, blocks)


def _drop(text: str, pattern: str, source: Path) -> str:
    found = re.search(pattern, text, re.M | re.S)
    if found is None:
        raise RuntimeError(
            f"{source} no longer has {pattern!r}: update tests/server/secondaries.py"
        )
    return text.replace(found.group(0), "")


def bind_config(
    directory: Path,
    port: int,
    primary_port: int,
    zones: Iterable[str],
    key: dns.tsig.Key,
    catalog: str | None,
) -> str:
    """deploy/secondaries/bind/named.conf, rewritten to run in ``directory``."""
    source = EXAMPLES / "bind" / "named.conf"
    text = _copies(source.read_text(), r'^zone "dyn\.example\.com" \{.*?^\};\n', source, zones)
    if catalog is None:
        text = _drop(text, r"^\n    // RFC 9432 catalog zone.*?^    \};\n", source)
        text = _drop(
            text, r'^\n// The catalog zone is.*?^zone "catalog\.invalid" \{.*?^\};\n', source
        )
    else:
        text = rewrite(text, [(EXAMPLE_CATALOG, catalog)], source)
    text = rewrite(
        text,
        [
            *_key_names(key),
            ("192.0.2.1 port 53", f"127.0.0.1 port {primary_port}"),
            ('"/var/cache/bind', f'"{directory}'),
            ('"/run/named/', f'"{directory}/'),
            ("listen-on port 53 { any; };", f"listen-on port {port} {{ 127.0.0.1; }};"),
            ("listen-on-v6 port 53 { any; };", "listen-on-v6 { none; };"),
        ],
        source,
    )
    return text + BIND_TEST_SETTINGS


def knot_config(
    directory: Path,
    port: int,
    primary_port: int,
    zones: Iterable[str],
    key: dns.tsig.Key,
    catalog: str | None,
) -> str:
    """deploy/secondaries/knot/knot.conf, rewritten to run in ``directory``."""
    source = EXAMPLES / "knot" / "knot.conf"
    text = _copies(
        source.read_text(), r"^  - domain: dyn\.example\.com\n(    .*\n)*\n?", source, zones
    )
    if catalog is None:
        text = _drop(text, r"^  - domain: catalog\.invalid\n(    .*\n)*", source)
    else:
        text = rewrite(text, [(EXAMPLE_CATALOG, catalog)], source)
    return rewrite(
        text,
        [
            *_key_names(key),
            ("address: 192.0.2.1@53", f"address: 127.0.0.1@{primary_port}"),
            ("address: 192.0.2.1\n", "address: 127.0.0.1\n"),
            ('"/var/lib/knot', f'"{directory}'),
            ('"/run/knot"', f'"{directory}"'),
            ("listen: [ 0.0.0.0@53, ::@53 ]", f"listen: [ 127.0.0.1@{port} ]"),
            # root already (tests run as root in CI): no change of user
            ("    user: knot:knot\n", ""),
            ("target: syslog", "target: stderr"),
        ],
        source,
    )


def nsd_config(
    directory: Path,
    port: int,
    primary_port: int,
    zones: Iterable[str],
    key: dns.tsig.Key,
    catalog: str | None,
) -> str:
    """deploy/secondaries/nsd/nsd.conf, rewritten to run in ``directory``."""
    if catalog is not None:
        raise ValueError("NSD 4.6 has no catalog zone consumer: use bind or knot")
    source = EXAMPLES / "nsd" / "nsd.conf"
    text = _copies(
        source.read_text(), r'^zone:\n    name: "dyn\.example\.com"\n(    .*\n)*', source, zones
    )
    return rewrite(
        text,
        [
            *_key_names(key),
            ("request-xfr: 192.0.2.1@53", f"request-xfr: 127.0.0.1@{primary_port}"),
            ("allow-notify: 192.0.2.1", "allow-notify: 127.0.0.1"),
            ("ip-address: 0.0.0.0@53", f"ip-address: 127.0.0.1@{port}"),
            ("    ip-address: ::0@53\n", ""),
            ('"/var/lib/nsd', f'"{directory}'),
            ('"/run/nsd/', f'"{directory}/'),
            # root already (tests run as root in CI): no change of user
            ("username: nsd", 'username: ""'),
        ],
        source,
    ) + NSD_TEST_SETTINGS.format(directory=directory)


CONFIGS = {
    "bind": ("named.conf", bind_config),
    "knot": ("knot.conf", knot_config),
    "nsd": ("nsd.conf", nsd_config),
}


def command_for(kind: Kind, config: Path) -> list[str]:
    if kind == "bind":
        # No -u: named stays root, like the rest of the test run, and reads the temp dir.
        return ["named", "-f", "-d", "3", "-n", "1", "-c", str(config)]
    if kind == "knot":
        return ["knotd", "-c", str(config)]
    return ["nsd", "-d", "-c", str(config)]


@contextlib.contextmanager
def running_secondary(
    kind: Kind,
    tmp_path: Path,
    primary_port: int,
    zones: Iterable[str],
    key: dns.tsig.Key,
    catalog: str | None = None,
    *,
    port: int | None = None,
) -> Iterator[Secondary]:
    """Run a ``kind`` secondary of ``zones`` (and of the ``catalog`` zone's members)
    from the primary on 127.0.0.1:``primary_port``, transfers signed with ``key``, in
    ``tmp_path``/``kind``; stop it by PID afterwards. ``port``: where it listens (a free
    one by default; pass one to configure the primary's NOTIFY before it starts)."""
    zones = tuple(zone.rstrip(".") for zone in zones)
    if not zones:
        raise ValueError("a secondary needs at least one zone")
    directory = tmp_path / kind
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port() if port is None else port
    name, build = CONFIGS[kind]
    config = directory / name
    config.write_text(build(directory, port, primary_port, zones, key, catalog))
    secondary = Secondary(kind, directory, port, zones, config, command_for(kind, config))
    try:
        secondary.start()
        yield secondary
    finally:
        secondary.stop()
