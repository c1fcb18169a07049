"""What the relay tests share: a live nicupdate server relaying to a provider's fake, a
ddclient-like client, waiting for the server's background retries, and config-table edits.

A provider's test module keeps its own ``[backends.x]`` keys, as TOML text, and writes the
secret file they name; :func:`relay_server` puts them into a whole configuration (no
built-in DNS, quick retries, one zone with TTL 60) and runs it, as the ``live`` fixture of
test_dnspod.py does.
"""

from __future__ import annotations

import contextlib
import textwrap
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from nicupdate_server.backends import BackendUnavailable, create_backend

from tests.server.backend_contract import HOME, ZONE_NAME
from tests.server.conftest import ALICE, LiveServer, start_server, stop_server
from tests.server.conftest import eventually as eventually  # for the relays' tests

DDCLIENT = "ddclient/3.11.2"

# No built-in DNS; retries quick enough for a test to wait for them.
SERVER_CONFIG = """
[server]
listen = "127.0.0.1:0"
database = "sqlite+aiosqlite:///{db}"
apply_deadline = 2.0
retry_initial = 0.1
retry_max = 0.5

[dns]
enabled = false

[backends.{backend}]
{table}

[[zones]]
name = "{zone}"
backend = "{backend}"
ttl = {ttl}
"""


@contextlib.contextmanager
def relay_server(
    tmp_path: Path,
    backend_table: str,
    *,
    backend: str = "x",
    zone: str = ZONE_NAME,
    ttl: int = 60,
    hosts: Iterable[str] = (HOME,),
) -> Iterator[LiveServer]:
    """A live server whose one zone goes to ``[backends.<backend>]``, holding the TOML keys
    ``backend_table``; the account alice owns ``hosts``. Stopped on leaving."""
    config = tmp_path / "nicupdate.toml"
    config.write_text(
        SERVER_CONFIG.format(
            db=tmp_path / "state.db",
            backend=backend,
            table=textwrap.dedent(backend_table).strip(),
            zone=zone,
            ttl=ttl,
        )
    )
    server = start_server(config)
    try:
        server.add_user(*ALICE)
        for host in hosts:
            server.add_host(host, "alice")
        yield server
    finally:
        stop_server(server)


def ddclient(server: LiveServer, query: str) -> httpx.Response:
    """``/nic/update?<query>`` as alice, with ddclient's User-Agent."""
    return server.update(query, auth=ALICE, headers={"User-Agent": DDCLIENT})


def changed_table(base: Mapping[str, Any], change: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``change`` applied: a key given None is removed, any other is set."""
    table = dict(base)
    for key, value in change.items():
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value
    return table


def refusal(name: str, table: dict[str, Any]) -> str:
    """The message ``create_backend`` refuses the backend ``name`` with (it must refuse it)."""
    with pytest.raises(BackendUnavailable) as raised:
        create_backend(name, table)
    return str(raised.value)
