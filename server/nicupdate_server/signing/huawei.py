"""Huawei Cloud API Gateway AK/SK signing (``SDK-HMAC-SHA256``), for Huawei Cloud DNS.

Signing guide and the vector (the VPC list example, 20191115T033655Z):
https://support.huaweicloud.com/intl/en-us/devg-apisign/api-sign-algorithm-002.html
(canonical request), then ``-003.html`` (string to sign) to ``-005.html`` (the
Authorization header, with the resulting signature).

The canonical request is SigV4's, except that the canonical URI always ends with
``/`` (the request itself need not); the string to sign has no credential scope,
and the key is the secret key itself:

    StringToSign = "SDK-HMAC-SHA256\\n" + X-Sdk-Date + "\\n" + hex(sha256(CanonicalRequest))
    Signature    = hex(HMAC-SHA256(SK, StringToSign))
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Generator, Iterable, Mapping
from datetime import datetime
from urllib.parse import unquote

import httpx

from .canonical import (
    Headers,
    as_utc,
    canonical_query,
    canonical_request,
    headers_to_sign,
    secret_bytes,
    uri_encode,
    utc_now,
    wire_path,
    wire_query,
)

ALGORITHM = "SDK-HMAC-SHA256"


def canonical_uri(path: str) -> str:
    """Each segment of the (percent-encoded) path decoded, encoded per RFC 3986, and a
    trailing ``/`` added when missing: ``/v1/p/vpcs`` -> ``/v1/p/vpcs/``."""
    uri = "/".join(uri_encode(unquote(segment)) for segment in path.split("/"))
    return uri if uri.endswith("/") else uri + "/"


def huawei_headers(
    *,
    method: str,
    host: str,
    path: str = "/",
    query: Iterable[tuple[str, str]] = (),
    headers: Headers = (),
    body: bytes = b"",
    when: datetime,
    access_key: str,
    secret_key: str,
) -> dict[str, str]:
    """The headers that sign a request: ``X-Sdk-Date`` and ``Authorization``.

    ``path`` is the path as sent (percent-encoded), ``query`` the decoded pairs,
    ``headers`` the further headers to sign (``host`` and ``x-sdk-date`` are added).
    """
    stamp = as_utc(when).strftime("%Y%m%dT%H%M%SZ")
    items = headers.items() if isinstance(headers, Mapping) else headers
    own = {"host", "x-sdk-date", "authorization"}
    signed_items = [(n, v) for n, v in items if n.lower() not in own]
    signed_items += [("host", host), ("x-sdk-date", stamp)]
    request, signed = canonical_request(
        method,
        canonical_uri(path),
        canonical_query(query),
        signed_items,
        hashlib.sha256(body).hexdigest(),
    )
    to_sign = f"{ALGORITHM}\n{stamp}\n{hashlib.sha256(request.encode('utf-8')).hexdigest()}"
    signature = hmac.new(
        secret_key.encode("utf-8"), to_sign.encode("utf-8"), hashlib.sha256
    ).hexdigest()
    return {
        "X-Sdk-Date": stamp,
        "Authorization": (
            f"{ALGORITHM} Access={access_key}, SignedHeaders={signed}, Signature={signature}"
        ),
    }


class HuaweiSdkAuth(httpx.Auth):
    """Signs each request with SDK-HMAC-SHA256; signs ``host``, ``content-type`` and ``x-*``."""

    requires_request_body = True

    def __init__(
        self,
        access_key: str,
        secret_key: str,
        *,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        secret_bytes("secret_key", secret_key)
        self.access_key = access_key
        self._secret_key = secret_key
        self._clock = clock

    def __repr__(self) -> str:
        return f"HuaweiSdkAuth(access_key={self.access_key!r})"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        query = wire_query(request)
        headers = headers_to_sign(request, "x-")
        request.headers.update(
            huawei_headers(
                method=request.method,
                host=request.headers["host"],
                path=wire_path(request),
                query=query,
                headers=headers,
                body=request.content,
                when=self._clock(),
                access_key=self.access_key,
                secret_key=self._secret_key,
            )
        )
        yield request
