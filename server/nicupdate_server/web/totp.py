"""Two-factor sign-in with time-based one-time codes (TOTP, RFC 6238).

An authenticator app holds the account's secret and shows a 6-digit code for each 30 s
time step. A code is accepted in its own step and in the one before and after (a clock
a little off), and only once: the step it came from is stored (``take_totp_step``), so
a code seen over someone's shoulder is worthless once used.

The set-up page shows the secret, its ``otpauth://`` URI and, when the ``segno``
package is installed, the same URI as a QR code drawn in SVG on the server (no script,
no third party).
"""

from __future__ import annotations

import hmac
import io
import re
import time

import pyotp

ISSUER = "nicupdate"
DIGITS = 6
_SECRET = re.compile(r"^[A-Z2-7]{32}$")


def new_secret() -> str:
    return pyotp.random_base32()  # 160 bits, as RFC 4226 recommends


def valid_secret(secret: object) -> bool:
    return isinstance(secret, str) and bool(_SECRET.match(secret))


def uri(secret: str, account: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=account, issuer_name=ISSUER)


def matching_step(secret: str, code: str, now: float | None = None) -> int | None:
    """The time step whose code ``code`` is (this one, or the one before or after);
    None if it is none of them."""
    code = code.strip().replace(" ", "")
    if len(code) != DIGITS or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret)
    step = totp.timecode(time.time() if now is None else now)
    found = None
    for candidate in (step - 1, step, step + 1):  # all three: the same time every time
        if hmac.compare_digest(totp.generate_otp(candidate), code):
            found = candidate
    return found


def qr_svg(text: str) -> str | None:
    """``text`` as a QR code, an inline ``<svg>`` element; None without ``segno``."""
    try:
        import segno
    except ImportError:
        return None
    out = io.BytesIO()
    segno.make(text, error="m").save(
        out,
        kind="svg",
        xmldecl=False,
        svgns=True,
        scale=6,
        border=4,
        dark="#000",
        light="#fff",
        svgclass="qr",
        lineclass=None,
        omitsize=False,
    )
    svg = out.getvalue().decode()
    # An image for assistive technology, named by the text around it.
    return svg.replace("<svg ", '<svg role="img" aria-labelledby="qr-label" ', 1)
