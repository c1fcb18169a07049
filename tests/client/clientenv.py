"""The client as a user runs it: a real process, its own config, against the real server.

Where a test needs the time to pass (back-off, ``Retry-After``), :meth:`ClientEnv.run_at`
runs the same update in this process on a :class:`Clock` the test moves, instead of
sleeping: with the same configuration, secret, state file, log file, sources and server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from nicupdate_client import logs, state
from nicupdate_client.config import load
from nicupdate_client.credentials import Secret
from nicupdate_client.updater import Updater

from tests.client.echo import EchoSources, RecordingProxy
from tests.server.conftest import ALICE, LiveServer

ROOT = Path(__file__).resolve().parents[2]
HOME_HOST = "home.dyn.example.test"
V4, V4_NEW, V4_OTHER = "81.2.69.160", "81.2.69.161", "81.2.69.162"
V6 = "2a02:1388::7"


class Clock:
    """The time of an in-process run: it stands still until the test moves it.

    It starts at the current second, so that ``status`` (a real process, on the real
    clock) sees the waits of these runs as still to come.
    """

    def __init__(self) -> None:
        self.start = float(int(time.time()))
        self.time = self.start

    def __call__(self) -> float:
        return self.time


@dataclass
class ClientEnv:
    """One user's client: a directory with its config, secret, state and log."""

    root: Path
    server: LiveServer
    proxy: RecordingProxy
    echo: EchoSources
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def config_path(self) -> Path:
        return self.root / "client.toml"

    @property
    def secret_path(self) -> Path:
        return self.root / "secret"

    @property
    def log_path(self) -> Path:
        return self.root / "log" / "client.log"

    @property
    def state_path(self) -> Path:
        return self.root / "state" / "client-state.json"

    def write(self, **changes: Any) -> None:
        self.settings.update(changes)
        self.config_path.write_text(tomli_w.dumps(self.settings))

    def env(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("NICUPDATE_", "XDG_")) and "PROXY" not in k.upper()
        }
        env |= {
            "HOME": str(self.root / "home"),
            "PYTHONPATH": str(ROOT),
            "PYTHON_KEYRING_BACKEND": "tests.client.filekeyring.FileKeyring",
            "NICUPDATE_TEST_KEYRING": str(self.root / "keyring.json"),
        }
        return env

    def run(
        self, *args: str, stdin: str | None = None, config: bool = True, **env: str
    ) -> subprocess.CompletedProcess[str]:
        options = ["--config", str(self.config_path)] if config else []
        return subprocess.run(
            [sys.executable, "-m", "nicupdate_client", *args, *options],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
            env=self.env() | env,
            check=False,
        )

    def run_at(self, clock: Clock, *, jitter: float = 1.0) -> int:
        """``run --once`` in this process at ``clock``'s time; returns its exit status.

        ``jitter`` fixes the back-off's random part: 1.0 makes it exactly 1, 2, 4...
        times ``backoff.initial``.
        """
        config = load(self.config_path)
        secret = Secret(self.secret_path.read_text().strip(), str(self.secret_path))
        updater = Updater(config, secret, now=clock, jitter=lambda: jitter)
        with _logging_to(self.log_path), state.locked(self.state_path) as current:
            return asyncio.run(updater.run_once(current)).exit_code

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8") if self.log_path.exists() else ""

    def answers(self, v4: str | None = V4, v6: str | None = None) -> None:
        """What the echo sources say: two agreeing sources per family."""
        for path in ("/a", "/b"):
            self.echo.set(path, f"{v4}\n" if v4 else "", 200 if v4 else 500)
            self.echo.set(path + "6", f"{v6}\n" if v6 else "", 200 if v6 else 500)


@contextlib.contextmanager
def _logging_to(path: Path) -> Iterator[None]:
    """The client's log lines go to ``path`` as a real run writes them."""
    logger = logging.getLogger("nicupdate_client")
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(logs.FORMAT, "%Y-%m-%d %H:%M:%S"))
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        handler.close()


def base_settings(env: ClientEnv) -> dict[str, Any]:
    return {
        "server": env.proxy.url,
        "username": ALICE[0],
        "hostnames": [HOME_HOST],
        "secret_file": str(env.secret_path),
        "state_dir": str(env.root / "state"),
        "log_dir": str(env.root / "log"),
        # The server checks passwords on low-priority threads: with every core busy the
        # first check can take several seconds. Nothing here waits for a timeout to pass.
        "timeout": 30,
        "network_wait": 0,
        "backoff": {"initial": 1, "maximum": 8},
        "ipv4": {"sources": [env.echo.url("/a"), env.echo.url("/b")], "quorum": 2},
        "ipv6": {"enabled": False},
    }


@pytest.fixture
def client_env(tmp_path: Path, alice: LiveServer, echo: EchoSources) -> Iterator[ClientEnv]:
    proxy = RecordingProxy(alice.url)
    proxy.start(v6=False)
    env = ClientEnv(tmp_path / "client", alice, proxy, echo)
    (env.root / "home").mkdir(parents=True)
    env.secret_path.write_text(ALICE[1] + "\n")
    env.write(**base_settings(env))
    env.answers()
    yield env
    proxy.stop()
