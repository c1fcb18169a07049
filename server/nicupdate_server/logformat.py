"""How log lines look: text (the default) or JSON (``server.log_format = "json"``).

Text is ``TIME LEVEL LOGGER: MESSAGE``. JSON is one object per line, made by
python-json-logger from the same records (:mod:`.jsonlines`, imported only then), with
these fields (in this order, each only when the record has it):

* ``time`` (ISO 8601, UTC), ``level``, ``logger``, ``event`` (the message, as the text
  line has it);
* an update's line: ``host``, ``caller`` (its address), ``answer`` (the line sent);
* the access log (``server.access_log``): ``peer`` (the TCP peer), ``method``, ``path``
  (passwords and tokens masked, as in the text), ``status``;
* ``request_id``, on every line logged while an update request is handled;
* ``exception``: a traceback, as one string.

No other attribute of a record reaches the output, so nothing a library attaches to
one can leak a secret.

The request id is made when a line first needs it, or taken from the request's
``X-Request-ID`` when the TCP peer is one of ``server.trusted_proxies``, so that a
reverse proxy's id ties its log lines to ours.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import secrets
from collections.abc import Sequence
from contextvars import ContextVar

from starlette.types import Scope

from .config import IPNetwork

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
WORKER_FORMAT = "%(asctime)s %(levelname)s [worker %(worker)s] %(name)s: %(message)s"
HANDLER_NAME = "nicupdate"  # the handler log_to_stderr() installs
REQUEST_ID_KEY = "nicupdate.request_id"  # where a request's id is kept in its ASGI scope
FORWARDED_ID = re.compile(r"[\x21-\x7e]{1,128}")  # a proxy's id: printable, no spaces

_request: ContextVar[tuple[Scope, Sequence[IPNetwork]] | None] = ContextVar(
    "nicupdate_request", default=None
)


def begin_request(scope: Scope, trusted_proxies: Sequence[IPNetwork]) -> None:
    """Lines logged from here on in this request's task carry its id."""
    _request.set((scope, trusted_proxies))


def request_id() -> str | None:
    """The id of the request being handled (None outside of one); made on first use."""
    current = _request.get()
    if current is None:
        return None
    scope, trusted = current
    found: str | None = scope.get(REQUEST_ID_KEY)
    if found is None:
        found = scope[REQUEST_ID_KEY] = _forwarded_id(scope, trusted) or secrets.token_hex(8)
    return found


def _forwarded_id(scope: Scope, trusted: Sequence[IPNetwork]) -> str | None:
    client = scope.get("client")
    if not trusted or not client:
        return None
    try:
        peer = ipaddress.ip_address(client[0])
    except ValueError:
        return None
    if not any(peer in network for network in trusted):
        return None
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            text = value.decode("latin-1")
            return text if FORWARDED_ID.fullmatch(text) else None
    return None


class RequestContext(logging.Filter):
    """Gives each record logged while an update request is handled its ``request_id``,
    and every record the worker that logged it (``serve --workers``)."""

    worker: int | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        if self.worker is not None:
            record.worker = self.worker
        if not hasattr(record, "request_id"):
            current = request_id()
            if current is not None:
                record.request_id = current
        return True


def log_to_stderr(log_format: str) -> None:
    """Send every log line to standard error, as ``log_format`` says (``text``, ``json``)."""
    root = logging.getLogger()
    if _handler() is None:
        handler = logging.StreamHandler()
        handler.set_name(HANDLER_NAME)
        handler.addFilter(RequestContext())
        root.addHandler(handler)
    set_log_format(log_format)


def set_log_format(log_format: str) -> None:
    """The format of the lines that follow (a reload); nothing when :func:`log_to_stderr`
    has not been called (the server runs inside something else, a test)."""
    handler = _handler()
    if handler is not None:
        if log_format == "json":
            from .jsonlines import JsonLines

            handler.setFormatter(JsonLines())
        elif RequestContext.worker is not None:
            handler.setFormatter(logging.Formatter(WORKER_FORMAT))
        else:
            handler.setFormatter(logging.Formatter(TEXT_FORMAT))


def set_worker(index: int) -> None:
    """Every line from now on names this worker (``[worker 1]``, JSON ``"worker": 1``)."""
    RequestContext.worker = index


def _handler() -> logging.Handler | None:
    return next((h for h in logging.getLogger().handlers if h.get_name() == HANDLER_NAME), None)
