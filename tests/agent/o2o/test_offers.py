"""Proximity offers through the real daemon: members and campaigns sent on a real mosquitto, phones heard in
a replayed BLE capture, a real kiosk payment on an emulated reader's basket, the figures of a scripted day
across a DST change, the staff card, the signage screen and the portal."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import paho.mqtt.publish as mqtt_publish
import pytest

from agent.events import Event
from drivers.ble.beacons import encode_ibeacon
from drivers.ble.captures import CapturedPacket, write_btsnoop
from drivers.ble.hci import encode_adv_report
from tests.conftest import Mosquitto, Subscriber, wait_for

BASE = "o2o/v1/test-store/gw-test"
APP = "a0b1c2d3-e4f5-4a6b-8c7d-9e0f1a2b3c4d"  # the store app's iBeacon UUID
PARIS = ZoneInfo("Europe/Paris")
SHOE_GTIN = "03012345000116"


def send(broker: Mosquitto, topic: str, doc: dict[str, Any]) -> None:
    mqtt_publish.single(f"{BASE}/{topic}", json.dumps(doc), qos=1, hostname="127.0.0.1", port=broker.port)


def events(sub: Subscriber, *kinds: str) -> list[dict[str, Any]]:
    out = []
    for payload in sub.payloads(f"{BASE}/events"):
        out += [e for e in json.loads(payload)["events"] if not kinds or e["kind"] in kinds]
    return out


async def reported(sub: Subscriber, kind: str, version: int) -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        docs = [json.loads(p) for p in sub.payloads(f"{BASE}/{kind}/reported")]
        return next((d for d in docs if d.get("version") == version), None)

    report = await wait_for(found, 10)
    assert isinstance(report, dict)
    return report


def member(m: str, minor: int, *, marketing: bool = True, personalisation: bool = True,
           segments: tuple[str, ...] = ("runner",)) -> dict[str, Any]:
    return {"member": m, "ibeacon": {"uuid": APP, "major": 1, "minor": minor}, "name": f"Member {m}",
            "consents": {"personalisation": personalisation, "marketing": marketing}, "segments": list(segments)}


MEMBERS = {"version": 1, "members": [member("L1001", 1), member("L1002", 2, marketing=False),
                                     member("L1003", 3, segments=("family",))]}


def campaign(cid: str, **over: Any) -> dict[str, Any]:
    return {"id": cid, "priority": 10, "trigger": {"on": "dwell", "zones": ["shoes"], "dwell_s": 1.0},
            "offer": {"title": f"Offer {cid}", "code": cid.upper()}, "products": [SHOE_GTIN],
            "caps": {"per_person_per_day": 1, "cooldown_s": 0}, **over}


def phones(path: Path, plan: list[tuple[float, float, list[int]]]) -> None:
    """A btmon capture: for each (start, end, minors) the app's phones with those minors, loud, every 0.2 s."""
    packets = []
    t0 = time.time()
    for start, end, minors in plan:
        t = start
        while t < end:
            for minor in minors:
                ad = encode_ibeacon(APP, 1, minor, -59)
                packets.append(CapturedPacket(t0 + t, encode_adv_report(f"7A:00:00:00:00:{minor:02X}", ad, -50)))
            t += 0.2
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        write_btsnoop(f, sorted(packets, key=lambda p: p.ts))
    tmp.rename(path)


def config(factory: Any, broker: Mosquitto, capture: Path, **extra: Any) -> Any:
    return factory(
        store={"id": "test-store", "gateway": "gw-test", "name": "Boutique Odéon", "timezone": "Europe/Paris"},
        mqtt={"host": "127.0.0.1", "port": broker.port, "reconnect_min_s": 0.05, "reconnect_max_s": 0.3},
        ble={"source": f"replay:{capture}?loop", "zones": [{"id": "shoes", "rssi_enter": -60, "rssi_exit": -70}],
             "away_s": 1.0, "dwell_s": 30},
        **extra)


@pytest.fixture
async def store(mosquitto: Mosquitto, tmp_path: Path, config_factory, start_agent):  # type: ignore[no-untyped-def]
    sub = Subscriber(mosquitto.port, f"{BASE}/#")
    capture = tmp_path / "phones.btsnoop"
    ra = await start_agent(config(config_factory, mosquitto, capture))
    await wait_for(lambda: ra.agent["mqtt"].uplink.ready, 10)
    send(mosquitto, "members/set", MEMBERS)
    assert (await reported(sub, "members", 1))["status"] == "applied"
    yield ra, sub, capture
    sub.close()


