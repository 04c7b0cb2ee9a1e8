"""Prometheus metrics on a local port: per-stage latency histograms and the ``/metrics`` and ``/healthz``
endpoint.

Two halves with opposite budgets (docs/metrics.md):

* the hot path: ``Histogram.observe`` is a bisect over a tuple and two in-place adds, no lock, no string,
  no allocation beyond the float the caller measured. Each histogram has one writer (the event loop, or the
  decision thread for ``decision``), so no lock is needed; a scrape copies the bucket list in one step and
  derives ``_count`` from the copy, so a scrape is always self-consistent. ``prometheus_client.Histogram``
  takes a lock per observation and costs several times more (bench/metrics_scrape.py, docs/metrics.md).
* the scrape: ``prometheus_client`` renders one collector (edge/control/prometheus.py) registered in this
  endpoint's own ``CollectorRegistry``: the histograms, and a ``HealthReport`` built only when Prometheus
  asks, so nothing on the hot path pays for it.
"""

from __future__ import annotations

import json
import logging
import math
from bisect import bisect_left
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Final

from edge.control.http import serve

if TYPE_CHECKING:
    from aiohttp import web
    from prometheus_client import CollectorRegistry

    from edge.control.health import HealthReport

log = logging.getLogger(__name__)

# The stages timed on the hot path; docs/metrics.md says where each one starts and ends.
STAGES: Final = ("checkin", "decision", "ledger_batch", "ble_advert", "sync_push")
# Upper bounds in seconds, 50 us .. 1 s: a decision is ~25 us, a check-in ~3 ms, a cloud push ~100 ms.
BUCKETS_S: Final = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
)
# The text format every Prometheus reads (prometheus_client's CONTENT_TYPE_PLAIN_0_0_4).
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"

Report = Callable[[], "HealthReport"]


class Histogram:
    """A cumulative-bucket latency histogram in seconds; ``observe`` is the only hot-path call."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Iterable[float] = BUCKETS_S) -> None:
        values = tuple(float(bound) for bound in bounds)
        if (
            not values
            or any(not math.isfinite(b) or b <= 0 for b in values)
            or list(values) != sorted(values)
        ):
            raise ValueError("bucket bounds must be finite, positive and increasing")
        if len(set(values)) != len(values):
            raise ValueError("bucket bounds must be distinct")
        self.bounds = values
        # counts[i] holds observations in (bounds[i-1], bounds[i]]; the last slot is above every bound (+Inf).
        self.counts = [0] * (len(values) + 1)
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(self.bounds, seconds)] += 1
        self.sum += seconds

    def snapshot(self) -> tuple[list[int], int, float]:
        """(cumulative count per bound and +Inf, total count, sum); consistent with itself."""
        counts = self.counts.copy()  # one C call: atomic with respect to the writer thread
        total = self.sum
        cumulative = []
        running = 0
        for count in counts:
            running += count
            cumulative.append(running)
        return cumulative, running, total


class Metrics:
    """One per gateway: a latency histogram per stage, handed to the components that time a stage.

    Components hold it as ``metrics: Metrics | None`` and call ``metrics.<stage>.observe(seconds)``.
    """

    __slots__ = ("_bounds", "ble_advert", "checkin", "decision", "ledger_batch", "stages", "sync_push")

    def __init__(self, buckets: Iterable[float] = BUCKETS_S) -> None:
        self._bounds = tuple(buckets)
        self.checkin = Histogram(self._bounds)
        self.decision = Histogram(self._bounds)
        self.ledger_batch = Histogram(self._bounds)
        self.ble_advert = Histogram(self._bounds)
        self.sync_push = Histogram(self._bounds)
        self.stages: dict[str, Histogram] = {
            "checkin": self.checkin,
            "decision": self.decision,
            "ledger_batch": self.ledger_batch,
            "ble_advert": self.ble_advert,
            "sync_push": self.sync_push,
        }

    def observe(self, stage: str, seconds: float) -> None:
        """By name (one dict lookup more than ``metrics.<stage>.observe``); KeyError for an unknown stage."""
        self.stages[stage].observe(seconds)

    def stage(self, name: str) -> Histogram:
        """The histogram of ``name``, created on first use (for stages beyond the built-in ones)."""
        histogram = self.stages.get(name)
        if histogram is None:
            histogram = self.stages[name] = Histogram(self._bounds)
        return histogram


# ----- the HTTP endpoint -------------------------------------------------------------------------------------


class MetricsServer:
    """GET /metrics (Prometheus text 0.0.4) and GET /healthz on ``host:port`` (port 0: any free port).

    aiohttp and prometheus_client are imported at ``start``: a gateway with the endpoint off
    (``metrics_port = 0``) never loads them.
    """

    def __init__(self, metrics: Metrics, report: Report, host: str, port: int) -> None:
        self.metrics = metrics
        self._report = report
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None
        self._registry: CollectorRegistry | None = None

    async def start(self) -> None:
        from aiohttp import web  # noqa: PLC0415 - loaded only when the endpoint is on
        from prometheus_client import CollectorRegistry  # noqa: PLC0415

        from edge.control.prometheus import GatewayCollector  # noqa: PLC0415

        if self._runner is not None:
            raise RuntimeError("metrics server already started")
        # This endpoint's own registry: two gateways in one process (tests, the demo) never share a metric.
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(GatewayCollector(self.metrics, self._report))
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        runner = await serve(app, self.host, self.port)
        self._runner = runner
        for address in runner.addresses:
            if isinstance(address, tuple) and len(address) >= 2:
                self.port = int(address[1])
                break
        log.info("metrics on http://%s:%d/metrics", self.host, self.port)

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _metrics(self, _request: web.Request) -> web.Response:
        from aiohttp import web  # noqa: PLC0415 - already loaded by start()
        from prometheus_client import generate_latest  # noqa: PLC0415

        assert self._registry is not None, "a request before start()"
        return web.Response(body=generate_latest(self._registry), headers={"Content-Type": CONTENT_TYPE})

    async def _healthz(self, _request: web.Request) -> web.Response:
        from aiohttp import web  # noqa: PLC0415 - already loaded by start()

        try:
            reasons = self._report().unhealthy_reasons()
        except Exception:  # an answer is owed; the failure shows in the answer and the log
            log.warning("healthz: the gateway's health could not be read", exc_info=True)
            reasons = ["health_unreadable"]
        body: dict[str, Any] = (
            {"status": "ok"} if not reasons else {"status": "unhealthy", "reasons": reasons}
        )
        return web.Response(
            text=json.dumps(body), status=200 if not reasons else 503, content_type="application/json"
        )
