"""Podman for the deploy tests: the command, Debian base images and wheels made here.

The tests under tests/deploy that run containers (test_container.py, test_service.py)
share these. No image registry is reachable, so a base image is Debian made with
debootstrap and imported, kept between runs as a tagged image keyed by suite, mirror and
packages (podman's storage is the cache); the Python packages are wheels built on this
machine, since a container cannot reach PyPI. Podman runs as root with runc and no
default ulimits, as ../shared/CONTAINERS.md says works here.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest
from filelock import FileLock

MIRROR = os.environ.get("NICUPDATE_TEST_DEBIAN_MIRROR", "http://deb.debian.org/debian")
# podman's default ulimits and crun are refused in some sandboxes; runc works everywhere.
CONTAINERS_CONF = '[containers]\ndefault_ulimits = []\n\n[engine]\nruntime = "runc"\n'
# The Debian packages of the tools every podman test needs, by program name.
TOOLS = {"podman": "podman", "runc": "runc", "debootstrap": "debootstrap"}
WAIT_TIMEOUT = 120.0
BUILD_TIMEOUT = 900.0


def fail(message: str) -> NoReturn:
    __tracebackhide__ = True
    pytest.fail(message, pytrace=False)


def wait_until(check: Callable[[], bool], what: str, explain: Callable[[], str]) -> None:
    """Poll ``check`` until it holds; fail after WAIT_TIMEOUT with ``explain()``."""
    deadline = time.monotonic() + WAIT_TIMEOUT
    while not check():
        if time.monotonic() > deadline:
            fail(f"timed out after {WAIT_TIMEOUT:g} s waiting for {what}\n{explain()}")
        time.sleep(0.2)


@dataclass(frozen=True)
class Podman:
    env: dict[str, str]

    def run(
        self,
        *args: str,
        stdin: str | None = None,
        stdin_file: Path | None = None,
        timeout: float = 300.0,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """``podman args``, with text or a file on standard input; fails on an error."""
        with contextlib.ExitStack() as stack:
            source = stack.enter_context(stdin_file.open("rb")) if stdin_file else None
            raw = subprocess.run(
                ["podman", *args],
                input=None if source else (stdin or "").encode(),
                stdin=source,
                capture_output=True,
                env=self.env,
                timeout=timeout,
                check=False,
            )
        result = subprocess.CompletedProcess(
            raw.args,
            raw.returncode,
            raw.stdout.decode(errors="replace"),
            raw.stderr.decode(errors="replace"),
        )
        if check and result.returncode != 0:
            fail(
                f"podman {' '.join(args)}: exit {result.returncode}\n"
                f"{result.stdout[-3000:]}{result.stderr[-3000:]}"
            )
        return result

    def inspect(self, container: str, template: str) -> str:
        return self.run("inspect", "--format", template, container).stdout.strip()


def root_podman(directory: Path, also_needs: Mapping[str, str] | None = None) -> Podman:
    """Podman as root, configured in ``directory``; also checks the tools a test needs.

    ``also_needs`` maps further programs to their Debian packages. A missing tool fails
    the test rather than skipping it: tests/run.sh installs them all.
    """
    tools = {**TOOLS, **(also_needs or {})}
    missing = [tool for tool in tools if not shutil.which(tool)]
    if missing:
        fail(
            f"missing {', '.join(missing)}: run `bash tests/run.sh` as root, or "
            f"`apt-get install {' '.join(tools.values())}`"
        )
    if os.geteuid() != 0:
        fail("these tests run podman and debootstrap as root: run them as root")
    conf = directory / "containers.conf"
    conf.write_text(CONTAINERS_CONF)
    env = {k: v for k, v in os.environ.items() if not k.startswith("NICUPDATE_")}
    return Podman({**env, "CONTAINERS_CONF": str(conf)})


def debian_suite() -> str:
    """This machine's Debian release, so that its Python matches the base image's."""
    with contextlib.suppress(OSError):
        fields = dict(
            line.split("=", 1)
            for line in Path("/etc/os-release").read_text().splitlines()
            if "=" in line
        )
        if fields.get("ID") == "debian" and fields.get("VERSION_CODENAME"):
            return fields["VERSION_CODENAME"]
    return "bookworm"


def debian_image(
    podman: Podman, name: str, packages: tuple[str, ...], tmp_path_factory: pytest.TempPathFactory
) -> str:
    """``localhost/name``: this machine's Debian with ``packages``, made once and kept.

    The tag names the suite and a hash of suite, mirror and packages; a file lock keeps
    concurrent runs from making it twice.
    """
    suite = debian_suite()
    key = hashlib.sha256(" ".join([suite, MIRROR, *packages]).encode()).hexdigest()[:12]
    tag = f"localhost/{name}:{suite}-{key}"
    with FileLock(Path(tempfile.gettempdir()) / f"{name}.lock"):
        if podman.run("image", "exists", tag, check=False).returncode != 0:
            rootfs = tmp_path_factory.mktemp("debootstrap") / "rootfs"
            import_debootstrap(podman, tag, suite, packages, rootfs)
    return tag


def import_debootstrap(
    podman: Podman, tag: str, suite: str, packages: tuple[str, ...], rootfs: Path
) -> None:
    """debootstrap ``suite`` into ``rootfs``, import it into podman as ``tag``, remove it."""
    try:
        made = subprocess.run(
            [
                *("debootstrap", "--variant=minbase", f"--include={','.join(packages)}"),
                *(suite, str(rootfs), MIRROR),
            ],
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT,
            check=False,
        )
        if made.returncode != 0:
            fail(
                f"debootstrap {suite} from {MIRROR}: exit {made.returncode}\n"
                f"{made.stdout[-3000:]}{made.stderr[-3000:]}"
            )
        for package in (rootfs / "var/cache/apt/archives").glob("*.deb"):
            package.unlink()
        with subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE) as tar:
            imported = subprocess.run(
                ["podman", "import", "-", tag],
                stdin=tar.stdout,
                capture_output=True,
                text=True,
                env=podman.env,
                timeout=BUILD_TIMEOUT,
                check=False,
            )
        if imported.returncode != 0 or tar.returncode != 0:
            fail(f"podman import {tag}: exit {imported.returncode}\n{imported.stderr}")
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)


def pip_wheel(wheels: Path, *requirements: str) -> None:
    """Wheels of ``requirements`` and all they depend on, into ``wheels``, for offline pip."""
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--wheel-dir",
            str(wheels),
            *requirements,
        ],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        check=False,
    )
    if built.returncode != 0:
        fail(f"pip wheel: exit {built.returncode}\n{built.stderr[-3000:]}")
