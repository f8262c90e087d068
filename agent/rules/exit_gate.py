"""The exit gate as a rule: an unpaid item in a gate zone raises `gate.alarm` and drives the alarm outputs."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from pydantic import BaseModel

from agent.component import Context, Rule
from agent.components.catalog import Catalog
from agent.config import Config
from agent.events import Event
from agent.rules.alarm_output import AlarmOutputs
from agent.rules.gate import GateRules

__all__ = ["ExitGate", "GateStatus"]

log = logging.getLogger(__name__)


class OutputStatus(BaseModel):
    fired: int
    failed: int
    skipped: int
    last_error: str | None
    last_fired: float | None


class GateStatus(BaseModel):
    gates: list[str]
    alarms: int
    alarms_suppressed: int
    outputs: dict[str, OutputStatus]


class ExitGate(Rule):
    key = "gates"
    status_model = GateStatus
    sections = ("checkout",)
    kinds = frozenset({"tag.seen"})

    def __init__(self, ctx: Context, *, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(ctx)
        gates = ctx.config.checkout.gates
        self.rules = GateRules(gates, ctx.require(Catalog).data, clock=clock)
        self.outputs = AlarmOutputs(gates)
        self.alarms = 0

    @classmethod
    def wanted(cls, config: Config) -> bool:
        return bool(config.checkout.gates)

    async def stop(self) -> None:
        await self.outputs.close()

    def on_event(self, event: Event) -> None:
        alarm = self.rules.on_seen(event.data)
        if alarm is None:
            return
        self.alarms += 1
        self.ctx.hub.publish(Event("gate.alarm", alarm.gate, alarm.to_dict()))
        log.warning("gate %s: ALARM unpaid %s (%s) in %s", alarm.gate, alarm.name, alarm.epc, alarm.zone)
        self.outputs.fire(alarm)

    def status(self) -> GateStatus:
        return GateStatus.model_validate({"gates": list(self.rules.gates), "alarms": self.alarms,
                                          "alarms_suppressed": self.rules.suppressed,
                                          "outputs": self.outputs.stats()})
