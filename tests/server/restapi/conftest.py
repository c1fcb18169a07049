"""The REST API's fixtures: one live server per test module, and API clients whose every
response is validated against the server's own ``/api/v1/openapi.json`` (the schema of
its path, method and status); a response it does not describe fails the test."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from nicupdate_server.apitokens import ApiTokens

from tests.server.conftest import LiveServer, start_server, stop_server, write_config

ROOT = ("root", "root-secret-1")  # an admin
ALICE = ("alice", "alice-secret-1")
BOB = ("bob", "bob-secret-1")
ZONE = "dyn.example.test"
PREFIX = "/api/v1"

# Tests send wrong tokens on purpose; the shared servers must not lock them out (the
# lock-out has a server of its own, with the defaults).
UNLOCKED = """
[limits]
auth_failures_per_source = 1000000
auth_failures_per_user = 1000000
"""


def start_api_server(directory: Path, extra: str = UNLOCKED) -> LiveServer:
    """A server with an admin (root) and two accounts (alice, bob), none with hosts."""
    live = start_server(write_config(directory, extra))
    live.admin(lambda a: a.add_user(*ROOT, admin=True))
    live.add_user(*ALICE)
    live.add_user(*BOB)
    return live


def new_token(server: LiveServer, user: str, name: str = "test", **scope: Any) -> str:
    """An API token of ``user``, made as ``token add`` makes it: its secret."""

    async def add() -> str:
        secret, _ = await ApiTokens(server.runtime.engine).add(user, name, **scope)
        return secret

    return server.call(add)


class OpenApi:
    """The API's description, and a check of responses against it."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self._paths = [
            (re.compile("^" + re.sub(r"\{[^/}]+\}", "[^/]+", template) + "$"), template)
            for template in sorted(document["paths"], key=lambda t: t.count("{"))
        ]

    def template(self, path: str) -> str | None:
        for pattern, template in self._paths:
            if pattern.match(path):
                return template
        return None

    def violations(self, method: str, path: str, response: httpx.Response) -> list[str]:
        """What is wrong with ``response`` to ``method path`` (path under /api/v1)."""
        template = self.template(path)
        if template is None:  # no such resource: the JSON error, 404
            return self._error_shape(response, 404)
        operations = self.document["paths"][template]
        verb = "get" if method == "HEAD" else method.lower()
        if verb not in operations:  # a method the path does not take: 405, with Allow
            problems = self._error_shape(response, 405)
            if "allow" not in response.headers:
                problems.append("405 without an Allow header")
            return problems
        responses = operations[verb]["responses"]
        described = responses.get(str(response.status_code))
        if described is None:
            return [f"{method} {template}: status {response.status_code} is not described"]
        if "$ref" in described:
            described = self._resolve(described["$ref"])
        problems = []
        for header in described.get("headers", {}):
            if header.lower() not in response.headers:
                problems.append(f"{response.status_code} without the {header} header")
        content = described.get("content")
        if content is None:
            if response.content:
                problems.append(f"{response.status_code} should have no body")
            return problems
        if method == "HEAD":
            return problems
        if response.headers.get("content-type", "").partition(";")[0] != "application/json":
            return [*problems, f"content-type {response.headers.get('content-type')!r}"]
        schema = {**content["application/json"]["schema"], "components": self.components}
        validator = jsonschema.Draft202012Validator(
            schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
        )
        for error in validator.iter_errors(response.json()):
            where = "/".join(str(part) for part in error.absolute_path)
            problems.append(f"{method} {template} {response.status_code}: {where}: {error.message}")
        return problems

    @property
    def components(self) -> dict[str, Any]:
        return dict(self.document["components"])

    def _resolve(self, pointer: str) -> dict[str, Any]:
        node: Any = self.document
        for part in pointer.removeprefix("#/").split("/"):
            node = node[part]
        assert isinstance(node, dict)
        return node

    def _error_shape(self, response: httpx.Response, status: int) -> list[str]:
        if response.status_code != status:
            return [f"expected {status} for an undescribed request, got {response.status_code}"]
        schema = {"$ref": "#/components/schemas/Error", "components": self.components}
        errors = jsonschema.Draft202012Validator(schema).iter_errors(response.json())
        return [f"{status}: {error.message}" for error in errors]


@dataclass
class Api:
    """An HTTP client of the API at ``/api/v1`` (with ``token``, if any); every response
    is checked against the description."""

    server: LiveServer
    spec: OpenApi
    token: str | None = field(default=None, repr=False)  # a secret: not in reports
    responses: list[httpx.Response] = field(default_factory=list)

    def __post_init__(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        self.client = httpx.Client(
            base_url=self.server.url + PREFIX,
            headers=headers,
            timeout=30,
            event_hooks={"response": [self._check]},
        )

    def _check(self, response: httpx.Response) -> None:
        response.read()
        path = response.request.url.path.removeprefix(PREFIX)
        problems = self.spec.violations(response.request.method, path, response)
        assert not problems, f"the response breaks /openapi.json: {problems}\n{response.text}"
        self.responses.append(response)

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.client.request(method, path, **kwargs)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("PUT", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", path, **kwargs)

    def close(self) -> None:
        self.client.close()


Clients = Callable[..., Api]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = start_api_server(tmp_path_factory.mktemp("restapi"))
    yield live
    stop_server(live)


@pytest.fixture(scope="module")
def spec(server: LiveServer) -> OpenApi:
    answer = httpx.get(server.url + PREFIX + "/openapi.json", timeout=10)
    assert answer.status_code == 200
    return OpenApi(answer.json())


@pytest.fixture(scope="module")
def clients(server: LiveServer, spec: OpenApi) -> Iterator[Clients]:
    """``clients(token=None)``: an API client; ``clients(user="alice", **scope)``: one with
    a new token of that user (scope: hosts, read_only, acme_only, expires_days)."""
    made: list[Api] = []

    def client(token: str | None = None, *, user: str | None = None, **scope: Any) -> Api:
        if user is not None:
            token = new_token(server, user, **scope)
        api = Api(server, spec, token)
        made.append(api)
        return api

    yield client
    for api in made:
        api.close()


@pytest.fixture(scope="module")
def root(clients: Clients) -> Api:
    return clients(user="root")


@pytest.fixture(scope="module")
def alice(clients: Clients) -> Api:
    return clients(user="alice")


@pytest.fixture(scope="module")
def bob(clients: Clients) -> Api:
    return clients(user="bob")


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    """The error member of a refusal with ``status``."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert isinstance(error, dict)
    return error


def fqdn_for(request: pytest.FixtureRequest, label: str = "") -> str:
    """A host name of the test's own, in the zone."""
    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[-40:].strip("-")
    return f"{label + '.' if label else ''}{name}.{ZONE}"
