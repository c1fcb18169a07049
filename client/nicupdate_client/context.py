"""What one command works with: the options, the resolved paths, and shared helpers."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path

from . import state, wintask
from .config import ClientConfig, load
from .credentials import Secret, load_secret, write_secret_file
from .paths import default_paths
from .runner import Runner, checked


class UsageError(Exception):
    """A command-line problem; the message names the option."""


class Context:
    """The paths one invocation works with, resolved from the options."""

    def __init__(self, args: argparse.Namespace, runner: Runner) -> None:
        self.args = args
        self.system: bool = getattr(args, "system", False)
        self.paths = default_paths(system=self.system)
        configured = args.config or os.environ.get("NICUPDATE_CLIENT_CONFIG")
        self.config_path = Path(configured).expanduser() if configured else self.paths.config_file
        self.runner = runner

    def config(self) -> ClientConfig:
        return load(self.config_path)

    def state_file(self, config: ClientConfig) -> Path:
        base = config.state_dir or self.paths.state_dir
        return base / self.paths.state_file.name

    def log_file(self, config: ClientConfig | None) -> Path:
        base = (config.log_dir if config else None) or self.paths.log_dir
        return base / self.paths.log_file.name

    def secret(self, config: ClientConfig) -> Secret:
        return load_secret(config, self.paths, system=self.system)


def read_secret(args: argparse.Namespace, option: str = "--password-stdin") -> str:
    if getattr(args, "password_stdin", False) or getattr(args, "stdin", False):
        value = sys.stdin.readline().strip()
    elif sys.stdin and sys.stdin.isatty():
        value = getpass.getpass("Password or host token: ").strip()
    else:
        raise UsageError(f"no secret: pass {option} and write it to standard input")
    if not value:
        raise UsageError("the secret is empty")
    return value


def forget_refusals(ctx: Context, config: ClientConfig) -> list[str]:
    """A new secret or configuration deserves a new try: clear refusals and back-off.

    The wait the server asked for (``Retry-After``) still holds. Returns the configured
    hosts that were stopped, each with the code the server had answered.
    """
    path = ctx.state_file(config)
    if not path.exists():
        return []
    lifted = []
    with state.locked(path, wait=30) as current:
        for name, host in current.hosts.items():
            refused = host.refused_for(config.fingerprint(name))
            if refused is not None and name in config.hostnames:
                lifted.append(f"{name} ({refused.code})")
            host.refused, host.failures, host.retry_at = None, 0, host.asked_until
    return lifted


def system_secret_file(ctx: Context, config: ClientConfig, secret: str) -> Path:
    """Write the machine-wide secret file, readable by SYSTEM/root and administrators only."""
    path = ctx.paths.secret_file
    write_secret_file(path, secret)
    if sys.platform == "win32":
        checked(ctx.runner, wintask.protect_file_args(path))
    return path
