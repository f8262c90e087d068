"""The daemon's lifecycle: config -> components -> run -> stop. Features live in the components.

Start: each registered component the config wants, in registry order (the
outbox first, sync last), each one's tasks supervised; then the HTTP
server; then READY=1. A config push switches components in place, starts
the ones it now wants and stops the others. Stop (SIGTERM/SIGINT):
STOPPING=1 -> HTTP stops -> components stop in reverse order (sync says
"offline" first, the outbox drains and closes last), all within
`STOP_BUDGET_S`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiohttp import web

from agent import __version__
from agent.component import Component, Context
from agent.components.outbox import OutboxComponent
from agent.config import Config
from agent.config_push import effective_config
from agent.errors import ConfigError
from agent.hub import Hub
from agent.logs import RecentLogs
from agent.outbox import Outbox
from agent.registry import COMPONENTS
from agent.sdnotify import Notifier, watchdog_interval_s
from agent.status import build_status
from agent.supervisor import supervise
from agent.web.app import make_app, serve

__all__ = ["STOP_BUDGET_S", "Agent"]

log = logging.getLogger(__name__)

# systemd's default TimeoutStopSec is 90 s, but a gateway on a UPS has seconds: stop within 5.
STOP_BUDGET_S = 4.5


class Agent:
    def __init__(self, config: Config, *, demo: bool = False, config_path: Path | None = None,
                 registry: Sequence[type[Component]] | None = None) -> None:
        running = effective_config(config)
        self.registry = list(COMPONENTS if registry is None else registry)
        self.hub = Hub()
        self.outbox = Outbox.from_config(running)
        self.ctx = Context(running, self.hub, self.outbox, config, demo=demo, config_path=config_path)
        self.ctx.reconfigure = self.reconfigure
        self.ctx.status = lambda: build_status(self.ctx, self.registry)
        self.notifier = Notifier()
        self.ready = asyncio.Event()
        self.http_port: int | None = None
        self._tasks: dict[str, list[asyncio.Task[None]]] = {}
        self._logs = RecentLogs()
        self._http: list[web.AppRunner] = []
        self.guest_port: int | None = None
        self._lock = asyncio.Lock()

    def __getitem__(self, key: str) -> Any:
        """The running component with this status key (agent["readers"], agent["mqtt"], …)."""
        return self.ctx.components[key]

    @property
    def config(self) -> Config:
        return self.ctx.config

    async def status(self) -> dict[str, Any]:
        assert self.ctx.status is not None
        return self.ctx.status()

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
        logging.getLogger().addHandler(self._logs)
        log.info("o2o-edge %s starting: store %s, gateway %s, config version %d",
                 __version__, cfg.store.id, cfg.store.gateway, cfg.version)
        for cls in self.registry:
            if cls.wanted(cfg):
                await self._start(cls)
        await self._start_http()
        readers = list(getattr(self.ctx.components.get("readers"), "runners", {}))
        self.ctx.publish("agent.started", {"version": __version__, "config_version": cfg.version, "readers": readers})
        self.notifier.ready(f"{len(readers)} reader(s), outbox depth {self.outbox.depth}")
        interval = watchdog_interval_s()
        if interval:
            self._tasks["watchdog"] = [asyncio.create_task(supervise("watchdog", lambda: self._watchdog(interval)))]
        self.ready.set()
        log.info("ready: %s; http on %s, outbox %s", ", ".join(self.ctx.components), cfg.http.listen,
                 cfg.storage.path)

    async def shutdown(self) -> None:
        self.notifier.stopping()
        try:
            async with asyncio.timeout(STOP_BUDGET_S):
                while self._http:
                    await self._http.pop().cleanup()
                for task in self._tasks.pop("watchdog", []):
                    task.cancel()
                for cls in reversed(self.registry):
                    if cls.key in self.ctx.components:
                        await self._stop(cls.key)
        except TimeoutError:
            log.error("shutdown took longer than %.1fs; exiting anyway (committed events are safe)", STOP_BUDGET_S)
        finally:
            self.notifier.close()
            logging.getLogger().removeHandler(self._logs)
        log.info("stopped: %d event(s) committed this run, %d waiting in the outbox",
                 self.outbox.committed, self.outbox.depth)

    async def _start(self, cls: type[Component]) -> None:
        comp = cls(self.ctx)
        self.ctx.components[cls.key] = comp
        try:
            await comp.start()
        except BaseException:
            del self.ctx.components[cls.key]
            raise
        self._tasks[cls.key] = [asyncio.create_task(supervise(name, fn), name=name) for name, fn in comp.tasks()]
        self._changed()

    async def _stop(self, key: str) -> None:
        await self.ctx.components[key].stopping()
        tasks = self._tasks.pop(key, [])
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        comp = self.ctx.components.pop(key)
        self._changed()
        await comp.stop()

    def _changed(self) -> None:
        for callback in list(self.ctx.on_components_changed):
            callback()

    async def reconfigure(self, new: Config) -> None:
        """Switch to `new`: components check it first (ConfigError, rolled back: nothing changed), then each
        one switches in place, restarts when a section it is built from changed, starts or stops."""
        async with self._lock:
            problems = [p for comp in list(self.ctx.components.values()) for p in await comp.check(new)]
            if problems:
                raise ConfigError(problems, "config/set", rolled_back=True)
            old, self.ctx.config = self.ctx.config, new
            for cls in self.registry:
                comp = self.ctx.components.get(cls.key)
                if comp is not None and not cls.wanted(new):
                    await self._stop(cls.key)
                elif comp is not None:
                    changed = any(getattr(old, s) != getattr(new, s) for s in cls.sections)
                    if changed and not await comp.apply(old, new):
                        await self._stop(cls.key)
                        await self._start(cls)
                elif cls.wanted(new):
                    await self._start(cls)

    async def _start_http(self) -> None:
        """The staff listener ([http] listen) and, when configured, the guest one ([wifi.portal] listen)."""
        http, portal = self.config.http, self.config.wifi.portal
        guest = portal is not None and portal.listen is not None
        users = {u.name: (u.password_hash, str(u.role)) for u in http.users}
        logs = lambda: list(self._logs.lines)  # noqa: E731
        staff = make_app(self.ctx, self.registry, users=users, secure_cookies=http.tls_cert is not None,
                         recent_logs=logs, without_guest=guest)
        runner, self.http_port = await serve(staff, http.listen, http.tls_cert, http.tls_key)
        self._http.append(runner)
        if guest:
            assert portal is not None and portal.listen is not None
            app = make_app(self.ctx, self.registry, users={}, secure_cookies=False, recent_logs=logs, guest_only=True)
            runner, self.guest_port = await serve(app, portal.listen, portal.tls_cert, portal.tls_key)
            self._http.append(runner)

    async def _watchdog(self, interval: float) -> None:
        while True:
            outbox = self.ctx.get(OutboxComponent)
            ok, reason = (False, "outbox not running") if outbox is None else await outbox.probe(max_age_s=0)
            if ok:
                self.notifier.watchdog()
            else:
                log.error("health check failed, not petting the watchdog: %s", reason)
            await asyncio.sleep(interval)
