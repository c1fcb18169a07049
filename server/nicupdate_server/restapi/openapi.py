"""The API's OpenAPI 3.1 description, served at ``/api/v1/openapi.json``.

Written out by hand, as data: every body in and out is a schema of
``components/schemas``, and every status an operation may answer is listed with it.
The tests hold the handlers to it: each response they receive is validated against
the schema of its path, method and status, and schemathesis calls every operation with
generated input.
"""

from __future__ import annotations

import functools
from typing import Any

from ..apitokens import MAX_EXPIRY_DAYS
from ..hostrecords import MAX_TXT
from ..manage import MAX_HISTORY_PAGE
from .bodies import MAX_ITEMS, MAX_TEXT

Schema = dict[str, Any]

STRING: Schema = {"type": "string"}
TEXT: Schema = {"type": "string", "minLength": 1, "maxLength": MAX_TEXT}
BOOL: Schema = {"type": "boolean"}
COUNT: Schema = {"type": "integer", "minimum": 0}
TIME: Schema = {"type": "string", "format": "date-time"}
MAYBE_TIME: Schema = {"type": ["string", "null"], "format": "date-time"}
MAYBE_STRING: Schema = {"type": ["string", "null"]}
FQDN: Schema = {
    "type": "string",
    "minLength": 1,
    "maxLength": 253,
    "examples": ["home.dyn.example.com"],
}
TXT_VALUE: Schema = {"type": "string", "pattern": "^[A-Za-z0-9_\\-=+/.:@]{1,255}$"}


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def strict(properties: Schema, required: tuple[str, ...] = (), **more: Any) -> Schema:
    """An object of exactly these members (``required``: which must be there)."""
    schema: Schema = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        schema["required"] = list(required)
    return {**schema, **more}


def every(properties: Schema, **more: Any) -> Schema:
    """An answer's object: every member always there."""
    return strict(properties, tuple(properties), **more)


def array(items: Schema, **more: Any) -> Schema:
    return {"type": "array", "items": items, **more}


HOST = every(
    {
        "fqdn": STRING,
        "owner": STRING,
        "records": every(
            {
                "A": array({"type": "string", "format": "ipv4"}),
                "AAAA": array({"type": "string", "format": "ipv6"}),
                "TXT": array(STRING),
            },
            description="The host's records: A and AAAA at its name (and at *.<fqdn> "
            "with wildcard on), TXT at _acme-challenge.<fqdn>",
        ),
        "wildcard": BOOL,
        "last_update_at": MAYBE_TIME,
        "last_result": MAYBE_STRING,
        "last_seen_at": MAYBE_TIME,
        "nochg_count": COUNT,
        "blocked": {**BOOL, "description": "answers abuse until unblocked"},
        "pending": {
            "type": "object",
            "additionalProperties": array(STRING),
            "description": "per backend, the record types it has not confirmed yet",
        },
        "errors": {
            "type": "object",
            "additionalProperties": STRING,
            "description": "per backend, its last error for this host",
        },
        "ipv6_prefix": MAYBE_STRING,
        "follows": MAYBE_STRING,
        "interface_id": MAYBE_STRING,
        "prefix_length": {"type": ["integer", "null"]},
        "followers": array(STRING),
    }
)

FOLLOWING = strict(
    {
        "host": {**FQDN, "description": "the host whose delegated IPv6 prefix to follow"},
        "interface_id": {
            "type": "string",
            "minLength": 1,
            "maxLength": 64,
            "examples": ["::1234:5678:9abc:def0"],
        },
        "prefix_length": {"type": "integer", "minimum": 1, "maximum": 127, "default": 64},
    },
    ("host",),
)

TOKEN_PROPERTIES: Schema = {
    "id": {"type": "integer", "minimum": 1},
    "name": STRING,
    "hosts": {"type": ["array", "null"], "items": STRING},
    "read_only": BOOL,
    "acme_only": BOOL,
    "created_at": TIME,
    "expires_at": MAYBE_TIME,
    "last_used_at": MAYBE_TIME,
    "expired": BOOL,
}

