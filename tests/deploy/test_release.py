""".github/workflows/release.yml: its tag check, run here as GitHub runs it, and the files it
attaches, which must be what its jobs (and windows-client.yml) build and upload.

tests/deploy/test_packaging.py runs the same ``python -m build`` and installs its wheel.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]


def workflow(name: str) -> dict[Any, Any]:
    loaded: dict[Any, Any] = yaml.safe_load((WORKFLOWS / name).read_text(encoding="utf-8"))
    return loaded


def triggers(flow: dict[Any, Any]) -> dict[str, Any]:
    found: dict[str, Any] = flow.get("on", flow.get(True))  # YAML 1.1 reads `on` as true
    return found


def step(job: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [s for s in job["steps"] if s.get("name") == name]
    return found


def uploads(job: dict[str, Any]) -> dict[str, str]:
    """Artifact name -> path, for each upload-artifact step of a job."""
    return {
        s["with"]["name"]: s["with"]["path"]
        for s in job["steps"]
        if s.get("uses", "").startswith("actions/upload-artifact@")
    }


def run_as_github(script: str, tag: str) -> subprocess.CompletedProcess[str]:
    # A `run:` step on ubuntu runs as `bash --noprofile --norc -eo pipefail FILE`.
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
        cwd=ROOT,
        env={**os.environ, "GITHUB_REF_NAME": tag},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_release_starts_from_a_version_tag() -> None:
    assert triggers(workflow("release.yml")) == {"push": {"tags": ["v*"]}}


def test_the_tag_must_be_the_version() -> None:
    script = step(workflow("release.yml")["jobs"]["dist"], "The tag is the version")["run"]
    assert run_as_github(script, f"v{VERSION}").returncode == 0
    for wrong in (f"v{VERSION}.1", VERSION, "v0"):
        result = run_as_github(script, wrong)
        assert result.returncode == 1
        assert result.stdout == (
            f"::error::tag {wrong} does not match the version in pyproject.toml: "
            f"tag v{VERSION} instead\n"
        )


def test_the_release_attaches_what_the_jobs_build() -> None:
    release = workflow("release.yml")
    jobs = release["jobs"]
    assert set(jobs["release"]["needs"]) == {"dist", "windows-client"}
    assert jobs["release"]["permissions"] == {"contents": "write"}
    assert release["permissions"] == {"contents": "read"}

    command = step(jobs["release"], "Publish the release")["run"].replace("\\\n", " ")
    words = shlex.split(command)
    assert words[:4] == ["gh", "release", "create", "$GITHUB_REF_NAME"]
    files = [word for word in words if word.startswith(("artifacts/", "deploy/"))]

    # download-artifact puts each artifact in artifacts/NAME/.
    assert uploads(jobs["dist"]) == {"dist": "dist/"}
    build = step(jobs["dist"], "Build the wheel and the sdist")["run"]
    assert "python -m build\n" in build  # into dist/: the wheel and the sdist
    assert {"artifacts/dist/*.whl", "artifacts/dist/*.tar.gz"} <= set(files)

    assert jobs["windows-client"] == {"uses": "./.github/workflows/windows-client.yml"}
    windows = workflow("windows-client.yml")
    assert "workflow_call" in triggers(windows)
    assert "tags" not in (triggers(windows)["push"] or {})  # built once per tag, here
    (name, path), *_ = uploads(windows["jobs"]["build"]).items()
    assert f"artifacts/{name}/{path}" in files

    # The service's files: every file of deploy/systemd/.
    assert [f for f in files if f.startswith("deploy/")] == ["deploy/systemd/*"]
    assert (ROOT / "deploy" / "systemd" / "nicupdate-server.service").is_file()
