"""``/hosts``: a caller's hosts, their records, update tokens and history."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from ..admin import AdminError, Following, HistoryRow, HostRow, check_user_name
from ..dyndns import Code
from ..hostrecords import MAX_TXT, RTYPES, valid_txt
from ..manage import (
    HISTORY_PAGE,
    MAX_HISTORY_PAGE,
    Forbidden,
    ManageError,
    NotFound,
)
from .bodies import ABSENT, Fields, truth, whole_parameter
from .calls import Call, Operations
from .errors import error_response, invalid, json_response, no_content, timestamp

MAX_FQDN = 253
MAX_ADDRESSES = 20  # per type, as manage.check_addresses allows
FOLLOWS = ("host", "interface_id", "prefix_length")


def host_json(row: HostRow) -> dict[str, Any]:
    return {
        "fqdn": row.fqdn,
        "owner": row.owner,
        "records": {rtype: list(row.records.get(rtype, ())) for rtype in RTYPES},
        "wildcard": row.wildcard,
        "last_update_at": timestamp(row.last_update_at),
        "last_result": row.last_result,
        "last_seen_at": timestamp(row.last_seen_at),
        "nochg_count": row.nochg_count,
        "blocked": row.blocked_at is not None,
        "pending": {backend: list(types) for backend, types in row.pending.items()},
        "errors": dict(row.errors),
        "ipv6_prefix": row.ipv6_prefix,
        "follows": row.follows,
        "interface_id": row.interface_id,
        "prefix_length": row.prefix_length,
        "followers": list(row.followers),
    }


def entry_json(entry: HistoryRow) -> dict[str, Any]:
    return {
        "id": entry.id,
        "at": timestamp(entry.at),
        "caller": entry.caller,
        "user_agent": entry.user_agent,
        "old": entry.old,
        "new": entry.new,
        "answer": entry.answer,
        "detail": entry.detail,
        "confirmed_at": timestamp(entry.confirmed_at),
    }


def _following(fields: Fields) -> Following | None:
    """``follows``: None when not sent; null: follow no host."""
    raw = fields.raw("follows")
    if raw is ABSENT:
        return None
    if raw is None:
        return Following(None)
    follows = fields.nested("follows", FOLLOWS)
    assert follows is not None
    leader = follows.text("host", required=True, max_length=MAX_FQDN)
    return Following(
        leader,
        follows.text("interface_id", max_length=64),
        follows.whole("prefix_length", 1, 127),
    )


async def list_hosts(call: Call) -> Response:
    every = truth(call.query("all"), "all")
    if every and not call.actor.admin:
        raise Forbidden("only an admin lists every user's hosts (all=true)", field="all")
    rows = await call.manager.hosts(call.actor, every=every)
    return json_response({"hosts": [host_json(row) for row in rows]})


async def add_host(call: Call) -> Response:
    call.query()
    fields = await call.body("fqdn", "wildcard", "owner", "follows")
    fqdn = fields.text("fqdn", required=True, max_length=MAX_FQDN)
    assert fqdn is not None
    wildcard = fields.flag("wildcard") or False
    owner = fields.text("owner", max_length=64)
    if owner is not None:
        try:
            check_user_name(owner)
        except AdminError as exc:
            raise invalid(f"owner: {exc}", "owner") from None
    following = _following(fields)
    if following is not None and following.leader is None:
        following = None  # a new host follows no one unless told
    try:
        token = await call.manager.add_host(
            call.actor, fqdn, owner=owner, wildcard=wildcard, following=following
        )
    except NotFound as exc:
        if owner is not None and exc.message.startswith("no user named"):
            raise invalid(f"owner: no user named {owner!r}", "owner") from None
        if following is not None:  # the host to follow
            raise invalid(f"follows.host: {exc.message}", "follows.host") from None
        raise
    except ManageError as exc:
        raise _about(exc, fqdn) from None
    row = await call.manager.host(call.actor, fqdn)
    location = {"Location": f"{call.request.scope.get('root_path', '')}/hosts/{row.fqdn}"}
    return json_response({"host": host_json(row), "token": token}, 201, location)


def _about(exc: ManageError, fqdn: str) -> ManageError:
    """A refusal that names no field but is about the host's name: its field is fqdn."""
    if exc.field is None and exc.status == 422 and exc.message.startswith(fqdn.lower().rstrip(".")):
        exc.field = "fqdn"
    return exc


