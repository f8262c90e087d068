"""Hub: fan-out, bounded queues, counted drops, a slow subscriber never blocks publishers."""

from __future__ import annotations

import asyncio
import logging

import pytest

from agent.events import Event
from agent.hub import Hub


def ev(kind: str = "tag.seen", n: int = 0) -> Event:
    return Event(kind, "test", {"n": n})


async def test_every_subscriber_gets_every_event_in_order() -> None:
    hub = Hub()
    a = hub.subscribe("a")
    b = hub.subscribe("b")
    for i in range(5):
        hub.publish(ev(n=i))
    assert [e.data["n"] for e in a.get_nowait_batch(10)] == [0, 1, 2, 3, 4]
    assert [(await b.get()).data["n"] for _ in range(5)] == [0, 1, 2, 3, 4]


async def test_kind_filter() -> None:
    hub = Hub()
    alarms = hub.subscribe("alarms", kinds={"gate.alarm"})
    hub.publish(ev("tag.seen"))
    hub.publish(ev("gate.alarm"))
    assert [e.kind for e in alarms.get_nowait_batch(10)] == ["gate.alarm"]


async def test_full_subscriber_drops_and_counts_without_affecting_others(caplog: pytest.LogCaptureFixture) -> None:
    hub = Hub()
    slow = hub.subscribe("slow", maxsize=3)
    fast = hub.subscribe("fast", maxsize=100)
    with caplog.at_level(logging.WARNING):
        for i in range(10):
            hub.publish(ev(n=i))
    assert slow.dropped == 7
    assert [e.data["n"] for e in slow.get_nowait_batch(10)] == [0, 1, 2]  # the oldest are kept
    assert len(fast) == 10 and fast.dropped == 0
    assert "subscriber slow is full" in caplog.text
    stats = {s.name: s for s in hub.stats()}
    assert stats["slow"].dropped == 7 and stats["fast"].dropped == 0


async def test_publish_never_waits_for_a_consumer() -> None:
    hub = Hub()
    stuck = hub.subscribe("never-read", maxsize=10)
    for i in range(50_000):
        hub.publish(ev(n=i))  # synchronous: a blocking publish would deadlock this coroutine
    assert hub.published == 50_000
    assert hub.published_by_kind == {"tag.seen": 50_000}
    assert (len(stuck), stuck.dropped, stuck.delivered) == (10, 49_990, 10)


async def test_get_batch_wakes_on_publish_and_ends_on_close() -> None:
    hub = Hub()
    sub = hub.subscribe("s")
    waiter = asyncio.create_task(sub.get_batch(100))
    await asyncio.sleep(0)
    hub.publish(ev(n=1))
    hub.publish(ev(n=2))
    assert [e.data["n"] for e in await asyncio.wait_for(waiter, 1)] == [1, 2]
    hub.publish(ev(n=3))
    sub.close()
    hub.publish(ev(n=4))  # after close: not delivered
    assert [e.data["n"] for e in await sub.get_batch(100)] == [3]  # drained after close
    assert await sub.get_batch(100) == []
    with pytest.raises(StopAsyncIteration):
        await sub.get()


async def test_async_iteration_stops_when_closed() -> None:
    hub = Hub()
    sub = hub.subscribe("s")
    hub.publish(ev(n=1))
    sub.close()
    assert [e.data["n"] async for e in sub] == [1]


def test_maxsize_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Hub().subscribe("x", maxsize=0)
