"""One MQTT connection that keeps a Fleet view current, publishes, and waits on the view.

On entry it subscribes to the fleet's topics and waits for the burst of
retained messages to end: it also subscribes to a topic of its own and
publishes one message there; mosquitto delivers a client's messages in
order, so when that marker comes back every retained message sent before it
has arrived. A broker that does not keep that order (some clusters) is
covered by `settle_s`, after which the view is used as it is.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, TypeVar

from agent.ops.broker import BrokerOptions, connect
from agent.ops.errors import BrokerError
from agent.ops.fleet import Fleet
from agent.sync.client import Message, MqttClient, MqttError
from agent.sync.topics import PREFIX

__all__ = ["FLEET_TOPICS", "Observer"]

T = TypeVar("T")

FLEET_TOPICS = (f"{PREFIX}/+/+/state", f"{PREFIX}/+/+/+/reported", f"{PREFIX}/+/+/config/set")
# Retained documents published at once; paho queues the rest (a fleet push is hundreds of them).
PUBLISH_CONCURRENCY = 64


class Observer:
    def __init__(self, options: BrokerOptions, topics: tuple[str, ...] = FLEET_TOPICS, *, settle_s: float = 5.0,
                 warn: Callable[[str], None] | None = None) -> None:
        self.options = options
        self.warn = warn
        self.topics = topics
        self.settle_s = settle_s
        self.fleet = Fleet()
        self.settled_by_marker = False
        self._marker = f"o2o/ops/{secrets.token_hex(8)}/settled"
        self._settled = asyncio.Event()
        self._changed = asyncio.Event()
        self._live = False
        self._client: MqttClient | None = None

    @property
    def client(self) -> MqttClient:
        assert self._client is not None, "use `async with Observer(...)`"
        return self._client

    async def __aenter__(self) -> Observer:
        self._client = await connect(self.options, self._on_message)
        try:
            await self._guard(self.client.subscribe([(t, 1) for t in (*self.topics, self._marker)]),
                              f"subscribing to {', '.join(self.topics)}")
            await self._guard(self.client.publish(self._marker, b"settled", qos=1), "publishing the settle marker")
            try:
                async with asyncio.timeout(self.settle_s):
                    await self._settled.wait()
                self.settled_by_marker = True
            except TimeoutError:
                if self.warn is not None:
                    self.warn(self._unsettled_warning())
        except BaseException:
            await self.client.disconnect()
            raise
        self._live = True
        return self

    def _unsettled_warning(self) -> str:
        return (f"warning: the broker at {self.options.where} did not echo our marker within {self.settle_s:g} s, "
                f"so its retained messages may not all have arrived: going on with the {len(self.fleet.gateways)} gateway(s) "
                "seen so far (a broker queue limit such as mosquitto's max_queued_messages, or a cluster that keeps "
                "retained messages per node: see docs/ops.md)")

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.client.disconnect()

    def _on_message(self, msg: Message) -> None:
        if msg.topic == self._marker:
            self._settled.set()
            return
        if self.fleet.apply(msg.topic, msg.payload, live=self._live) is not None:
            self._changed.set()

    async def _guard(self, op: Awaitable[T], doing: str) -> T:
        """Run a client call; its MqttError becomes one BrokerError sentence."""
        try:
            return await op
        except MqttError as exc:
            raise BrokerError(f"{doing} on the MQTT broker at {self.options.where} failed: {exc}") from exc

    async def publish_json(self, items: list[tuple[str, dict[str, Any]]], *, retain: bool) -> None:
        """Publish every (topic, document) at QoS 1 and return once the broker acknowledged them all."""
        window = asyncio.Semaphore(PUBLISH_CONCURRENCY)

        async def one(topic: str, doc: dict[str, Any]) -> None:
            async with window:
                body = json.dumps(doc, ensure_ascii=False).encode()
                await self._guard(self.client.publish(topic, body, qos=1, retain=retain), f"publishing {topic}")

        await asyncio.gather(*(one(t, d) for t, d in items))

    async def wait_until(self, predicate: Callable[[], bool], seconds: float) -> bool:
        """True as soon as predicate() holds (checked after every message), False after `seconds`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while not predicate():
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            await self._next_change(remaining)
        return True

    async def changed(self) -> None:
        """Wait for the next message about a gateway (for --watch)."""
        await self._next_change(None)

    async def _next_change(self, within: float | None) -> None:
        self._changed.clear()
        waiter: asyncio.Future[Any] = asyncio.ensure_future(self._changed.wait())
        lost = self.client.disconnected
        try:
            await asyncio.wait({waiter, lost}, timeout=within, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
        if lost.done():
            raise BrokerError(f"lost the connection to the MQTT broker at {self.options.where} ({lost.result()})")