SCHEMAS: dict[str, Schema] = {
    "Error": every(
        {
            "error": every(
                {
                    "code": {**STRING, "examples": ["invalid"]},
                    "message": {**STRING, "description": "what went wrong and what to do"},
                    "field": {
                        **MAYBE_STRING,
                        "description": "the member or parameter at fault",
                    },
                }
            )
        }
    ),
    "Host": HOST,
    "HostList": every({"hosts": array(ref("Host"))}),
    "Following": FOLLOWING,
    "NewHost": strict(
        {
            "fqdn": FQDN,
            "wildcard": {**BOOL, "default": False},
            "owner": {
                "type": "string",
                "minLength": 1,
                "maxLength": 64,
                "description": "admins only: the user to own it",
            },
            "follows": {"anyOf": [ref("Following"), {"type": "null"}]},
        },
        ("fqdn",),
    ),
    "HostCreated": every(
        {
            "host": ref("Host"),
            "token": {**STRING, "description": "the host's update token, shown once"},
        }
    ),
    "HostPatch": strict(
        {
            "wildcard": BOOL,
            "follows": {
                "anyOf": [ref("Following"), {"type": "null"}],
                "description": "null: follow no host",
            },
        }
    ),
    "RecordsUpdate": strict(
        {
            "A": array(STRING, maxItems=20, examples=[["203.0.113.7"]]),
            "AAAA": array(STRING, maxItems=20, examples=[["2001:db8::7"]]),
            "TXT": array(TXT_VALUE, maxItems=MAX_TXT),
        },
        minProperties=1,
        description="The record types to set; an empty list clears that type",
    ),
    "RecordsResult": every(
        {"result": {"type": "string", "enum": ["good", "nochg"]}, "host": ref("Host")}
    ),
    "HostToken": every({"fqdn": STRING, "token": STRING}),
    "HistoryEntry": every(
        {
            "id": {"type": "integer", "minimum": 1},
            "at": TIME,
            "caller": STRING,
            "user_agent": STRING,
            "old": STRING,
            "new": STRING,
            "answer": STRING,
            "detail": STRING,
            "confirmed_at": MAYBE_TIME,
        }
    ),
    "History": every(
        {
            "fqdn": STRING,
            "entries": array(ref("HistoryEntry"), description="newest first"),
            "next": {
                "type": ["integer", "null"],
                "description": "pass it as before for older entries; null: no more",
            },
        }
    ),
    "Account": every(
        {
            "name": STRING,
            "admin": BOOL,
            "totp": BOOL,
            "created_at": TIME,
            "token": every(
                {
                    "id": {"type": "integer", "minimum": 1},
                    "hosts": {"type": ["array", "null"], "items": STRING},
                    "read_only": BOOL,
                    "acme_only": BOOL,
                    "admin": BOOL,
                    "expires_at": MAYBE_TIME,
                },
                description="the token of this request, and what it may do (tokens it "
                "makes expire no later than it does)",
            ),
        }
    ),
    "PasswordChange": strict(
        {"current_password": TEXT, "new_password": TEXT},
        ("current_password", "new_password"),
    ),
    "Token": every(TOKEN_PROPERTIES),
    "TokenList": every({"tokens": array(ref("Token"))}),
    "NewToken": strict(
        {
            "name": {"type": "string", "minLength": 1, "maxLength": 64},
            "hosts": array(FQDN, minItems=1, maxItems=MAX_ITEMS),
            "read_only": {**BOOL, "default": False},
            "acme_only": {**BOOL, "default": False},
            "expires_days": {"type": "integer", "minimum": 1, "maximum": MAX_EXPIRY_DAYS},
        },
        ("name",),
    ),
    "TokenCreated": every(
        {
            **TOKEN_PROPERTIES,
            "secret": {**STRING, "description": "the token (nu_...), shown once"},
        }
    ),
    "User": every(
        {
            "name": STRING,
            "admin": BOOL,
            "disabled": BOOL,
            "disabled_at": MAYBE_TIME,
            "totp": BOOL,
            "hosts": COUNT,
            "created_at": TIME,
        }
    ),
    "UserList": every({"users": array(ref("User"))}),
    "NewUser": strict(
        {
            "name": {"type": "string", "minLength": 1, "maxLength": 64},
            "password": TEXT,
            "admin": {**BOOL, "default": False},
        },
        ("name", "password"),
    ),
    "UserPatch": strict({"disabled": BOOL, "admin": BOOL}),
    "Status": every(
        {
            "healthy": BOOL,
            "problems": array(STRING),
            "backends": array(every({"name": STRING, "pending": COUNT, "errors": array(STRING)})),
            "users": COUNT,
            "hosts": COUNT,
            "figures": {"type": "object", "additionalProperties": {"type": ["number", "null"]}},
        }
    ),
}

