"""The README's ddclient configurations, run by the real ddclient against the real server.

Each configuration is taken from README.md as it stands, with only the server's address,
the password (and, for the HTTPS one, plain HTTP and a loopback address source) put in.
ddclient runs once in the foreground with its own cache file. What the user sees is
ddclient's output, which must hold the update's success and not one warning, and the
address the server then serves.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.client.echo import EchoSources, echo
from tests.server.conftest import ALICE, LiveServer, alice, live_server

__all__ = ["alice", "echo", "live_server"]

ROOT = Path(__file__).resolve().parents[2]
HOME = "home.dyn.example.test"


@pytest.fixture(scope="module")
def ddclient() -> str:
    path = shutil.which("ddclient")
    # Not a skip: without it the README's examples go untried. tests/run.sh installs it.
    assert path, "ddclient is missing: install the Debian package 'ddclient'"
    return path


def readme_configurations() -> list[str]:
    """The ```ini blocks of the README's ddclient section, in order."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n#### ddclient\n", 1)[1].split("\n#### ", 1)[0]
    blocks = re.findall(r"```ini\n(.*?)```", section, re.DOTALL)
    assert len(blocks) == 2, section
    return blocks


def filled_in(text: str, *changes: tuple[str, str]) -> str:
    for old, new in changes:
        assert old in text, f"{old!r} is no longer in the README's configuration:\n{text}"
        text = text.replace(old, new)
    return text


def run_ddclient(ddclient: str, configuration: str, tmp_path: Path) -> list[str]:
    """One ddclient run with ``configuration``; its output lines, standard error first."""
    path = tmp_path / "ddclient.conf"
    path.write_text(configuration, encoding="utf-8")
    path.chmod(0o600)  # ddclient wants its configuration private
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    cache = tmp_path / "ddclient.cache"
    done = subprocess.run(
        [ddclient, "-foreground", "-daemon=0", "-file", str(path), "-cache", str(cache)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return (done.stderr + done.stdout).splitlines()


def port(server: LiveServer) -> str:
    return server.url.rsplit(":", 1)[1]


def assert_clean_success(lines: list[str], address: str) -> None:
    warnings = [line for line in lines if "warning" in line.lower()]
    assert warnings == [], "\n".join(lines)
    successes = [line for line in lines if "SUCCESS" in line]
    assert len(successes) == 1, "\n".join(lines)
    assert f"good: IP address set to {address}" in successes[0]


def test_the_local_configuration_runs_clean(
    alice: LiveServer, ddclient: str, tmp_path: Path
) -> None:
    local = readme_configurations()[0]
    configuration = filled_in(
        local,
        ("server=127.0.0.1:8245", f"server=127.0.0.1:{port(alice)}"),
        ("password='PASSWORD'", f"password='{ALICE[1]}'"),
    )
    assert_clean_success(run_ddclient(ddclient, configuration, tmp_path), "203.0.113.7")
    assert alice.addresses(HOME) == ["203.0.113.7"]


def test_the_https_configuration_runs_clean(
    alice: LiveServer, echo: EchoSources, ddclient: str, tmp_path: Path
) -> None:
    echo.set("/myip", "81.2.69.160\n")
    https = readme_configurations()[1]
    configuration = filled_in(
        https,
        ("ssl=yes", "ssl=no"),
        ("server=ddns.example.com", f"server=127.0.0.1:{port(alice)}"),
        ("webv4=https://ddns.example.com/myip", f"webv4={echo.url('/myip')}"),
        ("password='PASSWORD'", f"password='{ALICE[1]}'"),
        ("\nhome.dyn.example.com", f"\n{HOME}"),
    )
    assert_clean_success(run_ddclient(ddclient, configuration, tmp_path), "81.2.69.160")
    assert alice.addresses(HOME) == ["81.2.69.160"]
    assert [seen.path for seen in echo.seen()] == ["/myip"]
