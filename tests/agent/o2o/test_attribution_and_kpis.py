"""Attribution of real kiosk payments (and sales made elsewhere) to the offers a member saw, and the day's
figures: GET /api/offers and kpi.daily agree with a scripted day that crosses a DST change."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp

from agent.events import Event
from drivers.rfid.epc import encode_sgtin96
from drivers.rfid.simulator import ManualScenario, PtySimulator
from tests.agent.o2o.test_offers import BASE, MEMBERS, SHOE_GTIN, campaign, events, reported, send
from tests.conftest import Mosquitto, Subscriber, wait_for

TOKEN = "kiosk-secret"
SOCKS_GTIN = "03012345000598"
CATALOG = {"version": 1, "currency": "EUR", "products": [{"gtin": SHOE_GTIN, "name": "Trail shoe", "price": "89.90"},
                                                         {"gtin": SOCKS_GTIN, "name": "Socks", "price": "9.90"}]}


def tag(gtin: str, serial: int) -> bytes:
    return encode_sgtin96(gtin, serial, company_prefix_digits=7)


async def test_kiosk_payments_are_attributed(mosquitto: Mosquitto, tmp_path: Path, config_factory,  # type: ignore[no-untyped-def]
                                             start_agent) -> None:
    scenario = ManualScenario()
    sim = PtySimulator("mercury", scenario, link=tmp_path / "dev" / "sco", period_s=0.05)
    port = sim.start()
    sub = Subscriber(mosquitto.port, f"{BASE}/#")
    try:
        ra = await start_agent(config_factory(
            store={"id": "test-store", "gateway": "gw-test", "timezone": "Europe/Paris"},
            mqtt={"host": "127.0.0.1", "port": mosquitto.port, "reconnect_min_s": 0.05, "reconnect_max_s": 0.3},
            rfid={"gone_after_s": 0.5, "readers": [{"id": "sco", "port": port, "protocol": "mercury",
                                                    "baudrate": 115200, "zones": {1: "checkout-1"}}]},
            checkout={"stations": [{"id": "sco-1", "zones": ["checkout-1"], "token": TOKEN, "settle_s": 0.1}]}))
        agent = ra.agent
        await wait_for(lambda: agent["mqtt"].uplink.ready, 10)
        send(mosquitto, "members/set", MEMBERS)
        send(mosquitto, "campaigns/set", {"version": 1, "campaigns": [
            {**campaign("shoes-10"), "trigger": {"on": "enter", "zones": ["shoes"]}, "attribution_window_s": 60},
            {**campaign("fleeting"), "trigger": {"on": "enter", "zones": ["hall"]}, "attribution_window_s": 0.5},
            {**campaign("held"), "trigger": {"on": "enter", "zones": ["hall"]}, "priority": 99, "holdout": 1.0}]})
        send(mosquitto, "catalog/set", CATALOG)
        await reported(sub, "campaigns", 1)
        await reported(sub, "catalog", 1)
        for m, zone in (("L1001", "shoes"), ("L1003", "hall")):
            agent.hub.publish(Event("beacon.enter", "gw-test", {"member": m, "zone": zone, "kind": "ibeacon"}))
        await wait_for(lambda: len(events(sub, "offer.triggered", "offer.held_out")) >= 2, 10)

        async def pay(epcs: list[bytes], payment: str, who: str | None) -> dict[str, Any]:
            for e in epcs:
                scenario.put(e)
            await wait_for(lambda: agent["checkout"].basket("sco-1").settled
                           and len(agent["checkout"].basket("sco-1").epcs) == len(epcs), 10)
            async with aiohttp.ClientSession() as http:
                auth = {"Authorization": f"Bearer {TOKEN}"}
                async with http.get(f"{ra.base_url}/api/checkout/sco-1/basket", headers=auth) as r:
                    basket = await r.json()
                body = {"payment_id": payment, "basket_id": basket["basket_id"], "total": basket["total"]}
                if who:
                    body["member"] = who
                async with http.post(f"{ra.base_url}/api/checkout/sco-1/pay", headers=auth, json=body) as r:
                    assert r.status == 200, await r.text()
                    receipt = await r.json()
            for e in epcs:
                scenario.remove(e)
            await wait_for(lambda: not agent["checkout"].basket("sco-1").epcs, 10)
            return receipt  # type: ignore[no-any-return]

        await pay([tag(SHOE_GTIN, 1), tag(SOCKS_GTIN, 2)], "pay-1", "L1001")  # inside shoes-10's window
        await pay([tag(SHOE_GTIN, 3)], "pay-2", None)  # nobody named at the kiosk: nothing to attribute
        await asyncio.sleep(0.6)  # "fleeting"'s window is over
        await pay([tag(SHOE_GTIN, 4)], "pay-3", "L1003")  # held out of "held": converts, "fleeting": too late
        await wait_for(lambda: events(sub, "offer.holdout_converted"), 10)
        await asyncio.sleep(0.3)
        redeemed = events(sub, "offer.redeemed")
        assert [e["data"] for e in redeemed] == [{"campaign": "shoes-10", "variant": None, "member": "L1001",
                                                   "payment_id": "pay-1", "gtins": [SHOE_GTIN], "amount": "89.90"}]
        (conv,) = events(sub, "offer.holdout_converted")
        assert conv["data"]["campaign"] == "held" and conv["data"]["payment_id"] == "pay-3"
        paid = [e["data"] for e in events(sub, "checkout.paid")]
        assert [p.get("member") for p in paid] == ["L1001", None, "L1003"]

        # a sale made elsewhere (the POS, the web shop) to the member counts the same way
        send(mosquitto, "sold/add", {"epcs": [tag(SHOE_GTIN, 9).hex()], "reason": "pos", "member": "L1001",
                                     "payment_id": "pos-77"})
        await wait_for(lambda: len(events(sub, "offer.redeemed")) == 2, 10)
        assert events(sub, "offer.redeemed")[1]["data"]["payment_id"] == "pos-77"

        async with aiohttp.ClientSession() as http, http.get(
                f"{ra.base_url}/api/offers", headers={"Authorization": "Bearer test-token"}) as r:
            day = await r.json()
        by_id = {c["id"]: c for c in day["campaigns"]}
        assert by_id["shoes-10"] == {"id": "shoes-10", "triggered": 1, "held_out": 0, "redeemed": 2,
                                     "holdout_converted": 0, "revenue": "179.80"}
        assert by_id["held"]["held_out"] == 1 and by_id["held"]["holdout_converted"] == 1
    finally:
        sub.close()
        sim.stop()


PARIS = ZoneInfo("Europe/Paris")


def at(text: str) -> float:
    """A local time in Paris, e.g. '2026-10-25 02:30+01:00' (after the clocks went back)."""
    return datetime.fromisoformat(text).timestamp()


# 2026-10-25: France goes back from 03:00 CEST to 02:00 CET; the day has 25 hours and 02:30 happens twice.
SCRIPT = [
    ("offer.triggered", "2026-10-25 00:10+02:00", {"campaign": "c1", "member": "L1"}),
    ("offer.triggered", "2026-10-25 02:30+02:00", {"campaign": "c1", "member": "L2"}),  # the first 02:30
    ("offer.triggered", "2026-10-25 02:30+01:00", {"campaign": "c1", "member": "L3"}),  # the second 02:30
    ("offer.held_out", "2026-10-25 12:00+01:00", {"campaign": "c1", "member": "L4"}),
    ("offer.redeemed", "2026-10-25 23:59+01:00", {"campaign": "c1", "member": "L1", "amount": "59.90"}),
    ("offer.holdout_converted", "2026-10-25 18:00+01:00", {"campaign": "c1", "member": "L4", "amount": "10.00"}),
    ("offer.triggered", "2026-10-26 00:00+01:00", {"campaign": "c1", "member": "L5"}),  # the next day
    ("offer.triggered", "2026-10-24 23:59+02:00", {"campaign": "c1", "member": "L6"}),  # the day before
    ("beacon.enter", "2026-10-25 10:00+01:00", {"member": "L1", "zone": "shoes"}),
    ("beacon.exit", "2026-10-25 10:02+01:00", {"member": "L1", "zone": "shoes"}),
    ("beacon.enter", "2026-10-25 11:00+01:00", {"device": "abc", "zone": "shoes"}),
    ("beacon.exit", "2026-10-25 11:10+01:00", {"device": "abc", "zone": "shoes"}),
    ("beacon.enter", "2026-10-25 11:00+01:00", {"beacon": "trolley-7", "zone": "shoes"}),  # not a person
    ("consent.given", "2026-10-25 09:00+01:00", {"choices": {"wifi": True, "marketing": True,
                                                             "personalisation": False}}),
    ("consent.given", "2026-10-25 09:30+01:00", {"choices": {"wifi": True, "marketing": False,
                                                             "personalisation": False}}),
    ("collect.handed_over", "2026-10-25 15:00+01:00", {"order_id": "o1", "wait_s": 120}),
]


async def test_a_scripted_day_across_dst(mosquitto: Mosquitto, config_factory, start_agent) -> None:  # type: ignore[no-untyped-def]
    sub = Subscriber(mosquitto.port, f"{BASE}/#")
    try:
        ra = await start_agent(config_factory(
            store={"id": "test-store", "gateway": "gw-test", "timezone": "Europe/Paris"},
            mqtt={"host": "127.0.0.1", "port": mosquitto.port, "reconnect_min_s": 0.05, "reconnect_max_s": 0.3}))
        await wait_for(lambda: ra.agent["mqtt"].uplink.ready, 10)
        for kind, when, data in SCRIPT:
            ra.agent.hub.publish(Event(kind, "gw-test", data, ts=at(when)))
        await wait_for(lambda: ra.agent["rules"].events >= len(SCRIPT), 10)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{ra.base_url}/api/offers?day=2026-10-25",
                                headers={"Authorization": "Bearer test-token"}) as r:
                day = await r.json()
            async with http.get(f"{ra.base_url}/api/offers?day=2026-13-45",
                                headers={"Authorization": "Bearer test-token"}) as r:
                assert r.status == 400
        assert day["campaigns"] == [{"id": "c1", "triggered": 3, "held_out": 1, "redeemed": 1,
                                     "holdout_converted": 1, "revenue": "59.90"}]
        assert day["zones"] == {"shoes": {"visits": 2, "median_dwell_s": 360.0}}
        assert day["wifi_optin"] == {"consents": 2, "wifi": 1.0, "marketing": 0.5, "personalisation": 0.0}
        assert day["collect"] == {"arrived": 0, "handed_over": 1, "median_wait_s": 120.0}
        assert {d["day"]: d["triggered"] for d in day["days"]}["2026-10-24"] == 1
        mqtt_cmd = {"id": "k1", "args": {"day": "2026-10-25"}}
        send(mosquitto, "cmd/kpis", mqtt_cmd)
        await wait_for(lambda: events(sub, "kpi.daily"), 10)
        (daily,) = events(sub, "kpi.daily")
        c = daily["data"]["counters"]
        assert daily["data"]["day"] == "2026-10-25"
        assert (c["campaign.c1.triggered"], c["campaign.c1.held_out"], c["campaign.c1.redeemed"]) == (3, 1, 1)
        assert c["campaign.c1.redeemed_revenue"] == day["campaigns"][0]["revenue"]
        assert c["zone.shoes.visits"] == day["zones"]["shoes"]["visits"]
        assert daily["data"]["medians"]["zone.shoes.dwell_s"]["median"] == 360.0
        result = json.loads(next(p for p in sub.payloads(f"{BASE}/cmd/kpis/result")))
        assert result["ok"] and result["result"]["counters"] == c
        assert Decimal(c["campaign.c1.redeemed_revenue"]) == Decimal("59.90")
    finally:
        sub.close()


async def test_kpi_daily_goes_once_after_the_stores_midnight(monkeypatch, config_factory) -> None:  # type: ignore[no-untyped-def]
    """The day before is sent after the store's midnight (Paris, not UTC), once, and not again after a restart."""
    from agent.app import Agent
    from agent.components.outbox import OutboxComponent
    from agent.o2o import store_kpis
    from agent.o2o.store_kpis import StoreKpis
    from agent.rules.engine import RulesEngine

    monkeypatch.setattr(store_kpis, "FLUSH_S", 0.05)
    now = [at("2026-10-25 23:58+01:00")]  # two minutes before midnight in Paris (22:58 UTC)

    class ClockedKpis(StoreKpis):
        def __init__(self, ctx):  # type: ignore[no-untyped-def]
            super().__init__(ctx, clock=lambda: now[0])

    cfg = config_factory(store={"id": "s", "gateway": "g", "timezone": "Europe/Paris"}, mqtt={"enabled": False})

    async def run_until(t: str) -> list[Event]:
        agent = Agent(cfg, registry=[OutboxComponent, ClockedKpis, RulesEngine])
        sub = agent.hub.subscribe("t", kinds={"kpi.daily"})
        await agent.start()
        try:
            agent.hub.publish(Event("offer.triggered", "g", {"campaign": "c", "member": "L"}, ts=now[0]))
            await asyncio.sleep(0.3)
            now[0] = at(t)
            await asyncio.sleep(0.3)
        finally:
            await agent.shutdown()
        return sub.get_nowait_batch(100)

    assert await run_until("2026-10-25 23:59+01:00") == []  # still the 25th in Paris
    sent = await run_until("2026-10-26 00:01+01:00")
    assert [e.data["day"] for e in sent] == ["2026-10-25"]
    assert sent[0].data["counters"]["campaign.c.triggered"] == 2  # both runs' offers, kept across the restart
    assert await run_until("2026-10-26 00:05+01:00") == []  # once


def test_an_unknown_time_zone_is_refused_with_its_key_path() -> None:
    from agent.config import parse_config
    from agent.errors import ConfigError

    try:
        parse_config({"store": {"id": "s", "gateway": "g", "timezone": "Europe/Atlantis"}})
    except ConfigError as exc:
        assert [p.path for p in exc.problems] == ["store.timezone"] and "unknown time zone" in exc.problems[0].message
    else:
        raise AssertionError("an unknown time zone was accepted")
