"""Light gateways: what a gateway says on MQTT, with the agent's own code, hundreds to one process.

A light gateway is what central ops and the broker see of an `o2o-edge run` with an empty config, and
nothing else (no readers, no outbox on disk, no web server). Each one uses, from the agent:

- agent.sync.client.MqttClient for its connection, with the uplink's will ({"online": false}, retained),
  client id, keepalive and in-flight window, and reconnects like agent.sync.uplink.Uplink.run: the
  same drivers.backoff.Backoff (jitter 0.5, reset after a 30 s connection);
- on every connect, the birth message of agent.sync.uplink.birth_message (retained `state`), the
  subscription to agent.sync.topics.Topics.downlink, and the retained `config/reported` a gateway
  sends after a connect (agent/components/config.py), then the `state` with its health 5 s later;
- agent.sync.downlink.Downlink to route what comes down, with a `config/set` / `config/patch` document
  answered like agent/components/config.py: agent.config_push.verify_push on the signed push, a retained
  `config/reported` with `running_version` and the masked running config, a retained push already in
  force ignored; `cmd/ping` like the sync component; anything else rejected as "not configured";
- events: `tag.seen` agent.events.Event at `rate` per second (Poisson), kept in memory (bounded) until
  the broker's PUBACK, sent as agent.sync.uplink.encode_batch batches, QoS 1, at most one live batch per
  `linger_ms` (the uplink's [mqtt] linger_ms, 50 ms: at 5 events/s nearly every event is its own batch).

Run as a worker: `python -m scripts.fleetsim.light SPEC.json`; it prints one JSON line of counts a
second on stdout and a final one when stopped (SIGTERM or SIGINT).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import signal
import sys
import time
from collections import deque
from functools import partial
from pathlib import Path
from typing import Any, Literal

import orjson
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent import __version__
from agent.component import Command, Document, NoArgs
from agent.components.sync import STATE_EVERY_S
from agent.config import Config, parse_config
from agent.config_push import LOCAL_ONLY, MAX_PUSH_BYTES, masked_config, verify_push
from agent.documents import claimed_version
from agent.errors import ConfigError
from agent.events import Event
from agent.outbox_db import OutboxRow
from agent.sync.client import MqttClient, MqttError, Will
from agent.sync.downlink import Downlink
from agent.sync.topics import Topics
from agent.sync.uplink import _STABLE_S, CONTENT_TYPES, birth_message, encode_batch
from drivers.backoff import Backoff
from drivers.rfid.simulator import demo_epc
from scripts.fleetsim.gateways import GatewaySpec, minimal_document

__all__ = ["LightGateway", "main", "run_worker"]

# Events kept while the broker is away; beyond it the oldest go (the real outbox's cap is in bytes).
MAX_PENDING = 50_000
# Control messages (reports, results) waiting for a connection, as agent/sync/uplink.py keeps them.
MAX_CONTROL = 100
GREEN = {"level": "green", "summary": "Everything is working."}


class LightGateway:
    def __init__(self, spec: GatewaySpec, public_key: str, storage_dir: Path, *, rate: float = 5.0,
                 linger_ms: int | None = None, seed: int | None = None) -> None:
        self.spec = spec
        self.local: Config = parse_config(minimal_document(spec, storage_dir, public_key), f"light {spec.key}")
        self.config = self.local
        self.topics = Topics(spec.store, spec.gateway)
        self.rate = rate
        self.linger_s = (self.local.mqtt.linger_ms if linger_ms is None else linger_ms) / 1000
        self.rng = random.Random(spec.index if seed is None else seed)
        self.started_at = time.time()
        self.client: MqttClient | None = None
        self.pending: deque[OutboxRow] = deque()
        self.seq = 0
        self._wake = asyncio.Event()
        self._control: deque[tuple[str, bytes, bool]] = deque(maxlen=MAX_CONTROL)
        self._lock = asyncio.Lock()
        self.last_report: dict[str, Any] | None = None
        self.downlink = Downlink(self.topics, documents=lambda: self._documents, commands=lambda: self._commands,
                                 publish=self.publish)
        self._documents = {
            "config/set": Document("config/set", self.on_push, "config/reported", max_bytes=MAX_PUSH_BYTES),
            "config/patch": Document("config/patch", partial(self.on_push, kind="patch"), "config/reported",
                                     max_bytes=MAX_PUSH_BYTES),
        }
        self._commands = {"ping": Command("ping", NoArgs, self._ping, "is the gateway there")}
        # counts
        self.connects = 0
        self.events_made = 0
        self.events_acked = 0
        self.batches_acked = 0
        self.events_dropped = 0
        self.applied: list[int] = []
        self.rejected = 0
        self.last_error: str | None = None

    @property
    def connected(self) -> bool:
        return self.client is not None and self.client.is_connected

    # -- the connection (agent/sync/uplink.py Uplink.run) ----------------------------------------

    def _make_client(self) -> MqttClient:
        cfg = self.config.mqtt
        will = Will(self.topics.state, orjson.dumps({"online": False, "gateway": self.spec.gateway}))
        return MqttClient(cfg.host, cfg.port, client_id=cfg.client_id or self.spec.client_id,
                          protocol=5 if cfg.protocol == "5" else 4, keepalive=cfg.keepalive_s,
                          username=cfg.username, password=cfg.password.get_secret_value() if cfg.password else None,
                          will=will, on_message=self.downlink.on_message, max_inflight=cfg.inflight + 16)

    def _birth(self) -> dict[str, Any]:
        return birth_message(self.config, __version__, self.started_at, {"readers": [], "backlog": len(self.pending)})

    async def run(self) -> None:
        cfg = self.config.mqtt
        backoff = Backoff(cfg.reconnect_min_s, max(cfg.reconnect_min_s, cfg.reconnect_max_s), jitter=0.5,
                          stable_s=_STABLE_S)
        while True:
            client = self._make_client()
            connected_at: float | None = None
            try:
                await client.connect()
                connected_at = time.monotonic()
                self.client = client
                self.connects += 1
                await client.publish(self.topics.state, orjson.dumps(self._birth()), retain=True)
                await client.subscribe([(t, 1) for t in self.topics.downlink])
                while self._control:
                    topic, body, retain = self._control[0]
                    await client.publish(topic, body, retain=retain)
                    self._control.popleft()
                await client.publish(f"{self.topics.base}/config/reported", orjson.dumps(self.current_report()),
                                     retain=True)
                state = asyncio.create_task(self._state_after_connect(client))
                try:
                    await self._pump(client)
                finally:
                    state.cancel()
            except MqttError as exc:
                self.last_error = str(exc)
            finally:
                self.client = None
                with contextlib.suppress(Exception):
                    await client.disconnect()
            if connected_at is not None:
                backoff.succeeded(time.monotonic() - connected_at)
            await asyncio.sleep(backoff.next())

    async def _state_after_connect(self, client: MqttClient) -> None:
        """agent/components/sync.py _state_loop: the state again with the health verdict (once: it stays green)."""
        await asyncio.sleep(STATE_EVERY_S)
        with contextlib.suppress(MqttError):
            await client.publish(self.topics.state, orjson.dumps({**self._birth(), "health": GREEN}), retain=True)

    async def publish(self, topic: str, payload: dict[str, Any], retain: bool = False) -> bool:
        """A report or result now, or after the next connect (bounded), as Uplink.publish."""
        body = orjson.dumps(payload)
        client = self.client
        if client is not None and client.is_connected:
            try:
                await client.publish(topic, body, retain=retain)
                return True
            except MqttError:
                pass
        self._control.append((topic, body, retain))
        return False

    # -- events (the outbox and the pump, in memory) -----------------------------------------------

    async def produce(self) -> None:
        """A store's floor: `rate` tag reads a second, whether or not the broker is there."""
        if self.rate <= 0:
            return
        while True:
            await asyncio.sleep(self.rng.expovariate(self.rate))
            self.seq += 1
            event = Event("tag.seen", "reader:floor", {
                "epc": demo_epc(self.seq % 6, self.spec.index * 1_000_000 + self.seq % 1_000_000).hex().upper(),
                "reader": "floor", "antenna": 1 + self.seq % 2, "zone": "floor", "rssi": -40 - self.seq % 30})
            self.pending.append(OutboxRow(self.seq, event.id, event.kind, event.ts, event.to_json(),
                                          int(event.priority)))
            self.events_made += 1
            if len(self.pending) > MAX_PENDING:
                self.pending.popleft()
                self.events_dropped += 1
            self._wake.set()

    async def _pump(self, client: MqttClient) -> None:
        cfg = self.config.mqtt
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.ContentType = CONTENT_TYPES[cfg.compression]
        window = asyncio.Semaphore(cfg.inflight)
        failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        tasks: set[asyncio.Task[None]] = set()
        last = 0.0
        try:
            while client.is_connected and not failed.done():
                if not self.pending:
                    self._wake.clear()
                    waiter: asyncio.Future[Any] = asyncio.ensure_future(self._wake.wait())
                    watched: set[asyncio.Future[Any]] = {waiter, failed, client.disconnected}
                    await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
                    waiter.cancel()
                    continue
                delay = last + self.linger_s - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                await window.acquire()
                if not self.pending or not client.is_connected:
                    window.release()
                    continue
                rows = [self.pending.popleft() for _ in range(min(len(self.pending), cfg.batch_max_events))]
                last = time.monotonic()
                task = asyncio.create_task(self._send(client, rows, props, window, failed))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if failed.done() and failed.exception() is not None:
                raise failed.exception()  # type: ignore[misc]
            raise MqttError(client.disconnected.result() if client.disconnected.done() else "connection lost")
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _send(self, client: MqttClient, rows: list[OutboxRow], props: Properties,
                    window: asyncio.Semaphore, failed: asyncio.Future[None]) -> None:
        try:
            await client.publish(self.topics.events, encode_batch(self.spec.gateway, rows), qos=1, properties=props)
            self.events_acked += len(rows)
            self.batches_acked += 1
        except BaseException as exc:
            # Not acknowledged: back to the front, sent again after the reconnect (at least once).
            self.pending.extendleft(reversed(rows))
            if isinstance(exc, MqttError) and not failed.done():
                failed.set_exception(exc)
            if not isinstance(exc, MqttError):
                raise
        finally:
            window.release()

    # -- config pushes (agent/components/config.py ConfigControl) ----------------------------------

    def report(self, version: Any, status: str, errors: list[dict[str, str]], *, rolled_back: bool = False
               ) -> dict[str, Any]:
        running = self.config
        return {"version": version, "status": status, "errors": errors, "running_version": running.version,
                "rolled_back": rolled_back, "config": masked_config(running, exclude=LOCAL_ONLY)}

    def current_report(self) -> dict[str, Any]:
        if self.last_report is not None:
            return {**self.last_report, "running_version": self.config.version,
                    "config": masked_config(self.config, exclude=LOCAL_ONLY), "trigger": "connect"}
        return {**self.report(self.config.version, "applied", []), "trigger": "connect"}

    async def on_push(self, payload: bytes, retained: bool = False, *, kind: Literal["set", "patch"] = "set"
                      ) -> dict[str, Any] | None:
        claimed = claimed_version(payload)
        if retained and isinstance(claimed, int) and claimed <= self.config.version:
            return None  # a desired state already in force, delivered again after a reconnect
        async with self._lock:
            try:
                new = verify_push(payload, self.local, self.config, kind=kind)
            except ConfigError as exc:
                self.rejected += 1
                self.last_report = self.report(claimed, "rejected",
                                               [{"path": p.path, "message": p.message} for p in exc.problems])
                return self.last_report
            self.config = new  # nothing to reconfigure: no readers, no rules
            self.applied.append(new.version)
            self.last_report = self.report(new.version, "applied", [])
            return self.last_report

    async def _ping(self, args: NoArgs) -> dict[str, Any]:
        return {"pong": True, "time": time.time()}

    async def close(self) -> None:
        """A clean stop says so on `state`, as agent/sync/uplink.py Uplink.close does."""
        client = self.client
        if client is not None and client.is_connected:
            with contextlib.suppress(MqttError, TimeoutError):
                async with asyncio.timeout(1.0):
                    await client.publish(self.topics.state, orjson.dumps(
                        {"online": False, "gateway": self.spec.gateway, "reason": "shutdown"}), retain=True)
            with contextlib.suppress(Exception):
                await client.disconnect()


