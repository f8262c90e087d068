"""Store-and-forward over a real mosquitto: nothing lost across broker outages, PUBACK before delete."""

from __future__ import annotations

import asyncio
import json
import zlib
from pathlib import Path
from typing import Any

import pytest
import zstandard

from agent.events import Event
from tests.conftest import Mosquitto, Subscriber, free_port, wait_for, write_config


def mqtt_section(broker: Mosquitto, **extra: Any) -> dict[str, Any]:
    return {"host": "127.0.0.1", "port": broker.port, "reconnect_min_s": 0.05, "reconnect_max_s": 0.3, **extra}


def received_ids(sub: Subscriber, topic: str) -> list[str]:
    ids = []
    for payload in sub.payloads(topic):
        doc = json.loads(payload)
        ids += [e["id"] for e in doc["events"]]
    return ids


async def test_events_reach_the_cloud_and_leave_the_outbox(mosquitto: Mosquitto, config_factory, start_agent) -> None:  # type: ignore[no-untyped-def]
    sub = Subscriber(mosquitto.port, "o2o/v1/test-store/gw-test/#")
    try:
        ra = await start_agent(config_factory(mqtt=mqtt_section(mosquitto, batch_max_events=50)))
        agent = ra.agent
        assert agent["mqtt"].uplink is not None
        await wait_for(lambda: agent["mqtt"].uplink.ready, 10)
        sent = [Event("tag.seen", "r1", {"epc": f"{i:024X}"}) for i in range(500)]
        agent.hub.publish_many(sent)
        events_topic = "o2o/v1/test-store/gw-test/events"
        await wait_for(lambda: len(set(received_ids(sub, events_topic))) >= 500, 15)
        await wait_for(lambda: agent.outbox.depth == 0, 10)
        docs = [json.loads(p) for p in sub.payloads(events_topic)]
        assert all(d["gateway"] == "gw-test" for d in docs)
        seqs = [d["seq"] for d in docs]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        assert max(len(d["events"]) for d in docs) <= 50
        first = next(e for d in docs for e in d["events"] if e["id"] == sent[0].id)
        assert first == sent[0].to_dict()
        # the birth message is retained on state
        state = [json.loads(p) for p in sub.payloads("o2o/v1/test-store/gw-test/state")]
        assert state and state[0]["online"] is True and state[0]["config_version"] == 0
        status = await agent.status()
        assert status["mqtt"]["connected"] is True and status["mqtt"]["last_error"] is None
        assert status["mqtt"]["events_acked"] >= 500
        await ra.stop()
        await wait_for(lambda: any(json.loads(p).get("reason") == "shutdown"
                                   for p in sub.payloads("o2o/v1/test-store/gw-test/state")), 5)
    finally:
        sub.close()


async def test_broker_outages_lose_nothing(mosquitto: Mosquitto, config_factory, start_agent) -> None:  # type: ignore[no-untyped-def]
    sub = Subscriber(mosquitto.port, "o2o/v1/test-store/gw-test/events")
    try:
        ra = await start_agent(config_factory(mqtt=mqtt_section(mosquitto, batch_max_events=20, inflight=4)))
        agent = ra.agent
        await wait_for(lambda: agent["mqtt"].uplink.ready, 10)
        sent: list[str] = []
        stop = asyncio.Event()

        async def feed() -> None:
            i = 0
            while not stop.is_set():
                e = Event("tag.seen", "r1", {"n": i})
                sent.append(e.id)
                agent.hub.publish(e)
                i += 1
                await asyncio.sleep(0.001)

        feeder = asyncio.create_task(feed())
        await asyncio.sleep(0.5)
        mosquitto.stop()
        await wait_for(lambda: not agent["mqtt"].uplink.connected, 10)
        await asyncio.sleep(0.5)
        depth_while_down = agent.outbox.depth
        assert depth_while_down > 0, "events accumulate in the outbox while the broker is down"
        status = await agent.status()
        assert status["mqtt"]["connected"] is False and status["mqtt"]["last_error"]
        mosquitto.start()
        await wait_for(lambda: agent["mqtt"].uplink.ready, 15)
        await asyncio.sleep(0.3)
        mosquitto.stop()
        await asyncio.sleep(0.3)
        mosquitto.start()
        await wait_for(lambda: agent["mqtt"].uplink.ready, 15)
        stop.set()
        await feeder
        await wait_for(lambda: agent.outbox.depth == 0 and agent.outbox.last_seq == agent.outbox.committed
                       and not agent.hub.stats()[0].depth, 20)
        try:
            await wait_for(lambda: set(sent) <= set(received_ids(sub, "o2o/v1/test-store/gw-test/events")), 20)
        except AssertionError as exc:
            got = set(received_ids(sub, "o2o/v1/test-store/gw-test/events"))
            missing = [i for i, x in enumerate(sent) if x not in got]
            raise AssertionError(f"missing {len(missing)} of {len(sent)}: {missing[:5]}..{missing[-5:]}; uplink {agent['mqtt'].uplink.stats()}") from exc
        assert agent["mqtt"].uplink.reconnects >= 2
    finally:
        sub.close()