_ERRORS = {
    400: ("MalformedJson", "The body is not JSON"),
    401: ("Unauthorized", "No API token, or not one that works"),
    403: ("Forbidden", "The token's scope, or the account, may not do this"),
    404: ("NotFound", "No such host, token or user (of yours)"),
    409: ("Conflict", "It exists already, or cannot be done as things are"),
    413: ("TooLarge", "The body is over 64 KiB"),
    415: ("UnsupportedMediaType", "The body is not application/json"),
    422: ("Invalid", "A member or parameter is not valid (named in field)"),
    429: ("TooManyRequests", "The caller's address is locked out after wrong tokens"),
    502: ("DnsError", "DNS refused the records (dnserr)"),
    503: ("Unavailable", "The database, or DNS in time, could not take it; try again"),
}
_HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": {"schema": STRING, "description": 'Bearer realm="nicupdate"'}},
    429: {"Retry-After": {"schema": STRING, "description": "seconds to wait"}},
}


def _responses() -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for status, (name, description) in _ERRORS.items():
        response: dict[str, Any] = {
            "description": description,
            "content": {"application/json": {"schema": ref("Error")}},
        }
        if status in _HEADERS:
            response["headers"] = _HEADERS[status]
        responses[name] = response
    return responses


def _errors(*statuses: int) -> dict[str, Any]:
    return {
        str(status): {"$ref": f"#/components/responses/{_ERRORS[status][0]}"} for status in statuses
    }


def _ok(status: int, schema: str | None, description: str) -> dict[str, Any]:
    if schema is None:
        return {str(status): {"description": description}}
    content = {"application/json": {"schema": ref(schema)}}
    return {str(status): {"description": description, "content": content}}


def _body(schema: str) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": ref(schema)}}}


def operation(
    summary: str,
    ok: dict[str, Any],
    *,
    body: str | None = None,
    errors: tuple[int, ...] = (),
    parameters: tuple[dict[str, Any], ...] = (),
) -> dict[str, Any]:
    """An operation that needs a token: every one may answer 401, 403, 422, 429, 503;
    one with a body also 400, 413, 415."""
    statuses = {401, 403, 422, 429, 503, *errors}
    if body is not None:
        statuses |= {400, 413, 415}
    spec: dict[str, Any] = {
        "summary": summary,
        "responses": {**ok, **_errors(*sorted(statuses))},
    }
    if body is not None:
        spec["requestBody"] = _body(body)
    if parameters:
        spec["parameters"] = list(parameters)
    return spec


def _path(name: str, schema: Schema, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": schema,
        "description": description,
    }