async def test_one_offer_per_caps_for_the_consenting_member_only(store, mosquitto: Mosquitto) -> None:  # type: ignore[no-untyped-def]
    ra, sub, capture = store
    send(mosquitto, "campaigns/set", {"version": 1, "campaigns": [
        campaign("shoes-10"),
        {**campaign("wifi-hello"), "trigger": {"on": "wifi.session.start"}}]})
    assert (await reported(sub, "campaigns", 1))["status"] == "applied"
    # L1001 (both consents), L1002 (no marketing), minor 9 (a phone of the app nobody registered) dwell in
    # the shoes; all leave; L1001 comes back and dwells again.
    phones(capture, [(0, 2.6, [1, 2, 9]), (4.6, 7.2, [1])])
    await wait_for(lambda: ra.agent["ble"].runner.tracker.reports > 20, 10)
    capture.unlink()  # the replay plays once (the open file keeps playing), then finds nothing to loop
    await wait_for(lambda: ra.agent.hub.published_by_kind.get("beacon.exit", 0) >= 4, 15)
    await asyncio.sleep(1.5)  # the second stay's dwell threshold has passed
    ra.agent.hub.publish(Event("wifi.session.start", "gw-test", {"device": "0123456789abcdef", "minutes": 120,
                                                                 "consent": "c1", "personalised": False}))
    await wait_for(lambda: len(events(sub, "beacon.exit")) >= 4, 10)
    offers = events(sub, "offer.triggered", "offer.held_out")
    assert [(o["kind"], o["data"]["member"], o["data"]["campaign"]) for o in offers] == [
        ("offer.triggered", "L1001", "shoes-10")]
    o = offers[0]["data"]
    assert o["zone"] == "shoes" and o["trigger"] == "dwell" and o["offer"] == {"title": "Offer shoes-10",
                                                                               "code": "SHOES-10"}
    assert "L1002" not in json.dumps(offers)  # no offer event names the member without marketing consent
    everything = json.dumps(events(sub))
    assert f"{APP}:1:9" not in everything and '"minor": 9' not in everything  # the unknown phone: a hash at most
    assert any(e["data"].get("device") for e in events(sub, "beacon.enter"))
    status = await ra.agent.status()
    assert status["offers"]["triggered"] == 1 and status["offers"]["capped"] >= 1
    assert status["members"]["members"] == 3 and status["members"]["recognisable"] == 3


async def _moment(ra: Any, member_id: str, zone: str = "shoes") -> None:
    ra.agent.hub.publish(Event("beacon.enter", "gw-test", {"member": member_id, "zone": zone, "rssi": -50,
                                                           "kind": "ibeacon"}))


async def test_holdout_schedule_segments_and_priority(store, mosquitto: Mosquitto) -> None:  # type: ignore[no-untyped-def]
    ra, sub, _ = store
    now = datetime.now(PARIS)
    closed_day = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"][(now.weekday() + 3) % 7]
    enter = {"on": "enter", "zones": ["shoes"]}
    send(mosquitto, "campaigns/set", {"version": 2, "campaigns": [
        {**campaign("held"), "trigger": {"on": "enter", "zones": ["hall"]}, "holdout": 1.0},
        {**campaign("elsewhen"), "trigger": {"on": "enter", "zones": ["socks"]}, "schedule": {"days": [closed_day]}},
        {**campaign("families"), "trigger": {"on": "enter", "zones": ["toys"]}, "audience": {"segments": ["family"]}},
        {**campaign("low"), "trigger": enter, "priority": 1},
        {**campaign("high"), "trigger": enter, "priority": 50},
        {**campaign("same-b"), "trigger": {"on": "enter", "zones": ["tie"]}, "priority": 5},
        {**campaign("same-a"), "trigger": {"on": "enter", "zones": ["tie"]}, "priority": 5}]})
    assert (await reported(sub, "campaigns", 2))["status"] == "applied"
    for zone in ("hall", "socks", "toys", "shoes", "tie"):
        await _moment(ra, "L1001", zone)
    await wait_for(lambda: len(events(sub, "offer.triggered", "offer.held_out")) >= 3, 10)
    await asyncio.sleep(0.5)
    got = [(e["kind"], e["data"]["campaign"]) for e in events(sub, "offer.triggered", "offer.held_out")]
    assert got == [("offer.held_out", "held"), ("offer.triggered", "high"), ("offer.triggered", "same-a")]
    held = next(e for e in events(sub) if e["kind"] == "offer.held_out")["data"]
    assert held["variant"] is None and held["member"] == "L1001"


