"""Captures the project makes from its own encoders: the demo's beacons and the tests' walks."""

from __future__ import annotations

import math
from pathlib import Path

from drivers.ble.beacons import encode_eddystone_tlm, encode_eddystone_uid, encode_ibeacon
from drivers.ble.captures import CapturedPacket, write_btsnoop
from drivers.ble.hci import encode_adv_report

__all__ = ["DEMO_BEACONS", "DEMO_PHONE", "write_demo_capture"]

# (id, kind, identity) of the demo's beacons, as config/demo.toml lists them.
DEMO_BEACONS = [
    ("trolley-7", "ibeacon", ("f7826da6-4fa2-4e98-8024-bc5b71e0893e", 1, 7)),
    ("locker-3", "eddystone", ("edd1ebeac04e5defa017", "0123456789ab")),
]


# The store app on a member's phone (uuid, major, minor): the demo's members/set knows it (agent/o2o/demo.py).
DEMO_PHONE = ("a0b1c2d3-e4f5-4a6b-8c7d-9e0f1a2b3c4d", 1, 1001)


def _phone_rssi(second: float) -> float | None:
    """The member walks in every two minutes: entrance, aisle (long enough for a dwell offer), counter, out."""
    if second < 10 or second >= 100:
        return None
    if second < 20:
        return -80  # the entrance
    if second < 60:
        return -66  # the aisle
    return -50  # the counter


def write_demo_capture(path: Path, *, seconds: int = 120, start: float = 1_763_900_000.0) -> None:
    """Two beacons over two minutes: a trolley pushed from the entrance to the counter and back, a locker
    beacon that stays put (with telemetry); and a member's phone walking in. 4 Hz each, RSSI with a little
    noise, as a btmon capture."""
    packets = []
    for i in range(seconds * 4):
        t = start + i / 4
        phase = (i / 4) / seconds
        trolley = -88 + 40 * math.sin(math.pi * phase) + 3 * math.sin(i * 1.7)
        uuid, major, minor = DEMO_BEACONS[0][2]
        packets.append(CapturedPacket(t, encode_adv_report("C0:DE:00:00:00:07", encode_ibeacon(
            str(uuid), int(major), int(minor), -59), round(trolley))))
        ns, inst = DEMO_BEACONS[1][2]
        locker = -66 + 2 * math.sin(i * 2.3)
        packets.append(CapturedPacket(t + 0.1, encode_adv_report(
            "C0:DE:00:00:00:03", encode_eddystone_uid(str(ns), str(inst), -20), round(locker))))
        phone = _phone_rssi(i / 4)
        if phone is not None:
            uuid, major, minor = DEMO_PHONE
            packets.append(CapturedPacket(t + 0.15, encode_adv_report("7A:11:22:33:44:55", encode_ibeacon(
                uuid, major, minor, -59), round(phone + 2 * math.sin(i * 0.9)))))
        if i % 40 == 0:
            packets.append(CapturedPacket(t + 0.2, encode_adv_report(
                "C0:DE:00:00:00:03", encode_eddystone_tlm(2950, 21.5, i * 10, 3600 + i / 4), round(locker))))
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        write_btsnoop(f, packets)
