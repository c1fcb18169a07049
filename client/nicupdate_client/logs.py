"""The client's log: a size-rotated file, plus standard error when there is one.

Under ``pythonw.exe`` (the scheduled task) ``sys.stderr`` is None: nothing here assumes
a console. Under systemd, standard error goes to the journal as well.
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)-7s %(message)s"
MAX_BYTES = 1_000_000
BACKUPS = 3


def setup(log_file: Path | None, *, verbose: bool = False, console: bool = True) -> None:
    root = logging.getLogger("nicupdate_client")
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    root.propagate = False
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    if log_file is not None:
        try:
            log_file.parent.mkdir(parents=True, exist_ok=True)
            handler: logging.Handler = logging.handlers.RotatingFileHandler(
                log_file, maxBytes=MAX_BYTES, backupCount=BACKUPS, encoding="utf-8"
            )
            handler.setFormatter(logging.Formatter(FORMAT, "%Y-%m-%d %H:%M:%S"))
            root.addHandler(handler)
        except OSError as exc:
            if sys.stderr is not None:
                print(f"nicupdate-client: cannot write the log {log_file}: {exc}", file=sys.stderr)
    if console and sys.stderr is not None:
        stream = logging.StreamHandler(sys.stderr)
        stream.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        root.addHandler(stream)
    # httpx logs every request at INFO; its warnings are enough here.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
