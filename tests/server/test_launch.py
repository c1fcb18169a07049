"""``nicupdate-server`` without the ``[server]`` extra: which missing modules it names.

tests/deploy/test_packaging.py runs the real thing, a client-only installation.
"""

from __future__ import annotations

import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

from nicupdate_server.launch import SERVER_MODULES, missing_extra

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_the_modules_are_those_of_the_server_extra() -> None:
    extra = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"][
        "optional-dependencies"
    ]["server"]
    wanted = {normalized(re.split(r"[\s\[<>=!~;]", line, maxsplit=1)[0]) for line in extra}
    modules: set[str] = set()
    for module, distributions in importlib.metadata.packages_distributions().items():
        if {normalized(name) for name in distributions} & wanted and not module.startswith("_"):
            modules.add(module)
    assert modules == SERVER_MODULES


def test_a_missing_server_module_names_the_extra() -> None:
    line = missing_extra(ModuleNotFoundError("No module named 'dns'", name="dns.resolver"))
    pip = f"{sys.executable} -m pip install 'nicupdate[server]'"
    assert line == (
        "nicupdate-server: no module named 'dns': the server's packages come with the extra "
        f"nicupdate[server]; install it with {pip}"
    )


def test_another_missing_module_is_not_blamed_on_the_extra() -> None:
    # asyncpg comes with the [postgres] extra: the database says so when it needs it.
    assert missing_extra(ModuleNotFoundError("No module named 'asyncpg'", name="asyncpg")) is None
    assert missing_extra(ModuleNotFoundError("No module named 'x'")) is None
