"""BLE beacons as a component: the scanner (or a replayed capture), beacon zones, their card and health."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

from prometheus_client.core import CounterMetricFamily
from prometheus_client.metrics_core import Metric
from pydantic import BaseModel

from agent.beacons import ConfigPeople
from agent.ble import BleRunner
from agent.component import Component, Context, Reason
from agent.config import BleConfig, Config
from agent.o2o.members import Members

__all__ = ["Ble", "BleStatus", "ble_health"]

log = logging.getLogger(__name__)


class BeaconStatus(BaseModel):
    id: str
    kind: str
    zone: str | None
    rssi: int | None
    last_heard: float
    health: dict[str, Any] | None
    battery_low: bool


class BleStatus(BaseModel):
    source: str
    state: str
    reason: str | None
    reports: int
    unknown: dict[str, int]
    malformed: int
    overflow: int
    beacons: list[BeaconStatus]


def ble_health(state: str, reason: str | None, beacons: Iterable[dict[str, Any]]) -> list[Reason]:
    out = []
    if state not in ("ok", "starting"):
        out.append(Reason("amber", f"Bluetooth beacons not heard: {reason or state}."))
    for b in beacons:
        if b.get("battery_low"):
            out.append(Reason("amber", f"Beacon {b['id']} battery low ({b['health']['battery_mv']} mV): replace it."))
    return out


class _People:
    """Members of members/set (with personalisation consent), then the deprecated [ble] lists."""

    def __init__(self, ctx: Context, config: BleConfig) -> None:
        self.ctx = ctx
        self.legacy = ConfigPeople(config)

    def is_person(self, uuid: str) -> bool:
        members = self.ctx.get(Members)
        return (members is not None and members.is_person(uuid)) or self.legacy.is_person(uuid)

    def member_of(self, uuid: str, major: int, minor: int) -> str | None:
        members = self.ctx.get(Members)
        found = members.member_of(uuid, major, minor) if members is not None else None
        return found or self.legacy.member_of(uuid, major, minor)


class Ble(Component):
    key = "ble"
    status_model = BleStatus
    card = "ble"
    card_order = 60
    sections = ("ble",)

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.runner = self._make_runner(ctx.config)

    @classmethod
    def wanted(cls, config: Config) -> bool:
        return config.ble is not None and config.ble.enabled

    def _make_runner(self, config: Config) -> BleRunner:
        assert config.ble is not None
        ble = config.ble
        if self.ctx.demo and ble.source.startswith("replay:"):
            ble = self._demo_capture(ble)
        if ble.person_uuids or ble.opted_in:
            log.warning("ble: [ble] person_uuids and opted_in are deprecated and will be removed in the next "
                        "release: send the store app's members with their consents on members/set instead")
        return BleRunner(ble, self.ctx.hub, config.store.gateway, people=_People(self.ctx, ble))

    async def start(self) -> None:
        members = self.ctx.get(Members)
        if members is not None:
            members.on_forget.append(self.runner.tracker.forget)

    async def stop(self) -> None:
        members = self.ctx.get(Members)
        if members is not None and self.runner.tracker.forget in members.on_forget:
            members.on_forget.remove(self.runner.tracker.forget)

    def tasks(self) -> Iterable[tuple[str, Callable[[], Awaitable[None]]]]:
        return [("ble", self.runner.run)]

    def status(self) -> BleStatus:
        return BleStatus.model_validate(self.runner.snapshot())

    def health(self) -> Iterable[Reason]:
        r = self.runner
        return ble_health(r.state, r.reason, r.tracker.snapshot())

    def metrics(self) -> Iterable[Metric]:
        t = self.runner.tracker
        reports = CounterMetricFamily("o2o_ble_reports", "BLE advertising reports decoded")
        reports.add_metric([], t.reports)
        bad = CounterMetricFamily("o2o_ble_malformed", "Malformed BLE reports and HCI events skipped")
        bad.add_metric([], t.malformed + self.runner.hci_errors)
        return [reports, bad]

    def _demo_capture(self, ble: BleConfig) -> BleConfig:
        """--demo: the BLE replay capture is made from the project's own encoders if it is not there."""
        from drivers.ble.simulate import write_demo_capture

        spec, _, query = ble.source[len("replay:"):].partition("?")
        path = Path(spec)
        if not path.is_absolute() and self.ctx.config_path is not None:
            path = (self.ctx.config_path.parent / path).resolve()
        write_demo_capture(path)  # made afresh each start: cheap, and never an old demo's
        log.info("demo: wrote a BLE capture of two beacons and a member's phone to %s", path)
        return ble.model_copy(update={"source": f"replay:{path}" + (f"?{query}" if query else "")})
