"""Alibaba Cloud RPC signature V1 (``HMAC-SHA1``, ``SignatureVersion=1.0``), for Alibaba Cloud DNS.

Signing guide: https://www.alibabacloud.com/help/en/sdk/product-overview/rpc-mechanism
(and the DNS API's common parameters, https://www.alibabacloud.com/help/doc-detail/29745.htm).
Vector: the guide's ``DescribeRegions`` example (AccessKey ``testid``/``testsecret``,
2016-02-23T12:46:24Z), https://developer.aliyun.com/ask/210168 . The published page
spells the parameter ``TimeStamp`` and so prints ``CT9X0VtwR86fNWSnsc6v8YGOjuE=``; with
the real name ``Timestamp`` the signature is ``OLeaidS1JvxuMvnyHOwuJ+uX5qY=``.

All parameters travel in the query string. The backend passes ``Action``, ``Version``
and the operation's own parameters; this signer adds ``Format=JSON`` (unless given),
``AccessKeyId``, ``SignatureMethod``, ``SignatureVersion``, ``SignatureNonce``,
``Timestamp`` and finally ``Signature``:

    CanonicalQuery = pairs sorted by name, each name and value RFC 3986-encoded
    StringToSign   = METHOD + "&" + enc("/") + "&" + enc(CanonicalQuery)
    Signature      = base64(HMAC-SHA1(AccessKeySecret + "&", StringToSign))
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from collections.abc import Callable, Generator, Mapping
from datetime import datetime
from urllib.parse import quote

import httpx

from .canonical import as_utc, secret_bytes, utc_now


def percent_encode(text: str) -> str:
    """RFC 3986: space -> ``%20``, ``*`` -> ``%2A``, ``~`` kept, UTF-8 bytes as ``%XY``."""
    return quote(text, safe="")


def encode_params(params: Mapping[str, str]) -> str:
    """The canonical query string: sorted by name, names and values encoded."""
    return "&".join(
        f"{percent_encode(name)}={percent_encode(params[name])}" for name in sorted(params)
    )


def rpc_signature(method: str, params: Mapping[str, str], access_key_secret: str) -> str:
    """Base64 HMAC-SHA1 of the string to sign over ``params`` (without ``Signature``)."""
    to_sign = f"{method.upper()}&{percent_encode('/')}&{percent_encode(encode_params(params))}"
    key = (access_key_secret + "&").encode("utf-8")
    digest = hmac.new(key, to_sign.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def rpc_params(
    *,
    method: str,
    params: Mapping[str, str],
    when: datetime,
    nonce: str,
    access_key_id: str,
    access_key_secret: str,
) -> dict[str, str]:
    """``params`` with the common parameters and ``Signature`` added.

    ``params`` must hold ``Action`` and ``Version``; a ``Format`` given is kept
    (default ``JSON``), a ``Signature`` given is dropped.
    """
    missing = [name for name in ("Action", "Version") if not params.get(name)]
    if missing:
        raise ValueError(f"Alibaba Cloud RPC request lacks {' and '.join(missing)}")
    signed = {name: value for name, value in params.items() if name != "Signature"}
    signed.setdefault("Format", "JSON")
    signed.update(
        AccessKeyId=access_key_id,
        SignatureMethod="HMAC-SHA1",
        SignatureVersion="1.0",
        SignatureNonce=nonce,
        Timestamp=as_utc(when).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    signed["Signature"] = rpc_signature(method, signed, access_key_secret)
    return signed


class AliyunRpcAuth(httpx.Auth):
    """Adds the common parameters and the signature to the request's query string."""

    def __init__(
        self,
        access_key_id: str,
        access_key_secret: str,
        *,
        clock: Callable[[], datetime] = utc_now,
        nonce: Callable[[], str] = lambda: str(uuid.uuid4()),
    ) -> None:
        secret_bytes("access_key_secret", access_key_secret)
        self.access_key_id = access_key_id
        self._access_key_secret = access_key_secret
        self._clock = clock
        self._nonce = nonce

    def __repr__(self) -> str:
        return f"AliyunRpcAuth(access_key_id={self.access_key_id!r})"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        content_type = request.headers.get("content-type", "")
        if content_type.startswith("application/x-www-form-urlencoded"):
            raise ValueError("AliyunRpcAuth signs the query string: pass params=, not data=")
        signed = rpc_params(
            method=request.method,
            params=dict(request.url.params.multi_items()),
            when=self._clock(),
            nonce=self._nonce(),
            access_key_id=self.access_key_id,
            access_key_secret=self._access_key_secret,
        )
        request.url = request.url.copy_with(query=encode_params(signed).encode("ascii"))
        yield request
