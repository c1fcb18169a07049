"""Entry point that PyInstaller freezes into nicupdate-client.exe and nicupdate-clientw.exe."""

from __future__ import annotations

import sys

from nicupdate_client.cli import main

if __name__ == "__main__":
    sys.exit(main())
