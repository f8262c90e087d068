"""Configuration from central ops as a component: `config/set`, `config/patch`, `reload-config`, the config card.

A push (a whole document on config/set, or an RFC 7396 merge patch against
the running config on config/patch) is verified whole (agent/config_push.py),
then every component is
switched to it through the lifecycle (ctx.reconfigure), which first asks each
one whether it can (a reader port that does not open rolls the push back);
only then is it persisted. Every push gets a retained report on
`config/reported` that says what runs now.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from functools import partial
from typing import Any, Literal

from pydantic import BaseModel

from agent.component import Command, Component, Context, Document, NoArgs
from agent.config import Config, load_config
from agent.config_push import (
    LOCAL_ONLY,
    MAX_PUSH_BYTES,
    PushedConfigStore,
    masked_config,
    verify_push,
)
from agent.documents import Report, claimed_version
from agent.errors import ConfigError, ConfigProblem

__all__ = ["ConfigControl", "ConfigStatus"]

log = logging.getLogger(__name__)


class LastPush(BaseModel):
    version: int | None
    status: str
    at: float


class ConfigStatus(BaseModel):
    version: int
    path: str | None
    local_version: int
    last_push: LastPush | None


class ConfigControl(Component):
    key = "config"
    status_model = ConfigStatus
    card = "config"
    card_order = 90

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.pushed = PushedConfigStore(ctx.storage_dir)
        self.last_push: LastPush | None = None
        self.last_report: Report | None = None
        self._lock = asyncio.Lock()

    def status(self) -> ConfigStatus:
        ctx = self.ctx
        return ConfigStatus(version=ctx.config.version, path=str(ctx.config_path) if ctx.config_path else None,
                            local_version=ctx.local_config.version, last_push=self.last_push)

    def documents(self) -> Iterable[Document]:
        def refused(errors: list[dict[str, str]]) -> Report:
            return self.report(None, "rejected", errors)

        yield Document("config/set", self.on_push, "config/reported", max_bytes=MAX_PUSH_BYTES, refused=refused)
        yield Document("config/patch", partial(self.on_push, kind="patch"), "config/reported", max_bytes=MAX_PUSH_BYTES,
                       refused=refused)

    def commands(self) -> Iterable[Command]:
        yield Command("reload-config", NoArgs, self._cmd_reload, "re-read the local file and apply what changed")

    def report(self, version: Any, status: str, errors: list[dict[str, str]], *, rolled_back: bool = False
               ) -> Report:
        running = self.ctx.config
        return {"version": version, "status": status, "errors": errors, "running_version": running.version,
                "rolled_back": rolled_back, "config": masked_config(running, exclude=LOCAL_ONLY)}

    async def on_push(self, payload: bytes, retained: bool = False, *, kind: Literal["set", "patch"] = "set"
                      ) -> Report | None:
        claimed = claimed_version(payload)
        # Ops publish desired state retained: seen again after a reconnect, a version in force is not news.
        if retained and isinstance(claimed, int) and claimed <= self.ctx.config.version:
            log.debug("config/%s: retained version %s is already in force", kind, claimed)
            return None
        try:
            version = await self.apply_push(payload, kind=kind)
        except ConfigError as exc:
            log.warning("config/%s rejected: %s", kind, "; ".join(str(p) for p in exc.problems))
            self.last_push = LastPush(version=claimed if isinstance(claimed, int) else None, status="rejected",
                                      at=time.time())
            self.last_report = self.report(claimed, "rejected",
                                           [{"path": p.path, "message": p.message} for p in exc.problems],
                                           rolled_back=exc.rolled_back)
            return self.last_report
        self.last_report = self.report(version, "applied", [])
        return self.last_report

    async def connected(self) -> None:
        """ops' dry runs and rollbacks diff against the config a gateway reports: say it on every connect."""
        from agent.components.sync import Sync

        sync = self.ctx.get(Sync)
        if sync is not None:
            await sync.publish(f"{sync.topics.base}/config/reported", self.current_report(), retain=True)

    def current_report(self) -> Report:
        """What config/reported should say after a (re)connect: the last push's outcome in this run, or the
        config in force (from the local file or a kept push), so ops always see what a gateway runs."""
        if self.last_report is not None:
            return {**self.last_report, "running_version": self.ctx.config.version,
                    "config": masked_config(self.ctx.config, exclude=LOCAL_ONLY), "trigger": "connect"}
        return {**self.report(self.ctx.config.version, "applied", []), "trigger": "connect"}

    async def apply_push(self, payload: bytes, *, kind: Literal["set", "patch"] = "set") -> int:
        async with self._lock:
            ctx = self.ctx
            new = verify_push(payload, ctx.local_config, ctx.config, kind=kind)
            assert ctx.reconfigure is not None
            await ctx.reconfigure(new)
            try:
                self.pushed.save(new)
            except OSError as exc:
                log.error("config: version %d applied but not persisted: %s", new.version, exc)
            self.last_push = LastPush(version=new.version, status="applied", at=time.time())
            ctx.publish("config.applied", {"version": new.version})
            log.info("config: version %d applied (config/%s)", new.version, kind)
            return new.version

    async def reload(self) -> int:
        """Re-read the local file (and the kept push); apply what changed."""
        async with self._lock:
            ctx = self.ctx
            if ctx.config_path is None:
                raise ConfigError([ConfigProblem("", "no config file to reload")], "reload-config")
            local: Config = await asyncio.get_running_loop().run_in_executor(None, load_config, ctx.config_path)
            for section in LOCAL_ONLY:
                if getattr(local, section) != getattr(ctx.local_config, section):
                    raise ConfigError([ConfigProblem(section, "changed in the file: restart the service to apply it")],
                                      "reload-config")
            new = self.pushed.load(local) or local
            assert ctx.reconfigure is not None
            await ctx.reconfigure(new)
            ctx.local_config = local
            return new.version

    async def _cmd_reload(self, args: NoArgs) -> dict[str, Any]:
        return {"version": await self.reload()}

