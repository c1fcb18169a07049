"""Tencent Cloud API signature v3 (``TC3-HMAC-SHA256``), for DNSPod.

Signing guide and the vector (CVM ``DescribeInstances``, timestamp 1551113065):
https://www.tencentcloud.com/document/product/267/37447 (the same "Signature v3" page is
published under every product's API documentation).

The backend POSTs JSON and sets ``X-TC-Action``, ``X-TC-Version`` (and ``X-TC-Region``
where the API wants one); this signer sets ``X-TC-Timestamp`` unless present, and
``Authorization``. Only ``content-type`` and ``host`` are signed:

    CanonicalRequest = METHOD\\n/\\nQuery\\ncontent-type:CT\\nhost:HOST\\n\\n
                       content-type;host\\nhex(sha256(body))
    StringToSign     = "TC3-HMAC-SHA256\\n" + Timestamp + "\\n" + Date/service/tc3_request
                       + "\\n" + hex(sha256(CanonicalRequest))
    key chain        = HMAC("TC3" + SecretKey, Date) -> service -> "tc3_request"

where Date is the timestamp's UTC date (YYYY-MM-DD) and Query is empty for POST.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Generator
from datetime import UTC, datetime

import httpx

from .canonical import as_utc, secret_bytes, utc_now

ALGORITHM = "TC3-HMAC-SHA256"
SIGNED_HEADERS = "content-type;host"


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()


def tc3_headers(
    *,
    method: str,
    host: str,
    content_type: str,
    query: str = "",
    body: bytes = b"",
    timestamp: int,
    secret_id: str,
    secret_key: str,
    service: str,
) -> dict[str, str]:
    """The headers that sign a request: ``X-TC-Timestamp`` and ``Authorization``.

    ``query`` is the query string as sent (ignored for POST, whose canonical query
    is empty); ``timestamp`` is Unix seconds.
    """
    date = datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")
    canonical = "\n".join(
        [
            method.upper(),
            "/",
            "" if method.upper() == "POST" else query,
            f"content-type:{content_type}\nhost:{host}\n",
            SIGNED_HEADERS,
            hashlib.sha256(body).hexdigest(),
        ]
    )
    scope = f"{date}/{service}/tc3_request"
    to_sign = "\n".join(
        [ALGORITHM, str(timestamp), scope, hashlib.sha256(canonical.encode("utf-8")).hexdigest()]
    )
    key = ("TC3" + secret_key).encode("utf-8")
    for part in (date, service, "tc3_request"):
        key = _hmac(key, part)
    signature = hmac.new(key, to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    return {
        "X-TC-Timestamp": str(timestamp),
        "Authorization": (
            f"{ALGORITHM} Credential={secret_id}/{scope}, "
            f"SignedHeaders={SIGNED_HEADERS}, Signature={signature}"
        ),
    }


class Tc3Auth(httpx.Auth):
    """Signs each request with TC3-HMAC-SHA256 for ``service`` (``dnspod`` for DNSPod)."""

    requires_request_body = True

    def __init__(
        self,
        secret_id: str,
        secret_key: str,
        service: str,
        *,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        secret_bytes("secret_key", secret_key)
        self.secret_id = secret_id
        self.service = service
        self._secret_key = secret_key
        self._clock = clock

    def __repr__(self) -> str:
        return f"Tc3Auth(secret_id={self.secret_id!r}, service={self.service!r})"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        given = request.headers.get("x-tc-timestamp")
        if given is None:
            timestamp = int(as_utc(self._clock()).timestamp())
        elif given.isdigit():
            timestamp = int(given)
        else:
            raise ValueError(f"X-TC-Timestamp is not Unix seconds: {given!r}")
        request.headers.update(
            tc3_headers(
                method=request.method,
                host=request.headers["host"],
                content_type=request.headers.get("content-type", ""),
                query=request.url.query.decode("ascii"),
                body=request.content,
                timestamp=timestamp,
                secret_id=self.secret_id,
                secret_key=self._secret_key,
                service=self.service,
            )
        )
        yield request
