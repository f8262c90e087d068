"""The BLE pipeline: a source (adapter or replay) -> HCI codec -> beacon tracker -> hub events."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from agent.beacons import BeaconTracker, People
from agent.config import BleConfig
from agent.events import Event
from agent.hub import Hub
from drivers.ble.hci import HciError, parse_event
from drivers.ble.sources import make_source
from drivers.capture import ThreadSource

__all__ = ["BleRunner"]

log = logging.getLogger(__name__)

TICK_S = 0.5


class BleRunner:
    def __init__(self, config: BleConfig, hub: Hub, source_name: str = "ble", *, people: People | None = None) -> None:
        self.config = config
        self._hub = hub
        self._name = source_name
        self.tracker = BeaconTracker(config, people=people)
        self.state = "starting"
        self.reason: str | None = None
        self.hci_errors = 0
        self.source: ThreadSource | None = None
        self._last_ts = 0.0

    def snapshot(self) -> dict[str, Any]:
        t = self.tracker
        return {"source": self.config.source, "state": self.state, "reason": self.reason, "reports": t.reports,
                "unknown": dict(t.unknown), "malformed": t.malformed + self.hci_errors, "overflow": t.overflow,
                "beacons": t.snapshot()}

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        self.source = make_source(self.config.source, loop, self._on_packet, self._on_state)
        self.source.start()
        try:
            while True:
                await asyncio.sleep(TICK_S)
                if self.source.live_clock:
                    self._publish(self.tracker.tick(time.time()))
        finally:
            await asyncio.to_thread(self.source.stop)

    def _on_state(self, state: str, reason: str | None) -> None:
        if (state, reason) == (self.state, self.reason):
            return
        self.state, self.reason = state, reason
        if state == "ok":
            log.info("ble: scanning (%s)", self.config.source)
        else:
            log.warning("ble: %s: %s", state, reason)
        self._hub.publish(Event("ble.source", self._name, {"source": self.config.source, "state": state,
                                                            "reason": reason}))

    def _on_packet(self, ts: float, packet: bytes) -> None:
        try:
            reports = parse_event(packet)
        except HciError as exc:
            self.hci_errors += 1
            if self.hci_errors in (1, 10, 100) or self.hci_errors % 1000 == 0:
                log.warning("ble: malformed HCI event (%s); %d so far", exc, self.hci_errors)
            return
        if ts > self._last_ts:
            self._last_ts = ts
            self._publish(self.tracker.tick(ts))  # capture time drives dwell and away in a fast replay
        for report in reports:
            self._publish(self.tracker.on_report(report, ts))

    def _publish(self, events: list[tuple[str, dict[str, Any]]]) -> None:
        for kind, data in events:
            self._hub.publish(Event(kind, self._name, data))
