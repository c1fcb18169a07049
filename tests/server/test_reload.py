"""SIGHUP (``systemctl reload``) re-reads the configuration of a running server.

Each test edits the server's file as an operator would, sends SIGHUP, and waits for the
log line that says how the reload went; then it checks what clients see.
"""

from __future__ import annotations

import base64
import signal
import socket
import subprocess
from pathlib import Path

import dns.message
import dns.query
import dns.rdatatype
import httpx

from tests.server.conftest import run_cli
from tests.server.primaries import running_bind
from tests.server.process import ALICE, HOME, ServerProcess, server_process, wait_for


def reload(server: ServerProcess, text: str) -> str:
    """Write ``text`` as the configuration, send SIGHUP, and return the log line that
    ends the reload."""
    done = server.text().count("configuration reloaded") + server.text().count(
        "configuration not reloaded"
    )
    server.config.write_text(text)
    server.proc.send_signal(signal.SIGHUP)

    def ended() -> bool:
        log = server.text()
        return log.count("configuration reloaded") + log.count("configuration not reloaded") > done

    wait_for(ended, what="the reload to end")
    lines = [line for line in server.text().splitlines() if "configuration" in line]
    return lines[-1]


def realm(server: ServerProcess) -> str:
    answer = httpx.get(f"{server.url}/nic/update?hostname={HOME}", timeout=10)
    assert answer.status_code == 401
    return answer.headers["www-authenticate"]


def served(server: ServerProcess, name: str) -> list[str]:
    query = dns.message.make_query(name, dns.rdatatype.A)
    reply = dns.query.udp(query, "127.0.0.1", port=server.dns_port, timeout=5)
    return sorted(rd.to_text() for rrset in reply.answer for rd in rrset)


def test_a_reload_changes_server_keys_and_limits_for_the_next_requests(tmp_path: Path) -> None:
    with server_process(tmp_path, server_extra='realm = "before"') as server:
        assert realm(server) == 'Basic realm="before", charset="UTF-8"'
        text = server.config.read_text().replace('realm = "before"', 'realm = "after"')
        # One failed password locks a source out from now on: a limit changed at once.
        text = text.replace("[limits]\n", "[limits]\nauth_failures_per_source = 1\n")
        assert reload(server, text).endswith("configuration reloaded")
        assert realm(server) == 'Basic realm="after", charset="UTF-8"'
        url = f"{server.url}/nic/update?hostname={HOME}"
        assert httpx.get(url, auth=("alice", "wrong"), timeout=10).status_code == 401
        assert httpx.get(url, auth=("alice", "wrong"), timeout=10).status_code == 429
        assert server.stop() == 0


def test_a_reload_adds_a_zone_served_at_once(tmp_path: Path) -> None:
    with server_process(tmp_path) as server:
        text = server.config.read_text() + (
            '\n[[zones]]\nname = "dyn.example.org"\nbackend = "builtin"\n'
            'nameserver_addresses = ["127.0.0.1"]\n'
        )
        assert reload(server, text).endswith("configuration reloaded")
        added = server.cli("host", "add", "nas.dyn.example.org", "--owner", ALICE[0])
        assert added.returncode == 0, added.stderr

        def update() -> str:
            answer = httpx.get(
                f"{server.url}/nic/update?hostname=nas.dyn.example.org&myip=192.0.2.44",
                auth=ALICE,
                timeout=10,
            )
            return answer.text

        wait_for(lambda: update() != "nohost\n", what="the new host to be known")
        assert served(server, "nas.dyn.example.org") == ["192.0.2.44"]
        assert served(server, HOME) == []  # the first zone is still served (no address yet)
        assert server.stop() == 0


def test_an_invalid_file_keeps_the_running_configuration_with_one_line(tmp_path: Path) -> None:
    with server_process(tmp_path, server_extra='realm = "kept"') as server:
        good = server.config.read_text()
        line = reload(server, good.replace("[limits]\n", "[limits]\nmax_connections = 3\n"))
        assert line.endswith(
            "configuration not reloaded, the running one is kept: limits.max_connections: "
            f"must be between 16 and 1000000 (got 3) (in {server.config})"
        ), line
        line = reload(server, good.replace('realm = "kept"', 'realm = "new'))
        assert "configuration not reloaded, the running one is kept: " in line
        assert "not valid TOML" in line
        assert "Traceback" not in server.text()
        assert realm(server) == 'Basic realm="kept", charset="UTF-8"'
        answer = httpx.get(
            f"{server.url}/nic/update?hostname={HOME}&myip=192.0.2.7", auth=ALICE, timeout=10
        )
        assert answer.text == "good 192.0.2.7\n"
        assert server.stop() == 0