async def get_host(call: Call) -> Response:
    call.query()
    return json_response(host_json(await call.manager.host(call.actor, call.path("fqdn"))))


async def patch_host(call: Call) -> Response:
    call.query()
    fields = await call.body("wildcard", "follows")
    wildcard = fields.flag("wildcard")
    following = _following(fields)
    fqdn = call.path("fqdn")
    await call.manager.host(call.actor, fqdn)  # 404 for the host itself, first
    try:
        row = await call.manager.set_host(call.actor, fqdn, wildcard=wildcard, following=following)
    except NotFound as exc:
        if following is not None and following.leader is not None:  # the host to follow
            raise invalid(f"follows.host: {exc.message}", "follows.host") from None
        raise
    return json_response(host_json(row))


async def delete_host(call: Call) -> Response:
    call.query()
    await call.manager.remove_host(call.actor, call.path("fqdn"))
    return no_content()


async def put_records(call: Call) -> Response:
    call.query()
    fields = await call.body(*RTYPES)
    if not any(fields.has(rtype) for rtype in RTYPES):
        raise invalid("name at least one of A, AAAA and TXT (an empty list clears it)")
    families: dict[str, list[str]] = {}
    for rtype in ("A", "AAAA"):
        addresses = fields.texts(rtype, max_items=MAX_ADDRESSES, max_length=64)
        if addresses is not None:
            families[rtype] = addresses
    txt = fields.texts("TXT", max_items=MAX_TXT)
    if txt is not None:
        wrong = [value for value in txt if not valid_txt(value)]
        if wrong:
            raise invalid(f"TXT {wrong[0][:60]!r}: 1-255 characters of A-Z a-z 0-9 _-=+/.:@", "TXT")
        families["TXT"] = txt
    fqdn = call.path("fqdn")
    changed = await call.manager.set_records(
        call.actor, fqdn, families, caller=call.address, user_agent=call.user_agent
    )
    if changed.ok:
        row = await call.manager.host(call.actor, fqdn)
        return json_response({"result": changed.code, "host": host_json(row)})
    if changed.code == Code.SERVER_ERROR.value:
        return error_response(
            503,
            "not_confirmed",
            f"DNS has not confirmed the change in time: {changed.reason}",
        )
    return error_response(502, changed.code, changed.reason or "DNS refused the change")


async def rotate_token(call: Call) -> Response:
    call.query()
    fqdn = call.path("fqdn")
    token = await call.manager.rotate_token(call.actor, fqdn)
    row = await call.manager.host(call.actor, fqdn)
    return json_response({"fqdn": row.fqdn, "token": token})


async def history(call: Call) -> Response:
    values = call.query("before", "limit")
    before = whole_parameter(values, "before", 1, 2**63 - 1)
    limit = whole_parameter(values, "limit", 1, MAX_HISTORY_PAGE) or HISTORY_PAGE
    page = await call.manager.history(call.actor, call.path("fqdn"), before=before, limit=limit)
    return json_response(
        {
            "fqdn": page.fqdn,
            "entries": [entry_json(entry) for entry in page.rows],
            "next": page.next,
        }
    )


OPERATIONS: Operations = {
    "/hosts": {"GET": list_hosts, "POST": add_host},
    "/hosts/{fqdn}": {"GET": get_host, "PATCH": patch_host, "DELETE": delete_host},
    "/hosts/{fqdn}/records": {"PUT": put_records},
    "/hosts/{fqdn}/token": {"POST": rotate_token},
    "/hosts/{fqdn}/history": {"GET": history},
}
