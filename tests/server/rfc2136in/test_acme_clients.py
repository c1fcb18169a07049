"""Wildcard certificates from pebble (Let's Encrypt's test CA) through UPDATE messages:
certbot with Debian's rfc2136 plugin, and lego's rfc2136 provider, as docs/rfc2136-inbound.md
sets them up. pebble checks the DNS-01 challenges against the built-in DNS.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode
import pytest

from tests.server.acme_ca import Pebble, pebble_ca
from tests.server.conftest import LiveServer, eventually
from tests.server.rfc2136in.clients import HOME, ZONE, Key, key_add
from tests.server.test_acme import _certificate_names

CERTBOT = "/usr/bin/certbot"  # Debian's, with python3-certbot-dns-rfc2136 (tests/run.sh)


@pytest.fixture
def ca(alice: LiveServer, tmp_path: Path) -> Iterator[Pebble]:
    with pebble_ca(tmp_path / "pebble", alice.dns_port) as pebble:
        yield pebble


def signed_soa_answered(server: LiveServer, key: Key) -> bool:
    """Whether the DNS answers an SOA query signed with ``key`` (certbot before 2.6 signs
    the queries it finds the zone with; the DNS process reads new keys every 2 s)."""
    query = dns.message.make_query(ZONE, "SOA")
    query.use_tsig(key.tsig(), algorithm=key.tsig().algorithm)
    try:
        reply = dns.query.udp(query, "127.0.0.1", port=server.dns_port, timeout=3)
    except dns.exception.DNSException:  # NOTAUTH/BADKEY: not read yet
        return False
    return reply.rcode() == dns.rcode.NOERROR and bool(reply.answer)


def check_certificate(certificate: Path, chain: Path, ca: Pebble, tmp_path: Path) -> None:
    names, issuer = _certificate_names(certificate)
    assert names == sorted([f"*.{HOME}", HOME])
    assert "Pebble Intermediate CA" in issuer
    root = tmp_path / "pebble-root.pem"
    root.write_text(ca.root())
    verified = subprocess.run(
        ["openssl", "verify", "-CAfile", str(root), "-untrusted", str(chain), str(certificate)],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_certbot_gets_a_wildcard_certificate(alice: LiveServer, ca: Pebble, tmp_path: Path) -> None:
    key = key_add(alice, "certbot-home", "--owner", "alice", "--host", HOME)
    credentials = tmp_path / "rfc2136.ini"
    credentials.write_text(
        "dns_rfc2136_server = 127.0.0.1\n"
        f"dns_rfc2136_port = {alice.dns_port}\n"
        f"dns_rfc2136_name = {key.name}\n"
        f"dns_rfc2136_secret = {key.secret}\n"
        "dns_rfc2136_algorithm = HMAC-SHA256\n"
    )
    credentials.chmod(0o600)
    assert eventually(lambda: signed_soa_answered(alice, key), timeout=10)
    certbot = subprocess.run(
        [CERTBOT, "certonly", "--non-interactive", "--agree-tos", "-m", "admin@example.test",
         "--server", ca.directory_url, "--dns-rfc2136",
         "--dns-rfc2136-credentials", str(credentials),
         # NOERROR comes once DNS has the record: nothing to wait for.
         "--dns-rfc2136-propagation-seconds", "0",
         "--config-dir", str(tmp_path / "config"), "--work-dir", str(tmp_path / "work"),
         "--logs-dir", str(tmp_path / "logs"), "-d", HOME, "-d", f"*.{HOME}"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
             "REQUESTS_CA_BUNDLE": str(ca.tls_certificate)},
        timeout=300,
        check=False,
    )  # fmt: skip
    assert certbot.returncode == 0, certbot.stderr[-4000:] + ca.log.read_text()[-4000:]
    live = tmp_path / "config" / "live" / HOME
    check_certificate(live / "cert.pem", live / "chain.pem", ca, tmp_path)
    # Its clean-up deleted both values it set.
    assert alice.addresses(f"_acme-challenge.{HOME}", "TXT") == []


def test_lego_gets_a_wildcard_certificate(alice: LiveServer, ca: Pebble, tmp_path: Path) -> None:
    key = key_add(alice, "lego-home", "--owner", "alice", "--host", HOME)
    lego_dir = tmp_path / "lego"
    lego = subprocess.run(
        ["lego", "--server", ca.directory_url, "--accept-tos", "--email", "admin@example.test",
         "--path", str(lego_dir), "--dns", "rfc2136",
         # It finds the zone through these resolvers; the propagation check would ask the
         # zone's nameservers on port 53, which the test's DNS is not on.
         "--dns.resolvers", f"127.0.0.1:{alice.dns_port}", "--dns.disable-cp",
         "-d", f"*.{HOME}", "-d", HOME, "run"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path),
             "LEGO_CA_CERTIFICATES": str(ca.tls_certificate),
             "RFC2136_NAMESERVER": f"127.0.0.1:{alice.dns_port}",
             "RFC2136_TSIG_KEY": key.name,
             "RFC2136_TSIG_ALGORITHM": "hmac-sha256.",
             "RFC2136_TSIG_SECRET": key.secret,
             "RFC2136_PROPAGATION_TIMEOUT": "30", "RFC2136_POLLING_INTERVAL": "1",
             "RFC2136_SEQUENCE_INTERVAL": "1"},
        timeout=300,
        check=False,
    )  # fmt: skip
    assert lego.returncode == 0, lego.stderr[-4000:] + ca.log.read_text()[-4000:]
    certificates = lego_dir / "certificates"
    check_certificate(
        certificates / f"_.{HOME}.crt", certificates / f"_.{HOME}.issuer.crt", ca, tmp_path
    )
    assert alice.addresses(f"_acme-challenge.{HOME}", "TXT") == []
