"""``/api/v1/openapi.json``: a valid OpenAPI 3.1 description of exactly the routes
there are, every body a named schema; and schemathesis calling every operation of it
with generated input (an admin's token, a server of its own): no 5xx, and every
status and body as described."""

from __future__ import annotations

import copy
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from nicupdate_server.restapi import RESOURCES
from nicupdate_server.restapi.calls import methods_of
from nicupdate_server.restapi.openapi import document
from openapi_spec_validator import validate
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    response_schema_conformance,
    status_code_conformance,
)

from tests.server.conftest import LiveServer, stop_server
from tests.server.restapi.conftest import PREFIX, Clients, new_token, start_api_server

CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]


def test_the_description_is_valid_openapi_3_1(clients: Clients) -> None:
    answer = clients().get("/openapi.json")  # no token
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    served = answer.json()
    assert served == document()
    assert served["openapi"] == "3.1.0"
    validate(served)
    assert served["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


def test_it_describes_exactly_the_routes_there_are() -> None:
    described = {
        path: sorted(method.upper() for method in item if method != "parameters")
        for path, item in document()["paths"].items()
        if path != "/openapi.json"
    }
    served = {path: sorted(methods) for path, methods in methods_of(RESOURCES).items()}
    assert described == served


def test_every_body_is_a_named_schema() -> None:
    spec = document()
    schemas = set(spec["components"]["schemas"])
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method == "parameters" or path == "/openapi.json":
                continue
            bodies = [operation.get("requestBody", {}).get("content", {})]
            bodies += [r.get("content", {}) for r in operation["responses"].values()]
            for content in bodies:
                if "application/json" in content:
                    reference = content["application/json"]["schema"]["$ref"]
                    assert reference.removeprefix("#/components/schemas/") in schemas
    assert references(spec) == schemas  # each one used, none missing


def references(node: object) -> set[str]:
    """The names of the schemas ``node`` refers to, anywhere in it."""
    found: set[str] = set()
    if isinstance(node, dict):
        target = node.get("$ref")
        if isinstance(target, str) and target.startswith("#/components/schemas/"):
            found.add(target.rpartition("/")[2])
        for value in node.values():
            found |= references(value)
    elif isinstance(node, list):
        for value in node:
            found |= references(value)
    return found


# --- schemathesis ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, str]]:
    """A server of its own (the calls add, change and remove what they like), and an
    admin's token."""
    live = start_api_server(tmp_path_factory.mktemp("fuzzed"))
    live.add_host("home.dyn.example.test", "root")
    yield live, new_token(live, "root")
    stop_server(live)


# The description as the server serves it (the first test holds them equal); loaded
# here, at collection, so that each operation is a test of its own. (Loading it from
# the live server needs schemathesis.pytest.from_fixture, which does not work with
# pytest 9.2: it sets a node id pytest no longer has.)
schema = schemathesis.openapi.from_dict(copy.deepcopy(document()))


@schema.parametrize()
@settings(
    max_examples=5,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_holds_to_its_description(
    case: schemathesis.Case, fuzzed: tuple[LiveServer, str]
) -> None:
    live, token = fuzzed
    case.call_and_validate(
        base_url=live.url + PREFIX, headers={"Authorization": f"Bearer {token}"}, checks=CHECKS
    )
