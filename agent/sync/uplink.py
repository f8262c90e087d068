"""Store-and-forward to the cloud: the outbox drained over MQTT, QoS 1, oldest first.

A batch of events is one `events` message: {"gateway", "seq", "events": [...]}
(optionally zlib or zstd compressed, named in the MQTT 5 content type). A
batch leaves the outbox only when its PUBACK arrives; up to `inflight`
batches are unacknowledged at once. When the connection drops, whatever was
in flight is sent again after the reconnect (at-least-once; the event ids
let the cloud de-duplicate). `seq` is the outbox sequence number of the
batch's last event: it increases with every new batch, across restarts; a
redelivered batch carries a seq the cloud may already have seen.

The uplink also owns the connection for the downlink (subscriptions) and the
retained `state` topic: a birth message on every connect, the will
{"online": false} when the gateway vanishes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
import zlib
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent.config import Config
from agent.errors import StorageError
from agent.events import format_ts
from agent.json_bytes import json_bytes
from agent.outbox import Outbox, OutboxRow
from agent.sync.client import Message, MqttClient, MqttError, Will
from agent.sync.lanes import Batch, Lanes
from agent.sync.topics import Topics
from drivers.backoff import Backoff

__all__ = ["Uplink", "UplinkStats", "encode_batch"]

log = logging.getLogger(__name__)

# A connection that lasted this long was healthy: the next reconnect starts from the minimum delay again.
_STABLE_S = 30.0
# MQTT fixed header, topic and properties take a little room next to the payload.
_PACKET_OVERHEAD = 512
# How long the pump sleeps when the outbox is empty before looking again (new commits wake it earlier).
_IDLE_WAIT_S = 1.0
# In-flight slots only live batches may use: backlog batches take at most inflight minus these.
_LIVE_SLOTS = 2
CONTENT_TYPES = {
    "none": "application/json",
    "zlib": "application/json; compression=zlib",
    "zstd": "application/json; compression=zstd",
}


def encode_batch(gateway: str, rows: list[OutboxRow], compression: str = "none", *, backlog: bool = False) -> bytes:
    """The `events` payload; the stored bodies are already the events' JSON, so they are spliced, not re-encoded."""
    mark = b',"backlog":true' if backlog else b""
    head = b'{"gateway":' + json_bytes(gateway) + b',"seq":' + str(rows[-1].seq).encode() + mark + b',"events":['
    payload = head + b",".join(r.body for r in rows) + b"]}"
    return compress(payload, compression)


def compress(payload: bytes, compression: str) -> bytes:
    """`[mqtt] compression` applied: a zlib or zstd stream of the JSON (recognisable by its magic bytes)."""
    if compression == "zlib":
        return zlib.compress(payload, 1)
    if compression == "zstd":
        import zstandard

        return zstandard.ZstdCompressor(level=3).compress(payload)
    return payload


@dataclass(slots=True)
class UplinkStats:
    connected: bool
    last_error: str | None
    reconnects: int
    connected_since: float | None
    last_ack: float | None
    batches_acked: int
    events_acked: int
    batches_redelivered: int
    inflight: int


