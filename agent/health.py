"""The one-line answer to "is everything working, and if not, what do I do?".

Pure: from the status document to a level (green / amber / red) and reasons
written for store staff, not engineers.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

__all__ = ["assess"]


def _clock_time(ts: float) -> str:
    return datetime.fromtimestamp(ts).strftime("%H:%M")


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.0f} h"


def assess(status: dict[str, Any], *, now: float | None = None) -> dict[str, Any]:
    now = time.time() if now is None else now
    red: list[str] = []
    amber: list[str] = []
    if not status.get("outbox_ok", True):
        red.append(f"Event storage failing: {status.get('outbox_error') or 'unknown error'}. Call support.")
    readers = status.get("readers", [])
    for r in readers:
        state = r["state"]
        if state == "online":
            continue
        since = _clock_time(r["since"]) if r.get("since") else "?"
        if state == "offline":
            amber.append(f"Reader {r['id']} unplugged or off since {since}: check its cable and power.")
        elif state == "silent":
            amber.append(f"Reader {r['id']} not answering since {since}: switch it off and on.")
        elif state == "paused":
            amber.append(f"Reader {r['id']} paused by staff since {since}.")
        else:
            amber.append(f"Reader {r['id']} {state} since {since}.")
    if readers and all(r["state"] in ("offline", "silent") for r in readers):
        red.append("No RFID reader is working: self-checkout and the exit gate are blind.")
    ble = status.get("ble")
    if ble and ble.get("state") not in ("ok", "starting"):
        amber.append(f"Bluetooth beacons not heard: {ble.get('reason') or ble.get('state')}.")
    for b in (ble or {}).get("beacons", []):
        if b.get("battery_low"):
            amber.append(f"Beacon {b['id']} battery low ({b['health']['battery_mv']} mV): replace it.")
    mqtt = status.get("mqtt", {})
    outbox = status.get("outbox", {})
    if mqtt.get("enabled", True) and not mqtt.get("connected"):
        waiting = outbox.get("depth", 0)
        age = outbox.get("oldest_age_s")
        down = f" for {_duration(age)}" if age else ""
        amber.append(f"Cloud link down{down}, {waiting:,} events waiting (kept safely on the gateway).")
    if outbox.get("dropped"):
        amber.append(f"{outbox['dropped']:,} old events dropped because local storage was full.")
    alarms = status.get("alarms", {}).get("unacknowledged", 0)
    if alarms:
        amber.append(f"{alarms} exit-gate alarm(s) to check.")
    level = "red" if red else "amber" if amber else "green"
    reasons = red + amber or ["Everything is working."]
    return {"level": level, "summary": reasons[0], "reasons": reasons}
