"""Cloud sync as a component: the uplink (outbox -> MQTT), the downlink, the retained `state`."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from aiohttp import web
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from pydantic import BaseModel

from agent import __version__
from agent.component import Command, Component, Context, Document, NoArgs, Reason
from agent.components.outbox import OutboxComponent
from agent.health import duration
from agent.json_bytes import json_bytes
from agent.sync.downlink import Downlink
from agent.sync.topics import Topics
from agent.sync.uplink import Uplink, birth_message
from agent.sync.uplink import compress as compress_payload
from agent.web.auth import user_of
from agent.web.routes import Access, Route

__all__ = ["MqttStatus", "Sync"]

log = logging.getLogger(__name__)

# The retained `state` is refreshed when the health level or the config version changes, checked this often.
STATE_EVERY_S = 5.0


class MqttStatus(BaseModel):
    enabled: bool
    connected: bool
    last_error: str | None
    reconnects: int
    broker: str | None = None
    connected_since: float | None = None
    last_ack: float | None = None
    batches_acked: int = 0
    events_acked: int = 0
    inflight: int = 0
    publish_latency_p50_s: float | None = None
    downlink_handled: int = 0
    downlink_rejected: int = 0
    downlink_dropped: int = 0
    control_dropped: int = 0


class SyncNow(BaseModel):
    backlog: int
    connected: bool


class Sync(Component):
    key = "mqtt"
    status_model = MqttStatus
    card = "cloud"
    card_order = 20

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        cfg = ctx.config
        self.topics = Topics(cfg.store.id, cfg.store.gateway)
        self.downlink = Downlink(self.topics, documents=self._documents, commands=self._commands,
                                 publish=self.publish)
        self.uplink: Uplink | None = None
        if cfg.mqtt.enabled:
            self.uplink = Uplink(cfg, ctx.outbox, birth=self._birth, on_message=self.downlink.on_message,
                                 on_connected=self._connected)
        self._state_key: tuple[Any, ...] = ()

    async def stopping(self) -> None:
        if self.uplink is not None:
            await self.uplink.close()

    def tasks(self) -> Iterable[tuple[str, Callable[[], Awaitable[None]]]]:
        if self.uplink is None:
            return []
        return [("mqtt uplink", self.uplink.run), ("mqtt downlink", self.downlink.run),
                ("mqtt state", self._state_loop)]

    # -- what the downlink routes to ---------------------------------------------------------

    def _documents(self) -> Mapping[str, Document]:
        return {d.topic: d for c in list(self.ctx.components.values()) for d in c.documents()}

    def _commands(self) -> Mapping[str, Command]:
        return {c.name: c for comp in list(self.ctx.components.values()) for c in comp.commands()}

    @classmethod
    def routes(cls) -> Iterable[Route]:
        yield Route("POST", "/api/actions/sync", cls._sync_now, Access.ADMIN,
                    "Send the whole unacknowledged backlog again now (admin)", response=SyncNow, errors=(409,))

    async def _sync_now(self, request: web.Request) -> web.Response:
        try:
            backlog = self.force_sync()
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=409)
        log.info("staff: %s forced a sync (%d waiting)", user_of(request), backlog)
        return web.json_response({"backlog": backlog, "connected": self.uplink is not None and self.uplink.connected})

    def commands(self) -> Iterable[Command]:
        yield Command("ping", NoArgs, self._ping, "is the gateway there")
        yield Command("status", NoArgs, self._status, "the whole /api/status document")
        yield Command("resync", NoArgs, self._resync, "send the whole unacknowledged backlog again")

    async def _ping(self, args: NoArgs) -> dict[str, Any]:
        return {"pong": True, "time": time.time()}

    async def _status(self, args: NoArgs) -> dict[str, Any]:
        assert self.ctx.status is not None
        return self.ctx.status()

    async def _resync(self, args: NoArgs) -> dict[str, Any]:
        return {"backlog": self.force_sync()}

    def force_sync(self) -> int:
        """Send the backlog again from the oldest row; the backlog's size. ValueError when sync is off."""
        if self.uplink is None:
            raise ValueError("cloud sync is disabled in the config ([mqtt] enabled = false)")
        self.uplink.resync()
        return self.ctx.outbox.depth

    async def publish(self, topic: str, payload: dict[str, Any], retain: bool = False, *,
                      compress: bool = False) -> bool:
        """A message beside the event stream; `compress`: as `[mqtt] compression` says (a big snapshot)."""
        if self.uplink is None:
            log.warning("sync: no uplink to send %s", topic)
            return False
        if compress and self.ctx.config.mqtt.compression != "none":
            body = compress_payload(json_bytes(payload), self.ctx.config.mqtt.compression)
            return await self.uplink.publish(topic, body, retain=retain)
        return await self.uplink.publish(topic, payload, retain=retain)

    async def _connected(self) -> None:
        """After every (re)connect, each component may say what the cloud must know again (Component.connected)."""
        for comp in list(self.ctx.components.values()):
            try:
                await comp.connected()
            except Exception:  # one component's report must not keep the link from being used
                log.exception("sync: %s failed to report after the connection", comp.key)

    # -- the retained state ------------------------------------------------------------------

    def _health(self) -> dict[str, Any]:
        assert self.ctx.status is not None
        health = self.ctx.status()["health"]
        return {"level": health["level"], "summary": health["summary"]}

    def _birth(self) -> dict[str, Any]:
        runners = getattr(self.ctx.components.get("readers"), "runners", {})
        return birth_message(self.ctx.config, __version__, self.ctx.started_at,
                             {"readers": list(runners), "backlog": self.ctx.outbox.depth})

    async def _state_loop(self) -> None:
        """Keeps the retained `state` telling the fleet tools whether this gateway is healthy."""
        assert self.uplink is not None
        while True:
            await asyncio.sleep(STATE_EVERY_S)
            if not self.uplink.ready:
                continue
            health = self._health()
            key = (health["level"], self.ctx.config.version, self.uplink.connected_since)
            if key != self._state_key:
                self._state_key = key
                await self.publish(self.topics.state, {**self._birth(), "health": health}, retain=True)

    # -- what staff and ops see --------------------------------------------------------------

    def status(self) -> MqttStatus:
        if self.uplink is None:
            return MqttStatus(enabled=False, connected=False, reconnects=0,
                              last_error="disabled in config ([mqtt] enabled = false)")
        up, down = self.uplink, self.downlink
        st = up.stats()
        lat = sorted(up.publish_latency_s[-200:])
        cfg = self.ctx.config.mqtt
        return MqttStatus(
            enabled=True, connected=st.connected, last_error=st.last_error, reconnects=st.reconnects,
            broker=f"{cfg.host}:{cfg.port}", connected_since=st.connected_since, last_ack=st.last_ack,
            batches_acked=st.batches_acked, events_acked=st.events_acked, inflight=st.inflight,
            publish_latency_p50_s=round(lat[len(lat) // 2], 4) if lat else None,
            downlink_handled=down.handled, downlink_rejected=down.rejected, downlink_dropped=down.dropped,
            control_dropped=up.control_dropped,
        )

    def health(self) -> Iterable[Reason]:
        if self.uplink is None or self.uplink.connected:
            return
        ob = self.ctx.outbox
        outbox = self.ctx.get(OutboxComponent)
        age = outbox.status().oldest_age_s if outbox is not None else None
        down = f" for {duration(age)}" if age else ""
        yield Reason("amber", f"Cloud link down{down}, {ob.depth:,} events waiting (kept safely on the gateway).")

    def metrics(self) -> Iterable[Metric]:
        m = self.status()
        yield GaugeMetricFamily("o2o_mqtt_connected", "1 when the cloud link is up", value=1.0 if m.connected else 0.0)
        yield CounterMetricFamily("o2o_mqtt_reconnects", "Reconnects to the broker", value=m.reconnects)
        yield CounterMetricFamily("o2o_mqtt_events_acked", "Events acknowledged by the broker", value=m.events_acked)
        if m.publish_latency_p50_s is not None:
            yield GaugeMetricFamily("o2o_mqtt_publish_latency_p50_seconds", "Median PUBACK round trip",
                                    value=m.publish_latency_p50_s)
        down = CounterMetricFamily("o2o_downlink_messages", "Downlink messages by outcome", labels=["outcome"])
        for outcome, n in (("handled", m.downlink_handled), ("rejected", m.downlink_rejected),
                           ("dropped", m.downlink_dropped)):
            down.add_metric([outcome], n)
        yield down
