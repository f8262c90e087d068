"""The one event model: everything that happens in the store becomes an `Event`.

Inside the agent an event is a slotted dataclass (cheap to build on the hot
path); at the edges (MQTT payloads, HTTP) it is the JSON object of the
contract: {"id", "ts" (RFC 3339 UTC), "kind", "source", "data"}.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import IntEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from agent.ids import new_id
from agent.json_bytes import json_bytes

__all__ = ["Event", "EventModel", "Priority", "format_ts", "priority_of"]


class Priority(IntEnum):
    """What the outbox drops first when it is full: lowest value first."""

    TELEMETRY = 0  # raw presence and counts: the cloud can live with gaps
    OPERATIONAL = 1  # reader/device health, baskets in progress, config reports
    BUSINESS = 2  # sales, alarms, consent: dropped only when nothing else is left


# Kinds not listed are OPERATIONAL.
_PRIORITY_BY_KIND: dict[str, Priority] = {
    "tag.seen": Priority.TELEMETRY,
    "tag.gone": Priority.TELEMETRY,
    "tag.read": Priority.TELEMETRY,
    "beacon.enter": Priority.TELEMETRY,
    "beacon.dwell": Priority.TELEMETRY,
    "beacon.exit": Priority.TELEMETRY,
    "wifi.presence": Priority.TELEMETRY,
    "checkout.paid": Priority.BUSINESS,
    "gate.alarm": Priority.BUSINESS,
    "consent.given": Priority.BUSINESS,
    "consent.withdrawn": Priority.BUSINESS,
    # Offers and click-and-collect are sales too: kept last, and sent ahead of a backlog (agent/sync/lanes.py).
    "offer.triggered": Priority.BUSINESS,
    "offer.held_out": Priority.BUSINESS,
    "offer.redeemed": Priority.BUSINESS,
    "collect.arrived": Priority.BUSINESS,
    "collect.handed_over": Priority.BUSINESS,
}


def priority_of(kind: str) -> Priority:
    return _PRIORITY_BY_KIND.get(kind, Priority.OPERATIONAL)


# format_ts is on the hot path (every event is serialised once): cache the whole-second prefix.
_ts_cache: tuple[int, str] = (-1, "")


def format_ts(ts: float) -> str:
    """RFC 3339 UTC with milliseconds: 2026-11-23T10:42:00.123Z."""
    global _ts_cache
    ms_total = int(ts * 1000)
    sec, ms = divmod(ms_total, 1000)
    cached_sec, prefix = _ts_cache
    if sec != cached_sec:
        prefix = datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _ts_cache = (sec, prefix)
    return f"{prefix}.{ms:03d}Z"


@dataclass(slots=True, frozen=True)
class Event:
    kind: str
    source: str
    data: dict[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=new_id)
    ts: float = field(default_factory=time.time)  # wall clock, seconds since the epoch, UTC

    @property
    def priority(self) -> Priority:
        return priority_of(self.kind)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "ts": format_ts(self.ts), "kind": self.kind, "source": self.source, "data": self.data}

    def to_json(self) -> bytes:
        """Compact UTF-8 JSON of the contract form."""
        # A value orjson cannot encode (a Decimal, a Path, an integer past 64 bits) never raises: that would
        # take the outbox writer and its whole batch down (agent/json_bytes.py).
        return json_bytes(self.to_dict())


class EventModel(BaseModel):
    """The contract's JSON form, for validating events that cross an edge."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=26, max_length=26, pattern=r"^[0-9A-HJKMNP-TV-Z]{26}$")
    ts: datetime
    kind: str = Field(pattern=r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
    source: str
    data: dict[str, Any]