def test_a_request_in_flight_during_a_reload_gets_its_answer(tmp_path: Path) -> None:
    # A locked-out source's answer is held back 3 s: long enough to reload meanwhile.
    limits = "auth_failures_per_source = 1\nthrottle_delay = 3"
    with server_process(tmp_path, limits=limits) as server:
        guess = base64.b64encode(b"alice:wrong").decode()
        request = (
            f"GET /nic/update?hostname={HOME} HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Basic {guess}\r\nConnection: close\r\n\r\n"
        ).encode()
        with socket.create_connection(("127.0.0.1", server.http_port)) as first:
            first.sendall(request)
            first.settimeout(30)
            assert first.recv(4096).startswith(b"HTTP/1.1 401 ")
        with socket.create_connection(("127.0.0.1", server.http_port)) as held:
            held.sendall(request)
            held.settimeout(30)
            text = server.config.read_text().replace("throttle_delay = 3", "throttle_delay = 0")
            assert reload(server, text).endswith("configuration reloaded")
            answer = b""
            while chunk := held.recv(4096):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 429 ")
        assert answer.endswith(b"\r\n\r\n911\n")
        assert server.stop() == 0


# -- TLS -----------------------------------------------------------------------------


def certificate(directory: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key (PEM), made by openssl."""
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-days", "2", "-subj", f"/CN={name}", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    key.chmod(0o600)
    return cert, key


def curl(server: ServerProcess, cacert: Path) -> subprocess.CompletedProcess[str]:
    url = f"https://127.0.0.1:{server.http_port}/nic/update?hostname={HOME}&myip=192.0.2.80"
    return subprocess.run(
        ["curl", "-sS", "--max-time", "20", "--cacert", str(cacert),
         "-u", f"{ALICE[0]}:{ALICE[1]}", url],
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip


def test_https_with_the_configured_certificate_renewed_by_a_reload(tmp_path: Path) -> None:
    live = tmp_path / "live"
    live.mkdir()
    first_cert, first_key = certificate(tmp_path, "first")
    second_cert, second_key = certificate(tmp_path, "second")
    cert, key = live / "fullchain.pem", live / "privkey.pem"
    cert.write_bytes(first_cert.read_bytes())
    key.write_bytes(first_key.read_bytes())
    key.chmod(0o600)
    tls = f'tls_certificate = "{cert}"\ntls_key = "{key}"'
    with server_process(tmp_path, server_extra=tls, https=True) as server:
        done = curl(server, first_cert)
        assert (done.returncode, done.stdout) == (0, "good 192.0.2.80\n"), done.stderr
        # Renewed in place, as certbot or lego do, then `systemctl reload`.
        cert.write_bytes(second_cert.read_bytes())
        key.write_bytes(second_key.read_bytes())
        assert reload(server, server.config.read_text()).endswith("configuration reloaded")
        done = curl(server, second_cert)
        assert (done.returncode, done.stdout) == (0, "nochg 192.0.2.80\n"), done.stderr
        assert curl(server, first_cert).returncode != 0  # the old one is not served
        # A broken renewal keeps the running certificate.
        cert.write_text("not a certificate\n")
        line = reload(server, server.config.read_text())
        assert "configuration not reloaded, the running one is kept: " in line
        assert "server.tls_certificate: " in line
        done = curl(server, second_cert)
        assert (done.returncode, done.stdout) == (0, "nochg 192.0.2.80\n"), done.stderr
        assert server.stop() == 0


def test_a_key_that_is_not_the_certificates_stops_start_up_with_one_line(
    tmp_path: Path,
) -> None:
    cert, _ = certificate(tmp_path, "one")
    _, other_key = certificate(tmp_path, "two")
    tls = f'tls_certificate = "{cert}"\ntls_key = "{other_key}"'
    config = tmp_path / "bad.toml"
    config.write_text(f"[server]\n{tls}\n")
    done = run_cli("--config", str(config), "serve", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().endswith(
        f"server.tls_key: {other_key} is not the key of the certificate {cert}"
    ), done.stderr
    assert "Traceback" not in done.stderr


def test_changes_a_removed_backend_lacks_are_applied_when_it_comes_back(tmp_path: Path) -> None:
    with running_bind(tmp_path / "bind") as bind, server_process(tmp_path) as server:
        alone = server.config.read_text()
        both = alone.replace('backends = ["builtin"]', 'backends = ["builtin", "primary"]')
        both += "\n" + bind.config_block("primary")
        assert reload(server, both).endswith("configuration reloaded")
        url = f"{server.url}/nic/update?hostname={HOME}&myip="
        assert httpx.get(url + "192.0.2.1", auth=ALICE, timeout=30).text == "good 192.0.2.1\n"
        wait_for(lambda: bind.query(HOME, "A") == ["192.0.2.1"], what="BIND to have it")
        bind.stop()
        # BIND is down: the change is stored, served by the built-in DNS, pending for BIND.
        answer = httpx.get(url + "192.0.2.2", auth=ALICE, timeout=30).text
        assert answer == "911\n"
        assert served(server, HOME) == ["192.0.2.2"]
        # The backend taken out of the configuration, then BIND back and the backend too.
        assert reload(server, alone).endswith("configuration reloaded")
        bind.start()
        assert bind.query(HOME, "A") == ["192.0.2.1"]  # nothing sent while it was out
        assert reload(server, both).endswith("configuration reloaded")
        wait_for(lambda: bind.query(HOME, "A") == ["192.0.2.2"], what="the pending change")
        assert server.stop() == 0
