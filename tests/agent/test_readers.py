"""A reader on a real pty, end to end: simulator bytes -> pyserial -> codec -> presence -> hub -> outbox."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agent.config import Config
from agent.readers import ReaderRunner
from drivers.rfid.simulator import ManualScenario, PtySimulator, demo_epc
from tests.conftest import RunningAgent, wait_for

PROTOCOLS = [("mercury", "auto"), ("mercury", "polled"), ("uhfreader18", "auto"), ("uhfreader18", "active"),
             ("r2000", "auto"), ("r2000", "active")]


def events_in(db: Path, kind: str | None = None) -> list[dict]:  # type: ignore[type-arg]
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("SELECT body FROM outbox ORDER BY seq").fetchall()
    finally:
        conn.close()
    docs = [json.loads(b) for (b,) in rows]
    return [d for d in docs if kind is None or d["kind"] == kind]


@pytest.mark.parametrize(("protocol", "mode"), PROTOCOLS)
async def test_tags_on_a_pty_become_durable_events(protocol: str, mode: str, tmp_path: Path, config_factory, start_agent) -> None:  # type: ignore[no-untyped-def]
    scenario = ManualScenario()
    sim = PtySimulator(protocol, scenario, link=tmp_path / "dev" / "reader", period_s=0.05)
    port = sim.start()
    try:
        config = config_factory(rfid={"gone_after_s": 0.5, "readers": [
            {"id": "r1", "port": port, "protocol": protocol, "baudrate": 115200, "mode": mode,
             "poll_interval_s": 0.05, "zones": {1: "checkout-1", 2: "exit"}},
        ]})
        ra = await start_agent(config)
        runner = ra.agent["readers"].runners["r1"]
        await wait_for(lambda: runner.state == "online", 10)
        item = demo_epc(0, 42)
        scenario.put(item, antenna=1, rssi=-50)
        scenario.put(demo_epc(1, 7), antenna=2, rssi=-61)
        await wait_for(lambda: len(runner.presence) == 2, 10)
        scenario.remove(item)
        await wait_for(lambda: len(runner.presence) == 1, 10)
        assert runner.reads > 2
        await ra.stop()
    finally:
        sim.stop()
    db = config.storage.path
    seen = events_in(db, "tag.seen")
    reports_antenna = protocol == "mercury"  # UHFReader18 and the BB/7E modules have one antenna port
    reports_rssi = protocol != "uhfreader18"
    assert {(e["data"]["zone"], e["data"]["epc"]) for e in seen} == {
        ("checkout-1", item.hex().upper()),
        ("exit" if reports_antenna else "checkout-1", demo_epc(1, 7).hex().upper())}
    first = next(e for e in seen if e["data"]["epc"] == item.hex().upper())
    assert first["data"]["gtin"] == "03012345000116"
    assert first["data"]["serial"] == "42"
    assert first["data"]["reader"] == "r1" and first["data"]["antenna"] == 1
    assert first["data"]["rssi"] == (-50 if reports_rssi else None)
    assert first["source"] == "r1"
    gone = events_in(db, "tag.gone")
    assert [e["data"]["epc"] for e in gone if e["data"]["reason"] == "timeout"] == [item.hex().upper()]
    assert events_in(db, "reader.online")


async def test_em4100_card_on_a_pty(tmp_path: Path, config_factory, start_agent) -> None:  # type: ignore[no-untyped-def]
    scenario = ManualScenario()
    sim = PtySimulator("em4100", scenario, link=tmp_path / "dev" / "badge", period_s=0.05)
    port = sim.start()
    try:
        config = config_factory(rfid={"gone_after_s": 0.3, "readers": [
            {"id": "badges", "port": port, "protocol": "em4100", "baudrate": 9600}]})
        ra = await start_agent(config)
        runner = ra.agent["readers"].runners["badges"]
        await wait_for(lambda: runner.state == "online", 5)  # no handshake: online once the port is open
        scenario.put(bytes.fromhex("01000734E0"))
        await wait_for(lambda: len(runner.presence) == 1, 5)
        scenario.clear()
        await wait_for(lambda: len(runner.presence) == 0, 5)
        await ra.stop()
    finally:
        sim.stop()
    (seen,) = events_in(config.storage.path, "tag.seen")
    assert seen["data"]["epc"] == "01000734E0" and seen["data"]["zone"] == "badges" and "gtin" not in seen["data"]


async def test_missing_port_is_offline_then_online_when_plugged(tmp_path: Path, config_factory, start_agent) -> None:  # type: ignore[no-untyped-def]
    link = tmp_path / "dev" / "ttyUSB0"
    config = config_factory(rfid={"readers": [
        {"id": "r1", "port": str(link), "protocol": "mercury", "baudrate": 115200}]})
    ra = await start_agent(config)
    runner = ra.agent["readers"].runners["r1"]
    await wait_for(lambda: runner.state == "offline", 5)
    assert "No such file or directory" in (runner.error or "")
    scenario = ManualScenario()
    scenario.put(demo_epc(2, 1))
    sim = PtySimulator("mercury", scenario, link=link, period_s=0.05)
    sim.start()
    try:
        await wait_for(lambda: runner.state == "online", 15)
        await wait_for(lambda: len(runner.presence) == 1, 5)
    finally:
        sim.stop()


@dataclass
class OnPty:
    sim: PtySimulator
    scenario: ManualScenario
    agent: RunningAgent
    runner: ReaderRunner
    config: Config


@pytest.fixture
async def mercury_on_pty(tmp_path: Path, config_factory, start_agent):  # type: ignore[no-untyped-def]
    """A running agent with one Mercury reader "r1", simulated on a pty; the simulator stops afterwards."""
    sims: list[PtySimulator] = []

    async def make(*tags: bytes, **rfid: Any) -> OnPty:
        scenario = ManualScenario()
        for epc in tags:
            scenario.put(epc)
        sim = PtySimulator("mercury", scenario, link=tmp_path / "dev" / "reader", period_s=0.05)
        sims.append(sim)
        port = sim.start()
        config = config_factory(rfid={**rfid, "readers": [
            {"id": "r1", "port": port, "protocol": "mercury", "baudrate": 115200}]})
        ra = await start_agent(config)
        return OnPty(sim, scenario, ra, ra.agent["readers"].runners["r1"], config)

    yield make
    for sim in sims:
        sim.stop()


async def test_unplug_and_replug(mercury_on_pty) -> None:  # type: ignore[no-untyped-def]
    r = await mercury_on_pty(demo_epc(3, 9), gone_after_s=5.0)
    runner = r.runner
    await wait_for(lambda: runner.state == "online" and len(runner.presence) == 1, 10)
    r.sim.unplug()
    await wait_for(lambda: runner.state == "offline", 5)
    assert runner.error
    assert len(runner.presence) == 0  # reported gone with reason reader_offline
    r.sim.plug()
    await wait_for(lambda: runner.state == "online" and len(runner.presence) == 1, 15)
    assert runner.reconnects >= 1
    await r.agent.stop()
    kinds = [(e["kind"], e["data"].get("reason")) for e in events_in(r.config.storage.path)
             if e["kind"] in ("reader.online", "reader.offline", "tag.gone")]
    assert ("reader.offline", None) in kinds
    assert ("tag.gone", "reader_offline") in kinds
    assert [k for k, _ in kinds].count("reader.online") >= 2


async def test_pause_and_resume(mercury_on_pty) -> None:  # type: ignore[no-untyped-def]
    runner = (await mercury_on_pty(demo_epc(4, 1), gone_after_s=0.3)).runner
    await wait_for(lambda: len(runner.presence) == 1, 10)
    runner.pause()
    assert runner.state == "paused"
    await wait_for(lambda: len(runner.presence) == 0, 5)
    await asyncio.sleep(0.5)
    assert len(runner.presence) == 0  # no new appearances while paused
    runner.resume()
    await wait_for(lambda: runner.state == "online" and len(runner.presence) == 1, 10)


async def test_garbage_on_the_line_is_counted_and_reading_goes_on(mercury_on_pty) -> None:  # type: ignore[no-untyped-def]
    r = await mercury_on_pty()
    runner = r.runner
    await wait_for(lambda: runner.state == "online", 10)
    r.sim.inject(b"\xff\x05\x22\x00\x00garbage-with-bad-crc\x00\x01")
    r.scenario.put(demo_epc(5, 5))
    await wait_for(lambda: runner.frame_errors > 0 and len(runner.presence) == 1, 10)
    status = await r.agent.agent.status()
    (reader,) = status["readers"]
    assert reader["frame_errors"] > 0 and reader["state"] == "online"


async def test_runner_crash_is_restarted_by_the_supervisor(mercury_on_pty,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    calls = {"n": 0}
    real_tick = ReaderRunner._tick

    def flaky_tick(self: ReaderRunner) -> float:
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("bug in a driver")
        return real_tick(self)

    monkeypatch.setattr(ReaderRunner, "_tick", flaky_tick)
    r = await mercury_on_pty(demo_epc(1, 1))
    runner = r.runner
    await wait_for(lambda: runner.state == "restarting", 5)
    assert "bug in a driver" in (runner.error or "")
    await wait_for(lambda: runner.state == "online", 10)
    assert not r.agent.task.done()


async def test_bytes_dropped_when_the_loop_falls_behind_are_shown_as_such(mercury_on_pty, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Before: serial bytes dropped at the transport's limit showed only as bad-frame counts. Now: counted as
    dropped bytes in the readers' status (the card draws them), an amber health line, and /metrics."""
    import aiohttp

    from drivers.rfid import transport

    r = await mercury_on_pty(demo_epc(3, 9), demo_epc(3, 10))
    await wait_for(lambda: r.runner.state == "online" and r.runner.reads > 5, 10)
    monkeypatch.setattr(transport, "MAX_PENDING_BYTES", 64)  # a tiny buffer: a short stall overflows it
    time.sleep(1.0)  # noqa: ASYNC251 - on purpose: the event loop stalls (a long GC, a slow disk on its thread)
    await wait_for(lambda: r.runner.transport is not None and r.runner.transport.overruns > 0, 10)
    status = await r.agent.agent.status()
    (reader,) = status["readers"]
    assert reader["overruns"] > 0
    assert any("bytes of reads dropped" in line for line in status["health"]["reasons"])
    async with aiohttp.ClientSession() as http, http.get(
            f"{r.agent.base_url}/metrics", headers={"Authorization": "Bearer test-token"}) as resp:
        text = await resp.text()
    (counted,) = re.findall(r'^o2o_reader_overrun_bytes_total\{reader="r1"\} (\S+)$', text, re.M)
    assert float(counted) >= reader["overruns"]  # (the loop may still be catching up)
