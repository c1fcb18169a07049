"""Cross-site request forgery: every form carries a token that another site cannot know.

A signed-in session has its own token (``web_sessions.csrf``), sent in a hidden field
of each form and compared on every POST. The sign-in form comes before any session:
it is double-submitted instead, the same random value in a cookie
(:data:`SIGNIN_COOKIE`) and in the form, which another site can neither read nor set,
so it cannot sign a browser in to an account of its own choosing (login CSRF).

A POST without the right token is refused with 403 before anything is read or changed.
"""

from __future__ import annotations

import hmac
import secrets

FIELD = "csrf"
SIGNIN_COOKIE = "nicupdate_signin"


def new_token() -> str:
    return secrets.token_urlsafe(32)


def matches(expected: str | None, sent: object) -> bool:
    """``sent`` (a form field) is the token ``expected``, compared in constant time."""
    if not expected or not isinstance(sent, str) or not sent:
        return False
    return hmac.compare_digest(expected.encode(), sent.encode("utf-8", "surrogatepass"))
