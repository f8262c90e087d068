"""In-process publish/subscribe between drivers, rules, the outbox and the web page.

`publish` never blocks and never awaits: a driver's thread hop or a rule
must not wait for a slow consumer. Each subscriber has its own bounded
queue; when it is full the event is dropped *for that subscriber only*,
counted, and logged (rate-limited), so a stuck web page cannot stall the
outbox and the outbox cannot stall a gate alarm.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from agent.events import Event

__all__ = ["Hub", "Subscription", "SubscriptionStats"]

log = logging.getLogger(__name__)

# At most one "queue full" warning per subscriber per this many seconds.
_DROP_LOG_INTERVAL_S = 10.0


@dataclass(slots=True)
class SubscriptionStats:
    name: str
    maxsize: int
    depth: int
    delivered: int
    dropped: int


class Subscription:
    """A bounded queue of events for one consumer. Iterate it, or take batches."""

    def __init__(
        self,
        hub: Hub,
        name: str,
        maxsize: int,
        kinds: frozenset[str] | None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._hub = hub
        self.name = name
        self.maxsize = maxsize
        self.kinds = kinds
        self._queue: deque[Event] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self._clock = clock
        self._last_drop_log = -_DROP_LOG_INTERVAL_S
        self._dropped_since_log = 0
        self.delivered = 0
        self.dropped = 0

    def _offer(self, event: Event) -> None:
        if self._closed:
            return
        if len(self._queue) >= self.maxsize:
            self.dropped += 1
            self._dropped_since_log += 1
            now = self._clock()
            if now - self._last_drop_log >= _DROP_LOG_INTERVAL_S:
                log.warning(
                    "hub: subscriber %s is full (%d queued): dropped %d event(s), %d in total",
                    self.name, len(self._queue), self._dropped_since_log, self.dropped,
                )
                self._last_drop_log = now
                self._dropped_since_log = 0
            return
        self._queue.append(event)
        self.delivered += 1
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def closed(self) -> bool:
        return self._closed

    async def _wait(self) -> None:
        while not self._queue and not self._closed:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    async def get(self) -> Event:
        """The next event; raises `StopAsyncIteration` once closed and drained."""
        await self._wait()
        if not self._queue:
            raise StopAsyncIteration
        return self._queue.popleft()

    async def get_batch(self, limit: int) -> list[Event]:
        """Wait for at least one event, then take up to `limit` without waiting; [] once closed and drained."""
        await self._wait()
        q = self._queue
        n = min(limit, len(q))
        return [q.popleft() for _ in range(n)]

    def get_nowait_batch(self, limit: int) -> list[Event]:
        q = self._queue
        return [q.popleft() for _ in range(min(limit, len(q)))]

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        return await self.get()

    def close(self) -> None:
        """Stop receiving; what is queued can still be drained."""
        if self._closed:
            return
        self._closed = True
        self._hub._remove(self)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def stats(self) -> SubscriptionStats:
        return SubscriptionStats(self.name, self.maxsize, len(self._queue), self.delivered, self.dropped)


class Hub:
    """Fan-out of events to subscribers. Not thread-safe: publish from the event loop."""

    def __init__(self) -> None:
        self._subs: list[Subscription] = []
        self._by_kind: dict[str, tuple[Subscription, ...]] = {}
        self.published = 0
        self.published_by_kind: dict[str, int] = {}

    def subscribe(self, name: str, *, maxsize: int = 10_000, kinds: Iterable[str] | None = None) -> Subscription:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        sub = Subscription(self, name, maxsize, frozenset(kinds) if kinds is not None else None)
        self._subs.append(sub)
        self._by_kind.clear()
        return sub

    def _remove(self, sub: Subscription) -> None:
        if sub in self._subs:
            self._subs.remove(sub)
            self._by_kind.clear()

    def _targets(self, kind: str) -> tuple[Subscription, ...]:
        targets = self._by_kind.get(kind)
        if targets is None:
            targets = tuple(s for s in self._subs if s.kinds is None or kind in s.kinds)
            self._by_kind[kind] = targets
        return targets

    def publish(self, event: Event) -> None:
        self.published += 1
        by_kind = self.published_by_kind
        by_kind[event.kind] = by_kind.get(event.kind, 0) + 1
        for sub in self._targets(event.kind):
            sub._offer(event)

    def publish_many(self, events: Iterable[Event]) -> None:
        for event in events:
            self.publish(event)

    def stats(self) -> list[SubscriptionStats]:
        return [s.stats() for s in self._subs]
