"""deploy/systemd under a real systemd: docs/service.md's steps, run as written.

systemd is not PID 1 on this machine, but it boots as PID 1 of a podman container (a
Debian made with debootstrap, kept between runs as a tagged image). The container has no
network: the wheel and its dependencies are built here and handed to pip as a local
index. Its steps install the release files, `systemctl enable --now` starts the unit,
and an update goes in with curl and comes out of the built-in DNS on port 53, bound by
the unprivileged user through the unit's one capability. Then reload, a configuration
error (not restarted) and a crash (restarted), as systemd reports them.
"""

from __future__ import annotations

import re
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.deploy.podman import Podman, debian_image, fail, pip_wheel, root_podman, wait_until
from tests.deploy.test_packaging import build

pytestmark = pytest.mark.slow  # about a minute; four more when the base image is made

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "service.md"
PACKAGES = (
    *("systemd", "systemd-sysv", "dbus", "procps", "sudo"),  # procps: /bin/kill, for reload
    *("python3", "python3-venv", "ca-certificates", "curl", "bind9-dnsutils"),
)
UNIT = "nicupdate-server"
CONFIG = "/etc/nicupdate/nicupdate.toml"
HOST = "home.dyn.example.com"  # in the zone of deploy/systemd/nicupdate.toml


@dataclass(frozen=True)
class Machine:
    podman: Podman
    name: str

    def sh(self, script: str, *, stdin: str = "", check: bool = True) -> str:
        """Run a shell script in the container, as root in /; its standard output."""
        result = self.podman.run(
            "exec", "-i", self.name, "bash", "-eo", "pipefail", "-c", script,
            stdin=stdin, check=False,
        )  # fmt: skip
        if check and result.returncode != 0:
            fail(f"{script}\nexit {result.returncode}\n{result.stdout}{result.stderr}")
        return result.stdout

    def ok(self, script: str) -> bool:
        """Whether a shell script in the container exits 0."""
        return self.podman.run("exec", self.name, "bash", "-c", script, check=False).returncode == 0

    def show(self, *properties: str) -> dict[str, str]:
        flags = " ".join(f"-p {name}" for name in properties)
        said = self.sh(f"systemctl show {UNIT} {flags}")
        return dict(line.split("=", 1) for line in said.splitlines())

    def journal(self) -> str:
        return self.sh(f"journalctl -u {UNIT} --no-pager -o cat", check=False)


@pytest.fixture(scope="module")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Podman:
    return root_podman(tmp_path_factory.mktemp("podman"))


