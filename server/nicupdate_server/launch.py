"""The ``nicupdate-server`` command: names the missing ``[server]`` extra, not a traceback.

``pip install nicupdate-VERSION-py3-none-any.whl`` installs the client and its few
dependencies; the server's come with the ``[server]`` extra. This module imports nothing
of the server before :func:`main` is ready to catch what is missing, so that a
client-only installation answers any ``nicupdate-server`` command with one line saying
what to install. (A missing ``[postgres]`` or ``[lexicon]`` driver is reported where it
is needed, by the database and the backend.)
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Sequence

PROG = "nicupdate-server"
# The import names of the [server] extra's distributions in pyproject.toml (a test keeps
# the two in step): starlette, uvicorn, uvloop, httptools, dnspython, argon2-cffi,
# SQLAlchemy, aiosqlite, alembic, prometheus-client, python-json-logger.
SERVER_MODULES = frozenset(
    {
        "starlette",
        "uvicorn",
        "uvloop",
        "httptools",
        "dns",
        "argon2",
        "sqlalchemy",
        "aiosqlite",
        "alembic",
        "prometheus_client",
        "pythonjsonlogger",
        # The web UI's (web/): templates, forms, two-factor sign-in and its QR code.
        "jinja2",
        "multipart",
        "python_multipart",
        "pyotp",
        "segno",
    }
)


def missing_extra(exc: ModuleNotFoundError) -> str | None:
    """The line to print when ``exc`` is a server dependency that is not installed."""
    top = (exc.name or "").partition(".")[0]
    if top not in SERVER_MODULES:
        return None
    pip = f"{shlex.quote(sys.executable)} -m pip install 'nicupdate[server]'"
    return (
        f"{PROG}: no module named {top!r}: the server's packages come with the extra "
        f"nicupdate[server]; install it with {pip}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    try:
        from .cli import main as cli_main

        return cli_main(argv)
    except ModuleNotFoundError as exc:
        line = missing_extra(exc)
        if line is None:
            raise
        print(line, file=sys.stderr)
        return 1
