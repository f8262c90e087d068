"""The daemon's lifecycle: build components from config, supervise them, stop cleanly.

Start: outbox (open, writer task) -> hub subscribers -> readers (supervised)
-> HTTP server -> READY=1. Stop (SIGTERM/SIGINT): STOPPING=1 -> readers
stop -> HTTP stops -> the outbox writer drains what the hub queued and
commits it -> checkpoint -> exit, all within `STOP_BUDGET_S`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from agent import __version__
from agent.activity import Activity
from agent.ble import BleRunner
from agent.catalog import CatalogDoc, LocalData, SoldDoc
from agent.config import Config, ReaderConfig, load_config, split_host_port
from agent.config_push import PushedConfigStore, verify_push
from agent.consent import ConsentStore
from agent.errors import ConfigError, ConfigProblem, StorageError
from agent.events import Event
from agent.guest_wifi import GuestWifi
from agent.health import assess
from agent.hub import Hub, Subscription
from agent.outbox import Outbox
from agent.readers import ReaderRunner
from agent.rules.engine import RulesEngine
from agent.sdnotify import Notifier, watchdog_interval_s
from agent.supervisor import supervise
from agent.sync.downlink import Downlink
from agent.sync.uplink import Uplink, birth_message
from agent.web.app import make_app
from agent.wifi_presence import WifiPresence

__all__ = ["STOP_BUDGET_S", "Agent"]

log = logging.getLogger(__name__)

# systemd's default TimeoutStopSec is 90 s, but a gateway on a UPS has seconds: stop within 5.
STOP_BUDGET_S = 4.5
# How often a one-line summary goes to the log (reads, events, outbox), so journald shows life.
SUMMARY_EVERY_S = 60.0
# Hand freed outbox pages back to the file system this often.
VACUUM_EVERY_S = 300.0


class Agent:
    def __init__(self, config: Config, *, demo: bool = False, config_path: Path | None = None) -> None:
        # The local file is the fallback; a newer push kept on disk wins for the keys it may set.
        self.local_config = config
        self.pushed = PushedConfigStore(config.storage.path.parent)
        pushed = self.pushed.load(config)
        if pushed is not None:
            log.info("config: using pushed version %d over the local file's %d", pushed.version, config.version)
        config = pushed or config
        self.config = config
        self.demo = demo
        self.config_path = config_path
        self.hub = Hub()
        self.outbox = Outbox(
            config.storage.path,
            max_bytes=config.outbox.max_bytes,
            commit_max=config.outbox.commit_max,
            synchronous=config.storage.synchronous,
        )
        self.readers: dict[str, ReaderRunner] = {}
        self._reader_tasks: dict[str, asyncio.Task[None]] = {}
        self._sim_ports: dict[str, str] = {}
        self.uplink: Uplink | None = None
        self.downlink: Downlink | None = None
        self.rules: RulesEngine | None = None
        self.ble: BleRunner | None = None
        self.guest_wifi: GuestWifi | None = None
        self.wifi_presence: WifiPresence | None = None
        self.consents = ConsentStore(config.storage.path.parent / "consents.db")
        self._rules_task: asyncio.Task[None] | None = None
        self.local_data = LocalData(config.storage.path.parent / "local.db")
        self._config_lock = asyncio.Lock()
        self.last_push: dict[str, Any] | None = None
        self.activity: Activity | None = None
        self._health_cache: tuple[float, bool, str] = (0.0, True, "ok")
        self._log_tail = RecentLogs()
        self.simulators: list[Any] = []
        self.notifier = Notifier()
        self.started_at = time.time()
        self._t0 = time.monotonic()
        self._tasks: list[asyncio.Task[None]] = []
        self._outbox_sub: Subscription | None = None
        self._writer_task: asyncio.Task[None] | None = None
        self._runner: web.AppRunner | None = None
        self.http_port: int | None = None
        self.ready = asyncio.Event()
        token = config.http.api_token
        self.api_token = token.get_secret_value() if token is not None else None

    # -- lifecycle ---------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event | None = None) -> None:
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        try:
            await self.start()
            await stop.wait()
            log.info("stopping")
        finally:
            await self.shutdown()
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(sig)

    async def start(self) -> None:
        cfg = self.config
        logging.getLogger().addHandler(self._log_tail)
        log.info("o2o-edge %s starting: store %s, gateway %s, config version %d",
                 __version__, cfg.store.id, cfg.store.gateway, cfg.version)
        await self.outbox.open()
        await self.local_data.__aenter__()
        self._outbox_sub = self.hub.subscribe("outbox", maxsize=cfg.outbox.queue_size)
        self.activity = Activity(self.hub, lambda: self.outbox.depth)
        self._tasks.append(asyncio.create_task(supervise("staff page feed", self.activity.run), name="activity"))
        self._writer_task = asyncio.create_task(self.outbox.run_writer(self._outbox_sub), name="outbox-writer")
        self._tasks.append(asyncio.create_task(supervise("event log", self._log_events), name="event-log"))

        self._start_rules(cfg)
        readers = self._effective_readers(cfg)
        for rc in readers:
            self._start_reader(rc, cfg)

        if cfg.wifi.portal is not None:
            await self.consents.open()
            self.guest_wifi = GuestWifi(cfg, cfg.wifi.portal, self.hub, self.consents)
            self._tasks.append(asyncio.create_task(supervise("guest wifi", self.guest_wifi.run), name="wifi"))
        if cfg.wifi.presence is not None:
            gw = self.guest_wifi

            def known(mac: str) -> str | None:
                if gw is None:
                    return None
                return next((s.consent_id for s in gw.sessions.values() if s.device == mac), None)

            self.wifi_presence = WifiPresence(cfg.wifi.presence, self.hub, cfg.store.gateway, known=known)
            self._tasks.append(asyncio.create_task(supervise("wifi presence", self.wifi_presence.run), name="presence"))
        if cfg.ble is not None and cfg.ble.enabled:
            ble_cfg = cfg.ble
            if self.demo and ble_cfg.source.startswith("replay:"):
                ble_cfg = self._demo_capture(ble_cfg)
            self.ble = BleRunner(ble_cfg, self.hub, cfg.store.gateway)
            self._tasks.append(asyncio.create_task(supervise("ble", self.ble.run), name="ble"))
        if cfg.mqtt.enabled:
            self.downlink = Downlink(self)
            self.uplink = Uplink(cfg, self.outbox, birth=self._birth, on_message=self.downlink.on_message)
            self._tasks.append(asyncio.create_task(supervise("mqtt uplink", self.uplink.run), name="uplink"))
            self._tasks.append(asyncio.create_task(supervise("mqtt downlink", self.downlink.run), name="downlink"))
        if self.demo and self.local_data.catalog_version == 0:
            await self._load_demo_catalog()
        await self._start_http()
        self._tasks.append(asyncio.create_task(supervise("housekeeping", self._housekeeping), name="housekeeping"))
        self.hub.publish(Event("agent.started", cfg.store.gateway, {
            "version": __version__, "config_version": cfg.version, "readers": [r.id for r in readers],
        }))
        self.notifier.ready(f"{len(readers)} reader(s), outbox depth {self.outbox.depth}")
        interval = watchdog_interval_s()
        if interval:
            self._tasks.append(asyncio.create_task(supervise("watchdog", lambda: self._watchdog(interval)),
                                                   name="watchdog"))
        self.ready.set()
        log.info("ready: %d reader(s), http on %s, outbox %s", len(readers), cfg.http.listen, cfg.storage.path)

    async def shutdown(self) -> None:
        self.notifier.stopping()
        try:
            async with asyncio.timeout(STOP_BUDGET_S):
                await self._stop_components()
        except TimeoutError:
            log.error("shutdown took longer than %.1fs; exiting anyway (committed events are safe)", STOP_BUDGET_S)
        finally:
            self.notifier.close()
            logging.getLogger().removeHandler(self._log_tail)

    async def _stop_components(self) -> None:
        if self.uplink is not None:
            await self.uplink.close()
        tasks = self._tasks + list(self._reader_tasks.values()) + ([self._rules_task] if self._rules_task else [])
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        self._reader_tasks.clear()
        for sim in self.simulators:
            sim.stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._outbox_sub is not None:
            self._outbox_sub.close()  # the writer drains what is queued, then returns
        if self._writer_task is not None:
            await self._writer_task
            self._writer_task = None
        await self.outbox.close()
        await self.local_data.close()
        await self.consents.close()
        log.info("stopped: %d event(s) committed this run, %d waiting in the outbox",
                 self.outbox.committed, self.outbox.depth)

    # -- components --------------------------------------------------------------------------

    async def _supervise_reader(self, runner: ReaderRunner) -> None:
        def crashed(exc: BaseException, restarts: int, wait: float) -> None:
            runner.state = "restarting"
            runner.error = f"{type(exc).__name__}: {exc} (restart #{restarts} in {wait:.0f}s)"

        await supervise(f"reader {runner.config.id}", runner.run, on_crash=crashed)

    def _start_rules(self, cfg: Config) -> None:
        if not (cfg.checkout.stations or cfg.checkout.gates):
            self.rules = None
            return
        self.rules = RulesEngine(cfg, self.hub, self.local_data)
        self._rules_task = asyncio.create_task(supervise("rules", self.rules.run), name="rules")

    async def _stop_rules(self) -> None:
        if self._rules_task is not None:
            self._rules_task.cancel()
            await asyncio.gather(self._rules_task, return_exceptions=True)
            self._rules_task = None
        self.rules = None

    def _demo_capture(self, ble: Any) -> Any:
        """--demo: the BLE replay capture is made from the project's own encoders if it is not there."""
        from drivers.ble.simulate import write_demo_capture

        spec, _, query = ble.source[len("replay:"):].partition("?")
        path = Path(spec)
        if not path.is_absolute() and self.config_path is not None:
            path = (self.config_path.parent / path).resolve()
        if not path.exists():
            write_demo_capture(path)
            log.info("demo: wrote a BLE capture of two beacons to %s", path)
        return ble.model_copy(update={"source": f"replay:{path}" + (f"?{query}" if query else "")})

    async def _load_demo_catalog(self) -> None:
        """--demo: the simulated items get names and prices, so baskets show what a shopper would see."""
        from drivers.rfid.epc import gtin_check_digit
        from drivers.rfid.simulator import DEMO_PRODUCTS

        products = [{"gtin": body + str(gtin_check_digit(body)), "name": name, "price": f"{19 + 10 * i}.90"}
                    for i, (name, body) in enumerate(DEMO_PRODUCTS)]
        doc = {"version": 1, "currency": "EUR", "products": products}
        import json

        report = await self.catalog_from_cloud(json.dumps(doc).encode())
        log.info("demo: catalog of %d products loaded (%s)", len(products), report["status"])

    def _effective_readers(self, cfg: Config) -> list[ReaderConfig]:
        readers = list(cfg.rfid.readers)
        return self._start_simulators(readers) if self.demo else readers

    def _start_reader(self, rc: ReaderConfig, cfg: Config) -> None:
        runner = ReaderRunner(rc, self.hub, gone_after_s=cfg.rfid.gone_after_s, keep_raw_reads=cfg.rfid.keep_raw_reads)
        self.readers[rc.id] = runner
        self._reader_tasks[rc.id] = asyncio.create_task(self._supervise_reader(runner), name=f"reader-{rc.id}")

    async def _stop_reader(self, reader_id: str) -> None:
        task = self._reader_tasks.pop(reader_id, None)
        self.readers.pop(reader_id, None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def restart_reader(self, reader_id: str) -> None:
        runner = self.readers[reader_id]
        await self._stop_reader(reader_id)
        self._start_reader(runner.config, self.config)

    async def _apply(self, new: Config) -> None:
        """Switch to `new`: readers whose config changed are rebuilt, the others keep running.

        Ports of new or moved readers are opened once first; if one cannot be opened,
        nothing changes and ConfigError(rolled_back) says why.
        """
        old = self.config
        old_readers = {r.id: r for r in self._effective_readers(old)}
        new_readers = {r.id: r for r in self._effective_readers(new)}
        rfid_changed = (old.rfid.gone_after_s, old.rfid.keep_raw_reads) != (new.rfid.gone_after_s, new.rfid.keep_raw_reads)
        changed = [rid for rid, rc in new_readers.items() if rid not in old_readers or old_readers[rid] != rc or rfid_changed]
        removed = [rid for rid in old_readers if rid not in new_readers]
        in_use = {r.port for rid, r in old_readers.items() if rid not in removed}
        problems = []
        for i, rc in enumerate(new.rfid.readers):
            if rc.id in changed and new_readers[rc.id].port not in in_use:
                error = await asyncio.get_running_loop().run_in_executor(None, _probe_port, new_readers[rc.id])
                if error is not None:
                    problems.append(ConfigProblem(f"rfid.readers[{i}].port", f"cannot open {rc.port}: {error}"))
        if problems:
            raise ConfigError(problems, "config/set", rolled_back=True)
        for rid in removed + [r for r in changed if r in self.readers]:
            await self._stop_reader(rid)
        self.config = new
        if old.checkout != new.checkout:
            await self._stop_rules()
            self._start_rules(new)
        for rid in changed:
            self._start_reader(new_readers[rid], new)
        if self.uplink is not None:
            self.uplink.config = new

    async def apply_pushed_config(self, payload: bytes) -> int:
        async with self._config_lock:
            new = verify_push(payload, self.local_config, self.config)
            await self._apply(new)
            try:
                self.pushed.save(new)
            except OSError as exc:
                log.error("config: version %d applied but not persisted: %s", new.version, exc)
            self.last_push = {"version": new.version, "status": "applied", "at": time.time()}
            self.hub.publish(Event("config.applied", self.config.store.gateway, {"version": new.version}))
            log.info("config: version %d applied", new.version)
            return new.version

    async def reload_config(self) -> int:
        """Re-read the local file (and the kept push); apply what changed."""
        async with self._config_lock:
            if self.config_path is None:
                raise ConfigError([ConfigProblem("", "no config file to reload")], "reload-config")
            local = await asyncio.get_running_loop().run_in_executor(None, load_config, self.config_path)
            for section in ("storage", "http", "mqtt"):
                if getattr(local, section) != getattr(self.local_config, section):
                    raise ConfigError([ConfigProblem(section, "changed in the file: restart the service to apply it")],
                                      "reload-config")
            new = self.pushed.load(local) or local
            await self._apply(new)
            self.local_config = local
            return new.version

    async def catalog_from_cloud(self, payload: bytes) -> dict[str, Any]:
        from pydantic import ValidationError

        from agent.config import format_loc

        try:
            doc = CatalogDoc.model_validate_json(payload)
        except ValidationError as exc:
            errors = [{"path": format_loc(tuple(e["loc"])), "message": e["msg"]} for e in exc.errors()[:50]]
            log.warning("catalog/set rejected: %d problem(s), first: %s", exc.error_count(), errors[0])
            return {"status": "rejected", "errors": errors, "version": None}
        if doc.version <= self.local_data.catalog_version:
            msg = f"stale: version {doc.version} is not newer than {self.local_data.catalog_version}"
            log.warning("catalog/set rejected: %s", msg)
            return {"status": "rejected", "version": doc.version, "errors": [{"path": "version", "message": msg}]}
        await self.local_data.replace_catalog(doc)
        self.hub.publish(Event("catalog.updated", self.config.store.gateway,
                               {"version": doc.version, "currency": doc.currency, "products": len(doc.products)}))
        log.info("catalog: version %d, %d products (%s)", doc.version, len(doc.products), doc.currency)
        return {"status": "applied", "version": doc.version, "products": len(doc.products), "errors": []}

    async def sold_from_cloud(self, payload: bytes) -> None:
        from pydantic import ValidationError

        try:
            doc = SoldDoc.model_validate_json(payload)
        except ValidationError as exc:
            log.warning("sold/add rejected: %s", exc.errors()[0]["msg"])
            self.hub.publish(Event("sold.rejected", self.config.store.gateway,
                                   {"error": exc.errors()[0]["msg"], "problems": exc.error_count()}))
            return
        n = await self.local_data.add_sold(doc.epcs, reason=doc.reason, source="cloud",
                                           ttl_s=self.config.checkout.sold_ttl_days * 86400)
        self.hub.publish(Event("sold.added", self.config.store.gateway, {"count": n, "reason": doc.reason}))
        log.info("sold ledger: %d EPC(s) added (%s)", n, doc.reason)

    def _start_simulators(self, readers: list[ReaderConfig]) -> list[ReaderConfig]:
        """--demo: put a simulated reader on a pty behind each reader that has a [simulator] section."""
        from drivers.rfid.simulator import ManualScenario, PtySimulator, Scenario, ShopfloorScenario

        out = []
        sim_dir = self.config.storage.path.parent / "demo-ports"
        for rc in readers:
            if rc.simulator is None:
                out.append(rc)
                continue
            if rc.id in self._sim_ports:  # already running (a config re-apply)
                out.append(rc.model_copy(update={"port": self._sim_ports[rc.id]}))
                continue
            antennas = sorted(rc.zones) or [1]
            scenario: Scenario
            if rc.simulator.scenario == "idle":
                scenario = ManualScenario()
            else:
                scenario = ShopfloorScenario(tags=rc.simulator.tags, antennas=antennas, seed=hash(rc.id) & 0xFFFF)
            sim = PtySimulator(rc.protocol, scenario, link=sim_dir / rc.id, period_s=rc.simulator.period_s,
                               address=rc.address)
            port = sim.start()
            self._sim_ports[rc.id] = port
            self.simulators.append(sim)
            log.info("demo: simulated %s reader %s on %s", rc.protocol, rc.id, port)
            out.append(rc.model_copy(update={"port": port}))
        return out

    async def _start_http(self) -> None:
        host, port = split_host_port(self.config.http.listen)
        http = self.config.http
        users: dict[str, tuple[str, str]] = {u.name: (u.password_hash, str(u.role)) for u in http.users}
        app = make_app(self, users=users, secure_cookies=http.tls_cert is not None)
        self._runner = web.AppRunner(app, access_log=logging.getLogger("aiohttp.access"), handle_signals=False)
        await self._runner.setup()
        ssl_context = None
        if http.tls_cert is not None and http.tls_key is not None:
            import ssl

            ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ssl_context.load_cert_chain(str(http.tls_cert), str(http.tls_key))
        site = web.TCPSite(self._runner, host, port, reuse_address=True, ssl_context=ssl_context)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.http_port = sockets[0].getsockname()[1] if sockets else port

    async def _log_events(self) -> None:
        """Each event as a log line: info in the demo (so a newcomer sees the flow), debug otherwise."""
        sub = self.hub.subscribe("event-log", maxsize=1000)
        level = logging.INFO if self.demo else logging.DEBUG
        elog = logging.getLogger("agent.events")
        try:
            async for event in sub:
                if elog.isEnabledFor(level):
                    d = event.data
                    detail = " ".join(f"{k}={d[k]}" for k in ("epc", "gtin", "zone", "rssi", "reason", "error")
                                      if d.get(k) is not None)
                    elog.log(level, "%s %s %s", event.kind, event.source, detail)
        finally:
            sub.close()

    async def _housekeeping(self) -> None:
        last_vacuum = time.monotonic()
        while True:
            await asyncio.sleep(SUMMARY_EVERY_S if not self.demo else 15.0)
            readers = ", ".join(f"{r.config.id} {r.state} {r.snapshot().reads_per_s:.0f}/s"
                                for r in self.readers.values())
            st = await self.outbox.stats()
            log.info("summary: readers [%s]; outbox depth %d (%d bytes), committed %d, dropped %d; hub drops %d",
                     readers or "none", st.depth, st.bytes, st.committed, st.dropped,
                     sum(s.dropped for s in self.hub.stats()))
            if time.monotonic() - last_vacuum >= VACUUM_EVERY_S:
                last_vacuum = time.monotonic()
                await self.outbox.vacuum()

    async def _watchdog(self, interval: float) -> None:
        while True:
            ok, reason = await self.health()
            if ok:
                self.notifier.watchdog()
            else:
                log.error("health check failed, not petting the watchdog: %s", reason)
            await asyncio.sleep(interval)

    def config_without_secrets(self) -> dict[str, Any]:
        """The running config for a diagnostics bundle: tokens, passwords and hashes masked."""
        doc = self.config.model_dump(mode="json")

        def mask(value: Any, key: str = "") -> Any:
            if isinstance(value, dict):
                return {k: mask(v, k) for k, v in value.items()}
            if isinstance(value, list):
                return [mask(v, key) for v in value]
            if key in ("token", "api_token", "password", "password_hash") and value is not None:
                return "***"
            return value

        return mask(doc)  # type: ignore[no-any-return]

    def recent_logs(self) -> list[str]:
        return list(self._log_tail.lines)

    def _birth(self) -> dict[str, Any]:
        return birth_message(self.config, __version__, self.started_at, {"readers": list(self.readers)})

    def mqtt_status(self) -> dict[str, Any]:
        if self.uplink is None:
            return {"enabled": False, "connected": False, "last_error": "disabled in config ([mqtt] enabled = false)",
                    "reconnects": 0}
        st = self.uplink.stats()
        lat = sorted(self.uplink.publish_latency_s[-200:])
        return {
            "enabled": True,
            "publish_latency_p50_s": round(lat[len(lat) // 2], 4) if lat else None,
            "connected": st.connected,
            "last_error": st.last_error,
            "reconnects": st.reconnects,
            "broker": f"{self.config.mqtt.host}:{self.config.mqtt.port}",
            "connected_since": st.connected_since,
            "last_ack": st.last_ack,
            "batches_acked": st.batches_acked,
            "events_acked": st.events_acked,
            "inflight": st.inflight,
        }

    # -- views for the web side --------------------------------------------------------------

    async def health(self) -> tuple[bool, str]:
        try:
            async with asyncio.timeout(2.0):
                await self.outbox.check_writable()
        except TimeoutError:
            return False, "outbox: write check timed out (disk too slow?)"
        except StorageError as exc:
            return False, str(exc)
        if self._writer_task is not None and self._writer_task.done():
            return False, "outbox writer stopped"
        return True, "ok"

    async def status(self) -> dict[str, Any]:
        cfg = self.config
        ob = await self.outbox.stats()
        ok, reason = await self._cached_health()
        doc = {
            "store": cfg.store.id,
            "gateway": cfg.store.gateway,
            "version": __version__,
            "uptime_s": round(time.monotonic() - self._t0, 1),
            "started_at": self.started_at,
            "pid": os.getpid(),
            "readers": [r.snapshot().to_dict() for r in self.readers.values()],
            "outbox": {
                "depth": ob.depth,
                "bytes": ob.bytes,
                "oldest_age_s": None if ob.oldest_age_s is None else round(ob.oldest_age_s, 1),
                "dropped": ob.dropped,
                "dropped_by_priority": ob.dropped_by_priority,
                "committed": ob.committed,
                "write_errors": ob.write_errors,
                "disk_bytes": ob.disk_bytes,
                "max_bytes": ob.max_bytes,
            },
            "mqtt": self.mqtt_status(),
            "config": {"version": cfg.version, "path": str(self.config_path) if self.config_path else None,
                       "local_version": self.local_config.version, "last_push": self.last_push},
            "checkout": self.rules.status() if self.rules is not None else None,
            "ble": self.ble.snapshot() if self.ble is not None else None,
            "wifi": {"sessions": self.guest_wifi.snapshot() if self.guest_wifi else [],
                     "auth_failures": self.guest_wifi.auth_failures if self.guest_wifi else 0,
                     "presence": self.wifi_presence.snapshot() if self.wifi_presence else None}
            if self.guest_wifi is not None or self.wifi_presence is not None else None,
            "catalog": {"version": self.local_data.catalog_version, "products": self.local_data.products,
                        "currency": self.local_data.currency},
            "hub": {
                "published": self.hub.published,
                "subscribers": [
                    {"name": s.name, "depth": s.depth, "maxsize": s.maxsize, "dropped": s.dropped}
                    for s in self.hub.stats()
                ],
            },
            "alarms": {"unacknowledged": self.activity.unacknowledged if self.activity else 0},
            "outbox_ok": ok,
            "outbox_error": None if ok else reason,
        }
        doc["health"] = assess(doc)
        return doc

    async def _cached_health(self) -> tuple[bool, str]:
        # The status page polls every few seconds: probe the disk at most once per 5 s.
        at, ok, reason = self._health_cache
        if time.monotonic() - at > 5.0:
            ok, reason = await self.health()
            self._health_cache = (time.monotonic(), ok, reason)
        return ok, reason


class RecentLogs(logging.Handler):
    """The last log lines, for the diagnostics bundle (bounded)."""

    def __init__(self, keep: int = 500) -> None:
        super().__init__(logging.INFO)
        from collections import deque

        self.lines: deque[str] = deque(maxlen=keep)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record))
        except Exception:  # a logging handler must never raise into the code that logs
            self.handleError(record)


def _probe_port(rc: ReaderConfig) -> str | None:
    """Open and close a reader's port once; the reason it fails, or None."""
    import serial

    from drivers.rfid.transport import describe_error

    try:
        serial.serial_for_url(rc.port, baudrate=rc.baudrate, timeout=0.1, exclusive=True).close()
    except (serial.SerialException, OSError, ValueError) as exc:
        return describe_error(exc)
    return None
