"""The measured fleet run: start, steady traffic, `ops push --all`, `ops fleet`, broker restart.

    1. the broker; this run's signing key (agent.ops.keys.keygen)
    2. `real` gateways as `o2o-edge run --config FILE` and the rest as light gateways (light.py) in
       `workers` processes, started over `ramp_s` seconds; wait until every one is online (its birth)
    3. memory of each real daemon (RSS, PSS), of the light workers per gateway
    4. `steady_s` seconds of traffic: broker CPU (/proc/PID/stat), messages through it ($SYS on
       mosquitto), events received by two cloud consumers sharing `$share/ingest/o2o/v1/+/+/events`
    5. `o2o-edge ops push push.toml --all --key KEY` (a subprocess, as ops would type it): its wall time
       and when the last `applied` came (seen by this run's own watcher)
    6. `o2o-edge ops fleet` (and `--json`, checked: every gateway listed, online, on the new version)
    7. the broker stopped for `down_s` and started again: every gateway's reconnect from the broker's
       log (connects per second, time until the last is back); then `ops fleet` again, and no gateway
       re-applied or rejected anything
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from agent.ops.fleet import Fleet, GatewayKey
from agent.ops.keys import keygen
from agent.ops.observer import FLEET_TOPICS
from agent.sync.client import Message, MqttClient, MqttError
from scripts.fleetsim.gateways import (
    PUSH_TOML,
    GatewaySpec,
    fleet_specs,
    minimal_document,
    minimal_toml,
)
from scripts.fleetsim.procs import Broker, Child, LineReader, cpu_seconds, pss_kb, rss_kb

__all__ = ["Plan", "Results", "render", "run_scenario"]

ROOT = Path(__file__).resolve().parents[2]
EXE = str(Path(sys.executable).with_name("o2o-edge"))
Out = Callable[[str], None]


@dataclass
class Plan:
    total: int = 500
    real: int = 16
    workers: int = 2
    rate: float = 5.0  # events per second per light gateway
    ramp_s: float = 10.0  # light gateways start spread over this long
    steady_s: float = 20.0
    down_s: float = 5.0  # the broker is away this long in the restart
    restart: bool = True
    online_timeout_s: float = 180.0
    back_timeout_s: float = 180.0
    fleet_runs: int = 3


@dataclass
class Results:
    broker: str = ""
    total: int = 0
    real: int = 0
    light: int = 0
    endpoints: list[tuple[str, int]] = field(default_factory=list)
    all_online_s: float | None = None
    real_rss_kb: list[int] = field(default_factory=list)
    real_pss_kb: list[int] = field(default_factory=list)
    real_cpu_pct: list[float] = field(default_factory=list)
    light_rss_kb_per_gw: float | None = None
    mem_available_kb: int = 0
    steady_s: float = 0.0
    broker_cpu_pct: float | None = None
    broker_rss_kb: int = 0
    workers_cpu_pct: float | None = None
    events_acked_per_s: float | None = None
    ingest_msgs_per_s: float | None = None
    ingest_events_per_s: float | None = None
    ingest_split: list[int] = field(default_factory=list)
    broker_in_per_s: float | None = None
    broker_out_per_s: float | None = None
    push_version: int | None = None
    push_targets: int | None = None
    push_exit: int | None = None
    push_wall_s: float | None = None
    push_all_applied_s: float | None = None
    push_applied: int = 0
    push_table_applied: int = 0
    push_output: str = ""
    fleet_times_s: list[float] = field(default_factory=list)
    fleet_summary: str = ""
    fleet_listed: int = 0
    fleet_online: int = 0
    fleet_on_version: int = 0
    fleet_desired: int = 0  # gateways whose retained config/set (the desired version) `ops fleet` saw
    storm_down_s: float | None = None
    storm_peak_per_s: int | None = None
    storm_all_back_s: float | None = None
    storm_back: int = 0
    storm_histogram: list[int] = field(default_factory=list)
    storm_broker_cpu_pct: float | None = None
    after_storm_online: int = 0
    after_storm_on_version: int = 0
    reapplied_after_storm: int = 0
    rejected: int = 0
    # a cluster: what each node shows, a push across nodes, where retained messages are seen
    fleet_by_node: list[tuple[int, int, int]] = field(default_factory=list)  # (port, listed, online)
    cross_push: str = ""
    retained_seen: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# -- MQTT clients of the run itself (not gateways) -----------------------------------------------

@dataclass(frozen=True)
class Creds:
    """What this run's own clients log in with (ejabberd wants a username; mosquitto here takes anyone)."""

    username: str | None = None
    password: str | None = None


