"""Ready-to-paste settings for update clients, filled in with this server's address, a
host's name and its token: shown once, with the token, after ``add host`` and ``rotate
token``. They follow README.md and docs/clients.md, where each client is explained.

The server's address is the one the browser used (``https`` when the request came over
TLS, or through a trusted proxy that says so).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True, slots=True)
class Snippet:
    id: str  # the HTML id of its text (copy buttons)
    title: str
    where: str  # the file or screen it goes to
    text: str


@dataclass(frozen=True, slots=True)
class Server:
    url: str  # https://ddns.example.com (no trailing slash)

    @property
    def https(self) -> bool:
        return self.url.startswith("https:")

    @property
    def netloc(self) -> str:
        """``ddns.example.com`` or ``127.0.0.1:8245``."""
        return urlsplit(self.url).netloc


def snippets(server: Server, fqdn: str, token: str) -> list[Snippet]:
    url, netloc = server.url, server.netloc
    update = f"{url}/nic/update"
    ssl = "yes" if server.https else "no"
    return [
        Snippet(
            "snippet-curl",
            "curl",
            "a shell",
            f"curl -u '{fqdn}:{token}' '{update}?hostname={fqdn}'",
        ),
        Snippet(
            "snippet-client",
            "nicupdate-client",
            "a shell on the machine to keep up to date; paste the token when asked",
            f"nicupdate-client init --server {url} --hostname {fqdn} --username {fqdn}\n"
            "nicupdate-client run --once",
        ),
        Snippet(
            "snippet-ddclient",
            "ddclient",
            "/etc/ddclient.conf",
            "daemon=300\n"
            f"ssl={ssl}\n"
            "protocol=dyndns2\n"
            f"server={netloc}\n"
            f"login={fqdn}\n"
            f"password='{token}'\n"
            "use=no\n"
            f"usev4=webv4, webv4={url}/myip\n"
            f"{fqdn}\n",
        ),
        Snippet(
            "snippet-inadyn",
            "inadyn",
            "/etc/inadyn.conf",
            "period = 300\n\n"
            "custom nicupdate {\n"
            + ("" if server.https else "    ssl            = false\n")
            + f"    username       = {fqdn}\n"
            f"    password       = {token}\n"
            f"    ddns-server    = {netloc}\n"
            '    ddns-path      = "/nic/update?hostname=%h&myip=%i"\n'
            f"    checkip-server = {netloc}\n"
            "    checkip-path   = /myip\n"
            f"    hostname       = {fqdn}\n"
            "}\n",
        ),
        Snippet(
            "snippet-openwrt",
            "OpenWrt (ddns-scripts)",
            "/etc/config/ddns",
            "config service 'nicupdate_v4'\n"
            "\toption enabled '1'\n"
            "\toption use_ipv6 '0'\n"
            f"\toption lookup_host '{fqdn}'\n"
            f"\toption domain '{fqdn}'\n"
            f"\toption username '{fqdn}'\n"
            f"\toption password '{token}'\n"
            f"\toption update_url 'http://[USERNAME]:[PASSWORD]@{netloc}"
            "/nic/update?hostname=[DOMAIN]&myip=[IP]'\n"
            f"\toption use_https '{1 if server.https else 0}'\n"
            + ("\toption cacert '/etc/ssl/certs'\n" if server.https else "")
            + "\toption ip_source 'network'\n"
            "\toption ip_network 'wan'\n"
            "\toption interface 'wan'\n",
        ),
        Snippet(
            "snippet-fritzbox",
            "FRITZ!Box",
            "Internet → Permit Access → DynDNS, provider “User-defined”",
            f"Update URL:  {update}?hostname=<domain>&myip=<ipaddr>,<ip6addr>"
            "&username=<username>&password=<pass>\n"
            f"Domain name: {fqdn}\n"
            f"Username:    {fqdn}\n"
            f"Password:    {token}\n",
        ),
    ]
