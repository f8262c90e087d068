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
from dataclasses import dataclass
from typing import Any

import orjson
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent.config import Config
from agent.errors import StorageError
from agent.events import format_ts
from agent.outbox import Outbox, OutboxRow
from agent.sync.client import Message, MqttClient, MqttError, Will
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
CONTENT_TYPES = {
    "none": "application/json",
    "zlib": "application/json; compression=zlib",
    "zstd": "application/json; compression=zstd",
}


def encode_batch(gateway: str, rows: list[OutboxRow], compression: str = "none") -> bytes:
    """The `events` payload; the stored bodies are already the events' JSON, so they are spliced, not re-encoded."""
    head = b'{"gateway":' + orjson.dumps(gateway) + b',"seq":' + str(rows[-1].seq).encode() + b',"events":['
    payload = head + b",".join(r.body for r in rows) + b"]}"
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
        self._cursor = 0
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
        will = Will(self.topics.state, orjson.dumps({"online": False, "gateway": self.config.store.gateway}))
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
                await client.publish(self.topics.state, orjson.dumps(self._birth()), retain=True)
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
                    await client.publish(self.topics.state, orjson.dumps(
                        {"online": False, "gateway": self.config.store.gateway, "reason": "shutdown"}), retain=True)

    async def publish(self, topic: str, payload: dict[str, Any], *, retain: bool = False) -> bool:
        """A control message (command result, config report). If the link is down it waits (bounded) and
        goes out after the next connect; True if it was sent now."""
        body = orjson.dumps(payload)
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
        cfg = self.config.mqtt
        self._cursor = 0  # after a (re)connect, start from the oldest unacknowledged row
        window = asyncio.Semaphore(cfg.inflight)
        failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        tasks: set[asyncio.Task[None]] = set()
        props = None
        if client.protocol == 5:
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            props.ContentType = CONTENT_TYPES[cfg.compression]
        try:
            while not failed.done() and client.is_connected:
                if self._resync.is_set():
                    self._resync.clear()
                    # In-flight batches keep their futures; resending may duplicate them (at-least-once).
                    self.batches_redelivered += len(tasks)
                    self._cursor = 0
                known = self.outbox.last_seq  # every row <= known is committed and visible to take()
                max_bytes = cfg.batch_max_bytes
                if client.max_packet_size:
                    max_bytes = min(max_bytes, client.max_packet_size - _PACKET_OVERHEAD)
                rows = await self.outbox.take(self._cursor, cfg.batch_max_events, max_bytes)
                if len(rows) == 1 and len(rows[0].body) > max_bytes:
                    # One event larger than the broker accepts would block the queue forever: drop it, loudly.
                    self.too_large += 1
                    log.error("mqtt: event %s (%s, %d bytes) exceeds the broker's packet limit; dropped",
                              rows[0].id, rows[0].kind, len(rows[0].body))
                    await self.outbox.ack_range(rows[0].seq, rows[0].seq)
                    self._cursor = rows[0].seq
                    continue
                if not rows:
                    self._cursor = max(self._cursor, known)  # nothing left in (cursor, known]
                    waiter: asyncio.Future[Any] = asyncio.ensure_future(
                        self.outbox.wait_for_rows(self._cursor, _IDLE_WAIT_S))
                    watched: set[asyncio.Future[Any]] = {waiter, failed, client.disconnected}
                    await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
                    waiter.cancel()
                    continue
                self._cursor = rows[-1].seq
                payload = encode_batch(self.config.store.gateway, rows, cfg.compression)
                acquire: asyncio.Future[Any] = asyncio.ensure_future(window.acquire())
                await asyncio.wait({acquire, failed}, return_when=asyncio.FIRST_COMPLETED)
                if not acquire.done():
                    acquire.cancel()
                    break
                task = asyncio.create_task(self._send(client, payload, rows, props, window, failed))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if failed.done() and failed.exception() is not None:
                raise failed.exception()  # type: ignore[misc]
            if not client.is_connected:
                raise MqttError(client.disconnected.result() if client.disconnected.done() else "connection lost")
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._inflight = 0

    async def _send(
        self, client: MqttClient, payload: bytes, rows: list[OutboxRow], props: Properties | None,
        window: asyncio.Semaphore, failed: asyncio.Future[None],
    ) -> None:
        self._inflight += 1
        t0 = time.monotonic()
        try:
            await client.publish(self.topics.events, payload, qos=1, properties=props)
            self.publish_latency_s.append(time.monotonic() - t0)
            if len(self.publish_latency_s) > 1000:
                del self.publish_latency_s[:500]
            await self.outbox.ack_range(rows[0].seq, rows[-1].seq)
            self.batches_acked += 1
            self.events_acked += len(rows)
            self.last_ack = time.time()
        except (MqttError, StorageError) as exc:
            if not failed.done():
                failed.set_exception(exc)
        finally:
            self._inflight -= 1
            window.release()


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
