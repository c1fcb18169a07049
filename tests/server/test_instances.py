"""Three instances on one PostgreSQL behind HAProxy, with BIND as the zone's primary:
any instance answers any host, changes reach all of them through the change log, one
instance reconciles BIND and another takes over when it dies, and an instance that
loses the database answers 911 until it has caught up."""

from __future__ import annotations

import concurrent.futures
import contextlib
import re
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dns.message
import dns.query
import httpx
import pytest

from tests.server.cluster import Relay, running_haproxy
from tests.server.conftest import eventually
from tests.server.postgres import running_postgres
from tests.server.primaries import Primary, running_bind
from tests.server.process import ALICE, HOME, ServerProcess, server_process

pytestmark = pytest.mark.usefixtures("clean_environment")

ZONE = "dyn.example.test"
LEASE = re.compile(rf"this process now does reconcile:primary:{re.escape(ZONE)}")


@dataclass
class Cluster:
    instances: list[ServerProcess]
    proxy: str  # HAProxy's base URL
    bind: Primary
    relay: Relay  # the database connection of instances[2] goes through it

    def update(self, query: str, via: str | None = None) -> str:
        """One update through HAProxy (or ``via`` a base URL), on its own connection."""
        base = via or self.proxy
        answer = httpx.get(f"{base}/nic/update?{query}", auth=ALICE, timeout=10)
        return answer.text.strip()

    def holder(self) -> int:
        """Which instance reconciles BIND (its log says so)."""
        holders = [i for i, s in enumerate(self.instances) if LEASE.search(s.text())]
        assert len(holders) == 1, holders
        return holders[0]


def dns_answer(server: ServerProcess, name: str, rdtype: str) -> list[str]:
    query = dns.message.make_query(name, rdtype)
    answer = dns.query.udp(query, "127.0.0.1", port=server.dns_port, timeout=3)
    section = answer.answer if rdtype != "SOA" or answer.answer else answer.authority
    return sorted(rd.to_text() for rrset in section for rd in rrset)


def serial(server: ServerProcess) -> int:
    return int(dns_answer(server, ZONE, "SOA")[0].split()[2])


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(running_postgres())
        bind = stack.enter_context(running_bind(tmp_path / "bind"))
        port = int(url.rsplit(":", 1)[1].split("/", 1)[0])
        relay = Relay(port)
        stack.callback(relay.close)
        instances = []
        for index in range(3):
            directory = tmp_path / f"n{index}"
            directory.mkdir()
            database = url if index < 2 else url.replace(f":{port}/", f":{relay.port}/")
            instance = server_process(
                directory,
                database=database,
                backends=("builtin", "primary"),
                tables=bind.config_block("primary"),
                accounts=index == 0,  # alice and her host, once: they share the database
            )
            instances.append(stack.enter_context(instance))
        proxy = stack.enter_context(running_haproxy(tmp_path, [s.http_port for s in instances]))
        yield Cluster(instances, f"http://127.0.0.1:{proxy}", bind, relay)


def test_any_instance_answers_any_host_and_all_agree(cluster: Cluster) -> None:
    assert cluster.update(f"hostname={HOME}&myip=192.0.2.1") == "good 192.0.2.1"
    assert cluster.bind.query(HOME, "A") == ["192.0.2.1"]
    addresses = ("192.0.2.2", "192.0.2.3", "192.0.2.4")
    for address, instance in zip(addresses, cluster.instances, strict=True):
        # Each instance, asked directly, answers for the host and confirms with BIND.
        assert cluster.update(f"hostname={HOME}&myip={address}", via=instance.url) == (
            f"good {address}"
        )
        assert cluster.bind.query(HOME, "A") == [address]
        # Every instance's built-in DNS serves it, with the same SOA serial.
        assert eventually(
            lambda a=address: all(dns_answer(s, HOME, "A") == [a] for s in cluster.instances)
        )
        assert eventually(lambda: len({serial(s) for s in cluster.instances}) == 1)

    # A host added with the CLI is answered by every instance.
    added = f"new.{ZONE}"
    done = cluster.instances[2].cli("host", "add", added, "--owner", ALICE[0])
    assert done.returncode == 0, done.stderr
    query = f"hostname={added}&myip=198.51.100.7"
    for instance in cluster.instances:
        assert eventually(
            lambda i=instance: (
                cluster.update(query, via=i.url) in ("good 198.51.100.7", "nochg 198.51.100.7")
            )
        ), cluster.update(query, via=instance.url)
    assert cluster.bind.query(added, "A") == ["198.51.100.7"]

    # One instance reconciles BIND; a request on another waits for its confirmation.
    holder = cluster.holder()
    other = cluster.instances[(holder + 1) % 3]
    assert cluster.update(f"hostname={HOME}&myip=192.0.2.50", via=other.url) == "good 192.0.2.50"
    assert cluster.bind.query(HOME, "A") == ["192.0.2.50"]


