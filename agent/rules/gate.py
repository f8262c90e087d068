"""The exit gate: an unpaid item crossing a gate zone raises `gate.alarm`, once per passage.

A passage starts with the item's `tag.seen` in a gate zone (the presence layer
emits it once, however long the tag sits there) and the same item alarms again
only after `rearm_s`, so a tag flickering at the edge of the field is one alarm.
Pure: the caller supplies the clock and the sold ledger.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from agent.config import GateConfig
from agent.rules.checkout import UNKNOWN_ITEM, Catalog

__all__ = ["Alarm", "GateRules"]

# Items remembered for re-arming; a store's gate sees far fewer unpaid items than this.
_REMEMBER = 10_000


@dataclass(frozen=True, slots=True)
class Alarm:
    gate: str
    zone: str
    epc: str
    gtin: str | None
    name: str

    def to_dict(self) -> dict[str, Any]:
        return {"gate": self.gate, "zone": self.zone, "epc": self.epc, "gtin": self.gtin, "name": self.name}


class GateRules:
    def __init__(self, gates: Sequence[GateConfig], catalog: Catalog, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._catalog = catalog
        self._clock = clock
        self.gates = {g.id: g for g in gates}
        self._zone_gate = {z: g.id for g in gates for z in g.zones}
        self._last: dict[tuple[str, str], float] = {}
        self.suppressed = 0  # repeats within rearm_s, counted

    @property
    def zones(self) -> set[str]:
        return set(self._zone_gate)

    def on_seen(self, data: dict[str, Any]) -> Alarm | None:
        gate_id = self._zone_gate.get(data.get("zone", ""))
        if gate_id is None:
            return None
        epc = data["epc"]
        if self._catalog.is_sold(epc):
            return None
        now = self._clock()
        key = (gate_id, epc)
        last = self._last.get(key)
        if last is not None and now - last < self.gates[gate_id].rearm_s:
            self.suppressed += 1
            return None
        self._last[key] = now
        if len(self._last) > _REMEMBER:
            oldest = sorted(self._last.items(), key=lambda kv: kv[1])[: _REMEMBER // 10]
            for k, _ in oldest:
                del self._last[k]
        gtin = data.get("gtin")
        item = self._catalog.lookup(gtin) if gtin else None
        return Alarm(gate_id, data["zone"], epc, gtin, item.name if item is not None else UNKNOWN_ITEM)
