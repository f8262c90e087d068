"""What central ops send down: config pushes, commands, the catalog, items sold elsewhere.

Every message gets an answer or a report, never silence: a config push is
reported on `config/reported` (retained), a command on `cmd/{name}/result`,
a catalog on `catalog/reported`. Messages are handled one at a time from a
bounded queue; what does not fit is counted and logged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent.config import format_loc
from agent.errors import ConfigError
from agent.sync.client import Message
from agent.sync.topics import Topics

if TYPE_CHECKING:
    from agent.app import Agent

__all__ = ["COMMANDS", "Downlink"]

log = logging.getLogger(__name__)

# Downlink messages waiting to be handled; a flood beyond this is dropped and counted.
QUEUE_MAX = 100
# Commands and data documents are small; a config push has its own (larger) limit.
MAX_COMMAND_BYTES = 64 * 1024


class CommandRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1, max_length=128)
    args: dict[str, Any] = Field(default_factory=dict)


class NoArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DrainArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: str = Field(pattern="^(pause|resume)$")
    readers: list[str] | None = None  # None: every reader


class ReaderArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reader: str


Handler = Callable[["Agent", Any], Awaitable[dict[str, Any]]]


async def _ping(agent: Agent, args: NoArgs) -> dict[str, Any]:
    return {"pong": True, "time": time.time()}


async def _status(agent: Agent, args: NoArgs) -> dict[str, Any]:
    return await agent.status()


async def _resync(agent: Agent, args: NoArgs) -> dict[str, Any]:
    assert agent.uplink is not None
    agent.uplink.resync()
    return {"backlog": agent.outbox.depth}


async def _reload_config(agent: Agent, args: NoArgs) -> dict[str, Any]:
    version = await agent.reload_config()
    return {"version": version}


def _pick_readers(agent: Agent, ids: list[str] | None) -> list[str]:
    if ids is None:
        return list(agent.readers)
    unknown = [i for i in ids if i not in agent.readers]
    if unknown:
        raise ValueError(f"unknown reader(s): {', '.join(unknown)}; known: {', '.join(agent.readers) or 'none'}")
    return ids


async def _drain_readers(agent: Agent, args: DrainArgs) -> dict[str, Any]:
    ids = _pick_readers(agent, args.readers)
    for rid in ids:
        if args.action == "pause":
            agent.readers[rid].pause()
        else:
            agent.readers[rid].resume()
    return {"readers": {rid: agent.readers[rid].state for rid in ids}}


async def _restart_reader(agent: Agent, args: ReaderArgs) -> dict[str, Any]:
    _pick_readers(agent, [args.reader])
    await agent.restart_reader(args.reader)
    return {"reader": args.reader, "state": agent.readers[args.reader].state}


async def _flush_outbox(agent: Agent, args: NoArgs) -> dict[str, Any]:
    st = await agent.outbox.stats()
    return {"depth": st.depth, "bytes": st.bytes, "oldest_age_s": st.oldest_age_s}


# name -> (argument model, handler). ops tooling discovers them with an unknown command's error.
COMMANDS: dict[str, tuple[type[BaseModel], Handler]] = {
    "ping": (NoArgs, _ping),
    "status": (NoArgs, _status),
    "resync": (NoArgs, _resync),
    "reload-config": (NoArgs, _reload_config),
    "drain-readers": (DrainArgs, _drain_readers),
    "restart-reader": (ReaderArgs, _restart_reader),
    "outbox-stats": (NoArgs, _flush_outbox),
}


def _errors_of(exc: ValidationError) -> str:
    return "; ".join(f"{format_loc(tuple(e['loc'])) or 'args'}: {e['msg']}" for e in exc.errors())


class Downlink:
    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.topics = Topics(agent.config.store.id, agent.config.store.gateway)
        self._queue: asyncio.Queue[Message] = asyncio.Queue(QUEUE_MAX)
        self.dropped = 0
        self.handled = 0
        self.rejected = 0

    def on_message(self, msg: Message) -> None:
        """Called from the MQTT client on the loop; never blocks."""
        try:
            self._queue.put_nowait(msg)
        except asyncio.QueueFull:
            self.dropped += 1
            log.warning("downlink: queue full, dropped a message on %s (%d dropped so far)", msg.topic, self.dropped)

    async def run(self) -> None:
        while True:
            msg = await self._queue.get()
            try:
                await self.handle(msg)
            except Exception:  # a bug in one handler must not stop the downlink
                log.exception("downlink: handling %s failed", msg.topic)
            self.handled += 1

    async def handle(self, msg: Message) -> None:
        t = self.topics
        if msg.topic == t.config_set:
            await self._config_set(msg.payload)
        elif msg.topic == t.catalog_set:
            await self._catalog_set(msg.payload)
        elif msg.topic == t.sold_add:
            await self._sold_add(msg.payload)
        elif (name := t.command_name(msg.topic)) is not None:
            await self._command(name, msg.payload)
        else:
            log.warning("downlink: ignoring a message on unexpected topic %s", msg.topic)

    async def _report(self, topic: str, payload: dict[str, Any], *, retain: bool = False) -> None:
        uplink = self.agent.uplink
        if uplink is None:
            log.warning("downlink: no uplink to send the report on %s", topic)
        elif not await uplink.publish(topic, payload, retain=retain):
            log.info("downlink: report on %s queued until the broker is reachable again", topic)

    async def _config_set(self, payload: bytes) -> None:
        agent = self.agent
        try:
            version = await agent.apply_pushed_config(payload)
        except ConfigError as exc:
            self.rejected += 1
            errors = [{"path": p.path, "message": p.message} for p in exc.problems]
            log.warning("config push rejected: %s", "; ".join(str(p) for p in exc.problems))
            report = {"version": _claimed_version(payload), "status": "rejected", "errors": errors,
                      "running_version": agent.config.version, "rolled_back": exc.rolled_back}
            await self._report(self.topics.config_reported, report, retain=True)
            return
        await self._report(self.topics.config_reported,
                           {"version": version, "status": "applied", "errors": []}, retain=True)

    async def _command(self, name: str, payload: bytes) -> None:
        reply_topic = self.topics.cmd_result(name)
        request_id: str | None = None
        try:
            if len(payload) > MAX_COMMAND_BYTES:
                raise ValueError(f"payload too large: {len(payload)} bytes (limit {MAX_COMMAND_BYTES})")
            try:
                raw = orjson.loads(payload)
            except orjson.JSONDecodeError as exc:
                raise ValueError(f"not JSON: {exc}") from exc
            if isinstance(raw, dict) and isinstance(raw.get("id"), str):
                request_id = raw["id"]
            try:
                request = CommandRequest.model_validate(raw)
            except ValidationError as exc:
                raise ValueError(_errors_of(exc)) from exc
            if name not in COMMANDS:
                raise ValueError(f"unknown command {name!r}; known: {', '.join(sorted(COMMANDS))}")
            model, handler = COMMANDS[name]
            try:
                args = model.model_validate(request.args)
            except ValidationError as exc:
                raise ValueError(f"bad args: {_errors_of(exc)}") from exc
            result = await handler(self.agent, args)
        except (ValueError, ConfigError) as exc:
            self.rejected += 1
            log.warning("command %s (id %s) failed: %s", name, request_id, exc)
            await self._report(reply_topic, {"id": request_id, "ok": False, "error": str(exc)})
            return
        log.info("command %s (id %s) done", name, request_id)
        await self._report(reply_topic, {"id": request_id, "ok": True, "result": result})

    async def _catalog_set(self, payload: bytes) -> None:
        report = await self.agent.catalog_from_cloud(payload)
        await self._report(f"{self.topics.base}/catalog/reported", report, retain=True)

    async def _sold_add(self, payload: bytes) -> None:
        await self.agent.sold_from_cloud(payload)


def _claimed_version(payload: bytes) -> Any:
    try:
        doc = orjson.loads(payload[:1024 * 1024])
    except orjson.JSONDecodeError:
        return None
    return doc.get("version") if isinstance(doc, dict) else None
