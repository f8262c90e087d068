"""Prometheus metrics at /metrics: a few gateway-wide ones, then each component's own (no global registry)."""

from __future__ import annotations

import os
import resource
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from agent.component import Context
from agent.web.server import http_metrics

__all__ = ["CONTENT_TYPE", "render"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_LEVELS = {"green": 0, "amber": 1, "red": 2}


class _Collector(Collector):
    def __init__(self, status: dict[str, Any], ctx: Context) -> None:
        self.status = status
        self.ctx = ctx

    def collect(self) -> Iterator[Metric]:
        s = self.status
        kinds = CounterMetricFamily("o2o_events", "Events published on the hub, by kind", labels=["kind"])
        for kind, n in sorted(self.ctx.hub.published_by_kind.items()):
            kinds.add_metric([kind], n)
        yield kinds
        yield GaugeMetricFamily("o2o_config_version", "Running config version", value=self.ctx.config.version)
        yield GaugeMetricFamily("o2o_health_level", "0 green, 1 amber, 2 red", value=_LEVELS[s["health"]["level"]])
        yield GaugeMetricFamily("o2o_uptime_seconds", "Seconds since start", value=s["uptime_s"])
        rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        yield GaugeMetricFamily("o2o_process_max_resident_bytes", "Peak resident memory", value=rss_kib * 1024)
        try:
            with open("/proc/self/statm") as f:
                pages = int(f.read().split()[1])
            yield GaugeMetricFamily("o2o_process_resident_bytes", "Resident memory",
                                    value=pages * os.sysconf("SC_PAGE_SIZE"))
        except OSError:
            pass
        yield from http_metrics()
        for comp in list(self.ctx.components.values()):
            yield from comp.metrics()


def render(status: dict[str, Any], ctx: Context) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(status, ctx))
    return generate_latest(registry)
