"""Running other programs (schtasks, systemctl, ip, PowerShell) behind one injectable seam.

Everything that calls an operating-system tool takes a :data:`Runner`, so tests record
the calls instead of running them, and the real one never opens a console window.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

# On Windows a console program started from a windowless process (pythonw, the task)
# would flash a console window: CREATE_NO_WINDOW stops that.
_NO_WINDOW = getattr(subprocess, "CREATE_NO_WINDOW", 0) if sys.platform == "win32" else 0


@dataclass(frozen=True)
class CommandResult:
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


Runner = Callable[[Sequence[str]], CommandResult]


class CommandError(Exception):
    """A program we ran failed; the message names it and what it said."""


def run_command(args: Sequence[str], *, timeout: float = 60.0) -> CommandResult:
    """Run ``args`` without a shell or a console; a missing program is returncode 127."""
    try:
        done = subprocess.run(
            list(args),
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="replace",
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
            creationflags=_NO_WINDOW,
        )
    except FileNotFoundError:
        return CommandResult(127, "", f"{args[0]}: command not found")
    except subprocess.TimeoutExpired:
        return CommandResult(124, "", f"{args[0]}: no answer within {timeout:g} s")
    return CommandResult(done.returncode, done.stdout, done.stderr)


def checked(runner: Runner, args: Sequence[str]) -> CommandResult:
    """Run ``args`` and raise :class:`CommandError` naming the program when it fails."""
    result = runner(args)
    if not result.ok:
        said = (result.stderr or result.stdout).strip().splitlines()
        detail = said[-1] if said else f"exit status {result.returncode}"
        raise CommandError(f"{args[0]} {args[1] if len(args) > 1 else ''}".strip() + f": {detail}")
    return result
