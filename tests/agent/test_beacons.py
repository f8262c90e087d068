"""Beacon presence from a generated capture: zones with hysteresis, dwell, exit, health, privacy."""

from __future__ import annotations

import io
import json
import sqlite3
from pathlib import Path
from typing import Any

from agent.beacons import BeaconTracker, RssiFilter, distance_m
from agent.components.ble import ble_health
from agent.config import BleConfig
from agent.privacy import DailySalt
from drivers.ble.beacons import encode_eddystone_tlm, encode_eddystone_uid, encode_ibeacon
from drivers.ble.captures import CapturedPacket, write_btsnoop
from drivers.ble.hci import encode_adv_report, parse_event
from tests.conftest import wait_for

SHOE_UUID = "f7826da6-4fa2-4e98-8024-bc5b71e0893e"
NS, INST = "edd1ebeac04e5defa017", "0123456789ab"
APP_UUID = "a0b1c2d3-e4f5-4a6b-8c7d-9e0f1a2b3c4d"

CONFIG = {
    "source": "replay:/dev/null",
    "beacons": [{"id": "trolley-1", "ibeacon": {"uuid": SHOE_UUID, "major": 1, "minor": 7}},
                {"id": "locker-3", "eddystone_uid": {"namespace": NS, "instance": INST}}],
    "zones": [{"id": "counter", "rssi_enter": -55, "rssi_exit": -62},
              {"id": "aisle", "rssi_enter": -70, "rssi_exit": -77},
              {"id": "entrance", "rssi_enter": -85, "rssi_exit": -92}],
    "dwell_s": 5.0, "away_s": 4.0, "person_uuids": [APP_UUID], "opted_in": [f"{APP_UUID}:9:1"],
}


def ibeacon(rssi: int, minor: int = 7, uuid: str = SHOE_UUID, major: int = 1, addr: str = "C0:00:00:00:00:01") -> bytes:
    return encode_adv_report(addr, encode_ibeacon(uuid, major, minor, -59), rssi)


def eddy(rssi: int) -> bytes:
    return encode_adv_report("C0:00:00:00:00:02", encode_eddystone_uid(NS, INST, -20), rssi)


def walk() -> list[CapturedPacket]:
    """Trolley: entrance -> aisle -> counter (stays) -> gone. Locker beacon: aisle, then leaves. 5 Hz each."""
    packets = []
    t0 = 1_700_000_000.0
    for i in range(150):  # 30 s
        t = t0 + i * 0.2
        trolley = -80 if t - t0 < 6 else -65 if t - t0 < 14 else -50
        if t - t0 < 24:
            packets.append(CapturedPacket(t, ibeacon(trolley)))
        if t - t0 < 10:
            packets.append(CapturedPacket(t + 0.05, eddy(-66)))
    return packets


def run(packets: list[CapturedPacket], tracker: BeaconTracker) -> list[tuple[str, str, str | None]]:
    seq = []
    for p in packets:
        for kind, data in tracker.tick(p.ts):
            seq.append((kind, data.get("beacon") or data.get("member") or "device", data["zone"]))
        for r in parse_event(p.h4):
            for kind, data in tracker.on_report(r, p.ts):
                seq.append((kind, data.get("beacon") or data.get("member") or "device", data["zone"]))
    last = packets[-1].ts
    for kind, data in tracker.tick(last + 10):
        seq.append((kind, data.get("beacon") or "device", data["zone"]))
    return seq


def test_two_beacons_through_three_zones_give_the_exact_sequence() -> None:
    seq = run(walk(), BeaconTracker(BleConfig.model_validate(CONFIG)))
    trolley = [s for s in seq if s[1] == "trolley-1"]
    locker = [s for s in seq if s[1] == "locker-3"]
    assert trolley == [
        ("beacon.enter", "trolley-1", "entrance"), ("beacon.dwell", "trolley-1", "entrance"),
        ("beacon.exit", "trolley-1", "entrance"), ("beacon.enter", "trolley-1", "aisle"),
        ("beacon.dwell", "trolley-1", "aisle"),
        ("beacon.exit", "trolley-1", "aisle"), ("beacon.enter", "trolley-1", "counter"),
        ("beacon.dwell", "trolley-1", "counter"), ("beacon.exit", "trolley-1", "counter"),
    ]
    assert locker == [("beacon.enter", "locker-3", "aisle"), ("beacon.dwell", "locker-3", "aisle"),
                      ("beacon.exit", "locker-3", "aisle")]


def test_hovering_at_a_boundary_does_not_flap() -> None:
    tracker = BeaconTracker(BleConfig.model_validate(CONFIG))
    packets = []
    for i in range(300):  # 60 s oscillating around the aisle boundary (-70 enter, -77 exit), with noise spikes
        rssi = [-69, -72, -71, -74, -68, -75, -60, -76, -71][i % 9]
        packets.append(CapturedPacket(1_700_000_000 + i * 0.2, ibeacon(rssi)))
    seq = [s for s in run(packets, tracker) if s[0] != "beacon.dwell"]
    assert seq == [("beacon.enter", "trolley-1", "aisle"), ("beacon.exit", "trolley-1", "aisle")]


