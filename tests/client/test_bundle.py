"""The PyInstaller spec really builds: both executables start and do a client's job.

The Windows CI workflow builds the same spec into .exe files; here it builds the Linux
equivalent, which proves the spec, the entry script and the bundled dependencies.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import tomli_w

from tests.client.echo import EchoSources, echo

__all__ = ["echo"]

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "deploy" / "windows" / "nicupdate-client.spec"
EXE = ".exe" if sys.platform == "win32" else ""


@pytest.mark.slow
def test_the_bundle_builds_and_both_executables_work(tmp_path: Path, echo: EchoSources) -> None:
    folders = ["--distpath", str(tmp_path / "dist"), "--workpath", str(tmp_path / "build")]
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "PyInstaller",
            str(SPEC),
            "--noconfirm",
            "--log-level",
            "WARN",
            *folders,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    folder = tmp_path / "dist" / "nicupdate-client"
    console, windowed = folder / f"nicupdate-client{EXE}", folder / f"nicupdate-clientw{EXE}"

    version = subprocess.run([console, "--version"], capture_output=True, text=True, check=False)
    assert version.stdout.startswith("nicupdate-client 0.1.0")

    echo.set("/a", "81.2.69.160\n")
    echo.set("/b", "81.2.69.160\n")
    config = tmp_path / "client.toml"
    config.write_text(
        tomli_w.dumps(
            {
                "server": "http://127.0.0.1:9",
                "username": "alice",
                "hostnames": ["home.example.test"],
                "state_dir": str(tmp_path / "state"),
                "ipv4": {"sources": [echo.url("/a"), echo.url("/b")]},
                "ipv6": {"enabled": False},
            }
        )
    )
    for program in (console, windowed):
        detect = subprocess.run(
            [program, "detect", "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert detect.returncode == 0, detect.stderr
        assert "verdict: 81.2.69.160: 2 of 2 sources agree" in detect.stdout
    assert {seen.user_agent for seen in echo.seen()} == {"nicupdate-client/0.1.0"}
