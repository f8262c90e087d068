"""What `o2o-edge run --demo` shows of the O2O features: one app member, two campaigns, one order to collect.

The demo's BLE capture (drivers/ble/simulate.py) has the member's phone walk in every two minutes:
the entrance (a welcome offer), the aisle (a trail-shoe offer after 15 s there), the counter, then
out; their click-and-collect order is announced on the staff page the first time they are heard.
"""

from __future__ import annotations

from typing import Any

from drivers.ble.simulate import DEMO_PHONE
from drivers.rfid.epc import gtin_check_digit
from drivers.rfid.simulator import DEMO_PRODUCTS, demo_epc

__all__ = ["DEMO_CAMPAIGNS", "DEMO_MEMBERS", "DEMO_ORDERS"]


def _gtin(i: int) -> str:
    body = DEMO_PRODUCTS[i][1]
    return body + str(gtin_check_digit(body))


_UUID, _MAJOR, _MINOR = DEMO_PHONE

DEMO_MEMBERS: dict[str, Any] = {"version": 1, "members": [
    {"member": "L1001", "name": "Ms B.", "ibeacon": {"uuid": _UUID, "major": _MAJOR, "minor": _MINOR},
     "consents": {"personalisation": True, "marketing": True}, "segments": ["runner"]}]}

DEMO_CAMPAIGNS: dict[str, Any] = {"version": 1, "campaigns": [
    {"id": "welcome", "priority": 1, "trigger": {"on": "enter", "zones": ["entrance"]},
     "offer": {"title": "Welcome back!", "text": "A coffee is on us at the counter today.", "code": "COFFEE"},
     "caps": {"per_person_per_day": 1, "cooldown_s": 3600}},
    {"id": "trail-week", "priority": 10, "trigger": {"on": "dwell", "zones": ["aisle"], "dwell_s": 15},
     "audience": {"segments": ["runner"]},
     "offer": {"title": "-15% on trail running shoes", "text": "Show this at the self-checkout.", "code": "TRAIL15"},
     "variants": [{"id": "a", "share": 0.5, "offer": {"title": "-15% on trail running shoes", "code": "TRAIL15"}},
                  {"id": "b", "share": 0.5, "offer": {"title": "Trail shoes: the socks are on us", "code": "SOCKS"}}],
     "caps": {"per_person_per_day": 1, "cooldown_s": 3600}, "products": [_gtin(0), _gtin(4)]}]}

DEMO_ORDERS: dict[str, Any] = {"orders": [
    {"order_id": "1234", "member": "L1001", "pickup_point": "counter 2",
     "items": [{"gtin": _gtin(2), "epc": demo_epc(2, 77).hex().upper()}, {"gtin": _gtin(3)}]}]}
