"""Request signing for provider APIs, against the providers' published examples.

Each scheme is checked twice on its published vector: through the pure function, and
end to end through its ``httpx.Auth`` on a request built by httpx. Every vector also
has a changed-input twin whose signature must differ, so these tests can fail.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta, timezone

import httpx
import pytest
from nicupdate_server.signing import (
    AliyunRpcAuth,
    HuaweiSdkAuth,
    SigV4Auth,
    Tc3Auth,
    alidns,
    canonical,
    huawei,
    sigv4,
    tc3,
)


def signature_of(authorization: str) -> str:
    return authorization.rsplit("Signature=", 1)[1]


def fixed(when: datetime) -> Callable[[], datetime]:
    return lambda: when


def signed(auth: httpx.Auth, request: httpx.Request) -> httpx.Request:
    flow = auth.auth_flow(request)
    out = next(flow)
    with pytest.raises(StopIteration):
        flow.send(httpx.Response(200))
    return out


# --- AWS Signature Version 4 -------------------------------------------------------
# https://docs.aws.amazon.com/general/latest/gr/signature-v4-test-suite.html

AWS_TIME = datetime(2015, 8, 30, 12, 36, tzinfo=UTC)
AWS_KEYS = {
    "access_key_id": "AKIDEXAMPLE",
    "secret_access_key": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
    "region": "us-east-1",
    "service": "service",
}
GET_VANILLA = "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
POST_VANILLA = "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"
# get-vanilla.creq
GET_VANILLA_CREQ = (
    "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n"
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
)


def aws(method: str = "GET", **changes: object) -> dict[str, str]:
    args: dict[str, object] = {
        "method": method,
        "host": "example.amazonaws.com",
        "when": AWS_TIME,
        **AWS_KEYS,
    }
    args.update(changes)
    return sigv4.sigv4_headers(**args)  # type: ignore[arg-type]


def test_sigv4_get_vanilla() -> None:
    headers = aws("GET")
    assert headers == {
        "X-Amz-Date": "20150830T123600Z",
        "Authorization": "AWS4-HMAC-SHA256 "
        "Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
        f"SignedHeaders=host;x-amz-date, Signature={GET_VANILLA}",
    }
    creq, signed_headers = canonical.canonical_request(
        "GET",
        sigv4.canonical_uri("/"),
        "",
        [("Host", "example.amazonaws.com"), ("X-Amz-Date", "20150830T123600Z")],
        hashlib.sha256(b"").hexdigest(),
    )
    assert (creq, signed_headers) == (GET_VANILLA_CREQ, "host;x-amz-date")


def test_sigv4_post_vanilla() -> None:
    assert signature_of(aws("POST")["Authorization"]) == POST_VANILLA


@pytest.mark.parametrize(
    "change",
    [
        {"secret_access_key": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEZ"},
        {"when": AWS_TIME + timedelta(seconds=1)},
        {"body": b"{}"},
        {"region": "us-west-2"},
        {"path": "/x"},
        {"query": [("a", "b")]},
        {"headers": {"Content-Type": "application/xml"}},
    ],
)
def test_sigv4_changed_input_changes_signature(change: dict[str, object]) -> None:
    assert signature_of(aws("POST", **change)["Authorization"]) != POST_VANILLA


def test_sigv4_auth_on_httpx_request() -> None:
    auth = SigV4Auth(**AWS_KEYS, clock=fixed(AWS_TIME))
    for method, expected in (("GET", GET_VANILLA), ("POST", POST_VANILLA)):
        request = signed(auth, httpx.Request(method, "https://example.amazonaws.com/"))
        assert request.headers["x-amz-date"] == "20150830T123600Z"
        assert signature_of(request.headers["authorization"]) == expected
        assert request.content == b""


def test_sigv4_auth_matches_pure_function_with_query_body_and_token() -> None:
    body = b"<ChangeResourceRecordSetsRequest/>"
    auth = SigV4Auth(
        "AKIDEXAMPLE",
        AWS_KEYS["secret_access_key"],
        "us-east-1",
        "route53",
        session_token="TOKEN",
        clock=fixed(AWS_TIME),
    )
    request = signed(
        auth,
        httpx.Request(
            "POST",
            "https://route53.amazonaws.com/2013-04-01/hostedzone/Z1/rrset",
            params={"name": "home example.test.", "type": "A"},
            headers={"Content-Type": "text/xml"},
            content=body,
        ),
    )
    # httpx would send the space as "+": the query goes out as it was signed.
    assert request.url.query == b"name=home%20example.test.&type=A"
    assert request.content == body
    expected = sigv4.sigv4_headers(
        method="POST",
        host="route53.amazonaws.com",
        path="/2013-04-01/hostedzone/Z1/rrset",
        query=[("name", "home example.test."), ("type", "A")],
        headers={"content-type": "text/xml"},
        body=body,
        when=AWS_TIME,
        access_key_id="AKIDEXAMPLE",
        secret_access_key=AWS_KEYS["secret_access_key"],
        region="us-east-1",
        service="route53",
        session_token="TOKEN",
    )
    assert (
        "SignedHeaders=content-type;host;x-amz-date;x-amz-security-token,"
        in (expected["Authorization"])
    )
    assert request.headers["x-amz-security-token"] == "TOKEN"
    assert request.headers["authorization"] == expected["Authorization"]


def test_sigv4_canonical_uri() -> None:
    assert sigv4.canonical_uri("") == "/"
    assert sigv4.canonical_uri("//example//") == "/example/"  # get-slashes
    assert sigv4.canonical_uri("/example/..") == "/"  # get-relative
    assert sigv4.canonical_uri("/./example/./x") == "/example/x"
    # The wire path is encoded once more, as AWS wants for every service but S3.
    assert sigv4.canonical_uri("/a%20b") == "/a%2520b"


def test_sigv4_canonical_query_is_rfc3986_and_sorted() -> None:
    pairs = [("b", "x y*~+/é"), ("a", "2"), ("a", "1"), ("c", "")]
    assert canonical.canonical_query(pairs) == "a=1&a=2&b=x%20y%2A~%2B%2F%C3%A9&c="


def test_sigv4_header_values_trimmed_and_repeats_joined() -> None:
    block, names = canonical.canonical_headers([("My-Header1", "  a   b  c "), ("my-header1", "d")])
    assert (block, names) == ("my-header1:a b c,d\n", "my-header1")


# --- Alibaba Cloud RPC signature V1 -----------------------------------------------
# https://www.alibabacloud.com/help/en/sdk/product-overview/rpc-mechanism ,
# example: https://developer.aliyun.com/ask/210168

ALI_TIME = datetime(2016, 2, 23, 12, 46, 24, tzinfo=UTC)
ALI_NONCE = "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf"
ALI_PARAMS = {"Action": "DescribeRegions", "Format": "XML", "Version": "2014-05-26"}
ALI_SIGNATURE = "OLeaidS1JvxuMvnyHOwuJ+uX5qY="


def ali(**changes: object) -> dict[str, str]:
    args: dict[str, object] = {
        "method": "GET",
        "params": ALI_PARAMS,
        "when": ALI_TIME,
        "nonce": ALI_NONCE,
        "access_key_id": "testid",
        "access_key_secret": "testsecret",
    }
    args.update(changes)
    return alidns.rpc_params(**args)  # type: ignore[arg-type]


def test_aliyun_describe_regions() -> None:
    assert ali() == {
        **ALI_PARAMS,
        "AccessKeyId": "testid",
        "SignatureMethod": "HMAC-SHA1",
        "SignatureVersion": "1.0",
        "SignatureNonce": ALI_NONCE,
        "Timestamp": "2016-02-23T12:46:24Z",
        "Signature": ALI_SIGNATURE,
    }


def test_aliyun_published_value_comes_from_the_misspelt_timestamp() -> None:
    params = {
        **ALI_PARAMS,
        "AccessKeyId": "testid",
        "SignatureMethod": "HMAC-SHA1",
        "SignatureVersion": "1.0",
        "SignatureNonce": ALI_NONCE,
        "TimeStamp": "2016-02-23T12:46:24Z",
    }
    assert alidns.rpc_signature("GET", params, "testsecret") == "CT9X0VtwR86fNWSnsc6v8YGOjuE="


@pytest.mark.parametrize(
    "change",
    [
        {"access_key_secret": "testsecreu"},
        {"when": ALI_TIME + timedelta(seconds=1)},
        {"nonce": "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6d0"},
        {"method": "POST"},
        {"params": {**ALI_PARAMS, "RegionId": "cn-hangzhou"}},
    ],
)
def test_aliyun_changed_input_changes_signature(change: dict[str, object]) -> None:
    assert ali(**change)["Signature"] != ALI_SIGNATURE


def test_aliyun_percent_encoding() -> None:
    assert alidns.percent_encode("a b*c~d/e+é") == "a%20b%2Ac~d%2Fe%2B%C3%A9"


def test_aliyun_auth_on_httpx_request() -> None:
    auth = AliyunRpcAuth("testid", "testsecret", clock=fixed(ALI_TIME), nonce=lambda: ALI_NONCE)
    request = signed(auth, httpx.Request("GET", "http://ecs.aliyuncs.com/", params=ALI_PARAMS))
    assert dict(request.url.params) == ali()
    assert request.url.params["Signature"] == ALI_SIGNATURE
    assert b"Signature=OLeaidS1JvxuMvnyHOwuJ%2BuX5qY%3D" in request.url.query


def test_aliyun_auth_defaults_format_json_and_owns_common_params() -> None:
    when = datetime(2024, 1, 2, 4, 5, 6, tzinfo=timezone(timedelta(hours=1)))
    auth = AliyunRpcAuth("id", "secret", clock=fixed(when), nonce=lambda: "n")
    params = {
        "Action": "UpdateDomainRecord",
        "Version": "2015-01-09",
        "RR": "home",
        "Value": "192.0.2.1",
        "AccessKeyId": "forged",
        "Signature": "forged",
    }
    request = signed(auth, httpx.Request("GET", "https://alidns.aliyuncs.com/", params=params))
    got = dict(request.url.params)
    assert got["Format"] == "JSON"
    assert got["AccessKeyId"] == "id"
    assert got["Timestamp"] == "2024-01-02T03:05:06Z"
    assert got["Signature"] == alidns.rpc_signature(
        "GET", {k: v for k, v in got.items() if k != "Signature"}, "secret"
    )


def test_aliyun_needs_action_and_version() -> None:
    with pytest.raises(ValueError, match="lacks Version"):
        ali(params={"Action": "DescribeRegions"})
    auth = AliyunRpcAuth("id", "hidden-secret")
    with pytest.raises(ValueError) as raised:
        signed(auth, httpx.Request("GET", "https://alidns.aliyuncs.com/"))
    assert "hidden-secret" not in str(raised.value)


def test_aliyun_refuses_form_bodies() -> None:
    auth = AliyunRpcAuth("id", "secret")
    request = httpx.Request("POST", "https://alidns.aliyuncs.com/", data={"Action": "X"})
    with pytest.raises(ValueError, match="query string"):
        signed(auth, request)


# --- Huawei Cloud SDK-HMAC-SHA256 --------------------------------------------------
# https://support.huaweicloud.com/intl/en-us/devg-apisign/api-sign-algorithm-002.html (-005)

HW_TIME = datetime(2019, 11, 15, 3, 36, 55, tzinfo=UTC)
HW_PATH = "/v1/77b6a44cba5143ab91d13ab9a8ff44fd/vpcs"
HW_QUERY = [("limit", "2"), ("marker", "13551d6b-755d-4757-b956-536f674975c0")]
HW_SK = "MFyfvK41ba2giqM7Uio6PznpdUKGpownRZlmVmHc"
HW_SIGNATURE = "7be6668032f70418fcc22abc52071e57aff61b84a1d2381bb430d6870f4f6ebe"
HW_URL = (
    "https://service.region.example.com/v1/77b6a44cba5143ab91d13ab9a8ff44fd/vpcs"
    "?limit=2&marker=13551d6b-755d-4757-b956-536f674975c0"
)


def hw(**changes: object) -> dict[str, str]:
    args: dict[str, object] = {
        "method": "GET",
        "host": "service.region.example.com",
        "path": HW_PATH,
        "query": HW_QUERY,
        "headers": {"Content-Type": "application/json"},
        "when": HW_TIME,
        "access_key": "QTWAOYTTINDUT2QVKYUC",
        "secret_key": HW_SK,
    }
    args.update(changes)
    return huawei.huawei_headers(**args)  # type: ignore[arg-type]


def test_huawei_vpc_list_example() -> None:
    assert hw() == {
        "X-Sdk-Date": "20191115T033655Z",
        "Authorization": "SDK-HMAC-SHA256 Access=QTWAOYTTINDUT2QVKYUC, "
        f"SignedHeaders=content-type;host;x-sdk-date, Signature={HW_SIGNATURE}",
    }
    # The guide's hashed canonical request (api-sign-algorithm-003.html).
    creq, _ = canonical.canonical_request(
        "GET",
        huawei.canonical_uri(HW_PATH),
        canonical.canonical_query(HW_QUERY),
        {
            "Content-Type": "application/json",
            "Host": "service.region.example.com",
            "X-Sdk-Date": "20191115T033655Z",
        },
        hashlib.sha256(b"").hexdigest(),
    )
    assert hashlib.sha256(creq.encode()).hexdigest() == (
        "b25362e603ee30f4f25e7858e8a7160fd36e803bb2dfe206278659d71a9bcd7a"
    )


def test_huawei_canonical_uri_gets_its_trailing_slash() -> None:
    assert huawei.canonical_uri(HW_PATH) == HW_PATH + "/"
    assert huawei.canonical_uri(HW_PATH + "/") == HW_PATH + "/"
    assert huawei.canonical_uri("") == "/"
    assert huawei.canonical_uri("/a%20b/c") == "/a%20b/c/"
    assert signature_of(hw(path=HW_PATH + "/")["Authorization"]) == HW_SIGNATURE


@pytest.mark.parametrize(
    "change",
    [
        {"secret_key": HW_SK[:-1] + "d"},
        {"when": HW_TIME + timedelta(seconds=1)},
        {"body": b"{}"},
        {"path": HW_PATH + "x"},
        {"query": HW_QUERY[:1]},
        {"headers": {}},
    ],
)
def test_huawei_changed_input_changes_signature(change: dict[str, object]) -> None:
    assert signature_of(hw(**change)["Authorization"]) != HW_SIGNATURE


def test_huawei_auth_on_httpx_request() -> None:
    auth = HuaweiSdkAuth("QTWAOYTTINDUT2QVKYUC", HW_SK, clock=fixed(HW_TIME))
    request = httpx.Request("GET", HW_URL, headers={"Content-Type": "application/json"})
    request = signed(auth, request)
    assert request.headers["x-sdk-date"] == "20191115T033655Z"
    assert request.headers["authorization"] == hw()["Authorization"]
    assert request.url.path == HW_PATH  # the slash is only in what is signed


# --- Tencent Cloud TC3-HMAC-SHA256 --------------------------------------------------
# https://www.tencentcloud.com/document/product/267/37447

TC_TIME = 1551113065
TC_BODY = json.dumps(
    {"Limit": 1, "Filters": [{"Values": ["\u672a\u547d\u540d"], "Name": "instance-name"}]}
).encode()
TC_SK = "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE"
TC_SIGNATURE = "72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168"
TC_HEADERS = {
    "Content-Type": "application/json; charset=utf-8",
    "X-TC-Action": "DescribeInstances",
    "X-TC-Version": "2017-03-12",
    "X-TC-Region": "ap-guangzhou",
}


def tc(**changes: object) -> dict[str, str]:
    args: dict[str, object] = {
        "method": "POST",
        "host": "cvm.tencentcloudapi.com",
        "content_type": "application/json; charset=utf-8",
        "body": TC_BODY,
        "timestamp": TC_TIME,
        "secret_id": "AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE",
        "secret_key": TC_SK,
        "service": "cvm",
    }
    args.update(changes)
    return tc3.tc3_headers(**args)  # type: ignore[arg-type]


def test_tc3_describe_instances() -> None:
    # The published body: json.dumps' default escaping of the Chinese name.
    assert TC_BODY.startswith(b'{"Limit": 1, "Filters": [{"Values": ["\\u672a')
    assert hashlib.sha256(TC_BODY).hexdigest() == (
        "35e9c5b0e3ae67532d3c9f17ead6c90222632e5b1ff7f6e89887f1398934f064"
    )
    assert tc() == {
        "X-TC-Timestamp": "1551113065",
        "Authorization": "TC3-HMAC-SHA256 "
        "Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE/2019-02-25/cvm/tc3_request, "
        f"SignedHeaders=content-type;host, Signature={TC_SIGNATURE}",
    }


@pytest.mark.parametrize(
    "change",
    [
        {"secret_key": TC_SK[:-1] + "F"},
        {"timestamp": TC_TIME + 1},
        {"body": TC_BODY.replace(b"1", b"2", 1)},
        {"service": "dnspod"},
        {"content_type": "application/json"},
        {"method": "GET", "query": "Limit=1"},
    ],
)
def test_tc3_changed_input_changes_signature(change: dict[str, object]) -> None:
    assert signature_of(tc(**change)["Authorization"]) != TC_SIGNATURE


def test_tc3_auth_on_httpx_request() -> None:
    when = datetime.fromtimestamp(TC_TIME, UTC)
    auth = Tc3Auth("AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE", TC_SK, "cvm", clock=fixed(when))
    request = httpx.Request(
        "POST", "https://cvm.tencentcloudapi.com/", headers=TC_HEADERS, content=TC_BODY
    )
    request = signed(auth, request)
    assert request.headers["x-tc-timestamp"] == "1551113065"
    assert request.headers["authorization"] == tc()["Authorization"]
    assert request.headers["x-tc-action"] == "DescribeInstances"
    assert request.content == TC_BODY


def test_tc3_auth_keeps_a_given_timestamp() -> None:
    auth = Tc3Auth("AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE", TC_SK, "cvm", clock=datetime.now)
    headers = {**TC_HEADERS, "X-TC-Timestamp": str(TC_TIME)}
    request = httpx.Request(
        "POST", "https://cvm.tencentcloudapi.com/", headers=headers, content=TC_BODY
    )
    assert signature_of(signed(auth, request).headers["authorization"]) == TC_SIGNATURE
    request.headers["X-TC-Timestamp"] = "soon"
    with pytest.raises(ValueError, match="Unix seconds"):
        signed(auth, request)


# --- all schemes -------------------------------------------------------------------

SECRET = "s3cr3t-Value/+=="
TOKEN = "t0ken-Value"


def all_auths(clock: Callable[[], datetime]) -> list[httpx.Auth]:
    return [
        SigV4Auth("AKID", SECRET, "us-east-1", "route53", session_token=TOKEN, clock=clock),
        AliyunRpcAuth("AKID", SECRET, clock=clock),
        HuaweiSdkAuth("AKID", SECRET, clock=clock),
        Tc3Auth("AKID", SECRET, "dnspod", clock=clock),
    ]


def request_for(
    auth: httpx.Auth, body: bytes, stream: AsyncIterator[bytes] | None = None
) -> httpx.Request:
    if isinstance(auth, AliyunRpcAuth):
        params = {"Action": "DescribeDomainRecords", "Version": "2015-01-09"}
        return httpx.Request("GET", "https://alidns.aliyuncs.com/", params=params)
    headers = {"Content-Type": "application/json"}
    content = body if stream is None else stream
    return httpx.Request(
        "POST", "https://api.example.test/v2/zones", headers=headers, content=content
    )


@pytest.mark.parametrize("auth", all_auths(fixed(AWS_TIME)), ids=lambda a: type(a).__name__)
def test_repr_shows_the_key_id_never_the_secret(auth: httpx.Auth) -> None:
    text = repr(auth)
    assert text.startswith(type(auth).__name__ + "(")
    assert "AKID" in text
    assert SECRET not in text and TOKEN not in text
    assert SECRET not in str(auth)


@pytest.mark.parametrize("cls", [SigV4Auth, AliyunRpcAuth, HuaweiSdkAuth, Tc3Auth])
@pytest.mark.parametrize("secret", ["", "bad\udc80" + SECRET])
def test_bad_secrets_are_refused_without_showing_them(cls: type[httpx.Auth], secret: str) -> None:
    args = {
        SigV4Auth: ("AKID", secret, "us-east-1", "route53"),
        AliyunRpcAuth: ("AKID", secret),
        HuaweiSdkAuth: ("AKID", secret),
        Tc3Auth: ("AKID", secret, "dnspod"),
    }[cls]
    with pytest.raises(ValueError) as raised:
        cls(*args)  # type: ignore[call-arg]
    assert SECRET not in str(raised.value)
    assert raised.value.__cause__ is None


@pytest.mark.parametrize(
    "auth", all_auths(lambda: datetime(2024, 1, 1)), ids=lambda a: type(a).__name__
)
def test_a_naive_clock_is_refused_without_showing_the_secret(auth: httpx.Auth) -> None:
    with pytest.raises(ValueError, match="timezone-aware") as raised:
        signed(auth, request_for(auth, b"{}"))
    assert SECRET not in str(raised.value) and TOKEN not in str(raised.value)


@pytest.mark.parametrize("auth", all_auths(fixed(AWS_TIME)), ids=lambda a: type(a).__name__)
def test_async_client_sends_the_signed_request_with_its_body(auth: httpx.Auth) -> None:
    body = b'{"Domain": "example.test"}'
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={})

    async def chunks() -> AsyncIterator[bytes]:
        # A streamed body: the client reads it before auth_flow (requires_request_body).
        yield body[:5]
        yield body[5:]

    async def send() -> None:
        transport = httpx.MockTransport(handler)
        async with httpx.AsyncClient(transport=transport, auth=auth) as client:
            request = request_for(auth, body, chunks())
            response = await client.send(request)
            assert response.status_code == 200

    asyncio.run(send())
    (sent,) = seen
    assert SECRET not in repr(sent.headers.multi_items()) + str(sent.url)
    if isinstance(auth, AliyunRpcAuth):
        assert "Signature" in sent.url.params
    else:
        assert sent.read() == body
        expected = signed(auth, request_for(auth, body)).headers["authorization"]
        assert sent.headers["authorization"] == expected
