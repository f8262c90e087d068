"""Beacon presence: from advertising reports to beacon.enter / beacon.dwell / beacon.exit and beacon.health.

Pure (the caller passes the time): RSSI is smoothed (median of the last 5 samples, then an EMA), a
distance is estimated from the beacon's measured power with the log-distance path-loss model, and
zones are RSSI bands with hysteresis, so a shopper standing at a boundary does not flap in and out.

Privacy: only configured beacons and people are tracked. A person's identifier (the store app's
iBeacon) is resolved to the member only with their personalisation consent (`People`: the members of
members/set, agent/o2o/members.py); otherwise it is hashed with a salt that changes every day and is
never written anywhere, so the cloud sees a device that cannot be followed across days and never the
raw identifier.
"""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

from agent.config import BleConfig, BleZoneConfig
from agent.privacy import DailySalt
from drivers.ble.beacons import BeaconError, EddystoneTlm, IBeacon, decode
from drivers.ble.hci import AdvReport

__all__ = ["BeaconTracker", "ConfigPeople", "People", "RssiFilter", "distance_m"]

DEFAULT_ZONES = [BleZoneConfig(id="near", rssi_enter=-75, rssi_exit=-85)]
HEALTH_EVERY_S = 600.0  # one beacon.health per beacon per 10 minutes is plenty for the cloud
MAX_TRACKED = 5000  # beacons and devices tracked at once; a flood of identities is counted, not stored


class RssiFilter:
    """Median of the last `window` samples (kills single spikes), then an EMA (smooths the rest)."""

    def __init__(self, window: int = 5, alpha: float = 0.3) -> None:
        self._samples: deque[int] = deque(maxlen=window)
        self._alpha = alpha
        self.value: float | None = None

    def update(self, rssi: int) -> float:
        self._samples.append(rssi)
        median = statistics.median(self._samples)
        self.value = median if self.value is None else self._alpha * median + (1 - self._alpha) * self.value
        return self.value


def distance_m(rssi: float, measured_power: int, exponent: float) -> float:
    """Log-distance path loss: measured_power is the RSSI at 1 m."""
    return float(10 ** ((measured_power - rssi) / (10 * exponent)))


class People(Protocol):
    """Who a phone's iBeacon is: the store app's UUIDs, and the member behind one (personalisation consent)."""

    def is_person(self, uuid: str) -> bool: ...
    def member_of(self, uuid: str, major: int, minor: int) -> str | None: ...


class ConfigPeople:
    """`[ble] person_uuids` and `opted_in` (deprecated: members/set replaces them; read for one release)."""

    def __init__(self, config: BleConfig) -> None:
        self._persons = {u.lower() for u in config.person_uuids}
        self._opted_in = {o.lower() for o in config.opted_in}

    def is_person(self, uuid: str) -> bool:
        return uuid in self._persons

    def member_of(self, uuid: str, major: int, minor: int) -> str | None:
        person = f"{uuid}:{major}:{minor}"
        return person if person in self._opted_in else None


@dataclass(slots=True)
class _Tracked:
    key: str  # the configured beacon id, "member:…" or "device:…"
    kind: str
    measured_power: int | None
    filter: RssiFilter = field(default_factory=RssiFilter)
    zone: str | None = None
    zone_since: float = 0.0
    dwell_sent: bool = False
    last_heard: float = 0.0
    last_health: float = float("-inf")
    battery_low_sent: bool = False
    health: dict[str, Any] = field(default_factory=dict)


