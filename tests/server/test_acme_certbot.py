"""certbot with the certbot-dns-acmedns plugin (both from PyPI, the `test` extra) gets a
wildcard certificate from pebble through the acme-dns API, as docs/acme.md sets it up.

The set-up is the one a user makes: `nicupdate-server acme add HOST`, its JSON in the
plugin's account file keyed by the host's name, an ini file naming the API and that
file, and certbot's own command line. Pebble (tests/server/acme_ca.py) validates DNS-01
against the server's built-in DNS.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.server.acme_ca import pebble_ca
from tests.server.conftest import LiveServer
from tests.server.test_acme import HOME, _certificate_names, acme_add, txt_records

pytestmark = pytest.mark.usefixtures("clean_environment")

# The venv's certbot, beside the Python that runs the tests (the `test` extra's).
CERTBOT = Path(sys.executable).with_name("certbot")


def _redacted(text: str, secret: str) -> str:
    """The tail of ``text`` for a failure message, without the account's password
    (pyacmedns puts its request headers in the error it raises)."""
    return text.replace(secret, "<password>")[-4000:]


def test_certbot_gets_a_wildcard_certificate_from_pebble(alice: LiveServer, tmp_path: Path) -> None:
    account = acme_add(alice, HOME)
    password = account["password"]
    registrations = tmp_path / "acmedns.json"
    registrations.write_text(json.dumps({HOME: account}))  # the key: the name without "*."
    registrations.chmod(0o600)
    credentials = tmp_path / "acmedns.ini"
    credentials.write_text(
        f"dns_acmedns_api_url = {alice.url}/acme-dns\n"
        f"dns_acmedns_registration_file = {registrations}\n"
    )
    credentials.chmod(0o600)  # certbot refuses a credentials file others can read
    certbot_dir = tmp_path / "certbot"
    with pebble_ca(tmp_path / "pebble", alice.dns_port) as ca:
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": str(tmp_path),
            "REQUESTS_CA_BUNDLE": str(ca.tls_certificate),  # pebble's HTTPS
        }
        certbot = subprocess.run(
            [str(CERTBOT), "certonly", "--non-interactive", "--agree-tos",
             "-m", "admin@example.test", "--server", ca.directory_url,
             "--authenticator", "dns-acmedns", "--dns-acmedns-credentials", str(credentials),
             "--dns-acmedns-propagation-seconds", "0",
             "-d", f"*.{HOME}", "-d", HOME,
             "--config-dir", str(certbot_dir / "config"),
             "--work-dir", str(certbot_dir / "work"),
             "--logs-dir", str(certbot_dir / "logs")],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
            check=False,
        )  # fmt: skip
        output = certbot.stdout + certbot.stderr
        assert certbot.returncode == 0, _redacted(output, password) + ca.log.read_text()[-4000:]
        root = tmp_path / "pebble-root.pem"
        root.write_text(ca.root())
    assert password not in output
    assert password not in (certbot_dir / "logs" / "letsencrypt.log").read_text()

    assert "Successfully received certificate." in output
    saved = re.search(r"^Certificate is saved at: (\S+)$", output, re.MULTILINE)
    assert saved is not None, output
    fullchain = Path(saved.group(1))
    assert fullchain == certbot_dir / "config" / "live" / HOME / "fullchain.pem"
    certificate, chain = fullchain.with_name("cert.pem"), fullchain.with_name("chain.pem")
    names, issuer = _certificate_names(certificate)
    assert names == sorted([f"*.{HOME}", HOME])
    assert "Pebble Intermediate CA" in issuer
    verified = subprocess.run(
        ["openssl", "verify", "-CAfile", str(root), "-untrusted", str(chain), str(certificate)],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    # Both challenges' values were served at once, at the host's own _acme-challenge.
    assert len(txt_records(alice)) == 2
