"""What central ops send down: documents (config, catalog, members, …) and commands, each answered.

The downlink names no feature: it routes a message by its topic to the
`Document` or `Command` a running component declared. Every message gets an
answer or a report, never silence: a document's report goes to its
`…/reported` topic (retained), a command's result to `cmd/{name}/result`,
a handler that crashes is answered with an internal error; a document for a
feature this gateway does not run is reported as rejected. Messages are
handled one at a time from a bounded queue; what does not fit is counted and
logged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent.component import Command, Document
from agent.config import format_loc
from agent.documents import claimed_version
from agent.errors import ConfigError
from agent.sync.client import Message
from agent.sync.topics import Topics

__all__ = ["MAX_COMMAND_BYTES", "QUEUE_MAX", "Downlink"]

log = logging.getLogger(__name__)

# Downlink messages waiting to be handled; a flood beyond this is dropped and counted.
QUEUE_MAX = 100
# Commands are small; a document has its own limit.
MAX_COMMAND_BYTES = 64 * 1024

Publish = Callable[[str, dict[str, Any], bool], Awaitable[bool]]


class CommandRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1, max_length=128)
    args: dict[str, Any] = Field(default_factory=dict)


def _errors_of(exc: ValidationError) -> str:
    return "; ".join(f"{format_loc(tuple(e['loc'])) or 'args'}: {e['msg']}" for e in exc.errors())


class Downlink:
    def __init__(self, topics: Topics, *, documents: Callable[[], Mapping[str, Document]],
                 commands: Callable[[], Mapping[str, Command]], publish: Publish) -> None:
        self.topics = topics
        self._documents = documents
        self._commands = commands
        self._publish = publish
        self._queue: asyncio.Queue[Message] = asyncio.Queue(QUEUE_MAX)
        self.dropped = 0
        self.handled = 0
        self.rejected = 0
        self.crashed = 0

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
            await self.handle(msg)
            self.handled += 1

    async def handle(self, msg: Message) -> None:
        suffix = self.topics.suffix(msg.topic)
        name = self.topics.command_name(msg.topic)
        if name is not None:
            await self._command(name, msg.payload)
        elif suffix is not None and (doc := self._documents().get(suffix)) is not None:
            await self._document(doc, msg)
        elif suffix is not None:
            await self._unknown(suffix, msg.payload)

    async def _unknown(self, suffix: str, payload: bytes) -> None:
        """A document no component here takes, answered on `{kind}/reported`. Not retained (the retained
        report, if any, stays the last real one), except `set` of a kind this gateway does not run at all: that
        rejection waits on the broker as the desired state does."""
        self.rejected += 1
        kind, _, verb = suffix.partition("/")
        taken = sorted(topic for topic in self._documents() if topic.partition("/")[0] == kind)
        message = (f"{kind} takes {', '.join(taken)} here, not {suffix}" if taken
                   else f"{kind} is not configured on this gateway")
        log.warning("downlink: %s refused: %s", suffix, message)
        await self._report(f"{self.topics.base}/{kind}/reported", {
            "version": claimed_version(payload), "status": "rejected", "errors": [{"path": "", "message": message}]},
            retain=verb == "set" and not taken)

    async def _report(self, topic: str, payload: dict[str, Any], *, retain: bool = False) -> None:
        if not await self._publish(topic, payload, retain):
            log.info("downlink: report on %s queued until the broker is reachable again", topic)

    async def _document(self, doc: Document, msg: Message) -> None:
        reported = f"{self.topics.base}/{doc.reported}" if doc.reported else None
        if len(msg.payload) > doc.max_bytes:
            self.rejected += 1
            error = f"payload too large: {len(msg.payload)} bytes (limit {doc.max_bytes})"
            log.warning("downlink: %s refused: %s", doc.topic, error)
            if reported:
                errors = [{"path": "", "message": error}]
                refusal: dict[str, Any] = doc.refused(errors) if doc.refused else {
                    "version": None, "status": "rejected", "errors": errors}
                await self._report(reported, refusal, retain=True)
            return
        try:
            report = await doc.handler(msg.payload, msg.retain)
        except Exception as exc:  # a bug in one handler: answered, logged, and the downlink goes on
            self.crashed += 1
            log.exception("downlink: handling %s failed", doc.topic)
            report = {"version": None, "status": "rejected",
                      "errors": [{"path": "", "message": f"internal error: {type(exc).__name__}: {exc}"}]}
        if report is None:
            return
        if report.get("status") == "rejected":
            self.rejected += 1
        if reported:
            await self._report(reported, report, retain=True)

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
            commands = self._commands()
            if name not in commands:
                raise ValueError(f"unknown command {name!r}; known: {', '.join(sorted(commands))}")
            command = commands[name]
            try:
                args = command.args.model_validate(request.args)
            except ValidationError as exc:
                raise ValueError(f"bad args: {_errors_of(exc)}") from exc
            result = await command.handler(args)
        except (ValueError, ConfigError) as exc:
            self.rejected += 1
            log.warning("command %s (id %s) failed: %s", name, request_id, exc)
            await self._report(reply_topic, {"id": request_id, "ok": False, "error": str(exc)})
            return
        except Exception as exc:  # a bug in a handler still gets an answer
            self.crashed += 1
            log.exception("command %s (id %s) crashed", name, request_id)
            await self._report(reply_topic, {"id": request_id, "ok": False,
                                             "error": f"internal error: {type(exc).__name__}: {exc}"})
            return
        log.info("command %s (id %s) done", name, request_id)
        await self._report(reply_topic, {"id": request_id, "ok": True, "result": result})
