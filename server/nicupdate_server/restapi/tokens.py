"""``/tokens``: the caller's API tokens. A secret is shown once, when it is made."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from ..admin import AdminError
from ..apitokens import MAX_EXPIRY_DAYS, TokenRow, check_token_name
from .calls import Call, Operations
from .errors import invalid, json_response, no_content, timestamp

MAX_ID = 2**63 - 1


def token_json(row: TokenRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "hosts": None if row.scope.hosts is None else list(row.scope.hosts),
        "read_only": row.scope.read_only,
        "acme_only": row.scope.acme_only,
        "created_at": timestamp(row.created_at),
        "expires_at": timestamp(row.expires_at),
        "last_used_at": timestamp(row.last_used_at),
        "expired": row.expired(),
    }


async def list_tokens(call: Call) -> Response:
    call.query()
    rows = await call.manager.api_tokens(call.actor)
    return json_response({"tokens": [token_json(row) for row in rows]})


async def add_token(call: Call) -> Response:
    call.query()
    fields = await call.body("name", "hosts", "read_only", "acme_only", "expires_days")
    name = fields.text("name", required=True, max_length=64)
    assert name is not None
    try:
        name = check_token_name(name)
    except AdminError as exc:
        raise invalid(str(exc), "name") from None
    hosts = fields.texts("hosts", max_length=253)
    if hosts == []:
        raise invalid("hosts: name at least one host, or leave hosts out for every host", "hosts")
    secret, row = await call.manager.add_api_token(
        call.actor,
        name,
        hosts=hosts,
        read_only=fields.flag("read_only") or False,
        acme_only=fields.flag("acme_only") or False,
        expires_days=fields.whole("expires_days", 1, MAX_EXPIRY_DAYS),
    )
    location = {"Location": f"{call.request.scope.get('root_path', '')}/tokens/{row.id}"}
    return json_response({**token_json(row), "secret": secret}, 201, location)


async def revoke_token(call: Call) -> Response:
    call.query()
    text = call.path("id")
    if not text.isascii() or not text.isdigit() or len(text) > 19 or not 0 < int(text) <= MAX_ID:
        raise invalid(f"id {text[:40]!r}: an API token's id is a whole number (GET /tokens)", "id")
    await call.manager.revoke_api_token(call.actor, int(text))
    return no_content()


OPERATIONS: Operations = {
    "/tokens": {"GET": list_tokens, "POST": add_token},
    "/tokens/{id}": {"DELETE": revoke_token},
}