@pytest.fixture(scope="module")
def image(podman: Podman, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Debian with systemd and Python, made once and kept (podman's storage is the cache)."""
    return debian_image(podman, "nicupdate-test-systemd", PACKAGES, tmp_path_factory)


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What a release carries for this (the wheel, deploy/systemd/), and a local index."""
    folder = tmp_path_factory.mktemp("release")
    dist = build(tmp_path_factory.mktemp("build"))
    shutil.copy2(dist.wheel, folder)
    for path in (ROOT / "deploy" / "systemd").iterdir():
        shutil.copy2(path, folder)
    pip_wheel(folder / "index", f"{dist.wheel}[server]")
    return folder


@pytest.fixture
def machine(podman: Podman, image: str, release: Path) -> Iterator[Machine]:
    name = f"nicupdate-service-{uuid.uuid4().hex[:8]}"
    podman.run(
        "run", "--detach", "--name", name, "--systemd=always", "--network", "none",
        "--volume", f"{release}:/root/release:ro", image, "/sbin/init",
    )  # fmt: skip
    machine = Machine(podman, name)
    try:
        wait_until(
            lambda: (
                machine.sh("systemctl is-system-running", check=False).strip()
                in ("running", "degraded")
            ),
            "systemd to boot in the container",
            lambda: machine.sh("systemctl --failed --no-pager", check=False),
        )
        yield machine
    finally:
        podman.run("rm", "--force", "--time", "0", name, check=False)


def docs_block(after: str) -> str:
    """The first ```sh block of docs/service.md after the line ``after``."""
    text = DOCS.read_text(encoding="utf-8")
    match = re.search(re.escape(after) + r"\n.*?```sh\n(.*?)```", text, re.DOTALL)
    assert match, f"docs/service.md: no sh block after {after!r}"
    return match[1]


def admin_command() -> str:
    """docs/service.md's nicupdate-admin alias: the CLI as the service's user."""
    match = re.search(r"^# alias nicupdate-admin='([^']+)'$", DOCS.read_text(), re.MULTILINE)
    assert match, "docs/service.md: no nicupdate-admin alias"
    return match[1]


def test_the_service_runs_as_docs_service_md_installs_it(machine: Machine) -> None:
    # Install: the docs' steps, with pip reading the local index instead of PyPI.
    install = docs_block("## Install")
    machine.sh(
        "cd /root/release && export PIP_NO_INDEX=1 PIP_FIND_LINKS=/root/release/index\n" + install
    )
    # "edit it": this machine has no public address, DNS listens on loopback port 53.
    machine.sh(f'sed -i \'s/^listen = "192.0.2.53:53"/listen = "127.0.0.1:53"/\' {CONFIG}')
    admin = admin_command()
    assert machine.sh(f"{admin} check-config").startswith(f"configuration OK ({CONFIG})")
    machine.sh(f"{admin} user add alice --password-stdin", stdin="alice-secret-1\n")
    machine.sh(f"{admin} host add {HOST} --owner alice")

    machine.sh(f"systemctl enable --now {UNIT}")
    healthz = "curl -sf http://127.0.0.1:8245/healthz >/dev/null"
    wait_until(
        lambda: machine.ok(healthz),
        "the service to answer /healthz",
        machine.journal,
    )
    update = (
        "curl -s -u alice:alice-secret-1 'http://127.0.0.1:8245/nic/update?hostname={}&myip={}'"
    )
    assert machine.sh(update.format(HOST, "203.0.113.7")) == "good 203.0.113.7\n"
    assert machine.sh(f"dig +short @127.0.0.1 -p 53 {HOST} A") == "203.0.113.7\n"

    # Port 53 was bound by the user nicupdate, holding CAP_NET_BIND_SERVICE (bit 10) only.
    pid = machine.show("MainPID")["MainPID"]
    assert machine.sh(f"ps -o user= -p {pid}").strip() == "nicupdate"
    status = dict(
        line.split(":\t", 1) for line in machine.sh(f"cat /proc/{pid}/status").splitlines()
    )
    assert status["CapEff"] == status["CapBnd"] == f"{1 << 10:016x}"
    assert status["NoNewPrivs"] == "1" and status["Seccomp"] == "2"
    assert machine.sh("stat -c '%U %a %n' /var/lib/nicupdate /var/lib/nicupdate/nicupdate.db") == (
        "nicupdate 700 /var/lib/nicupdate\nnicupdate 600 /var/lib/nicupdate/nicupdate.db\n"
    )
    assert "serving HTTP on 127.0.0.1:8245" in machine.journal()

    # Reload: the same process goes on.
    machine.sh(f"systemctl reload {UNIT}")
    assert machine.show("MainPID", "ActiveState") == {"MainPID": pid, "ActiveState": "active"}
    assert machine.sh(update.format(HOST, "203.0.113.8")) == "good 203.0.113.8\n"

    # A configuration error (exit status 2) is not restarted; the journal names the key.
    machine.sh(f"cp {CONFIG} /root/good.toml")
    machine.sh(f"sed -i 's/^max_connections = .*/max_connections = 1/' {CONFIG}")
    machine.sh(f"systemctl restart {UNIT}", check=False)
    wait_until(
        lambda: machine.show("ActiveState")["ActiveState"] == "failed",
        "the service to fail on the bad configuration",
        machine.journal,
    )
    assert machine.show("NRestarts", "ExecMainStatus") == {"NRestarts": "0", "ExecMainStatus": "2"}
    assert "config error: limits.max_connections" in machine.journal()

    # A crash is restarted, and the update is still there.
    machine.sh(f"cp /root/good.toml {CONFIG} && systemctl reset-failed {UNIT}")
    machine.sh(f"systemctl restart {UNIT}")
    before = machine.show("MainPID", "NRestarts")
    machine.sh(f"kill -KILL {before['MainPID']}")
    restarts = str(int(before["NRestarts"]) + 1)
    wait_until(
        lambda: machine.show("NRestarts")["NRestarts"] == restarts and machine.ok(healthz),
        "systemd to restart the killed server",
        machine.journal,
    )
    assert machine.sh(f"dig +short @127.0.0.1 {HOST} A") == "203.0.113.8\n"
