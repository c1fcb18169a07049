"""deploy/container: the image and both compose files, built and run for real with podman.

No image registry is reachable, so the base image is Debian made with debootstrap (kept
between runs as a tagged image, keyed by suite, mirror and packages), and the Python
packages are wheels built on this machine and mounted into the build, which then runs
without a network. The compose files run with podman-compose as a user runs them, with
their ports published on free loopback ports: updates go in with curl, come out with dig.

Every container, pod, volume, network and image a test makes is removed by name when it
ends; only the debootstrap base stays.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import stat
import subprocess
import sys
import tomllib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.deploy.podman import (
    BUILD_TIMEOUT,
    Podman,
    debian_image,
    debian_suite,
    fail,
    pip_wheel,
    root_podman,
    wait_until,
)
from tests.server.process import free_port

pytestmark = pytest.mark.slow  # about two minutes; five when the base image is made

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "container"
COMPOSE = DEPLOY / "compose.yaml"
COMPOSE_BIND = DEPLOY / "compose.bind.yaml"

BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates")
RUN = uuid.uuid4().hex[:8]  # in every name this module gives podman

ALICE = ("alice", "alice-secret-1")
HOME = "home.dyn.example.com"  # in the zone of deploy/container's configurations
# A one-off command needs no health check (and podman's timer for it needs systemd).
ONE_OFF = ("--no-healthcheck",)
# docs/container.md's restore into the volume, the backup on standard input.
RESTORE = "rm -f nicupdate.db-wal nicupdate.db-shm && umask 077 && cat > nicupdate.db"


# -- the images --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Podman:
    return root_podman(tmp_path_factory.mktemp("podman"), {"curl": "curl", "dig": "bind9-dnsutils"})


@pytest.fixture(scope="module")
def base_image(podman: Podman, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A Debian base with Python, made once and kept (podman's storage is the cache)."""
    tag = debian_image(podman, "nicupdate-test-base", BASE_PACKAGES, tmp_path_factory)
    script = "import sys; print('%d.%d' % sys.version_info[:2])"
    theirs = podman.run("run", "--rm", tag, "python3", "-c", script).stdout.strip()
    ours = "{}.{}".format(*sys.version_info[:2])
    if theirs != ours:
        fail(
            f"the base image has Python {theirs} and these tests run on {ours}: the wheels "
            f"built here would not install there. Run them with Debian {debian_suite()}'s "
            "python3."
        )
    return tag


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Wheels of every package the image installs, built from a copy of the sources."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    for name in ("server", "client"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    build_requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"][
        "requires"
    ]
    wheels = tmp_path_factory.mktemp("wheels")
    pip_wheel(wheels, f"{source}[server]", *build_requires)
    return wheels


@pytest.fixture(scope="module")
def nicupdate_image(podman: Podman, base_image: str, wheelhouse: Path) -> Iterator[str]:
    """deploy/container/Containerfile built as a user builds it, but offline."""
    name = f"localhost/nicupdate-test-{RUN}:latest"
    try:
        podman.run(
            "build", "--format", "docker", "--layers=false", "--network", "none",
            "--volume", f"{wheelhouse}:/wheels:ro",
            "--build-arg", f"BASE={base_image}",
            "--build-arg", "PIP_INSTALL_OPTIONS=--no-index --find-links /wheels",
            "--tag", name, "--file", str(DEPLOY / "Containerfile"), str(ROOT),
            timeout=BUILD_TIMEOUT,
        )  # fmt: skip
        yield name
    finally:
        podman.run("rmi", "--force", name, check=False)


@pytest.fixture(scope="module")
def bind_image(podman: Podman, base_image: str) -> Iterator[str]:
    """deploy/container/bind: BIND 9 installed with apt from the Debian mirror."""
    name = f"localhost/nicupdate-test-bind-{RUN}:latest"
    try:
        podman.run(
            "build", "--format", "docker", "--layers=false", "--network", "host",
            "--build-arg", f"BASE={base_image}",
            "--tag", name, str(DEPLOY / "bind"),
            timeout=BUILD_TIMEOUT,
        )  # fmt: skip
        yield name
    finally:
        podman.run("rmi", "--force", name, check=False)


