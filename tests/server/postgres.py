"""A throwaway PostgreSQL server for tests: initdb in a temporary directory, a free port."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path


def _binaries() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
    if not found:
        raise RuntimeError("PostgreSQL is not installed: apt-get install postgresql")
    return found[-1].parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_postgres(command: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root.
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@contextlib.contextmanager
def running_postgres() -> Iterator[str]:
    """Start PostgreSQL on 127.0.0.1 and yield an asyncpg URL of an empty database."""
    bin_dir = _binaries()
    directory = Path(tempfile.mkdtemp(prefix="nicupdate-pg-"))
    directory.chmod(0o755)
    data = directory / "data"
    data.mkdir()
    if os.geteuid() == 0:
        shutil.chown(directory, "postgres")
        shutil.chown(data, "postgres")
    port = _free_port()
    subprocess.run(
        _as_postgres(
            [str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"]
        ),
        check=True,
        capture_output=True,
        timeout=120,
    )
    server = subprocess.Popen(
        _as_postgres(
            [
                str(bin_dir / "postgres"),
                "-D",
                str(data),
                "-p",
                str(port),
                "-k",
                str(directory),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
            ]
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            ready = subprocess.run(
                [str(bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port), "-q"],
                check=False,
            )
            if ready.returncode == 0:
                break
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("PostgreSQL did not start")
            time.sleep(0.2)
        subprocess.run(
            [
                str(bin_dir / "psql"),
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-U",
                "postgres",
                "-q",
                "-c",
                "CREATE DATABASE nicupdate",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        yield f"postgresql+asyncpg://postgres@127.0.0.1:{port}/nicupdate"
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        shutil.rmtree(directory, ignore_errors=True)


def _psql(url: str, *args: str) -> str:
    """psql as the superuser on the server of ``url`` (a running_postgres URL)."""
    port = url.rsplit(":", 1)[1].split("/", 1)[0]
    command = [str(_binaries() / "psql"), "-h", "127.0.0.1", "-p", port, "-U", "postgres"]
    done = subprocess.run([*command, *args], check=True, capture_output=True, text=True, timeout=60)
    return done.stdout


def psql(url: str, sql: str) -> None:
    """Run ``sql`` as the superuser on the server of ``url``."""
    _psql(url, "-q", "-c", sql)


def psql_value(url: str, sql: str) -> str:
    """The one value ``sql`` selects, as text, in the database of ``url``."""
    return _psql(url, "-d", url.rsplit("/", 1)[1], "-At", "-c", sql).strip()