def _query(name: str, schema: Schema, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


FQDN_PARAMETER = _path("fqdn", FQDN, "the host's name")


def paths() -> dict[str, Any]:
    host = {"parameters": [FQDN_PARAMETER]}
    return {
        "/openapi.json": {
            "get": {
                "summary": "This description (no token needed)",
                "security": [],
                "responses": {
                    "200": {
                        "description": "OpenAPI 3.1",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            }
        },
        "/account": {
            "get": operation(
                "The account of the token, and the token's scope",
                _ok(200, "Account", "The account"),
                errors=(404,),
            )
        },
        "/account/password": {
            "post": operation(
                "Change the account's password (its web sessions end)",
                _ok(204, None, "Changed"),
                body="PasswordChange",
            )
        },
        "/hosts": {
            "get": operation(
                "The caller's hosts (an admin's all=true: every user's)",
                _ok(200, "HostList", "The hosts, by name"),
                parameters=(_query("all", BOOL, "admins: every user's hosts"),),
            ),
            "post": operation(
                "Add a host; its update token is in the answer, once",
                _ok(201, "HostCreated", "Added"),
                body="NewHost",
                errors=(404, 409),
            ),
        },
        "/hosts/{fqdn}": {
            **host,
            "get": operation("One host", _ok(200, "Host", "The host"), errors=(404,)),
            "patch": operation(
                "Turn its wildcard on or off; follow another host's IPv6 prefix, or none",
                _ok(200, "Host", "The host as changed"),
                body="HostPatch",
                errors=(404, 409),
            ),
            "delete": operation(
                "Remove the host (its records leave DNS)",
                _ok(204, None, "Removed"),
                errors=(404, 409),
            ),
        },
        "/hosts/{fqdn}/records": {
            **host,
            "put": operation(
                "Set (or, with [], clear) its A, AAAA or TXT records; answered once DNS has them",
                _ok(200, "RecordsResult", "DNS has them (good), or had them already (nochg)"),
                body="RecordsUpdate",
                errors=(404, 409, 502),
            ),
        },
        "/hosts/{fqdn}/token": {
            **host,
            "post": operation(
                "A new update token for the host (the old one stops working)",
                _ok(200, "HostToken", "The new token, shown once"),
                errors=(404, 409),
            ),
        },
        "/hosts/{fqdn}/history": {
            **host,
            "get": operation(
                "Its update history, newest first",
                _ok(200, "History", "One page"),
                errors=(404,),
                parameters=(
                    _query("before", {"type": "integer", "minimum": 1}, "entries older than"),
                    _query(
                        "limit",
                        {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": MAX_HISTORY_PAGE,
                            "default": 50,
                        },
                        "entries per page",
                    ),
                ),
            ),
        },
        "/tokens": {
            "get": operation(
                "The account's API tokens (never their secrets)",
                _ok(200, "TokenList", "The tokens"),
            ),
            "post": operation(
                "A new API token, never wider than the caller's; its secret is shown once",
                _ok(201, "TokenCreated", "Made"),
                body="NewToken",
                errors=(404, 409),
            ),
        },
        "/tokens/{id}": {
            "parameters": [_path("id", {"type": "integer", "minimum": 1}, "the token's id")],
            "delete": operation("Revoke an API token", _ok(204, None, "Revoked"), errors=(404,)),
        },
        "/users": {
            "get": operation("Admins: every account", _ok(200, "UserList", "The accounts")),
            "post": operation(
                "Admins: add an account",
                _ok(201, "User", "Added"),
                body="NewUser",
                errors=(409,),
            ),
        },
        "/users/{name}": {
            "parameters": [
                _path(
                    "name",
                    {"type": "string", "minLength": 1, "maxLength": 64},
                    "the account's name",
                )
            ],
            "patch": operation(
                "Admins: disable or enable an account, give or take admin rights",
                _ok(200, "User", "The account as changed"),
                body="UserPatch",
                errors=(404, 409),
            ),
            "delete": operation(
                "Admins: remove an account (with_hosts=true: and its hosts)",
                _ok(204, None, "Removed"),
                errors=(404, 409),
                parameters=(_query("with_hosts", BOOL, "remove its hosts too"),),
            ),
        },
        "/status": {
            "get": operation(
                "Admins: health, backends, counts and figures",
                _ok(200, "Status", "The server's state"),
            )
        },
    }


@functools.cache
def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "nicupdate REST API",
            "version": "1",
            "description": "Hosts, records, API tokens and accounts of a nicupdate server. "
            "Send an API token as Authorization: Bearer nu_... (make one with "
            "`nicupdate-server token add USER` or in the web UI).",
        },
        "servers": [{"url": "/api/v1"}],
        "security": [{"bearer": []}],
        "paths": paths(),
        "components": {
            "schemas": SCHEMAS,
            "responses": _responses(),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "an API token, nu_...",
                }
            },
        },
    }
