"""Click-and-collect through the real daemon: orders over a real mosquitto, the customer's phone in a replayed
BLE capture, the staff page in Chromium announcing the arrival, the handover by a staff login, and the exit
gate quiet for the order's items while another unpaid item of the same product still alarms."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from agent.web.auth import hash_password
from drivers.rfid.simulator import ManualScenario, PtySimulator
from tests.agent.o2o.test_attribution_and_kpis import CATALOG, tag
from tests.agent.o2o.test_offers import BASE, MEMBERS, SHOE_GTIN, events, phones, reported, send
from tests.agent.o2o.test_offers_browser import in_thread, until
from tests.agent.web.test_staff_page_browser import ARTIFACTS, browser  # noqa: F401  (fixture)
from tests.conftest import Mosquitto, Subscriber, wait_for

FLOOR, EXIT = 1, 2
ORDER = {"orders": [{"order_id": "1234", "member": "L1001", "pickup_point": "counter 2",
                     "items": [{"gtin": SHOE_GTIN, "epc": tag(SHOE_GTIN, 501).hex()}, {"gtin": SHOE_GTIN}]}]}


def store_config(factory: Any, broker: Mosquitto, capture: Path, port: str) -> Any:
    return factory(
        store={"id": "test-store", "gateway": "gw-test", "timezone": "Europe/Paris"},
        http={"listen": "127.0.0.1:0", "api_token": "test-token", "users": [
            {"name": "sam", "role": "staff", "password_hash": hash_password("sam-pass")}]},
        mqtt={"host": "127.0.0.1", "port": broker.port, "reconnect_min_s": 0.05, "reconnect_max_s": 0.3},
        ble={"source": f"replay:{capture}?loop", "zones": [{"id": "entrance", "rssi_enter": -60, "rssi_exit": -70}],
             "away_s": 2.0},
        rfid={"gone_after_s": 0.5, "readers": [{"id": "r1", "port": port, "protocol": "mercury", "baudrate": 115200,
                                                "zones": {FLOOR: "floor", EXIT: "exit"}}]},
        checkout={"gates": [{"id": "exit-1", "zones": ["exit"], "rearm_s": 60}]})


async def test_arrival_on_the_page_handover_and_a_quiet_gate(browser: WebDriver, mosquitto: Mosquitto,  # type: ignore[no-untyped-def]  # noqa: F811
                                                             tmp_path: Path, config_factory, start_agent) -> None:
    scenario = ManualScenario()
    sim = PtySimulator("mercury", scenario, link=tmp_path / "dev" / "r1", period_s=0.05)
    port = sim.start()
    sub = Subscriber(mosquitto.port, f"{BASE}/#")
    capture = tmp_path / "phone.btsnoop"
    try:
        ra = await start_agent(store_config(config_factory, mosquitto, capture, port))
        agent = ra.agent
        await wait_for(lambda: agent["mqtt"].uplink.ready and agent["readers"].runners["r1"].state == "online", 10)
        send(mosquitto, "members/set", {**MEMBERS, "members": [
            {**MEMBERS["members"][0], "name": "Ms B."}, *MEMBERS["members"][1:]]})
        send(mosquitto, "catalog/set", CATALOG)
        send(mosquitto, "collect/add", ORDER)
        await reported(sub, "members", 1)
        await wait_for(lambda: "1234" in agent["collect"].orders, 10)

        await in_thread(browser.get, f"{ra.base_url}/login")
        await in_thread(lambda: browser.find_element(By.ID, "username").send_keys("sam"))
        await in_thread(lambda: browser.find_element(By.ID, "password").send_keys("sam-pass"))
        await in_thread(lambda: browser.find_element(By.ID, "submit").click())
        await until(browser, lambda d: "Order 1234 (Ms B.)" in d.find_element(By.ID, "collect-waiting").text)

        phones(capture, [(0, 3, [1])])  # Ms B.'s phone at the entrance
        await wait_for(lambda: events(sub, "collect.arrived"), 15)
        (arrived,) = events(sub, "collect.arrived")
        assert {k: arrived["data"][k] for k in ("order_id", "member", "pickup_point", "zone")} == {
            "order_id": "1234", "member": "L1001", "pickup_point": "counter 2", "zone": "entrance"}
        detected = agent["collect"].orders["1234"].arrived_at
        text = "Order 1234 (Ms B.): customer has arrived, counter 2"
        await until(browser, lambda d: text in d.find_element(By.ID, "collect-arrivals").text, 10)
        shown = time.time()
        assert shown - detected < 2.0, f"the page showed the arrival {shown - detected:.2f} s after the detection"
        assert text in await in_thread(lambda: browser.find_element(By.ID, "notice").text)
        ARTIFACTS.mkdir(exist_ok=True)
        await in_thread(browser.save_screenshot, str(ARTIFACTS / "staff-page-collect-arrival.png"))

        await in_thread(lambda: browser.find_element(By.CSS_SELECTOR, 'button[data-handover="1234"]').click())
        await wait_for(lambda: agent["collect"].orders["1234"].state == "handed_over", 10)
        await wait_for(lambda: events(sub, "collect.handed_over"), 10)
        done = events(sub, "collect.handed_over")[0]["data"]
        assert done["order_id"] == "1234" and 0 <= done["wait_s"] < 60
        assert agent["catalog"].data.is_sold(tag(SHOE_GTIN, 501).hex().upper())

        scenario.put(tag(SHOE_GTIN, 501), antenna=EXIT)  # the collected shoe walks out: quiet
        await wait_for(lambda: ("exit", tag(SHOE_GTIN, 501).hex().upper()) in agent["readers"].runners["r1"].presence,
                       10)
        await asyncio.sleep(0.3)
        assert agent["gates"].alarms == 0
        scenario.put(tag(SHOE_GTIN, 502), antenna=EXIT)  # the same product, unpaid: alarm
        await wait_for(lambda: agent["gates"].alarms == 1, 10)
    finally:
        sub.close()
        sim.stop()


async def test_bad_orders_cancel_and_handover_errors(mosquitto: Mosquitto, tmp_path: Path, config_factory,  # type: ignore[no-untyped-def]
                                                    start_agent) -> None:
    sub = Subscriber(mosquitto.port, f"{BASE}/#")
    try:
        ra = await start_agent(config_factory(
            mqtt={"host": "127.0.0.1", "port": mosquitto.port, "reconnect_min_s": 0.05, "reconnect_max_s": 0.3}))
        agent = ra.agent
        await wait_for(lambda: agent["mqtt"].uplink.ready, 10)

        def reports() -> list[dict[str, Any]]:
            return [json.loads(p) for p in sub.payloads(f"{BASE}/collect/reported")]

        send(mosquitto, "collect/add", {"orders": [{"order_id": "1", "pickup_point": "counter", "items": []}]})
        await wait_for(lambda: reports(), 10)
        bad = reports()[-1]
        assert bad["status"] == "rejected"
        assert {e["path"] for e in bad["errors"]} >= {"orders[0].member", "orders[0].items"}
        twice = {"orders": [ORDER["orders"][0], {**ORDER["orders"][0], "pickup_point": "counter 9"}]}
        send(mosquitto, "collect/add", twice)  # which of the two is meant? neither is taken
        await wait_for(lambda: len(reports()) >= 2, 10)
        assert reports()[-1]["status"] == "rejected" and reports()[-1]["errors"] == [{
            "path": "orders", "message": "Value error, one entry per order: orders[1] repeats orders[0] (1234)"}]
        assert agent["collect"].orders == {}
        send(mosquitto, "collect/add", ORDER)
        send(mosquitto, "collect/add", {"orders": [{**ORDER["orders"][0], "pickup_point": "counter 3"}]})  # replace
        await wait_for(lambda: len(reports()) >= 4, 10)
        assert len(agent["collect"].orders) == 1 and agent["collect"].orders["1234"].doc.pickup_point == "counter 3"
        send(mosquitto, "collect/cancel", {"order_ids": ["nope", "1234"]})
        await wait_for(lambda: len(reports()) >= 5, 10)
        cancel = reports()[-1]
        assert cancel["orders"] == ["1234"] and cancel["errors"] == [{"path": "order_ids",
                                                                      "message": "no open order nope"}]
        h = {"Authorization": "Bearer test-token"}
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{ra.base_url}/api/collect/1234/handover", headers=h) as r:
                assert r.status == 404  # cancelled
            async with http.post(f"{ra.base_url}/api/collect/zzz/handover", headers=h, json={"epcs": ["xyz"]}) as r:
                assert r.status == 400
            async with http.get(f"{ra.base_url}/api/collect", headers=h) as r:
                (o,) = (await r.json())["orders"]
        assert o["state"] == "cancelled" and agent["collect"].rejected == 2
    finally:
        sub.close()


async def test_bounds_on_items_per_message_and_open_orders(monkeypatch, config_factory, start_agent) -> None:  # type: ignore[no-untyped-def]
    """A message too big to hold is refused whole with its path; orders beyond the open bound are refused one by
    one, counted on the status and logged, and the orders already there are untouched."""
    from agent.o2o import collect

    ra = await start_agent(config_factory(mqtt={"enabled": False}))
    comp = ra.agent["collect"]
    order = ORDER["orders"][0]
    items = [{"gtin": SHOE_GTIN}] * collect.MAX_ITEMS
    too_many = {"orders": [{**order, "order_id": f"big-{i}", "items": items}
                           for i in range(collect.MAX_ITEMS_PER_MESSAGE // collect.MAX_ITEMS + 1)]}
    report = await comp.on_add(json.dumps(too_many).encode())
    assert report is not None and report["status"] == "rejected"
    assert [e["path"] for e in report["errors"]] == ["orders"] and "at most 50,000" in report["errors"][0]["message"]
    assert comp.orders == {}

    monkeypatch.setattr(collect, "MAX_OPEN_ORDERS", 3)
    first = {"orders": [{**order, "order_id": f"o{i}"} for i in range(2)]}
    assert (await comp.on_add(json.dumps(first).encode()))["orders"] == ["o0", "o1"]
    more = {"orders": [{**order, "order_id": f"o{i}"} for i in range(1, 5)]}  # o1 again (a replace), o2..o4 new
    report = await comp.on_add(json.dumps(more).encode())
    assert report is not None and report["status"] == "applied" and report["orders"] == ["o1", "o2"]
    assert [e["path"] for e in report["errors"]] == ["orders[2]", "orders[3]"]
    assert "3 orders waiting or arrived" in report["errors"][0]["message"]
    assert sorted(comp.orders) == ["o0", "o1", "o2"] and comp.status().refused_full == 2
    assert any("Click-and-collect is full (3 open orders): 2 new order(s) refused" in r.text for r in comp.health())
    h = {"Authorization": "Bearer test-token"}
    async with aiohttp.ClientSession() as http, http.get(f"{ra.base_url}/api/status", headers=h) as r:
        assert (await r.json())["collect"]["refused_full"] == 2
