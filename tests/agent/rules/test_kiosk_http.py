"""The kiosk's HTTP side: auth, the live stream, the page, body limits."""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from agent.events import Event
from tests.conftest import wait_for

TOKEN = "kiosk-secret"


def config(factory: Any) -> Any:
    return factory(
        rfid={"readers": [{"id": "r1", "port": "/dev/null-not-a-tty", "protocol": "em4100", "baudrate": 9600,
                           "zones": {1: "checkout-1"}}]},
        checkout={"stations": [{"id": "sco-1", "zones": ["checkout-1"], "token": TOKEN, "settle_s": 0.05}]},
        mqtt={"enabled": False},
    )


async def test_stream_page_and_auth(config_factory, start_agent) -> None:  # type: ignore[no-untyped-def]
    ra = await start_agent(config(config_factory))
    base = ra.base_url
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/kiosk/sco-1?token={TOKEN}") as r:
            assert r.status == 200 and "EventSource" in await r.text()
        async with http.get(f"{base}/kiosk/sco-1") as r:  # the page says so (tests/agent/web/test_kiosk_browser.py)
            assert r.status == 401 and "This kiosk is not set up" in await r.text()
        async with http.get(f"{base}/kiosk/nope?token={TOKEN}") as r:
            assert r.status == 404 and "This kiosk is not set up" in await r.text()
        async with http.get(f"{base}/api/checkout/nope/basket", headers={"Authorization": f"Bearer {TOKEN}"}) as r:
            assert r.status == 404
        async with http.get(f"{base}/api/checkout/sco-1/basket") as r:
            assert r.status == 401
        async with http.get(f"{base}/api/checkout/sco-1/basket", headers={"Authorization": "Bearer test-token"}) as r:
            assert r.status == 200  # ops tooling may look with the api_token
        async with http.post(f"{base}/api/checkout/sco-1/pay", headers={"Authorization": "Bearer test-token"},
                             json={}) as r:
            assert r.status == 401  # but only the station pays
        async with http.post(f"{base}/api/checkout/sco-1/pay", headers={"Authorization": f"Bearer {TOKEN}"},
                             data=b"x" * 10_000) as r:
            assert r.status == 413
        async with http.get(f"{base}/api/checkout/sco-1/stream?token={TOKEN}") as r:
            assert r.status == 200 and r.headers["Content-Type"].startswith("text/event-stream")
            first = await r.content.readuntil(b"\n\n")
            assert json.loads(first.split(b"data: ", 1)[1])["lines"] == []
            ra.agent.hub.publish(Event("tag.seen", "r1", {"epc": "0102030405", "zone": "checkout-1", "gtin": None,
                                                          "rssi": None}))
            update = await r.content.readuntil(b"\n\n")
            doc = json.loads(update.split(b"data: ", 1)[1])
            assert doc["unknown_items"] == 1 and doc["lines"][0]["name"] == "Unknown item"
    await wait_for(lambda: ra.agent.hub.published_by_kind.get("basket.updated"), 5)
