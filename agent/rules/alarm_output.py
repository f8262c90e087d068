"""What an alarm drives besides the event: a relay or siren on a serial line, a webhook on the store network.

Outputs never hold up the rule that fired them: each runs as its own task,
at most `MAX_PENDING` at once (beyond that an output is skipped, counted and
logged), and every success and failure is counted per action.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from agent.config import GateConfig, SerialAlarm, WebhookAlarm
from agent.rules.gate import Alarm

__all__ = ["AlarmOutputs", "OutputStats"]

log = logging.getLogger(__name__)

# Alarm outputs in progress at once; an alarm storm must not pile up threads and sockets.
MAX_PENDING = 32


@dataclass(slots=True)
class OutputStats:
    fired: int = 0
    failed: int = 0
    skipped: int = 0
    last_error: str | None = None
    last_fired: float | None = None


@dataclass(slots=True)
class _Action:
    gate: str
    config: SerialAlarm | WebhookAlarm
    stats: OutputStats = field(default_factory=OutputStats)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def name(self) -> str:
        c = self.config
        return f"{self.gate}:serial:{c.port}" if isinstance(c, SerialAlarm) else f"{self.gate}:webhook:{c.url}"


class AlarmOutputs:
    def __init__(self, gates: Sequence[GateConfig]) -> None:
        self._actions: dict[str, list[_Action]] = {g.id: [_Action(g.id, a) for a in g.alarm] for g in gates}
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: Any = None

    def stats(self) -> dict[str, dict[str, Any]]:
        return {a.name: {"fired": a.stats.fired, "failed": a.stats.failed, "skipped": a.stats.skipped,
                         "last_error": a.stats.last_error, "last_fired": a.stats.last_fired}
                for actions in self._actions.values() for a in actions}

    def fire(self, alarm: Alarm) -> None:
        for action in self._actions.get(alarm.gate, []):
            if len(self._tasks) >= MAX_PENDING:
                action.stats.skipped += 1
                log.warning("alarm output %s skipped: %d outputs already in progress", action.name, len(self._tasks))
                continue
            task = asyncio.create_task(self._run(action, alarm))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, action: _Action, alarm: Alarm) -> None:
        try:
            if isinstance(action.config, SerialAlarm):
                await asyncio.to_thread(_serial_pulse, action.config, action.lock)
            else:
                await self._webhook(action.config, alarm)
        except Exception as exc:  # any device or network failure: counted and logged, never raised
            action.stats.failed += 1
            action.stats.last_error = f"{type(exc).__name__}: {exc}"
            log.error("alarm output %s failed: %s", action.name, action.stats.last_error)
            return
        action.stats.fired += 1
        action.stats.last_fired = time.time()

    async def _webhook(self, config: WebhookAlarm, alarm: Alarm) -> None:
        import aiohttp

        if self._session is None:
            self._session = aiohttp.ClientSession()
        timeout = aiohttp.ClientTimeout(total=config.timeout_s)
        async with self._session.post(config.url, json={"event": "gate.alarm", **alarm.to_dict()},
                                      timeout=timeout) as resp:
            if resp.status >= 300:
                raise RuntimeError(f"HTTP {resp.status}")

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None


def _serial_pulse(config: SerialAlarm, lock: threading.Lock) -> None:
    from drivers.rfid.transport import open_port

    with lock, open_port(config.port, baudrate=config.baudrate) as port:
        if config.line == "write":
            assert config.command is not None
            port.write(bytes.fromhex(config.command))
            port.flush()
            return
        setter = "rts" if config.line == "rts" else "dtr"
        setattr(port, setter, True)
        time.sleep(config.pulse_s)
        setattr(port, setter, False)
