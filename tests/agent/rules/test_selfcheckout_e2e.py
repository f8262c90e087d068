"""Self-checkout and the exit gate end to end: a simulated reader on a pty, real HTTP, a real broker.

The acceptance story of the feature: 30 items on the station, 2 taken back, pay, walk out;
an unpaid item raises exactly one alarm (and the alarm outputs fire), an item sold online does not;
all of it while the cloud link is down, delivered when it comes back.
"""

from __future__ import annotations

import asyncio
import json
import os
import tty
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from drivers.rfid.epc import encode_sgtin96, gtin_check_digit
from drivers.rfid.simulator import ManualScenario, PtySimulator
from tests.conftest import Mosquitto, Subscriber, wait_for

TOKEN = "kiosk-secret"
CHECKOUT, EXIT = 1, 2


def product(i: int) -> tuple[str, bytes, Decimal]:
    body = f"0301234{i:05d}9"[:13]
    gtin = body + str(gtin_check_digit(body))
    return gtin, encode_sgtin96(gtin, 5000 + i, company_prefix_digits=7), Decimal(f"{10 + i}.{i % 100:02d}")


PRODUCTS = [product(i) for i in range(32)]


@pytest.fixture
async def webhook() -> Any:
    received: list[dict[str, Any]] = []

    async def alarm(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/alarm", alarm)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}/alarm", received
    await runner.cleanup()


@pytest.fixture
def relay_pty() -> Any:
    master, slave = os.openpty()
    tty.setraw(master)
    tty.setraw(slave)
    os.set_blocking(master, False)
    yield os.ttyname(slave), master
    os.close(master)
    os.close(slave)


def read_all(fd: int) -> bytes:
    try:
        return os.read(fd, 4096)
    except BlockingIOError:
        return b""


async def test_self_checkout_and_gate(tmp_path: Path, mosquitto: Mosquitto, webhook, relay_pty,
                                      config_factory, start_agent) -> None:  # type: ignore[no-untyped-def]
    hook_url, hook_calls = webhook
    relay_port, relay_master = relay_pty
    scenario = ManualScenario()
    sim = PtySimulator("mercury", scenario, link=tmp_path / "dev" / "reader", period_s=0.05)
    port = sim.start()
    sub = Subscriber(mosquitto.port, "o2o/v1/test-store/gw-test/events")
    mosquitto.stop()  # the cloud is down for the whole shopping trip
    try:
        config = config_factory(
            rfid={"gone_after_s": 0.4, "readers": [{"id": "r1", "port": port, "protocol": "mercury",
                                                    "baudrate": 115200, "zones": {1: "checkout-1", 2: "exit"}}]},
            checkout={"stations": [{"id": "sco-1", "zones": ["checkout-1"], "token": TOKEN, "settle_s": 0.2}],
                      "gates": [{"id": "exit-1", "zones": ["exit"], "rearm_s": 30, "alarm": [
                          {"type": "webhook", "url": hook_url},
                          {"type": "serial", "port": relay_port, "line": "write", "command": "A00101A2"}]}]},
            mqtt={"host": "127.0.0.1", "port": mosquitto.port, "reconnect_min_s": 0.05, "reconnect_max_s": 0.2},
        )
        ra = await start_agent(config)
        agent = ra.agent
        catalog = {"version": 1, "currency": "EUR",
                   "products": [{"gtin": g, "name": f"Item {i}", "price": str(p)} for i, (g, _, p) in enumerate(PRODUCTS)]}
        report = await agent["catalog"].on_catalog(json.dumps(catalog).encode())
        assert report["status"] == "applied"
        base = f"{ra.base_url}/api/checkout/sco-1"
        auth = {"Authorization": f"Bearer {TOKEN}"}
        async with aiohttp.ClientSession() as http:

            async def get_basket() -> dict[str, Any]:
                async with http.get(f"{base}/basket", headers=auth) as r:
                    assert r.status == 200
                    return await r.json()  # type: ignore[no-any-return]

            basket_items = list(PRODUCTS[:30])
            for _, epc, _ in basket_items:
                scenario.put(epc, antenna=CHECKOUT)
            await wait_for(lambda: agent["checkout"].basket("sco-1").settled and len(agent["checkout"].basket("sco-1").lines) == 30, 10)
            b = await get_basket()
            assert len(b["lines"]) == 30 and b["currency"] == "EUR"
            assert Decimal(b["total"]) == sum(p for _, _, p in basket_items)
            line = next(ln for ln in b["lines"] if ln["gtin"] == PRODUCTS[3][0])
            assert (line["name"], line["qty"], line["unit_price"], line["amount"]) == ("Item 3", 1, "13.03", "13.03")
            assert line["epcs"] == [PRODUCTS[3][1].hex().upper()]

            taken_back = basket_items[:2]
            for _, epc, _ in taken_back:
                scenario.remove(epc)
            await wait_for(lambda: len(agent["checkout"].basket("sco-1").lines) == 28, 10)
            priced = await get_basket()
            assert len(priced["lines"]) == 28 and priced["basket_id"] != b["basket_id"]
            assert Decimal(priced["total"]) == sum(p for _, _, p in basket_items[2:])

            # bad input first: each a clear 4xx, nothing half-applied
            async with http.post(f"{base}/pay", headers={"Authorization": "Bearer wrong"},
                                 json={"payment_id": "p1", "basket_id": priced["basket_id"], "total": priced["total"]}) as r:
                assert r.status == 401
            async with http.post(f"{base}/pay", headers=auth, data=b"{not json") as r:
                assert r.status == 400 and "not JSON" in (await r.json())["error"]
            async with http.post(f"{base}/pay", headers=auth,
                                 json={"payment_id": "p1", "basket_id": "01NOSUCHBASKET", "total": priced["total"]}) as r:
                assert r.status == 404
            async with http.post(f"{base}/pay", headers=auth,
                                 json={"payment_id": "p1", "basket_id": b["basket_id"], "total": b["total"]}) as r:
                assert r.status == 409 and "changed since" in (await r.json())["error"]
            async with http.post(f"{base}/pay", headers=auth,
                                 json={"payment_id": "p1", "basket_id": priced["basket_id"], "total": "1.00"}) as r:
                assert r.status == 409 and "differs" in (await r.json())["error"]
            async with http.post(f"{base}/pay", headers=auth, json={"payment_id": "p1", "total": 3}) as r:
                assert r.status == 400
            assert agent["catalog"].data.sold_count == 0 and agent["checkout"].payments == 0

            pay = {"payment_id": "p1", "basket_id": priced["basket_id"], "total": priced["total"]}
            async with http.post(f"{base}/pay", headers=auth, json=pay) as r:
                assert r.status == 200
                receipt = await r.json()
            assert receipt["duplicate"] is False and receipt["total"] == priced["total"]
            async with http.post(f"{base}/pay", headers=auth, json=pay) as r:  # the terminal retries
                assert r.status == 200 and (await r.json())["duplicate"] is True
            assert agent["checkout"].payments == 1
            paid = [epc for _, epc, _ in basket_items[2:]]
            assert all(agent["catalog"].data.is_sold(e.hex().upper()) for e in paid)
            assert (await get_basket())["lines"] == []
            async with http.post(f"{base}/pay", headers=auth,
                                 json={**pay, "basket_id": (await get_basket())["basket_id"]}) as r:
                assert r.status == 409 and "already used" in (await r.json())["error"]

            # walk out with the paid items: no alarm
            for epc in paid:
                scenario.put(epc, antenna=EXIT)
            await wait_for(lambda: all(("exit", e.hex().upper()) in agent["readers"].runners["r1"].presence for e in paid), 10)
            await asyncio.sleep(0.3)
            assert agent["gates"].alarms == 0

            # an unpaid item: exactly one alarm, outputs fire
            thief = taken_back[0][1]
            scenario.put(thief, antenna=EXIT)
            await wait_for(lambda: agent["gates"].alarms == 1, 10)
            await wait_for(lambda: len(hook_calls) == 1, 10)
            assert hook_calls[0]["epc"] == thief.hex().upper() and hook_calls[0]["name"] == "Item 0"
            relay = b""
            for _ in range(100):
                relay += read_all(relay_master)
                if relay:
                    break
                await asyncio.sleep(0.05)
            assert relay == bytes.fromhex("A00101A2")
            await asyncio.sleep(1.0)  # the tag sits in the gate, read many times: still one alarm
            assert agent["gates"].alarms == 1 and len(hook_calls) == 1

            # sold online, collected in store: no alarm
            online = taken_back[1][1]
            await agent["catalog"].on_sold(json.dumps({"epcs": [online.hex()], "reason": "click-and-collect"}).encode())
            scenario.put(online, antenna=EXIT)
            await wait_for(lambda: ("exit", online.hex().upper()) in agent["readers"].runners["r1"].presence, 10)
            await asyncio.sleep(0.3)
            assert agent["gates"].alarms == 1

            status = await agent.status()
            assert status["gates"]["alarms"] == 1 and status["checkout"]["payments"] == 1
            assert all(o["fired"] == 1 and o["failed"] == 0 for o in status["gates"]["outputs"].values())

        # the cloud comes back: the payment and the alarm reach it
        mosquitto.start()

        def kinds() -> list[str]:
            return [e["kind"] for p in sub.payloads() for e in json.loads(p)["events"]]

        await wait_for(lambda: "checkout.paid" in kinds() and "gate.alarm" in kinds(), 20)
        assert kinds().count("gate.alarm") == 1
        assert "basket.updated" in kinds()
    finally:
        sub.close()
        sim.stop()
