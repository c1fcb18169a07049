"""Real TLS reverse proxies for tests, built from the shipped examples, and curl.

:func:`running_proxy` reads ``deploy/caddy/Caddyfile`` or ``deploy/nginx/nicupdate.conf``
(the configurations users copy), rewrites exactly the strings that tie them to a real
machine (ports 80 and 443 on every address, the upstream port, the certificate: Caddy's
``tls internal`` instead of Let's Encrypt, for nginx a self-signed one made with
openssl), starts the proxy on free loopback ports in a temporary directory and yields a
:class:`Proxy`. It is stopped by PID when the block ends.

:func:`curl` asks through it as a router would: real curl, trusting the proxy's CA,
connecting from a loopback source address of the test's choosing.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tests.server.primaries import rewrite
from tests.server.process import free_port, stop_by_pid

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
NAME = "ddns.example.com"  # the examples' server name; curl --resolve points it at loopback
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0

Kind = Literal["caddy", "nginx"]

# What the test adds in front of the example: no admin API, no CA in the system's trust
# store, certificates and state in the temporary directory, and the ports.
CADDY_GLOBAL = """{{
	admin off
	skip_install_trust
	storage file_system {storage}
	http_port {http_port}
	https_port {https_port}
}}

"""

# The main configuration around the example, as Debian's nginx.conf includes conf.d/.
NGINX_MAIN = """
worker_processes 1;
pid {directory}/nginx.pid;
error_log {directory}/error.log info;
events {{
    worker_connections 64;
}}
http {{
    access_log off;
    client_body_temp_path {directory}/body;
    proxy_temp_path {directory}/proxy;
    fastcgi_temp_path {directory}/fastcgi;
    uwsgi_temp_path {directory}/uwsgi;
    scgi_temp_path {directory}/scgi;
    include {directory}/nicupdate.conf;
}}
"""


@dataclass(frozen=True)
class Answer:
    """What curl got: the HTTP status, the body and a redirect's target."""

    status: int
    body: str
    location: str


@dataclass
class Proxy:
    kind: Kind
    https_port: int
    http_port: int
    ca: Path  # the certificate that curl --cacert trusts
    log_file: Path
    process: subprocess.Popen[bytes]

    @property
    def https_url(self) -> str:
        return f"https://{NAME}:{self.https_port}"

    @property
    def http_url(self) -> str:
        return f"http://{NAME}:{self.http_port}"

    def log(self) -> str:
        """What the proxy has logged so far."""
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def curl(
        self,
        path: str,
        *,
        source: str,
        user: tuple[str, str] | None = None,
        headers: Sequence[str] = (),
        https: bool = True,
        cacert: bool = True,
    ) -> Answer:
        """``path`` asked over HTTPS (or plain HTTP) from the loopback address ``source``."""
        url = (self.https_url if https else self.http_url) + path
        port = self.https_port if https else self.http_port
        return curl(
            url,
            resolve=f"{NAME}:{port}:127.0.0.1",
            source=source,
            user=user,
            headers=headers,
            cacert=self.ca if cacert else None,
        )


class CurlFailed(AssertionError):
    """curl exited non-zero: no HTTP answer at all (connection, TLS, timeout)."""

    def __init__(self, status: int, stderr: str) -> None:
        super().__init__(f"curl exited {status}: {stderr.strip()}")
        self.status = status


