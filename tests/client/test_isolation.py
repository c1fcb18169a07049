"""The client installs without the server: it must never import the server package."""

from __future__ import annotations

import ast
from pathlib import Path

import nicupdate_client

CLIENT = Path(nicupdate_client.__file__).parent


def test_client_imports_nothing_from_the_server() -> None:
    offenders = []
    for path in sorted(CLIENT.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [
                f"{path.name}: {n}" for n in names if n.split(".")[0] == "nicupdate_server"
            ]
    assert offenders == []
    assert list(CLIENT.rglob("*.py")), "the client package has no modules"
