"""Pages from the Jinja2 templates of ``templates/``, with the catalogue's ``t()``.

Every page extends ``base.html`` (the skip link, the navigation, the notices). The
templates get ``t`` (a string of :mod:`.messages`), ``static()`` (a static file's URL
with its content digest) and the filters ``when`` (a time, as UTC text) and ``ago``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.templating import Jinja2Templates

from ..admin import utc
from .headers import NO_STORE
from .messages import has, t

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"


def when(moment: datetime | None) -> str:
    if moment is None:
        return t("time.never")
    return f"{utc(moment):%Y-%m-%d %H:%M:%S} UTC"


def short(moment: datetime) -> str:
    """A time in a table whose heading says UTC."""
    return f"{utc(moment):%Y-%m-%d %H:%M:%S}"


def iso(moment: datetime | None) -> str:
    return "" if moment is None else utc(moment).isoformat(timespec="seconds")


def ago(moment: datetime | None, now: datetime | None = None) -> str:
    if moment is None:
        return t("time.never")
    seconds = int(((now or datetime.now(UTC)) - utc(moment)).total_seconds())
    if seconds < 60:
        return t("time.just_now")
    for size, key in ((86400, "time.days_ago"), (3600, "time.hours_ago"), (60, "time.minutes_ago")):
        if seconds >= size:
            return t(key, n=seconds // size)
    return t("time.just_now")  # pragma: no cover


def _versions() -> dict[str, str]:
    return {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()[:12]
        for path in STATIC.iterdir()
        if path.is_file()
    }


class Renderer:
    def __init__(self) -> None:
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(TEMPLATES),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        versions = _versions()
        env.globals["t"] = t
        env.globals["has"] = has
        env.globals["static"] = lambda name: f"/static/{name}?v={versions[name]}"
        env.filters["when"] = when
        env.filters["iso"] = iso
        env.filters["short"] = short
        env.filters["ago"] = ago
        self.templates = Jinja2Templates(env=env)

    def page(
        self,
        request: Request,
        template: str,
        context: Mapping[str, Any],
        *,
        status: int = 200,
        secret: bool = False,
        headers: Mapping[str, str] | None = None,
    ) -> HTMLResponse:
        """``template`` filled in; ``secret``: the page shows a secret (never cached)."""
        all_headers = {**(NO_STORE if secret else {}), **(headers or {})}
        return self.templates.TemplateResponse(
            request, template, dict(context), status_code=status, headers=all_headers
        )
