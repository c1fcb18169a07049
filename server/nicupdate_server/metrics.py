"""Prometheus metrics at ``/metrics``, made by prometheus-client.

Where: on the HTTP listener, for the callers in ``metrics.allow`` (loopback by default;
anyone else gets 404, as from a server without metrics), or, with ``metrics.listen``,
on a listener of its own for everyone who reaches it, and then not on the HTTP one.

What it costs the requests, next to nothing (``tests/benchmarks/bench_update.py``
measures ``nochg`` with metrics on and off):

* each update answer is shown to :meth:`Metrics.observe_update` (by ``app.App``): each
  answer line counts on a counter bound to its answer code at start, and the time the
  request took goes to a histogram;
* other durations go to histograms through hooks the server's objects call:
  ``Writer.on_write`` (database transactions) and ``Reconciler.on_applied`` (from
  stored to confirmed, per backend);
* counts the server's objects keep anyway (failed logins, DNS replies by rcode, backend
  errors) and states (hosts, password checks waiting, changes pending per backend, open
  connections) are read only when Prometheus asks (:class:`ServerCollector`);
* process memory, CPU and file descriptors: prometheus-client's ProcessCollector.

This module is imported only when ``metrics.enabled`` (the default).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import TYPE_CHECKING

import dns.rcode
import prometheus_client
import uvicorn
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.process_collector import ProcessCollector
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .dyndns import Code
from .listeners import bind_tcp

if TYPE_CHECKING:
    from .app import Answer
    from .runtime import HttpServer, Runtime

# Seconds. An update answered from memory takes well under a millisecond; a change
# waits for its commit and for DNS, at most server.apply_deadline (2 s by default).
UPDATE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
COMMIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)
# Stored to confirmed: milliseconds while DNS is up, up to retry_max while it is not.
APPLIED_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2, 5, 15, 60, 300, 900, 3600)
# Replies counted from 0, so that their rates exist before the first one.
DNS_RCODES = (
    dns.rcode.NOERROR,
    dns.rcode.NXDOMAIN,
    dns.rcode.REFUSED,
    dns.rcode.FORMERR,
    dns.rcode.SERVFAIL,
    dns.rcode.NOTIMP,
)
UPDATE_RCODES = (dns.rcode.NOERROR, dns.rcode.REFUSED, dns.rcode.NOTAUTH, dns.rcode.SERVFAIL)
THROTTLED = 429
LISTENER_START_TIMEOUT = 10.0


class Metrics:
    """The registry /metrics shows, and what feeds it (see the module docstring)."""

    def __init__(self, runtime: Runtime) -> None:
        # `_created` series (process-wide) would double the counters for nothing a
        # dashboard uses.
        prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry()
        updates = Counter(
            "nicupdate_updates",
            "Update answers sent, one per host name (a request refused whole counts once), "
            "by answer code; 429 answers count as 911",
            ["answer"],
            registry=self.registry,
        )
        self._answers = {code.value.encode(): updates.labels(code.value) for code in Code}
        self._server_error = self._answers[Code.SERVER_ERROR.value.encode()]
        self._throttled = Counter(
            "nicupdate_updates_throttled",
            "Update requests answered HTTP 429 (911 with Retry-After): lock-outs, busy "
            "password checks, host update rates",
            registry=self.registry,
        )
        self._duration = Histogram(
            "nicupdate_update_duration_seconds",
            "Time to answer an update request (429 answers, held back on purpose, are not in it)",
            buckets=UPDATE_BUCKETS,
            registry=self.registry,
        )
        commit = Histogram(
            "nicupdate_database_commit_seconds",
            "Write transactions of the server's one writer (changes, history, statistics), "
            "BEGIN to the end of COMMIT",
            buckets=COMMIT_BUCKETS,
            registry=self.registry,
        )
        self._applied = Histogram(
            "nicupdate_backend_confirm_seconds",
            "Time from a change being stored to the backend confirming it",
            ["backend"],
            buckets=APPLIED_BUCKETS,
            registry=self.registry,
        )
        self._applied_by = {name: self._applied.labels(name) for name in runtime.backends}
        ProcessCollector(registry=self.registry)
        self.registry.register(ServerCollector(runtime))
        runtime.writer.on_write = commit.observe
        runtime.reconciler.on_applied = self._observe_applied
        self._runtime = runtime
        self._listener: HttpServer | None = None
        self._serving: asyncio.Task[None] | None = None

    def _observe_applied(self, backend: str, seconds: float) -> None:
        child = self._applied_by.get(backend)
        if child is None:  # a backend added by a reload
            child = self._applied_by[backend] = self._applied.labels(backend)
        child.observe(seconds)

    def observe_update(self, answer: Answer, seconds: float) -> None:
        """An update request's ``answer``, which took ``seconds``: its answer lines are
        counted by code, its time goes to the histogram (a 429, held back on purpose,
        counts as 911 and is not timed)."""
        if answer.status == THROTTLED:
            self._throttled.inc()
            self._server_error.inc()
            return
        self._duration.observe(seconds)
        answers = self._answers
        for line in answer.body.splitlines():
            counter = answers.get(line.partition(b" ")[0])
            if counter is not None:
                counter.inc()

    def figures(self) -> dict[str, float]:
        """The counters and gauges of /metrics (no histogram buckets), by sample name
        with its labels (``nicupdate_updates_total{result="good"}``): the web UI's
        status page shows them."""
        out: dict[str, float] = {}
        for metric in self.registry.collect():
            if metric.type not in ("counter", "gauge"):
                continue
            for sample in metric.samples:
                if sample.name.endswith("_created"):
                    continue
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
                out[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
        return out

    async def page(self, request: Request) -> Response:
        """The exposition, in the format the scraper asks for (Prometheus: OpenMetrics)."""
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(encoder(self.registry), media_type=content_type)

    # --- a listener of its own (metrics.listen) -------------------------------------------

    @property
    def port(self) -> int | None:
        """The port of the listener of its own, once started."""
        return self._listener.port if self._listener is not None else None

    async def start(self) -> None:
        """Serve /metrics on ``metrics.listen``, if it is set (a port in use stops start-up
        with one line naming the key)."""
        endpoint = self._runtime.config.metrics.endpoint
        if endpoint is None:
            return
        from .runtime import HttpServer

        sock = bind_tcp("metrics.listen", *endpoint)
        app = Starlette(routes=[Route("/metrics", self.page)])
        config = uvicorn.Config(
            app,
            loop="none",
            ws="none",
            lifespan="off",
            access_log=False,
            proxy_headers=False,
            server_header=False,
            log_config=None,
            timeout_graceful_shutdown=1,
        )
        listener = HttpServer(config)
        serving = asyncio.create_task(listener.serve(sockets=[sock]), name="nicupdate-metrics")
        async with asyncio.timeout(LISTENER_START_TIMEOUT):
            while not listener.started and not serving.done():
                await asyncio.sleep(0.01)
        if serving.done():
            sock.close()
            serving.result()  # its error, if it has one
            raise RuntimeError("the metrics listener stopped at start-up")
        self._listener, self._serving = listener, serving

    async def close(self) -> None:
        if self._listener is not None and self._serving is not None:
            self._listener.should_exit = True
            await self._serving
            self._listener = self._serving = None


class ServerCollector:
    """The counts and states the server keeps anyway, read when Prometheus asks."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    def collect(self) -> Iterator[Metric]:
        runtime = self._runtime
        yield CounterMetricFamily(
            "nicupdate_auth_failures",
            "Failed logins: wrong user name, password or host token",
            value=runtime.authenticator.failures,
        )
        checks = runtime.authenticator.checks
        yield GaugeMetricFamily(
            "nicupdate_password_checks_waiting",
            "Password checks waiting for a hashing thread (limits.max_pending_checks)",
            value=checks.pending,
        )
        yield GaugeMetricFamily(
            "nicupdate_password_checks_running",
            "Password checks on a hashing thread now",
            value=checks.running,
        )
        hosts = runtime.state.hosts
        yield GaugeMetricFamily("nicupdate_hosts", "Hosts", value=len(hosts))
        yield GaugeMetricFamily(
            "nicupdate_hosts_blocked",
            "Hosts blocked for abuse (host unblock)",
            value=len(runtime.state.blocked),
        )
        yield GaugeMetricFamily(
            "nicupdate_http_connections", "HTTP connections open", value=runtime.guard.open
        )
        yield GaugeMetricFamily(
            "nicupdate_database_writable",
            "1 while the database takes writes, 0 while it refuses them (changes answer 911)",
            value=0 if runtime.writer.failure is not None else 1,
        )
        yield from self._backends()
        yield from self._webhooks()
        if runtime.dns is not None:
            replies = CounterMetricFamily(
                "nicupdate_dns_queries",
                "Queries the built-in DNS server answered, by the rcode of its reply",
                labels=["rcode"],
            )
            counts = runtime.dns.rcodes
            for rcode in dict.fromkeys([*DNS_RCODES, *counts]):
                replies.add_metric(
                    [dns.rcode.to_text(dns.rcode.Rcode(rcode))], counts.get(rcode, 0)
                )
            yield replies
            stats = runtime.dns.stats
            limited = CounterMetricFamily(
                "nicupdate_dns_rate_limited",
                "UDP replies held back by response rate limiting ([dns.rate_limit]): dropped, "
                "or sent truncated so that a real resolver asks again over TCP",
                labels=["action"],
            )
            limited.add_metric(["dropped"], stats.get("rrl_dropped", 0))
            limited.add_metric(["truncated"], stats.get("rrl_slipped", 0))
            yield limited
            yield CounterMetricFamily(
                "nicupdate_dns_tcp_refused",
                "TCP connections to the built-in DNS closed at once: over dns.tcp_clients "
                "in all or dns.tcp_per_source from one address",
                value=stats.get("tcp_refused", 0),
            )
            updates = CounterMetricFamily(
                "nicupdate_dns_updates",
                "UPDATE messages (RFC 2136) the built-in DNS answered, by the rcode of its "
                "reply (REFUSED also when too many wait, SERVFAIL when the server is late)",
                labels=["rcode"],
            )
            answered = runtime.dns.update_rcodes
            for rcode in dict.fromkeys([*UPDATE_RCODES, *answered]):
                updates.add_metric(
                    [dns.rcode.to_text(dns.rcode.Rcode(rcode))], answered.get(rcode, 0)
                )
            yield updates
            yield CounterMetricFamily(
                "nicupdate_dns_process_restarts",
                "Times the DNS process stopped and was started again",
                value=runtime.dns.restarts,
            )

    def _webhooks(self) -> Iterator[Metric]:
        attempts = CounterMetricFamily(
            "nicupdate_webhook_attempts",
            "Webhook POSTs this process made, by webhook and result: delivered (2xx) or "
            "failed (no answer, not 2xx: retried)",
            labels=["webhook", "result"],
        )
        for name, counts in sorted(self._runtime.webhooks.counts.items()):
            attempts.add_metric([name, "delivered"], counts.delivered)
            attempts.add_metric([name, "failed"], counts.failed)
        yield attempts

    def _backends(self) -> Iterator[Metric]:
        reconciler = self._runtime.reconciler
        pending = GaugeMetricFamily(
            "nicupdate_backend_pending_changes",
            "Names whose records a backend has not confirmed yet (stored, to be applied)",
            labels=["backend"],
        )
        for backend, count in sorted(reconciler.pending_counts().items()):
            pending.add_metric([backend], count)
        yield pending
        errors = CounterMetricFamily(
            "nicupdate_backend_errors",
            "Errors backends gave, per name and attempt: transient ones are retried, "
            "permanent ones (refused) wait for a new request or `reconcile`",
            labels=["backend", "kind"],
        )
        failures = reconciler.failures
        names = sorted({*reconciler.backends, *(backend for backend, _ in failures)})
        for backend in names:
            for kind, permanent in (("transient", False), ("permanent", True)):
                errors.add_metric([backend, kind], failures.get((backend, permanent), 0))
        yield errors
