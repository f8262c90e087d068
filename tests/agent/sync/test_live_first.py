"""Live before backlog, over a real mosquitto: after an outage, a gate alarm and every sale go out ahead of the
backlog, which follows marked "backlog": true; nothing is lost or sent twice (agent/sync/lanes.py)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from agent.config import parse_config
from agent.events import Event
from agent.outbox import Outbox
from agent.sync.uplink import Uplink
from tests.conftest import Mosquitto, Subscriber, wait_for

TOPIC = "o2o/v1/s/g/events"


def config(broker: Mosquitto, **mqtt: Any) -> Any:
    return parse_config({"store": {"id": "s", "gateway": "g"}, "mqtt": {
        "host": "127.0.0.1", "port": broker.port, "reconnect_min_s": 0.05, "reconnect_max_s": 0.3, **mqtt}})


def batches(sub: Subscriber) -> list[dict[str, Any]]:
    return [json.loads(p) for p in sub.payloads(TOPIC)]


async def backlog(ob: Outbox, n: int, *, sales_every: int = 0, age_s: float = 3600) -> list[Event]:
    old = time.time() - age_s
    events = [Event("checkout.paid" if sales_every and i % sales_every == 0 else "tag.seen", "r", {"n": i},
                    ts=old + i * 0.001) for i in range(n)]
    for i in range(0, n, 5000):
        await ob.write(events[i : i + 5000])
    return events


async def test_an_alarm_and_the_sales_overtake_the_backlog(mosquitto: Mosquitto, tmp_path: Path) -> None:
    sub = Subscriber(mosquitto.port, TOPIC)
    try:
        async with Outbox(tmp_path / "o.db", synchronous="normal") as ob:
            old = await backlog(ob, 40_000, sales_every=1000)
            uplink = Uplink(config(mosquitto, batch_max_events=100, inflight=4), ob, birth=lambda: {"online": True})
            task = asyncio.create_task(uplink.run())
            await wait_for(lambda: uplink.connected and uplink.events_acked > 0, 10)
            alarm = Event("gate.alarm", "g", {"epc": "E1"})
            await ob.write([alarm])
            await wait_for(lambda: ob.depth == 0, 60)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        docs = batches(sub)
        order = [e["id"] for d in docs for e in d["events"]]
        assert sorted(order) == sorted([e.id for e in old] + [alarm.id])  # all of it, each once
        assert len(set(order)) == len(order)
        first_backlog = next(i for i, d in enumerate(docs) if d.get("backlog") and d["events"][0]["kind"] == "tag.seen")
        last = len(docs) - 1
        alarm_batch = next(i for i, d in enumerate(docs) if any(e["id"] == alarm.id for e in d["events"]))
        assert alarm_batch < last - 10, (alarm_batch, last)  # well ahead of the end of the backlog
        assert "backlog" not in docs[alarm_batch]  # live
        sale_batches = [i for i, d in enumerate(docs) if d["events"][0]["kind"] == "checkout.paid"]
        assert sale_batches and max(sale_batches) <= first_backlog + 4  # the 40 old sales first, in one batch
        assert all(docs[i]["backlog"] is True for i in sale_batches)  # old: late data, marked
        telemetry = [d for d in docs if d["events"][0]["kind"] == "tag.seen"]
        assert all(d.get("backlog") is True for d in telemetry)
        seqs = [d["seq"] for d in telemetry]
        assert seqs == sorted(seqs)  # the backlog itself stays in order
    finally:
        sub.close()


async def test_live_events_keep_coming_while_the_backlog_drains_through_a_broker_restart(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    sub = Subscriber(mosquitto.port, TOPIC)
    try:
        async with Outbox(tmp_path / "o.db", synchronous="normal") as ob:
            old = await backlog(ob, 20_000, sales_every=500)
            uplink = Uplink(config(mosquitto, batch_max_events=200, inflight=4), ob, birth=lambda: {"online": True})
            task = asyncio.create_task(uplink.run())
            live: list[Event] = []
            for i in range(60):
                e = Event("gate.alarm" if i % 10 == 0 else "tag.seen", "r", {"live": i})
                await ob.write([e])
                live.append(e)
                if i == 20:
                    mosquitto.stop()
                if i == 30:
                    mosquitto.start()
                await asyncio.sleep(0.03)
            await wait_for(lambda: ob.depth == 0, 60)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        got = {e["id"] for d in batches(sub) for e in d["events"]}
        assert got == {e.id for e in old + live}  # nothing lost (duplicates only of unacknowledged batches)
        assert uplink.reconnects >= 1
    finally:
        sub.close()


async def test_live_first_off_is_one_lane_oldest_first(mosquitto: Mosquitto, tmp_path: Path) -> None:
    sub = Subscriber(mosquitto.port, TOPIC)
    try:
        async with Outbox(tmp_path / "o.db", synchronous="normal") as ob:
            await backlog(ob, 5000, sales_every=100)
            uplink = Uplink(config(mosquitto, batch_max_events=500, live_age_s=0), ob, birth=lambda: {"online": True})
            task = asyncio.create_task(uplink.run())
            await wait_for(lambda: ob.depth == 0, 30)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        docs = batches(sub)
        assert [d["seq"] for d in docs] == sorted(d["seq"] for d in docs)
        assert not any("backlog" in d for d in docs)
        assert sum(len(d["events"]) for d in docs) == 5000
    finally:
        sub.close()
