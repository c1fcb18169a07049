"""The web UI and the REST API are built on their first request: a server that only
answers updates never builds (or imports) them."""

from __future__ import annotations

from nicupdate_server.lazyapp import Lazy
from starlette.routing import Mount

from tests.server.conftest import ALICE, LiveServer


def _surfaces(live: LiveServer) -> dict[str, Lazy]:
    assert live.runtime.app is not None
    rest = live.runtime.app.app.rest  # CurrentApp -> App -> the Starlette app
    return {
        route.path: route.app
        for route in rest.routes
        if isinstance(route, Mount) and isinstance(route.app, Lazy)
    }


def test_updates_never_build_the_web_ui_or_the_api(alice: LiveServer) -> None:
    surfaces = _surfaces(alice)
    assert set(surfaces) == {"/api/v1", ""}
    answer = alice.update("hostname=home.dyn.example.test&myip=203.0.113.9", auth=ALICE)
    assert answer.text == "good 203.0.113.9\n"
    assert alice.get("/healthz").status_code == 200
    assert alice.get("/myip").status_code == 200
    assert not any(app.built for app in surfaces.values())

    assert alice.get("/signin").status_code == 200
    assert surfaces[""].built and not surfaces["/api/v1"].built
    assert alice.get("/api/v1/openapi.json").status_code == 200
    assert surfaces["/api/v1"].built