def test_another_instance_takes_over_when_the_reconciling_one_dies(cluster: Cluster) -> None:
    names = [HOME] + [f"load{i}.{ZONE}" for i in range(5)]
    for name in names[1:]:
        assert cluster.instances[0].cli("host", "add", name, "--owner", ALICE[0]).returncode == 0
    holder = cluster.holder()
    last: dict[str, str] = {}  # what each host was last answered good or 911 for
    errors: list[str] = []
    killed = threading.Event()

    def load() -> None:
        for step in range(120):
            name = names[step % len(names)]
            address = f"192.0.2.{step + 1}"
            try:
                answer = cluster.update(f"hostname={name}&myip={address}")
            except httpx.HTTPError as exc:  # in flight to the instance that was killed
                errors.append(str(exc))
                continue
            if answer in (f"good {address}", "911"):
                last[name] = address
            elif not killed.is_set() or not answer.startswith("<"):
                errors.append(answer)  # anything else is wrong (HAProxy's 50x page aside)
            if step == 30:
                cluster.instances[holder].proc.send_signal(signal.SIGKILL)
                killed.set()

    worker = threading.Thread(target=load)
    worker.start()
    worker.join(timeout=300)
    assert not worker.is_alive()
    assert killed.is_set()
    survivors = [s for i, s in enumerate(cluster.instances) if i != holder]
    # Another instance took BIND over, soon (its leases are tried every second).
    assert eventually(lambda: any(LEASE.search(s.text()) for s in survivors), timeout=5)
    # Every change answered good or 911 is in BIND, with no client retry.
    for name, address in last.items():
        assert eventually(lambda n=name, a=address: cluster.bind.query(n, "A") == [a]), name
    assert len(errors) <= 3, errors  # at most what was in flight to the killed instance


def test_an_instance_that_loses_the_database_answers_911(cluster: Cluster) -> None:
    cut_off, other = cluster.instances[2], cluster.instances[0]
    assert cluster.update(f"hostname={HOME}&myip=192.0.2.1", via=other.url) == "good 192.0.2.1"
    assert eventually(
        lambda: (
            cluster.update(f"hostname={HOME}&myip=192.0.2.1", via=cut_off.url) == "nochg 192.0.2.1"
        )
    )
    cluster.relay.cut()

    def unhealthy() -> bool:
        health = httpx.get(f"{cut_off.url}/healthz", timeout=10)
        return health.status_code == 503 and "change log" in health.text

    assert eventually(unhealthy)
    # The host changes on an instance that has the database...
    assert cluster.update(f"hostname={HOME}&myip=192.0.2.2", via=other.url) == "good 192.0.2.2"
    # ...and the one without it never answers nochg for an address it cannot vouch for.
    for address in ("192.0.2.1", "192.0.2.2"):
        assert cluster.update(f"hostname={HOME}&myip={address}", via=cut_off.url) == "911"

    cluster.relay.restore()  # it catches up from the change log
    assert eventually(
        lambda: (
            cluster.update(f"hostname={HOME}&myip=192.0.2.2", via=cut_off.url) == "nochg 192.0.2.2"
        )
    )
    assert dns_answer(cut_off, HOME, "A") == ["192.0.2.2"]


def test_one_host_changed_on_two_instances_at_once(cluster: Cluster) -> None:
    first, second = cluster.instances[0], cluster.instances[1]
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        for i in range(1, 9):
            # Each instance changes one family of the same host at the same moment...
            v4 = pool.submit(cluster.update, f"hostname={HOME}&myip=192.0.2.{i}", first.url)
            v6 = pool.submit(cluster.update, f"hostname={HOME}&myip=2001:db8::{i}", second.url)
            assert (v4.result(), v6.result()) == (f"good 192.0.2.{i}", f"good 2001:db8::{i}")
            # ...or both the same address: one stores it, neither answers 911.
            same = [
                pool.submit(cluster.update, f"hostname={HOME}&myip=198.51.100.{i}", s.url)
                for s in (first, second)
            ]
            assert {f.result() for f in same} <= {
                f"good 198.51.100.{i}",
                f"nochg 198.51.100.{i}",
            }
    # Every instance's DNS, and BIND, end with both families as last set.
    for instance in cluster.instances:
        assert eventually(lambda s=instance: dns_answer(s, HOME, "A") == ["198.51.100.8"])
        assert eventually(lambda s=instance: dns_answer(s, HOME, "AAAA") == ["2001:db8::8"])
    assert eventually(lambda: cluster.bind.query(HOME, "AAAA") == ["2001:db8::8"])
    assert cluster.bind.query(HOME, "A") == ["198.51.100.8"]