class BeaconTracker:
    def __init__(self, config: BleConfig, *, salt: DailySalt | None = None, people: People | None = None) -> None:
        self.config = config
        self.zones = sorted(config.zones or DEFAULT_ZONES, key=lambda z: z.rssi_enter, reverse=True)
        self._salt = salt or DailySalt()
        self._known: dict[str, str] = {}
        for b in config.beacons:
            if b.ibeacon is not None:
                u = b.ibeacon.uuid.replace("-", "").lower()
                self._known[f"ibeacon:{u[:8]}-{u[8:12]}-{u[12:16]}-{u[16:20]}-{u[20:]}:{b.ibeacon.major}:{b.ibeacon.minor}"] = b.id
            elif b.eddystone_uid is not None:
                self._known[f"eddystone:{b.eddystone_uid.namespace.lower()}:{b.eddystone_uid.instance.lower()}"] = b.id
        self.people: People = people or ConfigPeople(config)
        self._tracked: dict[str, _Tracked] = {}
        self._by_address: dict[str, str] = {}  # advertiser address -> tracked key (for TLM frames)
        self.reports = 0
        self.unknown: dict[str, int] = {}
        self.malformed = 0
        self.overflow = 0

    # -- reports -------------------------------------------------------------------------------

    def on_report(self, report: AdvReport, now: float) -> list[tuple[str, dict[str, Any]]]:
        self.reports += 1
        try:
            beacon = decode(report.ad)
        except BeaconError:
            self.malformed += 1
            return []
        if beacon is None:
            self._count_unknown("other")
            return []
        if isinstance(beacon, EddystoneTlm):
            key = self._by_address.get(report.address)
            return [] if key is None else self._health(self._tracked[key], beacon, now)
        key = self._key(beacon)
        if key is None:
            self._count_unknown(beacon.kind)
            return []
        tracked = self._tracked.get(key)
        if tracked is None:
            if len(self._tracked) >= MAX_TRACKED:
                self.overflow += 1
                return []
            power = beacon.power if isinstance(beacon, IBeacon) else getattr(beacon, "tx_power", None)
            if power is not None and not isinstance(beacon, IBeacon):
                power -= 41  # Eddystone states power at 0 m; 41 dB is the usual loss to 1 m (spec's guidance)
            tracked = self._tracked[key] = _Tracked(key, beacon.kind, power)
        self._by_address[report.address] = key
        if report.rssi is None:
            return []
        tracked.last_heard = now
        smoothed = tracked.filter.update(report.rssi)
        return self._move(tracked, self._zone_for(tracked.zone, smoothed), now, smoothed)

    def _count_unknown(self, kind: str) -> None:
        self.unknown[kind] = self.unknown.get(kind, 0) + 1

    def _key(self, beacon: Any) -> str | None:
        identity = beacon.identity
        if identity in self._known:
            return self._known[identity]
        if isinstance(beacon, IBeacon) and self.people.is_person(beacon.uuid):
            member = self.people.member_of(beacon.uuid, beacon.major, beacon.minor)
            if member is not None:
                return f"member:{member}"
            return f"device:{self._salt.hash(f'{beacon.uuid}:{beacon.major}:{beacon.minor}')}"
        return None

    def forget(self, member: str) -> None:
        """A member withdrew or left members/set: stop following them by name now (they become a device)."""
        self._tracked.pop(f"member:{member}", None)

    def _zone_for(self, current: str | None, rssi: float) -> str | None:
        for zone in self.zones:  # strongest first: the innermost zone the beacon qualifies for
            threshold = zone.rssi_exit if zone.id == current else zone.rssi_enter
            if rssi >= threshold:
                return zone.id
        return None

    def _move(self, t: _Tracked, zone: str | None, now: float, rssi: float) -> list[tuple[str, dict[str, Any]]]:
        if zone == t.zone:
            return []
        out = []
        if t.zone is not None:
            out.append(("beacon.exit", self._data(t, rssi, now)))
        t.zone, t.zone_since, t.dwell_sent = zone, now, False
        if zone is not None:
            out.append(("beacon.enter", self._data(t, rssi, now)))
        return out

    def _data(self, t: _Tracked, rssi: float, now: float) -> dict[str, Any]:
        data: dict[str, Any] = {"zone": t.zone, "rssi": round(rssi), "kind": t.kind}
        if t.key.startswith("member:"):
            data["member"] = t.key[len("member:"):]
        elif t.key.startswith("device:"):
            data["device"] = t.key[len("device:"):]
        else:
            data["beacon"] = t.key
        if t.measured_power is not None:
            data["distance_m"] = round(distance_m(rssi, t.measured_power, self.config.path_loss_exponent), 1)
        return data

    # -- time ----------------------------------------------------------------------------------

    def tick(self, now: float) -> list[tuple[str, dict[str, Any]]]:
        out: list[tuple[str, dict[str, Any]]] = []
        for t in list(self._tracked.values()):
            if t.zone is None:
                continue
            rssi = t.filter.value if t.filter.value is not None else -127.0
            if now - t.last_heard >= self.config.away_s:
                out += self._move(t, None, now, rssi)
            elif not t.dwell_sent and now - t.zone_since >= self.config.dwell_s:
                t.dwell_sent = True
                data = self._data(t, rssi, now)
                data["dwell_s"] = round(now - t.zone_since, 1)
                out.append(("beacon.dwell", data))
        return out

    def _health(self, t: _Tracked, tlm: EddystoneTlm, now: float) -> list[tuple[str, dict[str, Any]]]:
        t.health = {"battery_mv": tlm.battery_mv, "temperature_c": tlm.temperature_c, "adv_count": tlm.adv_count,
                    "uptime_s": tlm.uptime_s, "at": now}
        out: list[tuple[str, dict[str, Any]]] = []
        if now - t.last_health >= HEALTH_EVERY_S:
            t.last_health = now
            out.append(("beacon.health", {"beacon": t.key, **{k: v for k, v in t.health.items() if k != "at"}}))
        low = tlm.battery_mv is not None and tlm.battery_mv < self.config.low_battery_mv
        if low and not t.battery_low_sent and not t.key.startswith(("device:", "member:")):
            t.battery_low_sent = True
            out.append(("beacon.battery_low", {"beacon": t.key, "battery_mv": tlm.battery_mv,
                                               "threshold_mv": self.config.low_battery_mv}))
        return out

    def snapshot(self) -> list[dict[str, Any]]:
        return [{"id": t.key if not t.key.startswith(("device:", "member:")) else t.key.split(":")[0],
                 "kind": t.kind, "zone": t.zone, "rssi": None if t.filter.value is None else round(t.filter.value),
                 "last_heard": t.last_heard, "health": t.health or None,
                 "battery_low": (t.health.get("battery_mv") or 10**6) < self.config.low_battery_mv}
                for t in self._tracked.values()]