# None: not configured, plain JSON (the cloud contract in ../shared/DESIGN.md)
@pytest.mark.parametrize(("compression", "magic"), [(None, b"{"), ("zlib", b"\x78"), ("zstd", b"\x28\xb5\x2f\xfd")])
async def test_compressed_batches_are_recognisable(compression: str | None, magic: bytes, mosquitto: Mosquitto,
                                                   config_factory, start_agent) -> None:  # type: ignore[no-untyped-def]
    sub = Subscriber(mosquitto.port, "o2o/v1/test-store/gw-test/events")
    try:
        extra = {} if compression is None else {"compression": compression}
        ra = await start_agent(config_factory(mqtt=mqtt_section(mosquitto, **extra)))
        await wait_for(lambda: ra.agent["mqtt"].uplink.ready, 10)
        e = Event("gate.alarm", "exit-1", {"epc": "30"})
        ra.agent.hub.publish(e)

        def decoded() -> list[dict[str, Any]]:
            out = []
            for msg in list(sub.messages):
                payload = bytes(msg.payload)
                assert payload.startswith(magic)
                assert msg.properties.ContentType == (f"application/json; compression={compression}" if compression
                                                      else "application/json")
                raw = (payload if compression is None else zlib.decompress(payload) if compression == "zlib"
                       else zstandard.ZstdDecompressor().decompress(payload))
                out += json.loads(raw)["events"]
            return out

        await wait_for(lambda: any(x["kind"] == "gate.alarm" for x in decoded()), 10)
        assert [x for x in decoded() if x["kind"] == "gate.alarm"] == [e.to_dict()]
    finally:
        sub.close()


async def test_unreachable_broker_is_reported_and_the_backlog_grows(tmp_path: Path, config_factory, start_agent) -> None:  # type: ignore[no-untyped-def]

    ra = await start_agent(config_factory(mqtt={"host": "127.0.0.1", "port": free_port(), "reconnect_min_s": 0.05,
                                                "reconnect_max_s": 0.2}))
    await wait_for(lambda: ra.agent["mqtt"].uplink.last_error, 10)
    ra.agent.hub.publish(Event("tag.seen", "r1", {}))
    await wait_for(lambda: ra.agent.outbox.depth >= 1, 5)
    status = await ra.agent.status()
    assert status["mqtt"]["connected"] is False
    assert "Connection refused" in status["mqtt"]["last_error"]
    await wait_for(lambda: ra.agent["mqtt"].uplink.reconnects >= 2, 10)


async def test_kill_9_in_the_middle_of_a_drain_loses_nothing(mosquitto: Mosquitto, tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys

    from agent.outbox import Outbox

    n = 60_000
    db = tmp_path / "o2o.db"
    async with Outbox(db, synchronous="normal") as ob:
        sent = []
        for start in range(0, n, 10_000):
            batch = [Event("tag.seen", "r1", {"n": start + i}) for i in range(10_000)]
            sent += [e.id for e in batch]
            await ob.write(batch)
    config = write_config(tmp_path, storage={"path": str(db)}, http={"listen": f"127.0.0.1:{free_port()}"},
                          mqtt={"host": "127.0.0.1", "port": mosquitto.port, "batch_max_events": 50, "inflight": 1,
                                "reconnect_min_s": 0.05})
    sub = Subscriber(mosquitto.port, "o2o/v1/test-store/gw-test/events")
    exe = str(Path(sys.executable).with_name("o2o-edge"))
    try:
        proc = subprocess.Popen([exe, "run", "--config", str(config)], stderr=subprocess.DEVNULL)
        try:
            await wait_for(lambda: len(sub.payloads()) >= 100, 20)  # a good part is out, most is not
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
        got_before = set(received_ids(sub, "o2o/v1/test-store/gw-test/events"))
        assert 0 < len(got_before) < n, "the kill must land in the middle of the drain"
        proc = subprocess.Popen([exe, "run", "--config", str(config)], stderr=subprocess.DEVNULL)
        try:
            await wait_for(lambda: set(sent) <= set(received_ids(sub, "o2o/v1/test-store/gw-test/events")), 60)
            ids = received_ids(sub, "o2o/v1/test-store/gw-test/events")
            # duplicates only of what was in flight at the kill (one batch with inflight = 1, plus the
            # acknowledged-but-not-yet-deleted batch at most)
            assert len(ids) - len(set(ids)) <= 2 * 50
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
    finally:
        sub.close()
    import sqlite3

    conn = sqlite3.connect(db)
    assert conn.execute("SELECT count(*) FROM outbox WHERE kind = 'tag.seen'").fetchone()[0] == 0
    conn.close()
