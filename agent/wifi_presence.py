"""Wi-Fi footfall: probe requests counted per zone and window, from hashed addresses only.

Raw MAC addresses never leave this module: each is hashed with the daily salt on arrival, and only the
counts per zone (and how many of the devices use randomised addresses) are published, every window. A
window closes on the clock (checked every second), so a quiet hour still ends on time; the counts of the
window in progress are in the status for the staff page and /metrics.
A device whose guest consented to personalisation (its MAC is in a personalised Wi-Fi session) is counted
as a known visitor too, by consent id.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from agent.config import PresenceConfig, WifiZoneConfig
from agent.events import Event
from agent.hub import Hub
from agent.privacy import DailySalt
from drivers.wifi.probes import ProbeError, ProbeRequest, parse_radiotap_frame
from drivers.wifi.sources import make_probe_source

__all__ = ["WifiPresence"]

log = logging.getLogger(__name__)

MAX_DEVICES_PER_WINDOW = 20_000  # a flood of random addresses is counted as overflow, not stored
# How often the clock is looked at to close a window when no frame arrives.
TICK_S = 1.0


class WifiPresence:
    def __init__(self, config: PresenceConfig, hub: Hub, source_name: str, *, salt: DailySalt | None = None,
                 known: Callable[[str], str | None] | None = None) -> None:
        self.config = config
        self._hub = hub
        self._name = source_name
        self._salt = salt or DailySalt()
        self._known = known or (lambda mac: None)
        self.zones = sorted(config.zones or [WifiZoneConfig(id="store", rssi_min=-127)],
                            key=lambda z: z.rssi_min, reverse=True)
        self._window_start: float | None = None
        self._seen: dict[str, dict[str, bool]] = {}  # zone -> hashed device -> randomized
        self._members: dict[str, set[str]] = {}
        self.frames = 0
        self.probes = 0
        self.malformed = 0
        self.overflow = 0
        self.state = "starting"
        self.reason: str | None = None
        self.last: dict[str, Any] | None = None  # the last window published

    def on_frame(self, ts: float, frame: bytes) -> None:
        self.frames += 1
        self._roll(ts)
        try:
            probe = parse_radiotap_frame(frame)
        except ProbeError:
            self.malformed += 1
            return
        if probe is None:
            return
        self.probes += 1
        self.on_probe(probe, ts)

    def on_probe(self, probe: ProbeRequest, ts: float) -> None:
        zone = next((z.id for z in self.zones if probe.rssi is None or probe.rssi >= z.rssi_min), None)
        if zone is None:
            return
        devices = self._seen.setdefault(zone, {})
        if len(devices) >= MAX_DEVICES_PER_WINDOW:
            self.overflow += 1
            return
        devices[self._salt.hash(probe.mac)] = probe.randomized
        member = self._known(probe.mac)
        if member is not None:
            self._members.setdefault(zone, set()).add(member)

    def _roll(self, ts: float) -> None:
        if self._window_start is None:
            self._window_start = ts
        if ts - self._window_start >= self.config.window_s:
            self.flush(self._window_start + self.config.window_s)
            self._window_start = ts

    def flush(self, end: float) -> dict[str, Any] | None:
        if not self._seen:
            return None
        zones = {z: {"devices": len(d), "randomized": sum(d.values())} for z, d in self._seen.items()}
        data: dict[str, Any] = {"window_s": self.config.window_s, "zones": zones,
                                "devices": sum(v["devices"] for v in zones.values())}
        if self._members:
            data["members"] = {z: sorted(m) for z, m in self._members.items()}
        self._hub.publish(Event("wifi.presence", self._name, data))
        self._seen, self._members = {}, {}
        self.last = {**data, "end": end}
        return data

    def _on_state(self, state: str, reason: str | None) -> None:
        if (state, reason) != (self.state, self.reason):
            self.state, self.reason = state, reason
            (log.info if state == "ok" else log.warning)("wifi presence: %s%s", state, f" ({reason})" if reason else "")

    async def run(self) -> None:
        source = make_probe_source(self.config.source, asyncio.get_running_loop(), self.on_frame, self._on_state)
        source.start()
        try:
            while True:
                await asyncio.sleep(TICK_S)
                if source.live_clock:  # a fast replay runs on its capture's time, not ours
                    self._roll(time.time())
        finally:
            await asyncio.to_thread(source.stop)
            if self._window_start is not None:
                self.flush(self._window_start + self.config.window_s)

    def current(self) -> dict[str, dict[str, int]]:
        """The window in progress: zone -> devices and randomised ones so far."""
        return {z: {"devices": len(d), "randomized": sum(d.values())} for z, d in self._seen.items()}

    def snapshot(self) -> dict[str, Any]:
        current = self.current()
        return {"source": self.config.source, "state": self.state, "reason": self.reason, "frames": self.frames,
                "probes": self.probes, "malformed": self.malformed, "overflow": self.overflow,
                "window_s": self.config.window_s, "window_start": self._window_start,
                "devices_now": sum(v["devices"] for v in current.values()), "zones_now": current,
                "last_window": self.last}