def counts(gateways: list[LightGateway]) -> dict[str, Any]:
    return {
        "t": time.time(),
        "gateways": len(gateways),
        "connected": sum(1 for g in gateways if g.connected),
        "connects": sum(g.connects for g in gateways),
        "events_made": sum(g.events_made for g in gateways),
        "events_acked": sum(g.events_acked for g in gateways),
        "batches_acked": sum(g.batches_acked for g in gateways),
        "events_dropped": sum(g.events_dropped for g in gateways),
        "pending": sum(len(g.pending) for g in gateways),
        "applied": sum(len(g.applied) for g in gateways),
        "rejected": sum(g.rejected for g in gateways),
        "downlink_dropped": sum(g.downlink.dropped for g in gateways),
    }


async def run_worker(spec: dict[str, Any], emit: Any = None) -> dict[str, Any]:
    """Run the spec's light gateways until cancelled (or SIGTERM/SIGINT); the final counts."""
    root = Path(spec["dir"])
    gateways = []
    for g in spec["gateways"]:
        gs = GatewaySpec.from_json(g)
        (root / gs.key).mkdir(parents=True, exist_ok=True)
        gateways.append(LightGateway(gs, spec["public_key"], root / gs.key, rate=spec.get("rate", 5.0),
                                     linger_ms=spec.get("linger_ms")))
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    ramp = float(spec.get("ramp_s", 0.0))
    rng = random.Random(0)

    async def one(gw: LightGateway) -> None:
        if ramp > 0:
            await asyncio.sleep(rng.uniform(0, ramp))  # a fleet does not boot in the same second
        await asyncio.gather(gw.run(), gw.produce(), gw.downlink.run())

    tasks = [asyncio.create_task(one(g)) for g in gateways]
    try:
        while not stop.is_set():
            if emit is not None:
                emit(counts(gateways))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await stop.wait()
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if spec.get("clean_stop", False):
            await asyncio.gather(*(g.close() for g in gateways), return_exceptions=True)
    final = counts(gateways)
    final["final"] = True
    return final


def _emit(line: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.stderr.write("usage: python -m scripts.fleetsim.light SPEC.json\n")
        return 2
    spec = json.loads(Path(args[0]).read_text())
    final = asyncio.run(run_worker(spec, _emit))
    _emit(final)
    return 0


if __name__ == "__main__":
    sys.exit(main())