def test_people_are_members_only_with_consent_else_daily_hashes() -> None:
    days = iter(["2026-11-23", "2026-11-23", "2026-11-24"])
    tracker = BeaconTracker(BleConfig.model_validate(CONFIG), salt=DailySalt(today=lambda: next(days)))
    out = []
    for i, (major, minor) in enumerate([(9, 1), (5, 5), (5, 5), (5, 5)]):
        (r,) = parse_event(ibeacon(-50, uuid=APP_UUID, major=major, minor=minor, addr=f"D0:00:00:00:00:0{i}"))
        out += tracker.on_report(r, 1000.0 + i * 100)
    enters = [d for k, d in out if k == "beacon.enter"]
    assert enters[0]["member"] == f"{APP_UUID}:9:1"
    devices = [d["device"] for d in enters[1:]]
    assert all(len(d) == 16 and APP_UUID not in d for d in devices)
    assert len(enters) == 3 and devices[0] != devices[1]  # a new day, a new salt: not linkable across days
    text = json.dumps(out)
    assert "5:5" not in text and "D0:00" not in text  # no raw identifier, no address


def test_unknown_and_malformed_advertisers_are_counted_not_kept() -> None:
    tracker = BeaconTracker(BleConfig.model_validate(CONFIG))
    (stranger,) = parse_event(ibeacon(-50, uuid="11111111-2222-3333-4444-555555555555"))
    (other,) = parse_event(encode_adv_report("C0:00:00:00:00:09", b"\x02\x01\x06\x03\x03\x0f\x18", -60))
    (bad,) = parse_event(encode_adv_report("C0:00:00:00:00:08", b"\x09\xff\x4c\x00\x02\x15\x01\x02\x03\x04", -60))
    assert tracker.on_report(stranger, 1.0) == [] and tracker.on_report(other, 1.0) == []
    assert tracker.on_report(bad, 1.0) == []
    assert tracker.unknown == {"ibeacon": 1, "other": 1} and tracker.malformed == 1 and tracker.snapshot() == []


def test_tlm_health_and_low_battery_for_fixed_beacons() -> None:
    tracker = BeaconTracker(BleConfig.model_validate({**CONFIG, "low_battery_mv": 2600}))
    (uid,) = parse_event(eddy(-60))
    tracker.on_report(uid, 10.0)
    (tlm,) = parse_event(encode_adv_report("C0:00:00:00:00:02", encode_eddystone_tlm(2400, 21.5, 1234, 86400.0), -60))
    out = tracker.on_report(tlm, 11.0)
    assert ("beacon.health", {"beacon": "locker-3", "battery_mv": 2400, "temperature_c": 21.5, "adv_count": 1234,
                              "uptime_s": 86400.0}) in out
    assert ("beacon.battery_low", {"beacon": "locker-3", "battery_mv": 2400, "threshold_mv": 2600}) in out
    assert tracker.on_report(tlm, 12.0) == []  # health at most every 10 min, the alert once
    (locker,) = tracker.snapshot()
    assert locker["battery_low"] is True  # against the configured threshold (2600), not a default
    reasons = [r.text for r in ble_health("ok", None, tracker.snapshot())]
    assert "Beacon locker-3 battery low (2400 mV): replace it." in reasons


def test_filter_and_distance() -> None:
    f = RssiFilter()
    for v in (-60, -60, -20, -60, -60):  # a spike
        f.update(v)
    assert -62 < (f.value or 0) < -58
    assert round(distance_m(-59, -59, 2.5), 2) == 1.0
    assert 9.5 < distance_m(-84, -59, 2.5) < 10.5


async def test_replay_source_end_to_end(tmp_path: Path, config_factory, start_agent) -> None:  # type: ignore[no-untyped-def]
    capture = tmp_path / "walk.btsnoop"
    buf = io.BytesIO()
    write_btsnoop(buf, walk())
    capture.write_bytes(buf.getvalue())
    ble: dict[str, Any] = {**CONFIG, "source": f"replay:{capture}?fast"}
    ra = await start_agent(config_factory(ble=ble, mqtt={"enabled": False}))
    await wait_for(lambda: ra.agent.hub.published_by_kind.get("beacon.exit", 0) >= 2, 10)
    status = await ra.agent.status()
    assert status["ble"]["state"] == "ok" and status["ble"]["reports"] > 100
    await ra.stop()
    conn = sqlite3.connect(ra.agent.config.storage.path)
    kinds = [json.loads(b)["kind"] for (b,) in conn.execute("SELECT body FROM outbox ORDER BY seq")]
    conn.close()
    assert kinds.count("beacon.enter") == 4  # trolley x3 (entrance, aisle, counter) + locker


async def test_missing_adapter_or_capture_is_a_clear_status(config_factory, start_agent, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ra = await start_agent(config_factory(ble={"source": f"replay:{tmp_path / 'nope.btsnoop'}"}, mqtt={"enabled": False}))
    await wait_for(lambda: ra.agent["ble"].runner.state == "missing", 5)
    status = await ra.agent.status()
    assert "not found" in status["ble"]["reason"]
    assert any("Bluetooth beacons not heard" in r for r in status["health"]["reasons"])
    await ra.stop()
    rb = await start_agent(config_factory(ble={"source": "hci7"}, mqtt={"enabled": False}))
    await wait_for(lambda: rb.agent["ble"].runner.state == "unavailable", 5)
    assert (rb.agent["ble"].runner.reason and "hci7" in rb.agent["ble"].runner.reason) or "Bluetooth" in (rb.agent["ble"].runner.reason or "")
    assert (await rb.agent.status())["outbox"] is not None  # the rest of the daemon carries on
