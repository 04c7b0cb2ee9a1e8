"""The ``prometheus_client`` collector of the gateway: the stage histograms, and the ``HealthReport`` built at
scrape time as metric families (edge/control/health_metrics.py). Registered in a private
``CollectorRegistry`` per endpoint (edge/control/metrics.py): no global state.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Final

from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric

from edge.control.health_metrics import health_families

if TYPE_CHECKING:
    from edge.control.health import HealthReport
    from edge.control.metrics import Histogram, Metrics

log = logging.getLogger(__name__)

STAGE_FAMILY: Final = "edge_stage_latency_seconds"


class GatewayCollector:
    """``collect()`` yields the stage histograms, then the health of ``report()`` read now (if it can be)."""

    def __init__(self, metrics: Metrics, report: Callable[[], HealthReport]) -> None:
        self._metrics = metrics
        self._report = report

    def collect(self) -> Iterator[Metric]:
        yield stage_histograms(self._metrics)
        try:
            report = self._report()
        except Exception:  # a scrape must answer; the failure shows in the metrics and the log
            log.warning("metrics: the gateway's health could not be read", exc_info=True)
            report = None
        collected = GaugeMetricFamily(
            "edge_health_collected", "1 when the gateway's health could be read for this scrape."
        )
        collected.add_metric([], int(report is not None))
        yield collected
        if report is not None:
            yield from health_families(report)


def stage_histograms(metrics: Metrics) -> HistogramMetricFamily:
    family = HistogramMetricFamily(
        STAGE_FAMILY,
        "Latency of one pass through a stage of the gateway, by stage (docs/metrics.md).",
        labels=["stage"],
    )
    for stage, histogram in metrics.stages.items():
        family.add_metric([stage], *_buckets(histogram))
    return family


def _buckets(histogram: Histogram) -> tuple[list[tuple[str, float]], float]:
    cumulative, _count, total = histogram.snapshot()
    bounds = [*histogram.bounds, math.inf]
    return [(_bound(bound), float(n)) for bound, n in zip(bounds, cumulative, strict=True)], total


def _bound(bound: float) -> str:
    if math.isinf(bound):
        return "+Inf"
    return str(int(bound)) if bound.is_integer() else repr(bound)
