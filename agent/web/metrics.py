"""Prometheus metrics at /metrics, collected from the agent's status on each scrape (no global registry)."""

from __future__ import annotations

import resource
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE", "render"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _StatusCollector(Collector):
    def __init__(self, status: dict[str, Any], events_by_kind: dict[str, int]) -> None:
        self.status = status
        self.events_by_kind = events_by_kind

    def collect(self) -> Any:
        s = self.status
        reads = CounterMetricFamily("o2o_reader_reads", "Raw tag reads per reader", labels=["reader", "protocol"])
        online = GaugeMetricFamily("o2o_reader_online", "1 when the reader is online", labels=["reader", "state"])
        frame_errors = CounterMetricFamily("o2o_reader_frame_errors", "Bad frames skipped per reader", labels=["reader"])
        for r in s["readers"]:
            reads.add_metric([r["id"], r["protocol"]], r["reads"])
            online.add_metric([r["id"], r["state"]], 1.0 if r["state"] == "online" else 0.0)
            frame_errors.add_metric([r["id"]], r["frame_errors"])
        yield from (reads, online, frame_errors)
        kinds = CounterMetricFamily("o2o_events", "Events published on the hub, by kind", labels=["kind"])
        for kind, n in sorted(self.events_by_kind.items()):
            kinds.add_metric([kind], n)
        yield kinds
        ob = s["outbox"]
        yield GaugeMetricFamily("o2o_outbox_depth", "Events waiting in the outbox", value=ob["depth"])
        yield GaugeMetricFamily("o2o_outbox_bytes", "Bytes of event JSON waiting", value=ob["bytes"])
        yield GaugeMetricFamily("o2o_outbox_disk_bytes", "Outbox file size on disk", value=ob["disk_bytes"])
        yield GaugeMetricFamily("o2o_outbox_oldest_age_seconds", "Age of the oldest waiting event",
                                value=ob["oldest_age_s"] or 0.0)
        drops = CounterMetricFamily("o2o_dropped", "Events dropped, by reason", labels=["reason"])
        for prio, n in ob["dropped_by_priority"].items():
            drops.add_metric([f"outbox_cap_{prio}"], n)
        for sub in s["hub"]["subscribers"]:
            drops.add_metric([f"hub_queue_{sub['name']}"], sub["dropped"])
        yield drops
        m = s["mqtt"]
        yield GaugeMetricFamily("o2o_mqtt_connected", "1 when the cloud link is up", value=1.0 if m["connected"] else 0.0)
        yield CounterMetricFamily("o2o_mqtt_reconnects", "Reconnects to the broker", value=m.get("reconnects", 0))
        yield CounterMetricFamily("o2o_mqtt_events_acked", "Events acknowledged by the broker",
                                  value=m.get("events_acked", 0))
        if m.get("publish_latency_p50_s") is not None:
            yield GaugeMetricFamily("o2o_mqtt_publish_latency_p50_seconds", "Median PUBACK round trip",
                                    value=m["publish_latency_p50_s"])
        yield GaugeMetricFamily("o2o_config_version", "Running config version", value=s["config"]["version"])
        yield GaugeMetricFamily("o2o_health_level", "0 green, 1 amber, 2 red",
                                value={"green": 0, "amber": 1, "red": 2}[s["health"]["level"]])
        yield GaugeMetricFamily("o2o_uptime_seconds", "Seconds since start", value=s["uptime_s"])
        rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        yield GaugeMetricFamily("o2o_process_max_resident_bytes", "Peak resident memory", value=rss_kib * 1024)
        try:
            with open("/proc/self/statm") as f:
                pages = int(f.read().split()[1])
            import os

            yield GaugeMetricFamily("o2o_process_resident_bytes", "Resident memory",
                                    value=pages * os.sysconf("SC_PAGE_SIZE"))
        except OSError:
            pass


def render(status: dict[str, Any], events_by_kind: dict[str, int]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_StatusCollector(status, events_by_kind))
    return generate_latest(registry)
