"""Installing without a clone: the sdist and the wheel that ``python -m build`` makes,
installed into fresh virtualenvs as a user would (the dependencies come from PyPI).

``python -m build`` builds the sdist from a copy of the source tree as a clone has it,
then the wheel from that sdist: a wheel that works proves the sdist holds what a build
needs.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from nicupdate_server import __version__

from tests.server.process import answers, free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("server/nicupdate_server", "client/nicupdate_client")
# What a clone does not have (.gitignore) and a build must not pick up from a work tree.
NOT_IN_A_CLONE = {".git", ".venv", "build", "dist", "__pycache__", ".hypothesis", "htmlcov"}
NOT_IN_A_CLONE_SUFFIXES = (".egg-info", "_cache", ".pyc", ".db", ".db-wal", ".db-shm")


@dataclass(frozen=True)
class Dist:
    source: Path  # the copy it was built from
    sdist: Path
    wheel: Path


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without what would let the source tree or settings leak in."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("NICUPDATE_") and key not in ("PYTHONPATH", "PYTHONHOME")
    }
    return {**env, **extra}


def not_in_a_clone(directory: str, names: list[str]) -> set[str]:
    ignored = {
        name
        for name in names
        if name in NOT_IN_A_CLONE
        or name.endswith(NOT_IN_A_CLONE_SUFFIXES)
        or name.startswith(".coverage")
    }
    if Path(directory) == ROOT:
        ignored |= {"nicupdate.toml"} & set(names)  # a developer's own configuration
    return ignored


def run(*args: str | Path, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(arg) for arg in args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=clean_env(),
        timeout=timeout,
        check=False,
    )


def virtualenv(directory: Path, requirement: str) -> Path:
    """A fresh virtualenv with ``pip install requirement`` done; its bin directory."""
    made = run(sys.executable, "-m", "venv", directory, cwd=directory.parent)
    assert made.returncode == 0, made.stderr
    bin_dir = directory / "bin"
    pip = run(bin_dir / "python", "-m", "pip", "install", requirement, cwd=directory, timeout=900)
    assert pip.returncode == 0, pip.stdout[-3000:] + pip.stderr[-3000:]
    return bin_dir


def build(work: Path) -> Dist:
    """``python -m build`` of a copy of the source tree, in ``work``."""
    source = work / "nicupdate"
    shutil.copytree(ROOT, source, ignore=not_in_a_clone)
    built = run(
        sys.executable, "-m", "build", "--outdir", work / "dist", source, cwd=work, timeout=600
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    (sdist,) = (work / "dist").glob("*.tar.gz")
    (wheel,) = (work / "dist").glob("*.whl")
    assert sdist.name == f"nicupdate-{__version__}.tar.gz"
    assert wheel.name == f"nicupdate-{__version__}-py3-none-any.whl"
    return Dist(source, sdist, wheel)


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Dist:
    return build(tmp_path_factory.mktemp("build"))


def package_files(source: Path) -> Iterator[str]:
    """Every file of the two packages in a source tree, relative to its root."""
    for package in PACKAGES:
        for path in (source / package).rglob("*"):
            if path.is_file():
                yield path.relative_to(source).as_posix()


def test_the_sdist_and_the_wheel_hold_every_file_of_the_packages(dist: Dist) -> None:
    files = sorted(package_files(dist.source))
    assert "server/nicupdate_server/migrations/versions/0001_initial.py" in files
    assert "server/nicupdate_server/migrations/script.py.mako" in files

    with tarfile.open(dist.sdist) as sdist:
        top = f"nicupdate-{__version__}/"
        in_sdist = {member.name.removeprefix(top) for member in sdist.getmembers()}
    missing = [name for name in files if name not in in_sdist]
    assert missing == []
    for name in ("pyproject.toml", "README.md"):
        assert name in in_sdist

    with zipfile.ZipFile(dist.wheel) as wheel:
        in_wheel = set(wheel.namelist())
    missing = [name for name in files if name.partition("/")[2] not in in_wheel]
    assert missing == []
    assert not any(name.startswith(("tests/", "deploy/", "docs/")) for name in in_wheel)


def test_the_installed_wheel_serves_the_demo(dist: Dist, tmp_path: Path) -> None:
    bin_dir = virtualenv(tmp_path / "venv", f"{dist.wheel}[server]")
    home = tmp_path / "home"
    home.mkdir()
    where = run(
        bin_dir / "python", "-c", "import nicupdate_server as s; print(s.__file__)", cwd=home
    )
    assert Path(where.stdout.strip()).is_relative_to(tmp_path / "venv"), where  # not the tree

    http_port, dns_port = free_port(), free_port()
    while dns_port == http_port:
        dns_port = free_port()
    log = tmp_path / "serve.log"
    env = clean_env(
        NICUPDATE_SERVER__LISTEN=f"127.0.0.1:{http_port}",
        NICUPDATE_DNS__LISTEN=f"127.0.0.1:{dns_port}",
    )
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [bin_dir / "nicupdate-server", "serve", "--demo"],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=home,
            env=env,
        )
    try:
        wait_for(
            lambda: "  dig @" in log.read_text() or proc.poll() is not None,
            timeout=60,
            what="the demo's instructions",
        )
        assert proc.poll() is None, log.read_text()
        assert answers(f"http://127.0.0.1:{http_port}")
        said = log.read_text().splitlines()
        curl = next(line for line in said if line.startswith("  curl "))
        dig = next(line for line in said if line.startswith("  dig "))

        # What README says to do: run the two printed lines.
        updated = run(*shlex.split(curl), "--silent", "--show-error", cwd=home)
        assert updated.stdout == "good 203.0.113.7\n", updated.stderr
        looked_up = run(*shlex.split(dig), "+short", cwd=home)
        assert looked_up.stdout.strip() == "203.0.113.7", looked_up.stderr
        assert (home / "nicupdate.db").stat().st_mode & 0o777 == 0o600

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_with_only_the_client_the_server_names_its_extra(dist: Dist, tmp_path: Path) -> None:
    bin_dir = virtualenv(tmp_path / "venv", str(dist.wheel))
    home = tmp_path / "home"
    home.mkdir()
    client = run(bin_dir / "nicupdate-client", "--version", cwd=home)
    assert client.stdout.startswith(f"nicupdate-client {__version__}"), client.stderr

    said = set()
    for command in (
        (bin_dir / "nicupdate-server", "--help"),
        (bin_dir / "nicupdate-server", "--version"),
        (bin_dir / "nicupdate-server", "serve", "--demo"),
        (bin_dir / "python", "-m", "nicupdate_server", "check-config"),
    ):
        result = run(*command, cwd=home)
        assert result.returncode == 1, result
        assert result.stdout == ""
        assert len(result.stderr.splitlines()) == 1, result.stderr  # no traceback
        said.add(result.stderr)
    (line,) = said
    assert line.startswith("nicupdate-server: no module named ")
    assert "the server's packages come with the extra nicupdate[server]; install it with " in line
    assert not (home / "nicupdate.db").exists()

    # The advice works as given: it installs the extra into this very environment.
    advice = shlex.split(line.rpartition("install it with ")[2])
    assert advice[0] == str(bin_dir / "python")
    installed = run(*advice, cwd=home, timeout=900)
    assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr[-3000:]
    version = run(bin_dir / "nicupdate-server", "--version", cwd=home)
    assert version.stdout == f"nicupdate-server {__version__}\n", version.stderr


def test_no_page_says_to_install_from_pypi() -> None:
    # Nothing is published there: `pip install nicupdate` would fetch whatever has the name.
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    said = [
        f"{page.relative_to(ROOT)}:{number}"
        for page in pages
        for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1)
        if "pip install nicupdate" in line
    ]
    assert said == []
