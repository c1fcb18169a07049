"""TLS through a reverse proxy: the shipped Caddy and nginx configurations (deploy/caddy,
deploy/nginx, docs/tls.md) in front of a real server, asked with real curl.

Caddy runs with ``tls internal`` (its own CA), nginx with a self-signed certificate;
curl trusts them with ``--cacert`` and connects from loopback addresses of its own
(``--interface 127.0.0.5``), so the test sees which address the server takes the caller
for. Loopback addresses are refused as host addresses, so an update without ``myip``
answers ``dnserr`` and the server's log names the address it took.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.query
import pytest

from tests.server.process import ALICE, HOME, ServerProcess, server_process, wait_for
from tests.server.proxies import DEPLOY, NAME, Answer, CurlFailed, Kind, Proxy, running_proxy

KINDS: list[Kind] = ["caddy", "nginx"]
# Per proxy: the caller's loopback address, another client's, and the address it sets,
# so that no test sees what another left behind.
CALLER = {"caddy": "127.0.0.5", "nginx": "127.0.0.7"}
OTHER = {"caddy": "127.0.0.6", "nginx": "127.0.0.8"}
ADDRESS = {"caddy": "203.0.113.5", "nginx": "203.0.113.7"}
FORGED = "203.0.113.99"
# A lock-out after two failed logins for one user name, answered at once.
LIMITS = "auth_failures_per_user = 2\nthrottle_delay = 0"


def documented_trusted_proxies() -> str:
    """The ``trusted_proxies`` line that the shipped proxy configurations tell users to set."""
    lines = set()
    for path in (DEPLOY / "caddy" / "Caddyfile", DEPLOY / "nginx" / "nicupdate.conf"):
        found = re.search(r"^#\s+(trusted_proxies = .*)$", path.read_text(), re.M)
        assert found, f"{path} no longer names the trusted_proxies setting"
        lines.add(found.group(1))
    assert len(lines) == 1, f"the proxy examples disagree: {lines}"
    return lines.pop()


def test_docs_show_the_shipped_configurations() -> None:
    """docs/tls.md quotes each example whole (but its header) and its trusted_proxies."""
    docs = (DEPLOY.parent / "docs" / "tls.md").read_text()
    for language, path in (("caddy", "Caddyfile"), ("nginx", "nicupdate.conf")):
        shipped = (DEPLOY / language / path).read_text().partition("\n\n")[2]
        assert f"```{language}\n{shipped}```\n" in docs, f"docs/tls.md differs from {path}"
    assert f"\n{documented_trusted_proxies()}" in docs


@pytest.fixture(scope="module")
def trusting(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server configured as the examples say: the proxy on 127.0.0.1 is trusted."""
    directory = tmp_path_factory.mktemp("trusting")
    with server_process(
        directory, server_extra=documented_trusted_proxies(), limits=LIMITS
    ) as server:
        yield server


