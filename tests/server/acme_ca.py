"""Let's Encrypt's test CA, pebble (Debian's package), on free loopback ports.

:func:`pebble_ca` writes a throwaway configuration and a TLS certificate of its own
for 127.0.0.1 (made by openssl; the Debian package ships none), starts ``pebble`` with
``-dnsserver`` pointing at the DNS server to validate DNS-01 against, waits until its
ACME directory answers, and stops it by PID when the block ends. Its environment:
``PEBBLE_VA_NOSLEEP=1`` (no random wait before each validation) and
``PEBBLE_WFE_NONCEREJECT=0`` (no nonces refused on purpose, which clients retry).
"""

from __future__ import annotations

import contextlib
import json
import os
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.server.process import free_port, stop_by_pid

START_TIMEOUT = 30.0


@dataclass(frozen=True)
class Pebble:
    directory_url: str  # the ACME directory (lego's --server)
    management_url: str  # the CA's roots and intermediates
    tls_certificate: Path  # what trusts pebble's HTTPS (LEGO_CA_CERTIFICATES)
    log: Path

    def client(self) -> httpx.Client:
        context = ssl.create_default_context(cafile=str(self.tls_certificate))
        return httpx.Client(verify=context, timeout=10)

    def root(self) -> str:
        """The PEM of the root its certificates chain to (new for each start)."""
        with self.client() as client:
            answer = client.get(f"{self.management_url}/roots/0")
        answer.raise_for_status()
        return answer.text


def tls_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, and its key."""
    cert, key = directory / "pebble.crt", directory / "pebble.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-days", "2", "-subj", "/CN=pebble",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    return cert, key


def _wait_ready(pebble: Pebble, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    with pebble.client() as client:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"pebble exited: {pebble.log.read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if client.get(pebble.directory_url).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"pebble did not answer: {pebble.log.read_text()[-2000:]}")
            time.sleep(0.05)


@contextlib.contextmanager
def pebble_ca(directory: Path, dns_port: int) -> Iterator[Pebble]:
    """pebble validating DNS-01 against the DNS server on 127.0.0.1:``dns_port``."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = tls_certificate(directory)
    listen, management = free_port(), free_port()
    config = directory / "pebble-config.json"
    settings = {
        "listenAddress": f"127.0.0.1:{listen}",
        "managementListenAddress": f"127.0.0.1:{management}",
        "certificate": str(cert),
        "privateKey": str(key),
        # The ports it would validate HTTP-01 and TLS-ALPN-01 on (not used here).
        "httpPort": free_port(),
        "tlsPort": free_port(),
        "ocspResponderURL": "",
        "externalAccountBindingRequired": False,
    }
    config.write_text(json.dumps({"pebble": settings}))
    pebble = Pebble(
        f"https://127.0.0.1:{listen}/dir",
        f"https://127.0.0.1:{management}",
        cert,
        directory / "pebble.log",
    )
    env = {**os.environ, "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"}
    with pebble.log.open("wb") as log:
        process = subprocess.Popen(
            ["pebble", "-config", str(config), "-dnsserver", f"127.0.0.1:{dns_port}"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=directory,
        )
    try:
        _wait_ready(pebble, process)
        yield pebble
    finally:
        stop_by_pid(process)