class Watcher:
    """A client of this run: the agent's MqttClient, back 50 ms after any loss, subscriptions renewed."""

    def __init__(self, endpoint: tuple[str, int], name: str, topics: list[str], on_message: Callable[[Message], None],
                 username: str | None = None, password: str | None = None) -> None:
        self.endpoint, self.name, self.topics = endpoint, name, topics
        self.on_message, self.username, self.password = on_message, username, password
        self.ready = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.client: MqttClient | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            client = MqttClient(*self.endpoint, client_id=f"{self.name}-{os.getpid()}", username=self.username,
                                password=self.password, on_message=self.on_message, max_inflight=1000)
            try:
                await client.connect(5)
                self.client = client
                await client.subscribe([(t, 1) for t in self.topics])
                self.ready.set()
                await client.disconnected
            except MqttError:
                pass
            finally:
                self.ready.clear()
                self.client = None
                with contextlib.suppress(Exception):
                    await client.disconnect()
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        if self.client is not None:
            with contextlib.suppress(Exception):
                await self.client.disconnect()


class Monitor:
    """What ops would see (agent.ops.fleet.Fleet over the fleet's topics), and the broker's $SYS counters."""

    def __init__(self) -> None:
        self.fleet = Fleet()
        self.sys: dict[str, list[tuple[float, float]]] = {}
        self.reports: list[tuple[float, str, dict[str, Any]]] = []  # live config/reported (time, gateway, doc)

    def on_message(self, msg: Message) -> None:
        if msg.topic.startswith("$SYS/"):
            with contextlib.suppress(ValueError):
                self.sys.setdefault(msg.topic, []).append((time.time(), float(msg.payload)))
            return
        self.fleet.apply(msg.topic, msg.payload, live=True)
        if msg.topic.endswith("/config/reported") and not msg.retain and msg.payload:
            with contextlib.suppress(ValueError):
                parts = msg.topic.split("/")
                self.reports.append((time.time(), f"{parts[2]}/{parts[3]}", json.loads(msg.payload)))

    def online(self, keys: set[str]) -> int:
        return sum(1 for g in self.fleet.gateways.values() if str(g.key) in keys and g.online)

    def on_version(self, keys: set[str], version: int) -> int:
        return sum(1 for g in self.fleet.gateways.values()
                   if str(g.key) in keys and (g.config_report or {}).get("version") == version
                   and (g.config_report or {}).get("status") == "applied")

    def sys_rate(self, topic: str, t0: float, t1: float) -> float | None:
        samples = [s for s in self.sys.get(topic, []) if t0 <= s[0] <= t1]
        if len(samples) < 2 or samples[-1][0] - samples[0][0] < 1:
            return None
        return (samples[-1][1] - samples[0][1]) / (samples[-1][0] - samples[0][0])


class Ingest:
    """A cloud consumer: one member of the shared subscription group `ingest`."""

    def __init__(self) -> None:
        self.messages = 0
        self.events = 0

    def on_message(self, msg: Message) -> None:
        self.messages += 1
        self.events += msg.payload.count(b'"kind":')


# -- helpers ----------------------------------------------------------------------------------------

def mem_available_kb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1])
    return 0


def cpu_of(pids: list[int]) -> float:
    return sum(cpu_seconds(p) for p in pids)