@pytest.fixture(scope="module")
def distrusting(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The mistake: a server behind the proxy without ``trusted_proxies``."""
    with server_process(tmp_path_factory.mktemp("distrusting"), limits=LIMITS) as server:
        yield server


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> Kind:
    chosen: Kind = request.param
    return chosen


@pytest.fixture
def proxy(kind: Kind, tmp_path: Path, trusting: ServerProcess) -> Iterator[Proxy]:
    with running_proxy(kind, tmp_path, trusting.http_port) as running:
        yield running


def a_records(server: ServerProcess, name: str) -> list[str]:
    """What the server's DNS answers for ``name`` A."""
    answer = dns.query.udp(
        dns.message.make_query(name, "A"), "127.0.0.1", port=server.dns_port, timeout=5
    )
    return sorted(rdata.to_text() for rrset in answer.answer for rdata in rrset)


def logged_after(server: ServerProcess, start: int, line: str) -> bool:
    return line in server.text()[start:]


def test_an_update_over_tls_through_the_proxy(
    proxy: Proxy, kind: Kind, trusting: ServerProcess
) -> None:
    address = ADDRESS[kind]
    answer = proxy.curl(
        f"/nic/update?hostname={HOME}&myip={address}", source=CALLER[kind], user=ALICE
    )
    assert (answer.status, answer.body) == (200, f"good {address}\n")
    assert a_records(trusting, HOME) == [address]

    # It is TLS for real: without the proxy's CA, curl refuses the certificate.
    with pytest.raises(CurlFailed) as refused:
        proxy.curl("/myip", source=CALLER[kind], cacert=False)
    assert refused.value.status == 60  # CURLE_PEER_FAILED_VERIFICATION


def seen_as(server: ServerProcess, start: int, answer: Answer, address: str) -> None:
    """An update without myip came from ``address`` as the server saw it: a loopback
    address, refused (dnserr) and logged after offset ``start`` of its log."""
    assert (answer.status, answer.body) == (200, "dnserr\n")
    line = f"{HOME}: dnserr: {address} is a loopback address"
    wait_for(lambda: logged_after(server, start, line), what=line)


def test_the_server_takes_the_caller_from_x_forwarded_for(
    proxy: Proxy, kind: Kind, trusting: ServerProcess
) -> None:
    caller = CALLER[kind]
    assert proxy.curl("/myip", source=caller).body == f"{caller}\n"
    assert proxy.curl("/myip", source=OTHER[kind]).body == f"{OTHER[kind]}\n"

    start = len(trusting.text())
    answer = proxy.curl(f"/nic/update?hostname={HOME}", source=caller, user=ALICE)
    seen_as(trusting, start, answer, caller)


def test_without_trusted_proxies_every_caller_is_the_proxy(
    kind: Kind, tmp_path: Path, distrusting: ServerProcess
) -> None:
    with running_proxy(kind, tmp_path, distrusting.http_port) as proxy:
        assert proxy.curl("/myip", source=CALLER[kind]).body == "127.0.0.1\n"

        start = len(distrusting.text())
        answer = proxy.curl(f"/nic/update?hostname={HOME}", source=CALLER[kind], user=ALICE)
    seen_as(distrusting, start, answer, "127.0.0.1")


def test_a_forged_x_forwarded_for_does_not_choose_the_address(
    proxy: Proxy, kind: Kind, trusting: ServerProcess
) -> None:
    """Caddy replaces the header a client sends; nginx appends to it, and the server
    reads it from the right. Either way the caller's real address is used."""
    caller = CALLER[kind]
    forged = [f"X-Forwarded-For: {FORGED}"]
    assert proxy.curl("/myip", source=caller, headers=forged).body == f"{caller}\n"

    start = len(trusting.text())
    answer = proxy.curl(f"/nic/update?hostname={HOME}", source=caller, user=ALICE, headers=forged)
    seen_as(trusting, start, answer, caller)  # believed: "good 203.0.113.99"
    assert FORGED not in a_records(trusting, HOME)


@pytest.mark.parametrize("trusted", [True, False], ids=["trusted", "untrusted"])
def test_a_password_guesser_behind_the_proxy(
    kind: Kind,
    trusted: bool,
    tmp_path: Path,
    trusting: ServerProcess,
    distrusting: ServerProcess,
) -> None:
    """Guessing a user's password from one address locks that user name out there only;
    without ``trusted_proxies`` that address is the proxy's, so it is locked out for all."""
    server = trusting if trusted else distrusting
    user = f"guessed-{kind}"  # a name per test: lock-outs last a minute
    query = f"/nic/update?hostname={HOME}"
    with running_proxy(kind, tmp_path, server.http_port) as proxy:
        statuses = []
        for attempt in range(10):
            answer = proxy.curl(query, source=CALLER[kind], user=(user, f"guess-{attempt}"))
            statuses.append(answer.status)
            if answer.status == 429:
                break
        assert statuses == [401, 401, 429]

        answer = proxy.curl(query, source=OTHER[kind], user=(user, "the-owner's-password"))
    if trusted:  # checked, and refused only because this password is wrong too
        assert (answer.status, answer.body) == (401, "badauth\n")
    else:
        assert answer.status == 429


def test_plain_http_is_redirected_to_https(proxy: Proxy, kind: Kind) -> None:
    """A router that speaks only plain HTTP gets a redirect, not an update."""
    query = f"/nic/update?hostname={HOME}&myip={FORGED}"
    answer = proxy.curl(query, source=CALLER[kind], user=ALICE, https=False)
    assert answer.status == 308
    assert answer.location == f"https://{NAME}{query}"
    assert "good" not in answer.body


def test_the_plain_http_variant_passes_updates_on(
    kind: Kind, tmp_path: Path, trusting: ServerProcess
) -> None:
    """The examples' commented-out block for HTTP-only routers, with a host token."""
    printed = trusting.cli("host", "token", HOME)
    assert printed.returncode == 0, printed.stderr
    line = next(x for x in printed.stdout.splitlines() if x.startswith("new host token"))
    token = line.rpartition(": ")[2]
    address = {"caddy": "198.51.100.5", "nginx": "198.51.100.7"}[kind]
    caller = CALLER[kind]
    with running_proxy(kind, tmp_path, trusting.http_port, http_only=True) as proxy:
        answers = []

        def update() -> bool:  # the new token is badauth until the server's next check
            answers.append(
                proxy.curl(
                    f"/nic/update?hostname={HOME}&myip={address}",
                    source=caller,
                    user=(HOME, token),
                    https=False,
                )
            )
            return answers[-1].status != 401

        wait_for(update, what="the new host token to be taken")
        assert (answers[-1].status, answers[-1].body) == (200, f"good {address}\n")
        assert proxy.curl("/myip", source=caller, https=False).body == f"{caller}\n"
        # HTTPS still works beside it.
        assert proxy.curl("/myip", source=caller).body == f"{caller}\n"
    assert a_records(trusting, HOME) == [address]
