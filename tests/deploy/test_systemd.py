"""deploy/systemd: the server's unit, its configuration and its user.

Checked by systemd's own tools, which work offline although systemd is not PID 1 here
(``systemd-analyze verify`` and ``security``, ``systemd-sysusers --root``), and by the
server itself reading the shipped configuration where the unit puts it.
"""

from __future__ import annotations

import configparser
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from nicupdate_server.config import load_config

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "systemd"
UNIT = DEPLOY / "nicupdate-server.service"
CONFIG = DEPLOY / "nicupdate.toml"
SYSUSERS = DEPLOY / "nicupdate-sysusers.conf"
PROGRAM = "/opt/nicupdate/bin/nicupdate-server"  # where docs/service.md installs it
SQLITE = "sqlite+aiosqlite:///"


def service() -> configparser.SectionProxy:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text(encoding="utf-8"))
    return parser["Service"]


def tool(name: str) -> str:
    path = shutil.which(name)
    # Not a skip: without it the unit goes unchecked. tests/run.sh installs it (systemd).
    assert path, f"{name} is missing: install the Debian package 'systemd'"
    return path


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NICUPDATE_")}
    env.update(SYSTEMD_COLORS="0", SYSTEMD_PAGER="", SYSTEMD_LOG_COLOR="0")
    return subprocess.run(
        args, capture_output=True, text=True, env=env, cwd=cwd, timeout=120, check=False
    )


def installed_copy(directory: Path) -> Path:
    """The unit with its program where this machine has one: verify checks it exists."""
    program = Path(sys.executable).with_name("nicupdate-server")
    assert program.is_file(), f"{program} is missing: pip install -e '.[server]'"
    text = UNIT.read_text(encoding="utf-8")
    assert text.count(PROGRAM) == 1
    copy = directory / UNIT.name
    copy.write_text(text.replace(PROGRAM, str(program)), encoding="utf-8")
    return copy


def test_systemd_analyze_verifies_the_unit(tmp_path: Path) -> None:
    result = run(tool("systemd-analyze"), "verify", "--man=no", str(installed_copy(tmp_path)))
    said = (result.stdout + result.stderr).splitlines()
    assert result.returncode == 0, result.stderr
    assert [line for line in said if "nicupdate" in line] == []  # not even a warning
    # The check can fail: as shipped, the unit names a program this machine lacks.
    shipped = run(tool("systemd-analyze"), "verify", "--man=no", str(UNIT))
    assert shipped.returncode != 0
    assert f"Command {PROGRAM} is not executable" in shipped.stderr


def test_systemd_analyze_rates_the_sandbox_below_2() -> None:
    result = run(tool("systemd-analyze"), "security", "--offline=yes", "--no-pager", str(UNIT))
    assert result.returncode == 0, result.stderr
    match = re.search(
        r"Overall exposure level for nicupdate-server\.service: ([\d.]+)", result.stdout
    )
    assert match, result.stdout
    assert float(match[1]) < 2.0, result.stdout
    # The one capability it keeps is binding ports below 1024.
    capabilities = [line for line in result.stdout.splitlines() if "CAP_" in line]
    flagged = [line for line in capabilities if line.startswith("✗")]
    assert len(flagged) == 1 and "CAP_NET_(BIND_SERVICE" in flagged[0], capabilities


def test_the_unit_the_configuration_and_the_user_agree() -> None:
    unit = service()
    config_dir = f"/etc/{unit['ConfigurationDirectory']}"
    state_dir = f"/var/lib/{unit['StateDirectory']}"
    assert shlex.split(unit["ExecStart"]) == [
        *(PROGRAM, "--config", f"{config_dir}/{CONFIG.name}", "serve")
    ]
    assert unit["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert unit["WorkingDirectory"] == state_dir
    assert unit["StateDirectoryMode"] == "0700"
    assert unit["UMask"] == "0077"
    assert unit["RestartPreventExitStatus"] == "2"  # what a configuration error exits with

    config = load_config(CONFIG, environ={})
    # ProtectSystem=strict: the database can only be in the state directory.
    assert config.server.database.startswith(SQLITE)
    assert Path(config.server.database.removeprefix(SQLITE)).parent == Path(state_dir)
    # The built-in DNS on port 53 is why the unit grants this one capability.
    assert config.dns.endpoint[1] == 53
    assert unit["AmbientCapabilities"] == unit["CapabilityBoundingSet"] == "CAP_NET_BIND_SERVICE"
    assert int(unit["LimitNOFILE"]) > config.limits.max_connections

    kind, name, _, description, home = shlex.split(
        SYSUSERS.read_text(encoding="utf-8"), comments=True
    )
    assert (kind, name, home) == ("u", unit["User"], state_dir)
    assert unit["Group"] == name
    assert description


def test_systemd_sysusers_creates_the_user(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    result = run(tool("systemd-sysusers"), f"--root={tmp_path}", str(SYSUSERS))
    assert result.returncode == 0, result.stderr
    passwd = (tmp_path / "etc" / "passwd").read_text(encoding="utf-8").splitlines()
    users = {line.split(":")[0]: line.split(":") for line in passwd}
    _, _, uid, gid, _, home, shell = users[service()["User"]]
    assert int(uid) < 1000 and uid == gid  # a system user with its own group
    assert home == "/var/lib/nicupdate"
    assert shell.endswith("/nologin")


SERVICE_LIKE = """
set -eu
mount -t tmpfs -o mode=0755 tmpfs /var/lib       # StateDirectory=, in this namespace only
mkdir -m 0700 /var/lib/nicupdate
cd /var/lib/nicupdate                            # WorkingDirectory=
"$1" -m nicupdate_server --config "$2" check-config
printf 'alice-secret-1\\n' | "$1" -m nicupdate_server --config "$2" user add alice --password-stdin
stat -c '%a %n' /var/lib/nicupdate/nicupdate.db*
"""


def test_the_shipped_configuration_keeps_its_database_in_the_state_directory() -> None:
    # /var/lib/nicupdate is made in a private mount namespace (root only: tests/run.sh
    # runs as root), so the shipped file is read as it is, four-slash URL and all. The
    # umask is left at the shell's: the server makes the file 0600 by itself.
    unshare = shutil.which("unshare")
    assert unshare, "unshare is missing: install the Debian package 'util-linux'"
    assert os.geteuid() == 0, "this test mounts a private /var/lib: run it as root"
    result = run(
        *(unshare, "--mount", "--propagation", "private", "bash", "-c", SERVICE_LIKE),
        *("bash", sys.executable, str(CONFIG)),
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"configuration OK ({CONFIG}): HTTP 127.0.0.1:8245, DNS ")
    assert "user alice added" in lines
    files = dict(reversed(line.split(" ", 1)) for line in lines if line.startswith(("6", "7")))
    assert "/var/lib/nicupdate/nicupdate.db" in files
    assert set(files.values()) == {"600"}, files  # the -wal and -shm files too, if left