class Uplink:
    def __init__(
        self,
        config: Config,
        outbox: Outbox,
        *,
        birth: Callable[[], dict[str, Any]],
        on_message: Callable[[Message], None] | None = None,
        on_connected: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.config = config
        self.topics = Topics(config.store.id, config.store.gateway)
        self.outbox = outbox
        self._birth = birth
        self._on_message = on_message
        self._on_connected = on_connected
        self.client: MqttClient | None = None
        self.last_error: str | None = None
        self.reconnects = 0
        self.connected_since: float | None = None
        self.last_ack: float | None = None
        self.batches_acked = 0
        self.events_acked = 0
        self.batches_redelivered = 0
        self.too_large = 0  # events dropped because they exceed the broker's Maximum Packet Size
        # Reports and command results that could not be sent yet (link down): sent after the next connect.
        self._pending_control: deque[tuple[str, bytes, bool]] = deque(maxlen=100)
        self.control_dropped = 0
        self.disconnect_errors = 0
        self._inflight = 0
        self.ack_errors = 0  # acknowledged batches the outbox failed to delete (retried)
        self.events_by_lane: dict[str, int] = {"live": 0, "business": 0, "backlog": 0}
        self._resync = asyncio.Event()
        self._connected_event = asyncio.Event()
        self.publish_latency_s: list[float] = []  # last PUBACK round trips, bounded below

    @property
    def connected(self) -> bool:
        return self.client is not None and self.client.is_connected

    @property
    def ready(self) -> bool:
        """Connected, birth published and the downlink subscribed: a message sent now will be heard."""
        return self.connected and self._connected_event.is_set()

    def stats(self) -> UplinkStats:
        return UplinkStats(self.connected, self.last_error, self.reconnects, self.connected_since, self.last_ack,
                           self.batches_acked, self.events_acked, self.batches_redelivered, self._inflight)

    def resync(self) -> None:
        """Send the whole unacknowledged backlog again from the oldest row."""
        self._resync.set()

    async def wait_connected(self) -> None:
        await self._connected_event.wait()

    def _make_client(self) -> MqttClient:
        cfg = self.config.mqtt
        tls = None
        if cfg.tls is not None:
            tls = ssl.create_default_context(cafile=str(cfg.tls.ca_file) if cfg.tls.ca_file else None)
            if cfg.tls.cert_file is not None and cfg.tls.key_file is not None:
                tls.load_cert_chain(str(cfg.tls.cert_file), str(cfg.tls.key_file))
        will = Will(self.topics.state, json_bytes({"online": False, "gateway": self.config.store.gateway}))
        return MqttClient(
            cfg.host, cfg.port,
            client_id=cfg.client_id or f"o2o-edge-{self.config.store.id}-{self.config.store.gateway}",
            protocol=5 if cfg.protocol == "5" else 4,
            keepalive=cfg.keepalive_s,
            username=cfg.username,
            password=cfg.password.get_secret_value() if cfg.password else None,
            tls=tls, will=will, on_message=self._on_message,
            max_inflight=cfg.inflight + 16,  # room for control messages next to the event batches
        )

    async def run(self) -> None:
        """Connect, drain, reconnect with exponential backoff and jitter; until cancelled."""
        cfg = self.config.mqtt
        # Full jitter: a fleet reconnecting after a broker restart does not come back in lockstep.
        backoff = Backoff(cfg.reconnect_min_s, max(cfg.reconnect_min_s, cfg.reconnect_max_s), jitter=0.5,
                          stable_s=_STABLE_S)
        first = True
        while True:
            client = self._make_client()
            connected_at: float | None = None
            try:
                await client.connect()
                connected_at = time.monotonic()
                self.client = client
                if not first:
                    self.reconnects += 1
                first = False
                self.last_error = None
                self.connected_since = time.time()
                log.info("mqtt: connected to %s:%d", cfg.host, cfg.port)
                await client.publish(self.topics.state, json_bytes(self._birth()), retain=True)
                await client.subscribe([(t, 1) for t in self.topics.downlink])
                await self._flush_control(client)
                self._connected_event.set()
                if self._on_connected is not None:
                    await self._on_connected()
                await self._pump(client)
            except MqttError as exc:
                if str(exc) != self.last_error:
                    log.warning("mqtt: %s", exc)
                self.last_error = str(exc)
            except StorageError as exc:
                self.last_error = f"outbox: {exc}"
                log.error("mqtt: uplink stopped by the outbox: %s", exc)
            finally:
                self._connected_event.clear()
                self.client = None
                self.connected_since = None
                await self._disconnect(client)
            if connected_at is not None:
                backoff.succeeded(time.monotonic() - connected_at)  # worked a while: reconnect quickly
            await asyncio.sleep(backoff.next())
            if first:
                self.reconnects += 1

    async def _disconnect(self, client: MqttClient) -> None:
        try:
            await client.disconnect()
        except Exception as exc:  # the link is already gone; counted so a pattern shows
            self.disconnect_errors += 1
            log.debug("mqtt: disconnect after a failure also failed: %s", exc)

    async def close(self, *, publish_offline: bool = True) -> None:
        """Clean goodbye: say offline on `state` (retained) before the connection goes."""
        client = self.client
        if client is not None and client.is_connected and publish_offline:
            with contextlib.suppress(MqttError, TimeoutError):
                async with asyncio.timeout(1.0):
                    await client.publish(self.topics.state, json_bytes(
                        {"online": False, "gateway": self.config.store.gateway, "reason": "shutdown",
                         "at": format_ts(time.time())}), retain=True)

    async def publish(self, topic: str, payload: dict[str, Any] | bytes, *, retain: bool = False) -> bool:
        """A control message (command result, config report, a snapshot already encoded). If the link is down
        it waits (bounded) and goes out after the next connect; True if it was sent now."""
        body = payload if isinstance(payload, bytes) else json_bytes(payload)
        client = self.client
        if client is not None and client.is_connected:
            try:
                await client.publish(topic, body, retain=retain)
                return True
            except MqttError as exc:
                log.warning("mqtt: could not publish %s now, will retry after reconnecting: %s", topic, exc)
        if len(self._pending_control) == self._pending_control.maxlen:
            self.control_dropped += 1
            log.warning("mqtt: %d control message(s) waiting; dropped the oldest", len(self._pending_control))
        self._pending_control.append((topic, body, retain))
        return False

    async def _flush_control(self, client: MqttClient) -> None:
        while self._pending_control:
            topic, body, retain = self._pending_control[0]
            await client.publish(topic, body, retain=retain)
            self._pending_control.popleft()

    async def _pump(self, client: MqttClient) -> None:
        """Send batches while connected: live rows first, the backlog behind them (agent/sync/lanes.py)."""
        cfg = self.config.mqtt
        lanes = Lanes(self.outbox, live_age_s=cfg.live_age_s)
        await lanes.reset()
        pump = _Pump(client, asyncio.Semaphore(cfg.inflight),
                     # backlog batches leave slots to live ones: an alarm never waits for a full window of backlog
                     asyncio.Semaphore(max(1, cfg.inflight - _LIVE_SLOTS)),
                     asyncio.get_running_loop().create_future())
        if client.protocol == 5:
            pump.props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            pump.props.ContentType = CONTENT_TYPES[cfg.compression]
        try:
            while not pump.failed.done() and client.is_connected:
                if self._resync.is_set():
                    self._resync.clear()
                    # In-flight batches keep their futures; resending may duplicate them (at-least-once).
                    self.batches_redelivered += len(pump.tasks)
                    await lanes.reset()
                await self._pump_once(pump, lanes)
            if pump.failed.done() and pump.failed.exception() is not None:
                raise pump.failed.exception()  # type: ignore[misc]
            if not client.is_connected:
                raise MqttError(client.disconnected.result() if client.disconnected.done() else "connection lost")
        finally:
            for task in pump.tasks:
                task.cancel()
            await asyncio.gather(*pump.tasks, return_exceptions=True)
            self._inflight = 0

    async def _pump_once(self, pump: _Pump, lanes: Lanes) -> None:
        cfg = self.config.mqtt
        max_bytes = cfg.batch_max_bytes
        if pump.client.max_packet_size:
            max_bytes = min(max_bytes, pump.client.max_packet_size - _PACKET_OVERHEAD)
        linger_left = pump.last_live + cfg.linger_ms / 1000 - time.monotonic()
        if lanes.live_waiting and linger_left <= 0:
            batch = await lanes.next_live(cfg.batch_max_events, max_bytes)
            if batch is not None and await pump.acquire(pump.window):
                # A trickle waits for company; a full batch means more is waiting: no linger then.
                full = len(batch.rows) >= cfg.batch_max_events or sum(len(r.body) for r in batch.rows) > max_bytes // 2
                pump.last_live = 0.0 if full else time.monotonic()
                await self._start_send(pump, batch, max_bytes)
            return
        # What would make a live batch due: its linger running out, or new rows (then the linger, if any).
        live_due: asyncio.Future[Any] = asyncio.ensure_future(
            asyncio.sleep(linger_left) if lanes.live_waiting
            else self.outbox.wait_for_rows(lanes.live_cursor, _IDLE_WAIT_S))
        try:
            if not lanes.in_backlog:
                await asyncio.wait({live_due, pump.failed, pump.client.disconnected},
                                   return_when=asyncio.FIRST_COMPLETED)
                return
            if not await pump.acquire(pump.backlog_window, live_due):
                return  # live rows came first (or the link failed)
        finally:
            live_due.cancel()
        batch = await lanes.next_backlog(cfg.batch_max_events, max_bytes)
        if batch is None or not await pump.acquire(pump.window):
            pump.backlog_window.release()
            return
        await self._start_send(pump, batch, max_bytes)

    async def _start_send(self, pump: _Pump, batch: Batch, max_bytes: int) -> None:
        """Hand a batch (whose slots are held) to its own task; an event too large for the broker is dropped."""
        rows = batch.rows
        if len(rows) == 1 and len(rows[0].body) > max_bytes:
            # One event larger than the broker accepts would block the queue forever: drop it, loudly.
            self.too_large += 1
            log.error("mqtt: event %s (%s, %d bytes) exceeds the broker's packet limit; dropped",
                      rows[0].id, rows[0].kind, len(rows[0].body))
            await batch.remove()
            pump.release(batch)
            return
        payload = encode_batch(self.config.store.gateway, rows, self.config.mqtt.compression, backlog=batch.backlog)
        task = asyncio.create_task(self._send(pump, payload, batch))
        pump.tasks.add(task)
        task.add_done_callback(pump.tasks.discard)

    async def _send(self, pump: _Pump, payload: bytes, batch: Batch) -> None:
        self._inflight += 1
        t0 = time.monotonic()
        try:
            await pump.client.publish(self.topics.events, payload, qos=1, properties=pump.props)
            self.publish_latency_s.append(time.monotonic() - t0)
            if len(self.publish_latency_s) > 1000:
                del self.publish_latency_s[:500]
            if batch.remove_later is not None:
                batch.remove_later()
            else:
                await self._remove(batch)
            self.batches_acked += 1
            self.events_acked += len(batch.rows)
            self.events_by_lane[batch.lane] += len(batch.rows)
            self.last_ack = time.time()
        except MqttError as exc:
            if not pump.failed.done():
                pump.failed.set_exception(exc)
        finally:
            self._inflight -= 1
            pump.release(batch)

    async def _remove(self, batch: Batch) -> None:
        """Delete an acknowledged batch. A failing disk is retried here, holding the batch's window slot (the
        pump slows down), never by dropping the connection (that would resend everything in flight)."""
        backoff = Backoff(0.1, 5.0)
        while True:
            try:
                await batch.remove()
                return
            except StorageError as exc:
                self.ack_errors += 1
                if self.ack_errors == 1 or self.ack_errors % 100 == 0:
                    log.error("mqtt: batch acknowledged but not removed from the outbox (%d time(s)), retrying: %s",
                              self.ack_errors, exc)
                await asyncio.sleep(backoff.next())


@dataclass(slots=True)
class _Pump:
    """One connection's sending state."""

    client: MqttClient
    window: asyncio.Semaphore
    backlog_window: asyncio.Semaphore
    failed: asyncio.Future[None]
    props: Properties | None = None
    last_live: float = 0.0
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def acquire(self, sem: asyncio.Semaphore, *wake: asyncio.Future[Any]) -> bool:
        """Take a slot of `sem`, unless the link fails or one of `wake` completes first."""
        acq: asyncio.Future[Any] = asyncio.ensure_future(sem.acquire())
        watched: set[asyncio.Future[Any]] = {acq, self.failed, self.client.disconnected, *wake}
        await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
        if not acq.done():
            acq.cancel()
        try:
            await acq
        except asyncio.CancelledError:
            return False
        return True

    def release(self, batch: Batch) -> None:
        self.window.release()
        if batch.backlog:
            self.backlog_window.release()


def birth_message(config: Config, version: str, started_at: float, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "online": True,
        "store": config.store.id,
        "gateway": config.store.gateway,
        "version": version,
        "config_version": config.version,
        "started_at": format_ts(started_at),
        **(extra or {}),
    }
