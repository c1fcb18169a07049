"""Request signing for upstream DNS provider APIs, as ``httpx.Auth`` classes.

- :class:`SigV4Auth` (``sigv4``): AWS Signature Version 4, for Route 53.
- :class:`AliyunRpcAuth` (``alidns``): Alibaba Cloud RPC signature V1 (HMAC-SHA1), for
  Alibaba Cloud DNS.
- :class:`HuaweiSdkAuth` (``huawei``): Huawei Cloud API Gateway SDK-HMAC-SHA256, for
  Huawei Cloud DNS.
- :class:`Tc3Auth` (``tc3``): Tencent Cloud TC3-HMAC-SHA256, for DNSPod.

Each module has a pure function computing the signing headers (or parameters) from
the request's parts, a clock and the keys, and the ``httpx.Auth`` applying it. The
provider backends import these lazily; nothing here is imported at server start.
"""

from .alidns import AliyunRpcAuth
from .huawei import HuaweiSdkAuth
from .sigv4 import SigV4Auth
from .tc3 import Tc3Auth

__all__ = ["AliyunRpcAuth", "HuaweiSdkAuth", "SigV4Auth", "Tc3Auth"]
