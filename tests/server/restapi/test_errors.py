"""Requests the API cannot take: each answered with the JSON error and the status that
says why (400, 404, 405, 413, 415, 422), never a 500 or a traceback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.server.restapi.conftest import ZONE, Api, Clients, error_of

JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{",
        b"{'fqdn': 'x'}",
        b'{"fqdn": "x",}',
        b"\xff\xfe{}",
        b'{"fqdn": NaN}',
        b'{"n": Infinity}',
        b"[" * 60_000,  # deeper than the parser goes
        b'{"n": ' + b"1" * 5000 + b"}",  # more digits than an int may have
    ],
)
def test_a_body_that_is_not_json_is_400(alice: Api, body: bytes) -> None:
    error = error_of(alice.post("/hosts", content=body, headers=JSON), 400)
    assert error["code"] == "malformed_json"
    assert "not valid JSON" in error["message"]


@pytest.mark.parametrize(
    ("body", "words"),
    [(b"[]", "not a list"), (b'"fqdn"', "not a string"), (b"null", "not null"), (b"7", "number")],
)
def test_a_body_that_is_not_an_object_is_422(alice: Api, body: bytes, words: str) -> None:
    error = error_of(alice.post("/hosts", content=body, headers=JSON), 422)
    assert "must be a JSON object" in error["message"] and words in error["message"]


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_a_body_that_is_not_declared_json_is_415(alice: Api, content_type: str | None) -> None:
    headers = {} if content_type is None else {"Content-Type": content_type}
    answer = alice.post("/hosts", content=b'{"fqdn": "x"}', headers=headers)
    error = error_of(answer, 415)
    assert "Content-Type: application/json" in error["message"]


def test_json_with_a_charset_is_json(alice: Api) -> None:
    headers = {"Content-Type": "application/json; charset=utf-8"}
    answer = alice.post("/hosts", content=f'{{"fqdn": "charset.{ZONE}"}}'.encode(), headers=headers)
    assert answer.status_code == 201, answer.text


def test_a_body_over_64_kib_is_413(alice: Api) -> None:
    big = b'{"fqdn": "' + b"a" * 70_000 + b'"}'
    assert error_of(alice.post("/hosts", content=big, headers=JSON), 413)["code"] == "too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it comes
        yield b'{"fqdn": "'
        for _ in range(20):
            yield b"a" * 4096
        yield b'"}'

    streamed = alice.post("/hosts", content=chunks(), headers=JSON)
    assert error_of(streamed, 413)["code"] == "too_large"
    assert alice.get("/account").status_code == 200  # and the API goes on


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("DELETE", "/hosts", {"GET", "POST"}),
        ("PUT", "/account", {"GET"}),
        ("GET", "/hosts/x.dyn.example.test/records", {"PUT"}),
        ("POST", "/status", {"GET"}),
    ],
)
def test_a_method_a_resource_does_not_take_is_405(
    alice: Api, method: str, path: str, allowed: set[str]
) -> None:
    answer = alice.request(method, path)
    assert error_of(answer, 405)["code"] == "method_not_allowed"
    assert allowed <= {m.strip() for m in answer.headers["allow"].split(",")}


@pytest.mark.parametrize("path", ["/nothing", "/hosts/", "/", "/hosts/a/b/c"])
def test_a_path_that_is_no_resource_is_a_json_404(alice: Api, path: str) -> None:
    error = error_of(alice.get(path), 404)
    assert "openapi.json" in error["message"]


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/hosts/%00", "fqdn"),
        ("/hosts/" + "a" * 300 + ".dyn.example.test", "fqdn"),
        ("/hosts/%2e%2e", "fqdn"),
        ("/hosts?all=true&all=false", "all"),
        ("/hosts?limit=5", "limit"),
    ],
)
def test_a_path_or_parameter_that_is_not_valid_is_422(alice: Api, path: str, field: str) -> None:
    assert error_of(alice.get(path), 422)["field"] == field


def test_head_answers_as_get_without_a_body(alice: Api) -> None:
    answer = alice.request("HEAD", "/account")
    assert (answer.status_code, answer.content) == (200, b"")


def test_no_answer_is_a_traceback(alice: Api) -> None:
    for body in (b"\x00", b'{"fqdn": "\\u0000"}', b'{"fqdn": ["a"]}', b'{"fqdn": {"a": 1}}'):
        alice.post("/hosts", content=body, headers=JSON)
        alice.put("/hosts/x.dyn.example.test/records", content=body, headers=JSON)
    alice.get("/hosts/%F0%9F%92%A9.dyn.example.test/history", params={"before": "-1"})
    # Every answer of this module's tests, these and the ones above.
    for response in alice.responses:
        assert response.status_code < 500, response.text
        assert "Traceback" not in response.text


def test_a_body_refused_unread_leaves_the_connection_usable(clients: Clients) -> None:
    """The next request on the same connection is answered: the body the refusal did
    not need was read before the answer went (a connection with a body left unread is
    closed after the answer)."""
    anonymous = clients()
    for size in (100, 20_000, 100_000):
        for _ in range(10):
            refused = anonymous.post("/hosts", content=b"x" * size, headers=JSON)  # no token
            assert refused.status_code == 401
            assert anonymous.get("/openapi.json").status_code == 200