def curl(
    url: str,
    *,
    resolve: str,
    source: str,
    user: tuple[str, str] | None = None,
    headers: Sequence[str] = (),
    cacert: Path | None = None,
) -> Answer:
    """Real curl: ``url`` from ``source``, the name resolved as ``resolve`` says."""
    command = ["curl", "-sS", "--max-time", "20", "--resolve", resolve, "--interface", source]
    command += ["--write-out", "\n%{http_code}\n%{redirect_url}"]
    if cacert is not None:
        command += ["--cacert", str(cacert)]
    if user is not None:
        command += ["--user", ":".join(user)]
    for header in headers:
        command += ["--header", header]
    done = subprocess.run([*command, url], capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        raise CurlFailed(done.returncode, done.stderr)
    body, status, location = done.stdout.rsplit("\n", 2)
    return Answer(int(status), body, location)


def uncomment(text: str, first: str, source: Path) -> str:
    """Uncomment the block of ``text`` that starts with the commented line ``first`` and
    ends with the commented ``}`` at the same indentation."""
    lines = text.splitlines(keepends=True)
    pattern = re.compile(r"^(\s*)# ?")
    start = next((i for i, line in enumerate(lines) if line.strip() == f"# {first}"), None)
    if start is None:
        raise RuntimeError(f"{source} no longer contains '# {first}': update {__file__}")
    indent = pattern.sub(r"\1", lines[start]).partition(first)[0]
    for i in range(start, len(lines)):
        lines[i] = pattern.sub(r"\1", lines[i], count=1)
        if lines[i].rstrip("\n") == indent + "}":
            return "".join(lines)
    raise RuntimeError(f"{source}: the block '{first}' has no closing brace")


def caddy_config(directory: Path, upstream: int, https: int, http: int, http_only: bool) -> str:
    """deploy/caddy/Caddyfile, rewritten to run in ``directory``; ``http_only`` turns
    on its plain-HTTP site for routers that cannot speak HTTPS."""
    source = DEPLOY / "caddy" / "Caddyfile"
    text = source.read_text()
    if http_only:
        text = uncomment(text, f"http://{NAME} {{", source)
        text = rewrite(
            text, [(f"http://{NAME} {{\n", f"http://{NAME} {{\n\tbind 127.0.0.1\n")], source
        )
    site = f"\n{NAME} {{\n"
    text = rewrite(text, [(site, f"{site}\tbind 127.0.0.1\n\ttls internal\n")], source)
    text = rewrite(text, [("127.0.0.1:8245", f"127.0.0.1:{upstream}")], source)
    storage = directory / "storage"
    return CADDY_GLOBAL.format(storage=storage, http_port=http, https_port=https) + text


def nginx_config(directory: Path, upstream: int, https: int, http: int, http_only: bool) -> str:
    """deploy/nginx/nicupdate.conf, rewritten to run in ``directory`` with the
    certificate ``directory``/cert.pem; ``http_only`` swaps its redirect for the
    plain-HTTP location."""
    source = DEPLOY / "nginx" / "nicupdate.conf"
    text = source.read_text()
    if http_only:
        text = rewrite(text, [("    return 308 https://$host$request_uri;\n", "")], source)
        text = uncomment(text, "location / {", source)
    return rewrite(
        text,
        [
            ("listen 443 ssl;", f"listen 127.0.0.1:{https} ssl;"),
            ("listen [::]:443 ssl;", ""),
            ("listen 80;", f"listen 127.0.0.1:{http};"),
            ("listen [::]:80;", ""),
            (f"/etc/letsencrypt/live/{NAME}/fullchain.pem", str(directory / "cert.pem")),
            (f"/etc/letsencrypt/live/{NAME}/privkey.pem", str(directory / "key.pem")),
            ("127.0.0.1:8245", f"127.0.0.1:{upstream}"),
        ],
        source,
    )


def self_signed(directory: Path) -> Path:
    """A certificate for NAME and its key (cert.pem, key.pem) made by openssl."""
    key, cert = directory / "key.pem", directory / "cert.pem"
    request = ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"]
    subject = ["-subj", f"/CN={NAME}", "-addext", f"subjectAltName=DNS:{NAME}"]
    subprocess.run(
        ["openssl", *request, "-keyout", str(key), "-out", str(cert), *subject],
        capture_output=True,
        check=True,
        timeout=60,
    )
    return cert


@dataclass(frozen=True)
class _Launch:
    command: list[str]
    env: dict[str, str]
    ca: Path
    log: Path  # where the proxy logs


def _caddy(directory: Path, upstream: int, https: int, http: int, http_only: bool) -> _Launch:
    config = directory / "Caddyfile"
    config.write_text(caddy_config(directory, upstream, https, http, http_only))
    # Caddy autosaves its configuration under $XDG_CONFIG_HOME: keep it in the directory.
    env = {**os.environ, "HOME": str(directory), "XDG_CONFIG_HOME": str(directory / "config")}
    env["XDG_DATA_HOME"] = str(directory / "data")
    return _Launch(
        ["caddy", "run", "--config", str(config), "--adapter", "caddyfile"],
        env,
        directory / "storage" / "pki" / "authorities" / "local" / "root.crt",
        directory / "caddy.out",  # its stderr
    )


def _nginx(directory: Path, upstream: int, https: int, http: int, http_only: bool) -> _Launch:
    ca = self_signed(directory)
    site = nginx_config(directory, upstream, https, http, http_only)
    (directory / "nicupdate.conf").write_text(site)
    config = directory / "nginx.conf"
    config.write_text(NGINX_MAIN.format(directory=directory))
    log = directory / "error.log"
    return _Launch(
        ["nginx", "-c", str(config), "-p", str(directory), "-e", str(log), "-g", "daemon off;"],
        dict(os.environ),
        ca,
        log,
    )


@contextlib.contextmanager
def running_proxy(
    kind: Kind, directory: Path, upstream: int, *, http_only: bool = False
) -> Iterator[Proxy]:
    """The shipped ``kind`` configuration in front of 127.0.0.1:``upstream``."""
    directory.mkdir(parents=True, exist_ok=True)
    https, http = free_port(), free_port()
    while http == https:
        http = free_port()
    launch = (_caddy if kind == "caddy" else _nginx)(directory, upstream, https, http, http_only)
    with (directory / f"{kind}.out").open("wb") as out:
        process = subprocess.Popen(
            launch.command, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=launch.env
        )
    proxy = Proxy(kind, https, http, launch.ca, launch.log, process)
    try:
        _wait_ready(proxy)
        yield proxy
    finally:
        stop_by_pid(process, STOP_TIMEOUT)


def _wait_ready(proxy: Proxy) -> None:
    """Until the CA file exists and a TLS request through the proxy gets any answer."""
    deadline = time.monotonic() + READY_TIMEOUT
    problem = "it did not start"
    while time.monotonic() < deadline and proxy.process.poll() is None:
        if proxy.ca.exists():
            try:
                proxy.curl("/healthz", source="127.0.0.1")
                return
            except CurlFailed as exc:
                problem = str(exc)
        else:
            problem = f"{proxy.ca} does not exist"
        time.sleep(0.05)
    raise RuntimeError(
        f"{proxy.kind} did not answer over TLS within {READY_TIMEOUT:g} s ({problem}); "
        f"exit status {proxy.process.poll()}, its log:\n{proxy.log()[-4000:]}"
    )
