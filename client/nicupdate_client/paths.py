"""Where the client keeps its configuration, state, log and (when asked) secret file.

Per user: ``%APPDATA%\\nicupdate`` and ``%LOCALAPPDATA%\\nicupdate`` on Windows, the XDG
directories elsewhere. Machine-wide (``--system``): ``%ProgramData%\\nicupdate`` on
Windows, ``/etc/nicupdate`` and ``/var/lib``/``/var/log`` elsewhere, or the directories
systemd hands a unit (``STATE_DIRECTORY``, ``LOGS_DIRECTORY``, ``CREDENTIALS_DIRECTORY``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

APP = "nicupdate"
CONFIG_NAME = "client.toml"
SECRET_NAME = "client.secret"
STATE_NAME = "client-state.json"
LOG_NAME = "client.log"
# The name under which a systemd unit's LoadCredential= hands us the secret.
SYSTEMD_CREDENTIAL = "nicupdate-secret"


@dataclass(frozen=True)
class Paths:
    config_dir: Path
    state_dir: Path
    log_dir: Path

    @property
    def config_file(self) -> Path:
        return self.config_dir / CONFIG_NAME

    @property
    def secret_file(self) -> Path:
        return self.config_dir / SECRET_NAME

    @property
    def state_file(self) -> Path:
        return self.state_dir / STATE_NAME

    @property
    def log_file(self) -> Path:
        return self.log_dir / LOG_NAME


def default_paths(
    *, system: bool = False, env: Mapping[str, str] | None = None, platform: str | None = None
) -> Paths:
    env = os.environ if env is None else env
    platform = sys.platform if platform is None else platform
    home = Path(env.get("HOME") or env.get("USERPROFILE") or Path.home())
    if platform == "win32":
        if system:
            base = Path(env.get("PROGRAMDATA", r"C:\ProgramData")) / APP
            return Paths(base, base, base / "logs")
        roaming = Path(env.get("APPDATA") or home / "AppData" / "Roaming") / APP
        local = Path(env.get("LOCALAPPDATA") or home / "AppData" / "Local") / APP
        return Paths(roaming, local, local)
    if system:
        state = Path(_first(env.get("STATE_DIRECTORY")) or "/var/lib/nicupdate-client")
        logs = Path(_first(env.get("LOGS_DIRECTORY")) or "/var/log/nicupdate-client")
        return Paths(Path("/etc") / APP, state, logs)
    if platform == "darwin":
        base = home / "Library" / "Application Support" / APP
        return Paths(base, base, home / "Library" / "Logs" / APP)
    config = Path(env.get("XDG_CONFIG_HOME") or home / ".config") / APP
    state = Path(env.get("XDG_STATE_HOME") or home / ".local" / "state") / APP
    return Paths(config, state, state)


def systemd_credential(env: Mapping[str, str] | None = None) -> Path | None:
    """The secret systemd handed this unit with ``LoadCredential=``, if it did."""
    env = os.environ if env is None else env
    directory = _first(env.get("CREDENTIALS_DIRECTORY"))
    if not directory:
        return None
    path = Path(directory) / SYSTEMD_CREDENTIAL
    return path if path.is_file() else None


def _first(value: str | None) -> str | None:
    # systemd passes a colon-separated list when a unit names several directories.
    return value.split(":")[0] if value else None
