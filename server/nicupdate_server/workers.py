"""``serve --workers N``: N server processes on one machine, one port.

The supervisor (this module, in the process the user started) migrates the database
once, then starts N workers (``serve --worker I/N/GROUP``, the same program). Each
listens on ``server.listen`` with ``SO_REUSEPORT``, and the kernel spreads new
connections between them. They share the database and stay coherent through the
change log; worker 0 serves the built-in DNS and ``metrics.listen`` (:mod:`.served`);
reconciling each (backend, zone) and delivering each webhook is done by whichever
worker holds its lease (:mod:`.leases`).

The supervisor passes SIGHUP on (every worker reloads its configuration), and on
SIGTERM or SIGINT stops the workers and waits for them; if it is killed, the kernel
sends them SIGTERM. A worker that dies is started
again (after 1 s, doubling to 30 s while it keeps dying within a minute); one that
cannot start at all (a port in use, a bad database) stops the whole group with its
exit status, after its own one-line message.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

log = logging.getLogger("nicupdate.workers")

RESTART_FIRST = 1.0
RESTART_MAX = 30.0
HEALTHY_AFTER = 60.0  # a worker that ran this long restarts from RESTART_FIRST again
STARTUP_GRACE = 10.0  # a worker exiting within this of its first start: start-up failed
STOP_TIMEOUT = 15.0
PR_SET_PDEATHSIG = 1


@dataclass(slots=True)
class _Worker:
    index: int
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    delay: float = RESTART_FIRST
    restart_at: float | None = None
    starts: int = 0
    history: list[int] = field(default_factory=list)  # exit statuses


class Supervisor:
    def __init__(self, count: int, config_path: str | None) -> None:
        self.count = count
        self.config_path = config_path
        self.group = f"workers@{os.uname().nodename[:32]}:{os.getpid()}:{secrets.token_hex(3)}"
        self.workers = [_Worker(i) for i in range(count)]
        self._stopping = False
        self._reload = False

    def command(self, index: int) -> list[str]:
        args = [sys.executable, "-m", "nicupdate_server"]
        if self.config_path is not None:
            args += ["--config", self.config_path]
        return [*args, "serve", "--worker", f"{index}/{self.count}/{self.group}"]

    def _start(self, worker: _Worker) -> None:
        worker.process = subprocess.Popen(self.command(worker.index), preexec_fn=_follow_parent)
        worker.started_at = time.monotonic()
        worker.restart_at = None
        worker.starts += 1

    def _signal_all(self, sig: int) -> None:
        for worker in self.workers:
            if worker.process is not None and worker.process.poll() is None:
                try:
                    worker.process.send_signal(sig)
                except ProcessLookupError:
                    pass

    def _on_stop(self, signum: int, _frame: FrameType | None) -> None:
        self._stopping = True

    def _on_reload(self, signum: int, _frame: FrameType | None) -> None:
        self._reload = True

    def run(self) -> int:
        """Run the workers until SIGTERM/SIGINT; the exit status."""
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_reload)
        for worker in self.workers:
            self._start(worker)
        log.info("started %d workers (group %s)", self.count, self.group)
        status = 0
        while not self._stopping:
            if self._reload:
                self._reload = False
                self._signal_all(signal.SIGHUP)
            failed = self._watch()
            if failed is not None:
                status = failed
                break
            time.sleep(0.05)
        self._stop()
        return status

    def _watch(self) -> int | None:
        """Restart workers that died; a start-up failure's exit status stops the group."""
        now = time.monotonic()
        for worker in self.workers:
            process = worker.process
            if process is not None and process.poll() is not None:
                code = process.returncode
                worker.history.append(code)
                worker.process = None
                ran = now - worker.started_at
                if worker.starts == 1 and ran < STARTUP_GRACE and code not in (0, -9):
                    log.error("worker %d could not start (exit status %d)", worker.index, code)
                    return code if code > 0 else 1
                worker.delay = RESTART_FIRST if ran >= HEALTHY_AFTER else worker.delay
                log.error(
                    "worker %d stopped (exit status %d); starting it again in %g s",
                    worker.index,
                    code,
                    worker.delay,
                )
                worker.restart_at = now + worker.delay
                worker.delay = min(RESTART_MAX, worker.delay * 2)
            if worker.process is None and worker.restart_at is not None:
                if now >= worker.restart_at:
                    self._start(worker)
        return None

    def _stop(self) -> None:
        self._signal_all(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for worker in self.workers:
            if worker.process is None:
                continue
            try:
                worker.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("worker %d did not stop within %g s: killed", worker.index, STOP_TIMEOUT)
                worker.process.kill()
                worker.process.wait()


def _follow_parent() -> None:
    """In a worker, before it runs: SIGTERM when the supervisor dies, however it dies
    (Linux's PR_SET_PDEATHSIG), so that no worker is left holding the port."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def parse_role(text: str) -> tuple[int, int, str]:
    """``I/N/GROUP`` (``serve --worker``) as (index, count, group)."""
    index, count, group = text.split("/", 2)
    return int(index), int(count), group


def run(count: int, config_path: Path | None) -> int:
    return Supervisor(count, None if config_path is None else str(config_path)).run()