async def wait_for(predicate: Callable[[], bool], within: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(step)
    return True


async def run_cli(argv: list[str], within: float = 120) -> tuple[int, str, str, float]:
    t0 = time.monotonic()
    proc = await asyncio.create_subprocess_exec(*argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                                stdin=subprocess.DEVNULL, cwd=ROOT)
    try:
        async with asyncio.timeout(within):
            out, err = await proc.communicate()
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise
    return proc.returncode or 0, out.decode(), err.decode(), time.monotonic() - t0


class Workers:
    """The light gateways, `n` worker processes; their last counts from their stdout."""

    def __init__(self, workdir: Path, specs: list[GatewaySpec], public_key: str, plan: Plan) -> None:
        self.children: list[Child] = []
        self.latest: dict[int, dict[str, Any]] = {}
        n = max(1, min(plan.workers, len(specs)))
        for w in range(n):
            part = specs[w::n]
            if not part:
                continue
            d = workdir / f"light-{w}"
            d.mkdir(parents=True, exist_ok=True)
            spec = {"dir": str(d), "public_key": public_key, "rate": plan.rate, "ramp_s": plan.ramp_s,
                    "gateways": [s.to_json() for s in part]}
            (d / "spec.json").write_text(json.dumps(spec))
            self.children.append(Child(f"light-{w}", [sys.executable, "-m", "scripts.fleetsim.light",
                                                      str(d / "spec.json")], workdir, cwd=ROOT,
                                       stdout=subprocess.PIPE))
        self.readers: list[LineReader] = []

    def start(self) -> None:
        for i, child in enumerate(self.children):
            child.start()
            assert child.proc is not None and child.proc.stdout is not None
            self.readers.append(LineReader(child.proc.stdout, partial(self._line, i)))

    def _line(self, i: int, line: str, t: float) -> None:
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                self.latest[i] = json.loads(line)

    def total(self, key: str) -> int:
        return sum(int(c.get(key, 0)) for c in self.latest.values())

    def pids(self) -> list[int]:
        return [c.pid for c in self.children if c.alive()]

    def failed(self) -> str | None:
        for child, reader in zip(self.children, self.readers, strict=False):
            if not child.alive():
                return f"light worker {child.name} exited: " + " | ".join(reader.tail[-5:])
        return None

    def stop(self) -> None:
        for c in self.children:
            c.signal(15)
        for c in self.children:
            c.stop()


# -- the run ---------------------------------------------------------------------------------------

async def run_scenario(plan: Plan, broker: Broker, workdir: Path, out: Out) -> Results:
    """Run the plan against a started broker; everything started here is stopped before returning."""
    res = Results(broker=f"{broker.kind} {broker.version}", total=plan.total, endpoints=broker.endpoints)
    res.mem_available_kb = mem_available_kb()
    keys = keygen(workdir / "keys")
    ejabberd = broker.kind == "ejabberd"
    specs = fleet_specs(plan.total, broker.endpoints, credentials=ejabberd)
    keyset = {s.key for s in specs}
    n_real = min(plan.real, plan.total)
    real_idx = {math.floor(k * plan.total / n_real) for k in range(n_real)} if n_real else set()
    res.real, res.light = len(real_idx), plan.total - len(real_idx)
    creds = Creds()
    ops_auth: list[str] = []
    if ejabberd:
        creds = Creds("o2o-ops", "fleet")
        (workdir / "ops-password").write_text("fleet\n")
        ops_auth = ["--username", "o2o-ops", "--password-file", str(workdir / "ops-password")]

    monitor = Monitor()
    eps = broker.endpoints
    watchers = [Watcher(eps[-1], "fleet-monitor", [*FLEET_TOPICS, "$SYS/broker/publish/messages/+",
                                                   "$SYS/broker/messages/+"], monitor.on_message, creds.username, creds.password)]
    # The cloud's consumers: two members of one shared subscription group, or (a broker without them) one.
    shared = broker.shared_subscriptions
    ingest = [Ingest() for _ in range(2 if shared else 1)]
    for i, ing in enumerate(ingest):
        topic = "$share/ingest/o2o/v1/+/+/events" if shared else "o2o/v1/+/+/events"
        watchers.append(Watcher(eps[i % len(eps)], f"fleet-ingest-{i}", [topic], ing.on_message, creds.username,
                                creds.password))
    if not shared:
        res.notes.append(f"shared subscriptions: {await probe_shared(eps[0], creds)}; one plain consumer instead")
    real: dict[str, Child] = {}
    workers: Workers | None = None
    try:
        for w in watchers:
            w.start()
        if not await wait_for(lambda: all(w.ready.is_set() for w in watchers), 20):
            raise RuntimeError("this run's own MQTT clients could not connect and subscribe to the broker")

        # -- 2. the fleet ---------------------------------------------------------------------------
        t_boot = time.monotonic()
        for s in specs:
            if s.index in real_idx:
                d = workdir / "real" / s.key
                d.mkdir(parents=True)
                (d / "o2o-edge.toml").write_text(minimal_toml(minimal_document(s, d, keys.public_b64)))
                child = Child(s.key, [EXE, "run", "--config", str(d / "o2o-edge.toml")], workdir,
                              stdout=d / "o2o-edge.log")
                child.start()
                real[s.key] = child
        light = [s for s in specs if s.index not in real_idx]
        workers = Workers(workdir, light, keys.public_b64, plan)
        workers.start()
        out(f"starting {len(real)} real daemons and {len(light)} light gateways in {len(workers.children)} "
            f"worker(s) on {broker.kind} {', '.join(f'{h}:{p}' for h, p in eps)} …")

        def check_children() -> None:
            dead = [k for k, c in real.items() if not c.alive()]
            if dead:
                log = (workdir / "real" / dead[0] / "o2o-edge.log").read_text()[-1500:]
                raise RuntimeError(f"real gateway {dead[0]} exited; its log ends:\n{log}")
            if workers is not None and (why := workers.failed()):
                raise RuntimeError(why)

        async def all_online() -> bool:
            deadline = time.monotonic() + plan.online_timeout_s
            while monitor.online(keyset) < plan.total:
                check_children()
                if time.monotonic() > deadline:
                    return False
                await asyncio.sleep(0.1)
            return True

        if not await all_online():
            raise RuntimeError(f"only {monitor.online(keyset)} of {plan.total} gateways online after "
                               f"{plan.online_timeout_s:g} s")
        res.all_online_s = time.monotonic() - t_boot
        out(f"all {plan.total} online after {res.all_online_s:.1f} s")

        # -- 3. memory ------------------------------------------------------------------------------
        await asyncio.sleep(3)
        res.real_rss_kb = [rss_kb(c.pid) for c in real.values()]
        res.real_pss_kb = [pss_kb(c.pid) for c in real.values()]
        if light:
            res.light_rss_kb_per_gw = sum(rss_kb(p) for p in workers.pids()) / len(light)

        # -- 4. steady traffic ----------------------------------------------------------------------
        t0, c0 = time.time(), time.monotonic()
        b0, w0 = cpu_of(broker.pids()), cpu_of(workers.pids())
        r0 = {k: cpu_seconds(c.pid) for k, c in real.items()}
        a0, m0, e0 = workers.total("events_acked"), sum(i.messages for i in ingest), sum(i.events for i in ingest)
        split0 = [i.messages for i in ingest]
        await asyncio.sleep(plan.steady_s)
        check_children()
        el = time.monotonic() - c0
        res.steady_s = el
        res.broker_cpu_pct = 100 * (cpu_of(broker.pids()) - b0) / el
        res.broker_rss_kb = sum(rss_kb(p) for p in broker.pids())
        res.workers_cpu_pct = 100 * (cpu_of(workers.pids()) - w0) / el
        res.real_cpu_pct = [100 * (cpu_seconds(c.pid) - r0[k]) / el for k, c in real.items()]
        res.events_acked_per_s = (workers.total("events_acked") - a0) / el
        res.ingest_msgs_per_s = (sum(i.messages for i in ingest) - m0) / el
        res.ingest_events_per_s = (sum(i.events for i in ingest) - e0) / el
        res.ingest_split = [i.messages - s for i, s in zip(ingest, split0, strict=True)]
        res.broker_in_per_s = monitor.sys_rate("$SYS/broker/publish/messages/received", t0, time.time())
        res.broker_out_per_s = monitor.sys_rate("$SYS/broker/publish/messages/sent", t0, time.time())
        out(f"steady {el:.0f} s: broker {res.broker_cpu_pct:.0f}% of a core, {res.ingest_events_per_s:,.0f} events/s "
            f"to the consumers")

        # -- 5. ops push --all ----------------------------------------------------------------------
        push_file = workdir / "push.toml"
        push_file.write_text(PUSH_TOML)
        host, port = eps[0]
        applied_before = workers.total("applied")
        t_push = time.time()
        code, pout, perr, wall = await run_cli([EXE, "ops", "push", str(push_file), "--all", "--key",
                                                str(keys.private_path), "--host", host, "--port", str(port),
                                                *ops_auth, "--state-dir", str(workdir / "ops-state")], within=180)
        res.push_exit, res.push_wall_s, res.push_output = code, wall, pout + perr
        first = pout.splitlines()[0] if pout else ""
        with contextlib.suppress(ValueError, IndexError):
            res.push_version = int(first.split(" as version ")[1].split()[0])
            res.push_targets = int(first.split(" to ")[-1].split()[0])
        res.push_table_applied = sum(1 for line in pout.splitlines() if "  applied" in line)
        if res.push_version is not None:
            v, n = res.push_version, res.push_targets or plan.total
            await wait_for(lambda: monitor.on_version(keyset, v) >= n, 30)
            res.push_applied = monitor.on_version(keyset, v)
            times: dict[str, float] = {}
            for t, gw, doc in monitor.reports:
                if t >= t_push and doc.get("version") == v and doc.get("status") == "applied":
                    times.setdefault(gw, t)
            if times and len(times) >= n:
                res.push_all_applied_s = max(times.values()) - t_push
        out(f"ops push --all: exit {code} in {wall:.1f} s, pushed to {res.push_targets}, {res.push_applied} of "
            f"{plan.total} applied version {res.push_version}")
        if code != 0:
            res.notes.append("ops push output:\n" + (pout + perr)[-3000:])

        # -- 6. ops fleet ---------------------------------------------------------------------------
        fhost, fport = eps[-1]
        fleet_argv = [EXE, "ops", "fleet", "--host", fhost, "--port", str(fport), *ops_auth]
        for _ in range(max(1, plan.fleet_runs)):
            code, fout, ferr, wall = await run_cli(fleet_argv)
            res.fleet_times_s.append(wall)
            res.fleet_summary = (fout.splitlines() or [ferr])[0]
        listed = await fleet_json(fleet_argv, keyset, res.push_version)
        res.fleet_listed, res.fleet_online, res.fleet_on_version, res.fleet_desired = listed
        out(f"ops fleet: {statistics.median(res.fleet_times_s):.2f} s: {res.fleet_summary}")

        if len(eps) > 1:
            await cluster_checks(res, eps, specs, keyset, real_idx, push_file, keys.private_path, ops_auth, creds,
                                 workdir, monitor, out)

        # -- 7. broker restart ----------------------------------------------------------------------
        if plan.restart:
            if workers is not None and light:
                # the workers report their counts once a second: wait for the push to be in them, or the
                # re-applied count after the restart would include the push itself
                await wait_for(lambda: workers.total("applied") - applied_before >= len(light), 10)
            applied_mid = workers.total("applied")
            reports_mid = len(monitor.reports)
            res.storm_down_s = plan.down_s
            broker.stop()
            await asyncio.sleep(plan.down_s)
            t_up = time.time()
            broker.start()
            cpu0 = cpu_of(broker.pids())
            ids = {s.client_id for s in specs}

            def back() -> dict[str, float]:
                firsts: dict[str, float] = {}
                for t, cid in broker.connects_since(t_up):
                    if cid in ids:
                        firsts.setdefault(cid, t)
                return firsts

            deadline = time.monotonic() + plan.back_timeout_s
            while len(back()) < plan.total and time.monotonic() < deadline:
                check_children()
                await asyncio.sleep(0.1)
            firsts = back()
            res.storm_back = len(firsts)
            if firsts:
                last = max(firsts.values())
                res.storm_all_back_s = last - t_up if len(firsts) == plan.total else None
                hist = [0] * (int(last - t_up) + 1)
                for t in firsts.values():
                    hist[int(t - t_up)] += 1
                res.storm_histogram = hist
                res.storm_peak_per_s = max(hist)
                res.storm_broker_cpu_pct = 100 * (cpu_of(broker.pids()) - cpu0) / max(0.5, time.time() - t_up)
            out(f"broker restart ({plan.down_s:g} s down): {res.storm_back} of {plan.total} back, the last after "
                f"{res.storm_all_back_s if res.storm_all_back_s is not None else float('nan'):.1f} s, peak "
                f"{res.storm_peak_per_s} connects/s")
            await wait_for(lambda: monitor.online(keyset) >= plan.total, 30)
            await asyncio.sleep(2)
            listed = await fleet_json(fleet_argv, keyset, res.push_version)
            _, res.after_storm_online, res.after_storm_on_version, _ = listed
            res.reapplied_after_storm = (workers.total("applied") - applied_mid) + sum(
                1 for _, _, d in monitor.reports[reports_mid:] if d.get("trigger") != "connect")
            if workers.total("applied") - applied_before < len(light):
                res.notes.append(f"light gateways applied {workers.total('applied') - applied_before} pushes, "
                                 f"expected {len(light)}")
        res.rejected = workers.total("rejected") + sum(1 for _, _, d in monitor.reports if d.get("status") == "rejected")
        return res
    finally:
        if workers is not None:
            workers.stop()
        for c in real.values():
            c.signal(15)
        for c in real.values():
            c.stop()
        for w in watchers:
            await w.stop()


async def cluster_checks(res: Results, eps: list[tuple[str, int]], specs: list[GatewaySpec], keyset: set[str],
                         real_idx: set[int], push_file: Path, key: Path, ops_auth: list[str], creds: Creds,
                         workdir: Path, monitor: Monitor, out: Out) -> None:
    """What each node of a cluster shows `ops fleet`, a push through node 1 to a gateway on the last node,
    and on which nodes a retained message published on each node can be read."""
    for host, port in eps:
        listed, online, _, _ = await fleet_json([EXE, "ops", "fleet", "--host", host, "--port", str(port), *ops_auth],
                                                keyset, None)
        res.fleet_by_node.append((port, listed, online))
    out("ops fleet per node: " + ", ".join(f":{p} lists {n} ({o} online)" for p, n, o in res.fleet_by_node))
    other = next(s for s in specs if s.port == eps[-1][1] and s.index not in real_idx)
    host, port = eps[0]
    code, pout, perr, _ = await run_cli([EXE, "ops", "push", str(push_file), "--store", other.store, "--gateway",
                                            other.gateway, "--key", str(key), "--host", host, "--port", str(port),
                                            *ops_auth, "--state-dir", str(workdir / "ops-state")])
    row = next((line for line in pout.splitlines() if line.startswith(other.key)), (pout + perr).strip()[-300:])
    version = None
    with contextlib.suppress(ValueError, IndexError):
        version = int(pout.splitlines()[0].split(" as version ")[1].split()[0])
    # What the gateway did, seen live by this run's watcher (on the last node)
    seen = await wait_for(lambda: (monitor.fleet.get(GatewayKey(other.store, other.gateway)).config_report or {})
                          .get("version") == version, 10)
    report = monitor.fleet.get(GatewayKey(other.store, other.gateway)).config_report or {}
    res.cross_push = (f"`ops push --store {other.store} --gateway {other.gateway}` via :{port} (it is on :{other.port}): "
                      f"exit {code}: {' '.join(row.split())}; the gateway's config/reported: "
                      + (f"{report.get('status')} v{report.get('version')}" if seen else f"no v{version} within 10 s"))
    out(res.cross_push)
    # Retained messages: one published on each node, read with a wildcard on each node.
    for i, (h, p) in enumerate(eps):
        client = MqttClient(h, p, client_id=f"fleet-retain-pub-{i}-{os.getpid()}", username=creds.username,
                            password=creds.password)
        await client.connect(5)
        await client.publish(f"o2o/ops/retained-probe/node{i + 1}", f"published on :{p}".encode(), retain=True)
        await client.disconnect()
    await asyncio.sleep(1)
    for h, p in eps:
        got: list[str] = []

        def take(m: Message, got: list[str] = got) -> None:
            got.append(m.topic.rsplit("/", 1)[1])

        client = MqttClient(h, p, client_id=f"fleet-retain-sub-{p}-{os.getpid()}", username=creds.username,
                            password=creds.password, on_message=take)
        await client.connect(5)
        await client.subscribe([("o2o/ops/retained-probe/+", 1)])
        await asyncio.sleep(1)
        await client.disconnect()
        res.retained_seen.append(f"subscribed on :{p}, got retained from {', '.join(sorted(got)) or 'none'}")
    out("retained: " + "; ".join(res.retained_seen))


async def probe_shared(endpoint: tuple[str, int], creds: Creds) -> str:
    """What the broker answers to a $share subscription (the exact refusal)."""
    client = MqttClient(*endpoint, client_id=f"fleet-share-probe-{os.getpid()}", username=creds.username,
                        password=creds.password)
    try:
        await client.connect(5)
        await client.subscribe([("$share/ingest/o2o/v1/+/+/events", 1)], ack_timeout=5)
        return "accepted"
    except MqttError as exc:
        return f"refused: {exc}"
    finally:
        with contextlib.suppress(Exception):
            await client.disconnect()


async def fleet_json(argv: list[str], keyset: set[str], version: int | None) -> tuple[int, int, int, int]:
    """`ops fleet --json`: (gateways of this fleet listed, online, running `version`, with `version` desired)."""
    _, out, _, _ = await run_cli([*argv, "--json"])
    try:
        rows = json.loads(out)
    except ValueError:
        return 0, 0, 0, 0
    mine = [r for r in rows if f"{r['store']}/{r['gateway']}" in keyset]
    return (len(mine), sum(1 for r in mine if r["state"] == "online"),
            sum(1 for r in mine if version is not None and r["config_version"] == version),
            sum(1 for r in mine if version is not None and r["config_desired"] == version))


# -- the table ----------------------------------------------------------------------------------------

def _kb(values: list[int]) -> str:
    if not values:
        return "-"
    return (f"{statistics.mean(values) / 1024:.1f} MiB (min {min(values) / 1024:.1f}, "
            f"max {max(values) / 1024:.1f})")


def render(res: Results, plan: Plan) -> list[str]:
    def f(v: float | None, fmt: str = "{:.1f}") -> str:
        return "-" if v is None else fmt.format(v)

    pss = statistics.mean(res.real_pss_kb) if res.real_pss_kb else None
    fit = int((res.mem_available_kb - 1024 * 1024) / pss) if pss else None
    real_cpu = statistics.mean(res.real_cpu_pct) if res.real_cpu_pct else None
    rows = [
        ("broker", f"{res.broker} on {', '.join(f'{h}:{p}' for h, p in res.endpoints)}"),
        ("gateways", f"{res.total}: {res.real} real `o2o-edge run`, {res.light} light (agent code, "
                     f"{plan.workers} worker processes); {res.total // 2} stores"),
        ("all online after start", f"{f(res.all_online_s)} s (light ones started over {plan.ramp_s:g} s)"),
        ("event load", f"{plan.rate:g} events/s per light gateway; PUBACKed {f(res.events_acked_per_s, '{:,.0f}')} "
                       f"events/s"),
        ("cloud consumers", f"{f(res.ingest_events_per_s, '{:,.0f}')} events/s in "
                                            f"{f(res.ingest_msgs_per_s, '{:,.0f}')} msgs/s, split "
                                            f"{' / '.join(map(str, res.ingest_split)) or '-'}"),
        ("broker throughput ($SYS)", f"in {f(res.broker_in_per_s, '{:,.0f}')} / out "
                                     f"{f(res.broker_out_per_s, '{:,.0f}')} PUBLISH/s"),
        ("broker CPU, steady", f"{f(res.broker_cpu_pct, '{:.0f}')}% of one core over {res.steady_s:.0f} s; "
                               f"RSS {res.broker_rss_kb / 1024:.0f} MiB"),
        ("light workers CPU", f"{f(res.workers_cpu_pct, '{:.0f}')}% of one core in all; "
                              f"{f(res.light_rss_kb_per_gw, '{:.0f}')} KiB RSS per light gateway"),
        ("ops push --all", f"exit {res.push_exit}; pushed to {res.push_targets}; {res.push_applied}/{res.total} "
                           f"applied v{res.push_version}; "
                           f"last applied {f(res.push_all_applied_s)} s after start; command "
                           f"{f(res.push_wall_s)} s (target < 30 s)"),
        ("ops fleet", f"{' / '.join(f'{t:.2f}' for t in res.fleet_times_s)} s; --json lists {res.fleet_listed}, "
                      f"{res.fleet_online} online, {res.fleet_on_version} on v{res.push_version}, "
                      f"{res.fleet_desired} with its retained config/set seen"),
    ]
    if res.storm_down_s is not None:
        rows += [
            ("broker restart", f"down {res.storm_down_s:g} s; {res.storm_back}/{res.total} reconnected; "
                               f"all back {f(res.storm_all_back_s)} s after it was started again"),
            ("connect storm", f"peak {res.storm_peak_per_s} connects/s; per second: "
                              f"{' '.join(map(str, res.storm_histogram))}"),
            ("broker CPU, storm", f"{f(res.storm_broker_cpu_pct, '{:.0f}')}% of one core until all were back"),
            ("after the restart", f"{res.after_storm_online} online, {res.after_storm_on_version} on "
                                  f"v{res.push_version}; {res.reapplied_after_storm} re-applied; "
                                  f"{res.rejected} rejected in the run"),
        ]
    if res.fleet_by_node:
        rows += [
            ("ops fleet, per node", ", ".join(f":{p} lists {n} ({o} online)" for p, n, o in res.fleet_by_node)),
            ("push across nodes", res.cross_push),
            ("retained across nodes", "; ".join(res.retained_seen)),
        ]
    rows += [
        ("real daemon, empty config", f"RSS {_kb(res.real_rss_kb)}; PSS {_kb(res.real_pss_kb)}; "
                                      f"idle CPU {f(real_cpu, '{:.1f}')}% of a core each"),
        ("real daemons that fit (memory)", f"~{fit if fit is not None else '-'} by PSS in "
                                           f"{res.mem_available_kb / 1024 / 1024:.1f} GiB available "
                                           f"(1 GiB kept free); run capped at {plan.real}"),
    ]
    width = max(len(k) for k, _ in rows)
    lines = [f"{k:<{width}}  {v}" for k, v in rows]
    return lines + [f"note: {n}" for n in res.notes]
