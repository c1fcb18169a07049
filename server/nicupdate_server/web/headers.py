"""Headers on every answer of the web UI, static files and error pages included.

The content security policy allows scripts, styles and images from this origin only
(``app.js``, ``app.css``; no inline script or style anywhere), forms that post here,
and no framing (clickjacking). Static files are named with a digest of their content
(``app.css?v=...``), so browsers may keep them a year; pages are ``private, no-cache``,
and pages that show a secret ``no-store`` (:data:`NO_STORE`, set by the page).
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY = {
    "content-security-policy": CSP,
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    "x-content-type-options": "nosniff",
    "cross-origin-opener-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=(), payment=()",
}
NO_STORE = {"cache-control": "no-store"}
STATIC_CACHE = "public, max-age=31536000, immutable"
PAGE_CACHE = "private, no-cache"


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = scope["path"].startswith("/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY.items():
                    headers.setdefault(name, value)
                if static and message["status"] == 200:
                    headers["cache-control"] = STATIC_CACHE
                else:
                    headers.setdefault("cache-control", PAGE_CACHE)
            await send(message)

        await self.app(scope, receive, send_with_headers)
