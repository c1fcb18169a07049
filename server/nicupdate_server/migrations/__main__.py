"""Upgrade the database named by $NICUPDATE_MIGRATE_URL to the newest schema."""

from __future__ import annotations

import os
import sys

from alembic import command

from . import alembic_config


def main() -> int:
    url = os.environ.get("NICUPDATE_MIGRATE_URL")
    if not url:
        print("NICUPDATE_MIGRATE_URL is not set", file=sys.stderr)
        return 2
    command.upgrade(alembic_config(url), "head")
    return 0


if __name__ == "__main__":
    sys.exit(main())