async def test_bad_documents_change_nothing(store, mosquitto: Mosquitto) -> None:  # type: ignore[no-untyped-def]
    ra, sub, _ = store
    send(mosquitto, "campaigns/set", {"version": 3, "campaigns": [campaign("ok")]})
    assert (await reported(sub, "campaigns", 3))["status"] == "applied"
    send(mosquitto, "campaigns/set", {"version": 4, "campaigns": [campaign("ok"), {**campaign("bad"), "holdout": 2}]})
    bad = await reported(sub, "campaigns", 4)
    assert bad["status"] == "rejected" and bad["errors"][0]["path"] == "campaigns[1].holdout"
    assert bad["running_version"] == 3 and [c.id for c in ra.agent["offers"].campaigns] == ["ok"]
    send(mosquitto, "members/set", {"version": 2, "members": [{"member": "X", "ibeacon": {"uuid": "zz", "major": 1,
                                                                                        "minor": 1}}]})
    bad = await reported(sub, "members", 2)
    assert bad["status"] == "rejected" and bad["errors"][0]["path"] == "members[0].ibeacon.uuid"
    assert len(ra.agent["members"]) == 3
    send(mosquitto, "members/set", {"version": 1, "members": []})  # stale
    assert (await reported(sub, "members", 1))["status"] == "applied"  # the first report, kept
    await wait_for(lambda: any(json.loads(p).get("errors") and "stale" in json.loads(p)["errors"][0]["message"]
                               for p in sub.payloads(f"{BASE}/members/reported")), 10)


async def test_members_survive_a_restart_and_are_forgotten(mosquitto: Mosquitto, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                         config_factory, start_agent) -> None:
    sub = Subscriber(mosquitto.port, f"{BASE}/#")
    try:
        cfg = config(config_factory, mosquitto, tmp_path / "none.btsnoop")
        ra = await start_agent(cfg)
        await wait_for(lambda: ra.agent["mqtt"].uplink.ready, 10)
        send(mosquitto, "members/set", MEMBERS)
        await reported(sub, "members", 1)
        await ra.stop()
        rb = await start_agent(cfg)
        members = rb.agent["members"]
        assert len(members) == 3 and members.member_of(APP, 1, 1) == "L1001"
        rb.agent.hub.publish(Event("consent.withdrawn", "gw-test", {"consent": "c9", "member": "L1001"}))
        await wait_for(lambda: members.member_of(APP, 1, 1) is None, 5)
        await rb.stop()
        import sqlite3

        conn = sqlite3.connect(cfg.storage.path.parent / "o2o-data.db")
        assert [r[0] for r in conn.execute("SELECT member FROM members ORDER BY member")] == ["L1002", "L1003"]
        conn.close()
        rc = await start_agent(cfg)
        await wait_for(lambda: rc.agent["mqtt"].uplink.ready, 10)
        send(mosquitto, "members/set", {"version": 2, "members": [member("L1003", 3)]})  # drops L1002 too
        await reported(sub, "members", 2)
        assert rc.agent["members"].get("L1002") is None and rc.agent["members"].get("L1003") is not None
    finally:
        sub.close()


async def test_the_signage_screen_names_nobody(mosquitto: Mosquitto, tmp_path: Path, config_factory,  # type: ignore[no-untyped-def]
                                              start_agent) -> None:
    sub = Subscriber(mosquitto.port, f"{BASE}/#")
    try:
        cfg = config(config_factory, mosquitto, tmp_path / "none.btsnoop",
                     offers={"signage": [{"id": "wall-1", "token": "screen-secret", "zones": ["shoes"]}]})
        ra = await start_agent(cfg)
        await wait_for(lambda: ra.agent["mqtt"].uplink.ready, 10)
        send(mosquitto, "members/set", MEMBERS)
        send(mosquitto, "campaigns/set", {"version": 1, "campaigns": [campaign("shoes-10"),
                                                                      {**campaign("toys"), "trigger": {
                                                                          "on": "enter", "zones": ["toys"]}}]})
        await reported(sub, "campaigns", 1)
        await _moment(ra, "L1001", "shoes")
        await wait_for(lambda: ra.agent["offers"].counts["moments"] >= 1, 5)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{ra.base_url}/signage/wall-1?token=screen-secret") as r:
                page = await r.text()
            assert r.status == 200 and "Offer shoes-10" in page and "Offer toys" not in page
            for private in ("L1001", "Member", "member", APP):
                assert private not in page
            async with http.get(f"{ra.base_url}/signage/wall-1?token=nope") as r:
                assert r.status == 404
            async with http.get(f"{ra.base_url}/signage/elsewhere?token=screen-secret") as r:
                assert r.status == 404
    finally:
        sub.close()