# -- a running compose project -----------------------------------------------------------


@dataclass
class Project:
    podman: Podman
    name: str
    file: Path
    env: dict[str, str]
    http_port: int
    dns_port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def compose(
        self, *args: str, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        program = Path(sys.executable).with_name("podman-compose")
        if not program.is_file():
            fail(f"{program} is missing: pip install -e '.[test]'")
        result = subprocess.run(
            [str(program), "--project-name", self.name, "--file", str(self.file), *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env,
            cwd=self.file.parent,
            timeout=300,
            check=False,
        )
        if check and result.returncode != 0:
            fail(
                f"podman-compose {' '.join(args)}: exit {result.returncode}\n"
                f"{result.stdout[-3000:]}{result.stderr[-3000:]}\n{self.all_logs()}"
            )
        return result

    def container(self, service: str) -> str:
        found = self.podman.run(
            "ps", "--all", "--format", "{{.Names}}",
            "--filter", f"label=io.podman.compose.project={self.name}",
            "--filter", f"label=com.docker.compose.service={service}",
        ).stdout.split()  # fmt: skip
        if len(found) != 1:
            fail(f"{self.name}: expected one container of {service}, found {found}")
        return found[0]

    def logs(self, service: str) -> str:
        result = self.podman.run("logs", self.container(service))
        return result.stdout + result.stderr

    def all_logs(self) -> str:
        names = self.podman.run(
            "ps", "--all", "--format", "{{.Names}}",
            "--filter", f"label=io.podman.compose.project={self.name}",
            check=False,
        ).stdout.split()  # fmt: skip
        parts = []
        for name in names:
            result = self.podman.run("logs", name, check=False)
            parts.append(f"--- {name}\n{result.stdout[-3000:]}{result.stderr[-3000:]}")
        return "\n".join(parts)

    def healthz(self) -> str | None:
        try:
            return httpx.get(self.url + "/healthz", timeout=5, trust_env=False).text
        except httpx.HTTPError:
            return None

    def wait_started(self) -> None:
        def started() -> bool:
            # A server that cannot start is restarted by the restart policy: say so at once.
            restarts = self.podman.inspect(self.container("nicupdate"), "{{.RestartCount}}")
            if int(restarts) >= 3:
                fail(f"nicupdate exits at start ({restarts} restarts)\n{self.all_logs()}")
            return self.healthz() == "ok\n"

        wait_until(started, f"{self.url}/healthz to answer ok", self.all_logs)

    def exec(self, *command: str, stdin: str | None = None) -> str:
        """A command in the running nicupdate container, as docs/container.md runs it."""
        return self.compose("exec", "-T", "nicupdate", *command, stdin=stdin).stdout

    def remove(self) -> None:
        """Everything of the project, whatever state a failed test left it in."""
        label = f"label=io.podman.compose.project={self.name}"
        self.compose("down", "--volumes", check=False)
        containers = self.podman.run("ps", "--all", "--quiet", "--filter", label, check=False)
        if containers.stdout.split():
            self.podman.run("rm", "--force", "--volumes", *containers.stdout.split(), check=False)
        self.podman.run("pod", "rm", "--force", "--ignore", f"pod_{self.name}", check=False)
        for kind in ("volume", "network"):
            # By label, and by name: a volume restored into has no label.
            listed = self.podman.run(kind, "ls", "--format", "{{.Name}}", check=False)
            labelled = self.podman.run(kind, "ls", "--quiet", "--filter", label, check=False)
            names = {n for n in listed.stdout.split() if n.startswith(f"{self.name}_")}
            names.update(labelled.stdout.split())
            if names:
                self.podman.run(kind, "rm", "--force", *sorted(names), check=False)


@contextlib.contextmanager
def compose_up(podman: Podman, file: Path, kind: str, **images: str) -> Iterator[Project]:
    http_port, dns_port = free_port(), free_port()
    while dns_port == http_port:
        dns_port = free_port()
    env = dict(podman.env, **images)
    env["NICUPDATE_HTTP_PUBLISH"] = f"127.0.0.1:{http_port}"
    env["NICUPDATE_DNS_PUBLISH"] = f"127.0.0.1:{dns_port}"
    project = Project(podman, f"nicupdatetest{RUN}{kind}", file, env, http_port, dns_port)
    try:
        project.compose("up", "--detach", "--no-build")
        project.wait_started()
        yield project
    finally:
        project.remove()


def add_alice_and_home(project: Project) -> None:
    """docs/container.md's first steps, in the running container: an account, a host."""
    added = project.exec(
        "nicupdate-server", "user", "add", ALICE[0], "--password-stdin", stdin=ALICE[1] + "\n"
    )
    assert "user alice added" in added
    assert f"host {HOME} added for alice" in project.exec(
        "nicupdate-server", "host", "add", HOME, "--owner", ALICE[0]
    )
    # Both changes reach the running server, which logs each as it applies it.
    applied = f"host {HOME} added (owner alice)"
    wait_until(lambda: applied in project.logs("nicupdate"), applied, project.all_logs)


def curl_update(project: Project, address: str) -> str:
    url = f"{project.url}/nic/update?hostname={HOME}&myip={address}"
    result = subprocess.run(
        ["curl", "--silent", "--show-error", "--noproxy", "*", "--max-time", "30",
         "--user", f"{ALICE[0]}:{ALICE[1]}", url],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def dig(port: int, *options: str) -> list[str]:
    result = subprocess.run(
        ["dig", "@127.0.0.1", "-p", str(port), "+short", "+time=2", "+tries=3",
         *options, HOME, "A"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.split()


def health_log(podman: Podman, container: str) -> list[dict[str, object]]:
    log = json.loads(podman.inspect(container, "{{json .State.Health.Log}}"))
    assert isinstance(log, list)
    return log


# -- the tests ---------------------------------------------------------------------------


def test_compose_serves_updates_from_the_builtin_dns(
    podman: Podman, nicupdate_image: str, tmp_path: Path
) -> None:
    with compose_up(podman, COMPOSE, "builtin", NICUPDATE_IMAGE=nicupdate_image) as project:
        add_alice_and_home(project)
        assert curl_update(project, "203.0.113.7") == "good 203.0.113.7"
        # The container's DNS, on the published port, over UDP and TCP.
        assert dig(project.dns_port) == ["203.0.113.7"]
        assert dig(project.dns_port, "+tcp") == ["203.0.113.7"]

        container = project.container("nicupdate")
        # The server (PID 1) is not root, and the database it made is its own alone.
        status = podman.run("exec", container, "cat", "/proc/1/status").stdout
        assert re.search(r"^Uid:\s+8245\s", status, re.MULTILINE), status
        database = podman.run(
            "exec", container, "stat", "-c", "%a %U", "/var/lib/nicupdate/nicupdate.db"
        )
        assert database.stdout.split() == ["600", "nicupdate"]

        # The image's HEALTHCHECK: healthy, and unhealthy with the reason while it hangs.
        assert podman.run("healthcheck", "run", container, check=False).returncode == 0
        assert podman.inspect(container, "{{.State.Health.Status}}") == "healthy"
        podman.run("kill", "--signal", "STOP", container)
        try:
            hung = podman.run("healthcheck", "run", container, check=False)
        finally:
            podman.run("kill", "--signal", "CONT", container)
        assert hung.returncode == 1, hung.stdout + hung.stderr
        assert "unhealthy" in hung.stdout
        said = str(health_log(podman, container)[-1]["Output"])
        assert said.strip() == "cannot reach http://127.0.0.1:8245/healthz: timed out"

        # docs/container.md's backup, taken while it runs, copied out 0600.
        project.exec("nicupdate-server", "backup", "--force", "/var/lib/nicupdate/backup.db")
        backup = tmp_path / "nicupdate-backup.db"
        podman.run("cp", f"{container}:/var/lib/nicupdate/backup.db", str(backup))
        assert stat.S_IMODE(backup.stat().st_mode) == 0o600

        # SIGTERM stops it cleanly.
        project.compose("stop")
        assert podman.inspect(container, "{{.State.ExitCode}}") == "0", project.logs("nicupdate")

        # The volume is lost; the backup restored into a new one is the same server.
        project.compose("down", "--volumes")
        podman.run(
            "run", "--rm", "--interactive", *ONE_OFF,
            "--volume", f"{project.name}_nicupdate-data:/var/lib/nicupdate",
            "--entrypoint", "sh", nicupdate_image, "-c", RESTORE,
            stdin_file=backup,
        )  # fmt: skip
        project.compose("up", "--detach", "--no-build")
        project.wait_started()
        assert dig(project.dns_port) == ["203.0.113.7"]
        assert curl_update(project, "203.0.113.7") == "nochg 203.0.113.7"


def test_admin_commands_run_in_the_image(podman: Podman, nicupdate_image: str) -> None:
    volume = f"nicupdate-test-{RUN}-admin"
    mount = f"{volume}:/var/lib/nicupdate"
    try:
        podman.run("volume", "create", volume)
        # Any command replaces `serve`; a new volume is the non-root user's to write.
        added = podman.run(
            "run", "--rm", "--interactive", "--volume", mount, *ONE_OFF, nicupdate_image,
            "user", "add", ALICE[0], "--password-stdin",
            stdin=ALICE[1] + "\n",
        )  # fmt: skip
        assert added.stdout.strip() == "user alice added"
        listed = podman.run(
            "run", "--rm", "--volume", mount, *ONE_OFF, nicupdate_image, "user", "list"
        )
        assert re.search(r"^alice\s+0\s", listed.stdout, re.MULTILINE), listed.stdout
        # The image's own configuration, and the environment reaching it.
        checked = podman.run("run", "--rm", *ONE_OFF, nicupdate_image, "check-config")
        assert "dyn.example.com" in checked.stdout
        bad = podman.run(
            "run", "--rm", "--env", "NICUPDATE_DNS__LISTEN=nowhere", *ONE_OFF, nicupdate_image,
            "check-config", check=False,
        )  # fmt: skip
        assert bad.returncode == 2
        assert len(bad.stderr.strip().splitlines()) == 1, bad.stderr
        assert "dns.listen" in bad.stderr and "nowhere" in bad.stderr
    finally:
        podman.run("volume", "rm", "--force", volume, check=False)


def test_compose_publishes_through_a_bind_primary(
    podman: Podman, nicupdate_image: str, bind_image: str
) -> None:
    with compose_up(
        podman,
        COMPOSE_BIND,
        "bind",
        NICUPDATE_IMAGE=nicupdate_image,
        NICUPDATE_BIND_IMAGE=bind_image,
    ) as project:
        add_alice_and_home(project)
        # `good`: BIND took the signed UPDATE; BIND answers on the published DNS port.
        assert curl_update(project, "203.0.113.7") == "good 203.0.113.7"
        assert dig(project.dns_port) == ["203.0.113.7"]
        assert dig(project.dns_port, "+tcp") == ["203.0.113.7"]
        bind_log = project.logs("bind")
        assert (
            "key ddns-key: updating zone 'dyn.example.com/IN': "
            "adding an RR at 'home.dyn.example.com' A 203.0.113.7"
        ) in bind_log

        # The key BIND made at its first start: shared with nicupdate only, never logged.
        bind = project.container("bind")
        key = podman.run("exec", bind, "cat", "/etc/bind/keys/ddns-key.conf").stdout
        secret = re.search(r'secret "([^"]+)"', key)
        assert secret, key
        owner = podman.run("exec", bind, "stat", "-c", "%a %U %g", "/etc/bind/keys/ddns-key.conf")
        assert owner.stdout.split() == ["640", "bind", "8245"]
        assert secret.group(1) not in bind_log + project.logs("nicupdate")
        # rndc, for editing the zone by hand, with the key the container made.
        status = podman.run("exec", bind, "rndc", "status")
        assert "server is up and running" in status.stdout

        for service in ("bind", "nicupdate"):
            container = project.container(service)
            checked = podman.run("healthcheck", "run", container, check=False)
            assert checked.returncode == 0, (service, checked.stdout, health_log(podman, container))
