"""deploy/systemd's daily backup: nicupdate-backup.service and its timer.

systemd's own tools check the units offline; the service's command line, as systemd
would run it (``%%`` unescaped), is run for real against a database made here.
"""

from __future__ import annotations

import configparser
import contextlib
import datetime
import os
import re
import shlex
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

from tests.deploy.test_systemd import CONFIG, DEPLOY, PROGRAM, run, service, tool
from tests.server.conftest import run_cli, write_config

BACKUP = DEPLOY / "nicupdate-backup.service"
TIMER = DEPLOY / "nicupdate-backup.timer"
BACKUPS = "/var/lib/nicupdate/backups"


def section(path: Path, name: str) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(path.read_text(encoding="utf-8"))
    return parser[name]


def test_systemd_analyze_verifies_the_backup_units_and_rates_the_sandbox() -> None:
    verified = run(tool("systemd-analyze"), "verify", "--man=no", str(BACKUP), str(TIMER))
    assert verified.returncode == 0, verified.stderr
    assert [line for line in verified.stderr.splitlines() if "nicupdate" in line] == []
    rated = run(tool("systemd-analyze"), "security", "--offline=yes", "--no-pager", str(BACKUP))
    match = re.search(
        r"Overall exposure level for nicupdate-backup\.service: ([\d.]+)", rated.stdout
    )
    assert match, rated.stdout + rated.stderr
    assert float(match[1]) < 1.0, rated.stdout


def test_the_backup_unit_agrees_with_the_server_unit() -> None:
    backup, server = section(BACKUP, "Service"), service()
    assert (backup["User"], backup["Group"]) == (server["User"], server["Group"])
    states = backup["StateDirectory"].split()
    assert states == [server["StateDirectory"], BACKUPS.removeprefix("/var/lib/")]
    assert backup["UMask"] == "0077"
    command = shlex.split(backup["ExecStart"])[2]
    assert f"{PROGRAM} --config /etc/nicupdate/{CONFIG.name} backup --force" in command
    assert section(TIMER, "Timer")["Persistent"] == "true"
    assert section(TIMER, "Install")["WantedBy"] == "timers.target"


def test_the_backup_command_keeps_one_copy_per_weekday(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    added = run_cli(
        "--config", str(config), "user", "add", "alice", "--password-stdin", stdin="alice-s3cret\n"
    )
    assert added.returncode == 0, added.stderr
    backups = tmp_path / "backups"
    backups.mkdir()
    # As systemd runs it: `%%` is a `%`; the paths are this machine's.
    command = section(BACKUP, "Service")["ExecStart"].replace("%%", "%")
    command = command.replace(PROGRAM, str(Path(sys.executable).with_name("nicupdate-server")))
    command = command.replace(f"/etc/nicupdate/{CONFIG.name}", str(config))
    command = command.replace(BACKUPS, str(backups))
    env = {k: v for k, v in os.environ.items() if not k.startswith("NICUPDATE_")}

    days = set()
    for _ in range(2):  # the second run replaces the first's copy
        days.add(datetime.date.today().isoweekday())
        done = subprocess.run(
            shlex.split(command), capture_output=True, text=True, env=env, timeout=120, check=False
        )
        days.add(datetime.date.today().isoweekday())
        assert done.returncode == 0, done.stderr
    names = os.listdir(backups)
    assert len(names) in (1, 2) and {f"nicupdate-{day}.db" for day in days} >= set(names)
    copy = backups / names[0]
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600
    with contextlib.closing(sqlite3.connect(copy)) as db:
        assert db.execute("SELECT name FROM users").fetchall() == [("alice",)]
