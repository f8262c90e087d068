"""Benchmarks of proximity offers (scripts/bench offers): rule cost, dwell-to-broker latency, memory.

Each figure comes back as (name, value, unit, reference, reference name, target) for scripts/bench.py.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

APP = "a0b1c2d3-e4f5-4a6b-8c7d-9e0f1a2b3c4d"
ZONES = [f"zone-{i}" for i in range(20)]
MEMBERS = 10_000
CAMPAIGNS = 200
RATE = 5_000  # presence events/s the figure is asked at

Fig = tuple[str, float, str, float | None, str, str]


def members_doc() -> dict[str, Any]:
    rng = random.Random(1)
    return {"version": 1, "members": [
        {"member": f"L{i:06d}", "name": f"Member {i}", "ibeacon": {"uuid": APP, "major": i // 60000, "minor": i % 60000},
         "consents": {"personalisation": True, "marketing": rng.random() < 0.7},
         "segments": rng.sample(["runner", "family", "hiker", "cyclist", "swimmer"], 2)} for i in range(MEMBERS)]}


def campaigns_doc(dwell_s: float = 30.0) -> dict[str, Any]:
    rng = random.Random(2)
    out = []
    for i in range(CAMPAIGNS):
        zones = rng.sample(ZONES, 2)
        trigger = ({"on": "enter", "zones": zones} if i % 2 else {"on": "dwell", "zones": zones, "dwell_s": dwell_s})
        out.append({"id": f"c{i:03d}", "priority": rng.randint(0, 50), "trigger": trigger,
                    "audience": {"segments": rng.sample(["runner", "family", "hiker"], 1)} if i % 3 == 0 else {},
                    "offer": {"title": f"Offer {i}", "code": f"C{i}"}, "holdout": 0.1,
                    "caps": {"per_person_per_day": 1, "cooldown_s": 600}, "products": ["03012345000116"]})
    return {"version": 1, "campaigns": out}


def _config(d: str, **extra: Any) -> Any:
    from agent.config import parse_config

    return parse_config({"store": {"id": "bench", "gateway": "gw-1", "timezone": "Europe/Paris"},
                         "storage": {"path": f"{d}/o2o.db", "synchronous": "normal"},
                         "http": {"listen": "127.0.0.1:0"}, **extra})


async def _rule_rates() -> tuple[float, float]:
    from agent.app import Agent
    from agent.events import Event
    from agent.hub import Hub
    from agent.o2o.members import Members
    from agent.o2o.offers import Offers

    with tempfile.TemporaryDirectory() as d:
        agent = Agent(_config(d, mqtt={"enabled": False}), registry=[Members, Offers])
        await agent.start()
        try:
            await agent["members"].on_members(json.dumps(members_doc()).encode())
            await agent["offers"].on_campaigns(json.dumps(campaigns_doc()).encode())
            rng = random.Random(3)
            events = [Event("beacon.enter" if i % 2 == 0 else "beacon.exit", "gw-1",
                            {"member": f"L{rng.randrange(MEMBERS):06d}", "zone": rng.choice(ZONES), "kind": "ibeacon"})
                      for i in range(50_000)]
            sink = agent.hub.subscribe("sink", maxsize=10_000_000)
            offers = agent["offers"]
            t0 = time.perf_counter()
            for e in events:
                offers.on_event(e)
            offers.tick(time.monotonic() + 3600)  # every dwell timer fires
            rule = len(events) / (time.perf_counter() - t0)
            sink.close()
        finally:
            await agent.shutdown()
    hub = Hub()
    sub = hub.subscribe("one", maxsize=10_000_000)
    t0 = time.perf_counter()
    for e in events:
        hub.publish(e)
    hub_rate = len(events) / (time.perf_counter() - t0)
    sub.close()
    return rule, hub_rate


class _Broker:
    def __init__(self, workdir: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        conf = workdir / "mosquitto.conf"
        conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                        + ("user root\n" if os.geteuid() == 0 else ""))
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(200):
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.1):
                    return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("mosquitto did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(5)


async def _latencies(trials: int = 300, dwell_s: float = 0.2) -> list[float]:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from agent.app import Agent
    from agent.components.outbox import OutboxComponent
    from agent.components.sync import Sync
    from agent.events import Event
    from agent.o2o.members import Members
    from agent.o2o.offers import Offers
    from agent.rules.engine import RulesEngine

    with tempfile.TemporaryDirectory() as d:
        broker = _Broker(Path(d))
        arrived: dict[str, float] = {}
        lock = threading.Lock()

        def on_message(client: Any, userdata: Any, msg: Any) -> None:
            now = time.time()
            for e in json.loads(msg.payload)["events"]:
                if e["kind"] == "offer.triggered":
                    with lock:
                        arrived.setdefault(e["data"]["member"], now)

        client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="bench-offers")
        client.on_message = on_message
        client.connect("127.0.0.1", broker.port)
        client.subscribe("o2o/v1/bench/gw-1/events", qos=1)
        client.loop_start()
        cfg = _config(d, mqtt={"host": "127.0.0.1", "port": broker.port, "reconnect_min_s": 0.05},
                      offers={"max_per_visit": 100})
        agent = Agent(cfg, registry=[OutboxComponent, Members, Offers, RulesEngine, Sync])
        await agent.start()
        try:
            while not agent["mqtt"].uplink.ready:
                await asyncio.sleep(0.02)
            doc = members_doc()
            for m in doc["members"]:
                m["consents"]["marketing"] = True
            await agent["members"].on_members(json.dumps(doc).encode())
            one = {"version": 1, "campaigns": [{"id": "dwell", "trigger": {"on": "dwell", "zones": ["shoes"],
                                                                           "dwell_s": dwell_s},
                                                "offer": {"title": "x"}, "caps": {"cooldown_s": 0}}]}
            await agent["offers"].on_campaigns(json.dumps(one).encode())
            due: dict[str, float] = {}
            for i in range(trials):
                member = f"L{i:06d}"
                due[member] = time.time() + dwell_s
                agent.hub.publish(Event("beacon.enter", "gw-1", {"member": member, "zone": "shoes"}))
                await asyncio.sleep(0.01)
            deadline = time.time() + 10
            while len(arrived) < trials and time.time() < deadline:
                await asyncio.sleep(0.05)
            if len(arrived) < trials:
                raise RuntimeError(f"only {len(arrived)} of {trials} offers reached the broker")
        finally:
            await agent.shutdown()
            client.loop_stop()
            client.disconnect()
            broker.stop()
    return sorted(arrived[m] - due[m] for m in due)


def _memory(trace: bool) -> float:
    """Bytes kept for 10,000 members and 200 campaigns: allocated (tracemalloc), or the RSS growth without it."""
    from agent.o2o.campaigns import CampaignsDoc
    from agent.o2o.members import Member, MembersDoc

    members_json = json.dumps(members_doc()).encode()
    campaigns_json = json.dumps(campaigns_doc()).encode()
    gc.collect()
    rss0 = _rss()
    if trace:
        tracemalloc.start()
        snap0 = tracemalloc.take_snapshot()
    docs = MembersDoc.model_validate_json(members_json)
    shared: dict[frozenset[str], frozenset[str]] = {}
    kept = {d.member: Member.of(d, shared) for d in docs.members}  # what Members keeps
    beacons = {(d.ibeacon.uuid, d.ibeacon.major, d.ibeacon.minor): d.member for d in docs.members if d.ibeacon}
    del docs
    campaigns = CampaignsDoc.model_validate_json(campaigns_json).campaigns
    gc.collect()
    assert kept and beacons and campaigns
    if trace:
        grown = sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(snap0, "filename"))
        tracemalloc.stop()
        return float(grown)
    return float(_rss() - rss0)


def _memory_fresh() -> tuple[float, float]:
    """`_memory` in new interpreters: one that ran the rule's bench has heap to spare, and its RSS would not
    grow; tracemalloc's own bookkeeping would count in the RSS."""
    def run(flag: str) -> float:
        out = subprocess.run([sys.executable, __file__, flag], capture_output=True, text=True, check=True, timeout=300)
        return float(out.stdout.strip().splitlines()[-1])

    return run("--memory-traced"), run("--memory-rss")


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def offers_figures() -> list[Fig]:
    rule, hub = asyncio.run(_rule_rates())
    lat = asyncio.run(_latencies())
    p50, p99 = statistics.median(lat), lat[int(len(lat) * 0.99)]
    grown, rss = _memory_fresh()
    share = RATE / rule
    return [
        ("offers: presence events through the rule (200 campaigns, 10k members)", rule, "events/s", hub,
         "hub publish to one subscriber", f"at {RATE:,} ev/s the rule needs {share:.1%} of a core"),
        ("offers: dwell threshold -> offer.triggered on the broker, p50", p50 * 1e3, "ms", None, "", ""),
        ("offers: dwell threshold -> offer.triggered on the broker, p99", p99 * 1e3, "ms", None, "", "< 100 ms"),
        ("offers: memory for 10k members + 200 campaigns (tracemalloc)", grown / 2**20, "MiB", None, "", "< 10 MB"),
        ("offers: the same, RSS growth of a fresh process (with the parse's garbage the allocator keeps)", rss / 2**20, "MiB", None, "", ""),
    ]


if __name__ == "__main__":
    if sys.argv[1:] in (["--memory-traced"], ["--memory-rss"]):
        print(_memory(trace=sys.argv[1] == "--memory-traced"))
        sys.exit(0)
    for f in offers_figures():
        print(f)
