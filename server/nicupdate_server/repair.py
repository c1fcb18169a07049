"""``nicupdate-server reconcile``: read every backend back, re-apply what differs, report.

It runs beside a running server or without one: every change it makes is a replace of
a record set with the desired one, which is harmless to repeat.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .backends import Backend, create_backend
from .config import Config
from .db import create_engine, ensure_schema
from .reconciler import DriftReport, Reconciler
from .state import State


@dataclass
class RepairResult:
    reports: list[DriftReport] = field(default_factory=list)
    stuck: dict[str, list[str]] = field(default_factory=dict)
    settled: bool = True


async def reconcile_now(config: Config, *, timeout: float = 120.0) -> RepairResult:
    url = config.server.database_url()
    engine = create_engine(url)
    backends: dict[str, Backend] = {
        name: create_backend(name, table) for name, table in config.backends.items()
    }
    result = RepairResult()
    try:
        await ensure_schema(engine, url)
        async with engine.begin() as conn:
            state = await State.load(conn)
            reconciler = Reconciler(config, state, backends)
            await reconciler.load(conn)
        for backend in backends.values():
            await backend.start()
        reconciler.start(retry_refused=True)
        try:
            for name, backend in backends.items():
                if hasattr(backend, "read"):
                    result.reports.append(await reconciler.check_drift(name))
            result.settled = await reconciler.settle(timeout)
            result.stuck = reconciler.stuck()
        finally:
            await reconciler.close()
            async with engine.begin() as conn:
                await reconciler.persist(conn)
    finally:
        for backend in backends.values():
            await backend.close()
        await engine.dispose()
    return result
