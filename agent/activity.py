"""What the staff page shows besides the status: recent events, gate alarms to check, the last hour.

Fed by a hub subscription (bounded; if the page falls behind it loses feed
entries, counted, never slows the drivers). Everything here is bounded.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from agent.events import Event
from agent.hub import Hub

__all__ = ["Activity"]

RECENT = 200  # events in the live feed
ALARMS = 100  # gate alarms kept for staff to acknowledge
HISTORY_EVERY_S = 10.0
HISTORY = 360  # one hour of samples
_LISTENER_QUEUE = 100


class Activity:
    def __init__(self, hub: Hub, depth: Callable[[], int], *, clock: Callable[[], float] = time.time) -> None:
        self._hub = hub
        self._depth = depth
        self._clock = clock
        self._sub = hub.subscribe("staff-page", maxsize=5000)
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT)
        self.alarms: deque[dict[str, Any]] = deque(maxlen=ALARMS)
        self.history: deque[dict[str, float]] = deque(maxlen=HISTORY)
        self._listeners: set[asyncio.Queue[dict[str, Any]]] = set()
        self._last_published = hub.published
        self._last_sample = clock()

    async def run(self) -> None:
        self.sample()  # a first point at once, so the charts start from now
        sampler = asyncio.create_task(self._sample())
        try:
            async for event in self._sub:
                self._on_event(event)
        finally:
            sampler.cancel()

    def _on_event(self, event: Event) -> None:
        doc = event.to_dict()
        self.recent.append(doc)
        if event.kind == "gate.alarm":
            self.alarms.append({"id": event.id, "ts": event.ts, "acknowledged": None, **event.data})
        for q in list(self._listeners):
            if q.full():
                q.get_nowait()
            q.put_nowait(doc)

    async def _sample(self) -> None:
        while True:
            await asyncio.sleep(HISTORY_EVERY_S)
            self.sample()

    def sample(self) -> None:
        now = self._clock()
        published = self._hub.published
        rate = (published - self._last_published) / max(now - self._last_sample, 1e-6)
        self._last_published, self._last_sample = published, now
        self.history.append({"t": now, "events_per_s": round(rate, 2), "backlog": self._depth()})

    def acknowledge(self, alarm_id: str, user: str) -> dict[str, Any] | None:
        for alarm in self.alarms:
            if alarm["id"] == alarm_id:
                if alarm["acknowledged"] is None:
                    alarm["acknowledged"] = {"by": user, "at": self._clock()}
                    self._hub.publish(Event("gate.alarm.acknowledged", "staff",
                                            {"alarm": alarm_id, "by": user, "epc": alarm.get("epc")}))
                return alarm
        return None

    def acknowledge_older(self, older_than_s: float, user: str) -> int:
        """Acknowledge every open alarm at least `older_than_s` old; how many."""
        cutoff = self._clock() - older_than_s
        due = [a["id"] for a in self.alarms if a["acknowledged"] is None and a["ts"] <= cutoff]
        for alarm_id in due:
            self.acknowledge(alarm_id, user)
        return len(due)

    @property
    def unacknowledged(self) -> int:
        return sum(1 for a in self.alarms if a["acknowledged"] is None)

    def listen(self) -> asyncio.Queue[dict[str, Any]]:
        q: asyncio.Queue[dict[str, Any]] = asyncio.Queue(_LISTENER_QUEUE)
        self._listeners.add(q)
        return q

    def unlisten(self, q: asyncio.Queue[dict[str, Any]]) -> None:
        self._listeners.discard(q)

    @property
    def feed_dropped(self) -> int:
        return self._sub.dropped
