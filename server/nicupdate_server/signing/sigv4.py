"""AWS Signature Version 4 (``AWS4-HMAC-SHA256`` in the Authorization header), for Route 53.

Algorithm: https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html
Vectors (get-vanilla, post-vanilla): the AWS SigV4 test suite,
https://docs.aws.amazon.com/general/latest/gr/signature-v4-test-suite.html

The canonical-request helpers here are shared with Huawei's SDK-HMAC-SHA256, which
is SigV4 with another string to sign. This signer is for services other than S3:
the path is normalised and encoded once more as it goes on the wire, as botocore
does, and no ``x-amz-content-sha256`` header is added (S3 wants one; Route 53 does not).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Generator, Iterable, Mapping
from datetime import datetime

import httpx

from .canonical import (
    Headers,
    as_utc,
    canonical_query,
    canonical_request,
    headers_to_sign,
    hmac_sha256,
    secret_bytes,
    uri_encode,
    utc_now,
    wire_path,
    wire_query,
)

ALGORITHM = "AWS4-HMAC-SHA256"


def canonical_uri(path: str) -> str:
    """The wire path (percent-encoded, without query), dot segments and empty segments
    removed, then encoded once more (so ``%20`` becomes ``%2520``), as AWS expects
    for every service but S3."""
    segments: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if segments:
                segments.pop()
        elif segment not in ("", "."):
            segments.append(segment)
    normalised = "/" + "/".join(segments)
    if path.endswith("/") and segments:
        normalised += "/"
    return uri_encode(normalised, safe="/")


def signing_key(secret_access_key: str, date: str, region: str, service: str) -> bytes:
    """The HMAC-SHA256 chain: "AWS4" + secret -> date (YYYYMMDD) -> region -> service
    -> "aws4_request"."""
    key = ("AWS4" + secret_access_key).encode("utf-8")
    for part in (date, region, service, "aws4_request"):
        key = hmac_sha256(key, part)
    return key


def sigv4_headers(
    *,
    method: str,
    host: str,
    path: str = "/",
    query: Iterable[tuple[str, str]] = (),
    headers: Headers = (),
    body: bytes = b"",
    when: datetime,
    access_key_id: str,
    secret_access_key: str,
    region: str,
    service: str,
    session_token: str | None = None,
) -> dict[str, str]:
    """The headers that sign a request: ``X-Amz-Date``, ``X-Amz-Security-Token`` (with a
    session token) and ``Authorization``.

    ``path`` is the path as sent (percent-encoded), ``query`` the decoded name/value
    pairs, ``headers`` the further headers to sign (``host`` and the ones set here
    are added). ``Authorization`` ends with ``Signature=<hex>``.
    """
    stamp = as_utc(when).strftime("%Y%m%dT%H%M%SZ")
    added = {"x-amz-date": stamp}
    if session_token is not None:
        added["x-amz-security-token"] = session_token
    items = headers.items() if isinstance(headers, Mapping) else headers
    own = {"host", "authorization", *added}
    signed_items = [(n, v) for n, v in items if n.lower() not in own]
    signed_items += [("host", host), *added.items()]
    request, signed = canonical_request(
        method,
        canonical_uri(path),
        canonical_query(query),
        signed_items,
        hashlib.sha256(body).hexdigest(),
    )
    scope = f"{stamp[:8]}/{region}/{service}/aws4_request"
    to_sign = "\n".join(
        [ALGORITHM, stamp, scope, hashlib.sha256(request.encode("utf-8")).hexdigest()]
    )
    key = signing_key(secret_access_key, stamp[:8], region, service)
    signature = hmac.new(key, to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    result = {"X-Amz-Date": stamp}
    if session_token is not None:
        result["X-Amz-Security-Token"] = session_token
    result["Authorization"] = (
        f"{ALGORITHM} Credential={access_key_id}/{scope}, "
        f"SignedHeaders={signed}, Signature={signature}"
    )
    return result


class SigV4Auth(httpx.Auth):
    """Signs each request with AWS SigV4; signs ``host``, ``content-type`` and ``x-amz-*``."""

    requires_request_body = True

    def __init__(
        self,
        access_key_id: str,
        secret_access_key: str,
        region: str,
        service: str,
        session_token: str | None = None,
        *,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        secret_bytes("secret_access_key", secret_access_key)
        if session_token is not None:
            secret_bytes("session_token", session_token)
        self.access_key_id = access_key_id
        self.region = region
        self.service = service
        self._secret_access_key = secret_access_key
        self._session_token = session_token
        self._clock = clock

    def __repr__(self) -> str:
        return (
            f"SigV4Auth(access_key_id={self.access_key_id!r}, "
            f"region={self.region!r}, service={self.service!r})"
        )

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        query = wire_query(request)
        headers = headers_to_sign(request, "x-amz-")
        request.headers.update(
            sigv4_headers(
                method=request.method,
                host=request.headers["host"],
                path=wire_path(request),
                query=query,
                headers=headers,
                body=request.content,
                when=self._clock(),
                access_key_id=self.access_key_id,
                secret_access_key=self._secret_access_key,
                region=self.region,
                service=self.service,
                session_token=self._session_token,
            )
        )
        yield request
